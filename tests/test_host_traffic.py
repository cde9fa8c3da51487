"""No training step of a shipped config copies host data to the device or waits on the device.

What a captured CUDA graph holds is the loss, its backward pass and the PersistentAdam update. Each of these, for every
config in ``configs/``, runs here under :class:`graph_fakes.HostTraffic`, which records a tensor made from host data
(``torch.tensor`` in the step), an operand that comes from a host object instead of the device (a constant copied
with ``.to(x)`` each call), and a host synchronisation (``.item()``, ``bool(t)``, boolean-mask indexing). Any one
fails the test, naming it. Constants a problem made once on its device (:mod:`pinn.physics.device_cache`) are
allowed; they are made in the warm-up step before.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from graph_fakes import HostTraffic

from pinn.cli import cli_main
from pinn.physics.device_cache import cached_tensors

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
REFERENCE = CONFIGS[0].parent / "plane_wave.yaml"
# Small versions of each run: the step's code path is what matters, not its size. The finite-difference references
# are coarse (3 points per S wavelength, a thin absorbing layer) and cached for the whole session.
SMALL = ["--trainer.max_steps", "1", "--trainer.logger", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
         "--data.n_interior", "512", "--data.n_boundary", "128", "--data.n_initial", "128",
         "--data.val_grid", "[3, 3, 2]",
         "--model.width", "8", "--model.compile", "false"]
REFERENCE_SMALL = ["--data.problem.init_args.reference.points_per_wavelength", "3",
                   "--data.problem.init_args.reference.absorbing_cells", "10",
                   "--data.problem.init_args.reference.output_times", "21"]


def has_reference(config: Path) -> bool:
    return "WaveProblem" in config.read_text()


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("references")


@pytest.fixture
def no_leftover_process_group():
    """``configs/ddp.yaml`` fits under DDP in a world of one: its process group and the MASTER_PORT Lightning puts in
    the environment must not outlive the test (a later test's subprocesses would inherit the port, still held)."""
    environ = dict(os.environ)
    yield
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(environ)


def one_step(config: Path, tmp_path: Path, references: Path):
    """The model, its optimizer and a batch after a one-step fit of ``config`` (setup and a first, eager step done)."""
    args = ["-c", str(REFERENCE)] if config != REFERENCE else []
    args += ["-c", str(config), *SMALL]
    if has_reference(config):
        args += [*REFERENCE_SMALL, "--data.problem.init_args.reference.cache_dir", str(references)]
    cli = cli_main(args + ["--trainer.default_root_dir", str(tmp_path)], run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    model, trainer = cli.model, cli.trainer
    batch = next(iter(cli.datamodule.train_dataloader()))
    return model.train(), trainer.optimizers[0], batch


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_a_training_step_has_no_host_traffic(config, tmp_path, references, monkeypatch, no_leftover_process_group):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pinn"])
    model, optimizer, batch = one_step(config, tmp_path, references)
    optimizer.zero_grad(set_to_none=True)  # as before a captured step: backward makes the gradients
    allowed = [*model.parameters(), *model.buffers(), *batch.values(), *cached_tensors()]
    allowed += [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    # Adam's step counts stay in host memory unless the optimizer is capturable (as it is when graphs run)
    host = [state["step"] for group in optimizer.param_groups if not group.get("capturable")
            for p in group["params"] if "step" in (state := optimizer.state.get(p, {}))]
    with HostTraffic(allowed, host) as traffic:
        loss, _ = model.training_loss(batch)
        loss.backward()
        optimizer.step()
    assert traffic.problems() == [], f"{config.name}: {traffic.problems()[:5]}"


def test_the_check_finds_host_traffic():
    """The recorder is only worth the test above if it sees each kind of traffic."""
    kept = torch.ones(4)
    with HostTraffic([]) as traffic:
        x = torch.zeros(4) + 1
        (x > 0).any().item()  # a sync
        x + torch.tensor([1.0, 2.0, 3.0, 4.0])  # host data
        x * kept.to(x)  # a host object's tensor: a copy to the device on a GPU
        x[x > 0]  # a data-dependent size
    assert len(traffic.syncs) == 2 and len(traffic.creations) == 1 and len(traffic.foreign) == 1
