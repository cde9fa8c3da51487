"""Multi-process training: rank-aware sampling, unpadded grid shards, and real 2-process DDP runs (gloo, CPU).

Oracle: with every per-step point count divisible by the number of processes, DDP's gradient average is the
gradient of the global batch, so a 2-process run follows the single-process run with the same global budget
step for step (equal up to float summation order).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from pinn.cli import cli_main
from pinn.training.data import ElasticDataModule

ROOT = Path(__file__).resolve().parents[1]
BASE = str(ROOT / "configs" / "plane_wave.yaml")
TINY = {  # every per-step count even, so the 2-process run is the single-process run in exact arithmetic
    "seed_everything": 0,
    "trainer": {"accelerator": "cpu", "max_steps": 4, "num_sanity_val_steps": 0, "check_val_every_n_epoch": 1,
                "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False},
    "model": {"width": 8, "depth": 2},
    "data": {"n_interior": 64, "n_boundary": 32, "n_initial": 32, "batch_size": 32, "steps_per_epoch": 2,
             "val_grid": [5, 5, 3], "val_batch_size": 16},  # 75 grid points: odd, so padding would show
}


# RAD every 3 steps (at 3 and 6: never at a run's last step, where ResidualResampling skips it): ranks evaluate
# shares of the candidates and all-gather the residuals, so every rank makes the single-process draw.
RESAMPLE = {"class_path": "pinn.training.resampling.ResidualResampling",
            "init_args": {"method": "rad", "every_n_steps": 3, "n_candidates": 128, "chunk_size": 32,
                          "log_images": False}}


def rows(x: torch.Tensor) -> list[tuple[float, ...]]:
    return sorted(map(tuple, x.tolist()))


def attach(dm: ElasticDataModule, rank: int, world: int) -> ElasticDataModule:
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, global_step=0)
    return dm


def tiny_dm(**kw) -> ElasticDataModule:
    dm = ElasticDataModule(**{**TINY["data"], **kw})
    dm.setup("fit")
    return dm


# ---- the data module, without processes ---------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 32])
@pytest.mark.parametrize("world", [2, 3])
def test_rank_shares_partition_the_single_process_batch(batch_size, world):
    single = tiny_dm(batch_size=batch_size)
    for step in range(4):
        reference = single.batch(step)  # no trainer: one process
        shares = [attach(tiny_dm(batch_size=batch_size), r, world).batch(step) for r in range(world)]
        for name, points in reference.items():
            sizes = [s[name].shape[0] for s in shares]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
            assert rows(torch.cat([s[name] for s in shares])) == rows(points)  # disjoint, and the union


def test_mini_batches_cover_every_pool_once_per_pass():
    dm = tiny_dm(batch_size=20)  # 64 interior points -> 4 balanced slices, none empty
    assert dm.batches_per_pass == 4
    for name, pool in dm.pools.items():
        seen = torch.cat([dm.global_batch(s)[name] for s in range(4)])
        assert rows(seen) == rows(pool)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_grid_shards_cover_the_grid_once_in_equal_batch_counts(world):
    loaders = [attach(tiny_dm(), r, world).val_dataloader() for r in range(world)]
    assert len({len(loader) for loader in loaders}) == 1  # DDP's forward is a collective: equal batch counts
    points = torch.cat([b for loader in loaders for b in loader])
    assert rows(points) == rows(tiny_dm().grid())


def test_state_holds_the_global_pools_and_resumes_into_another_world_size():
    two = attach(ElasticDataModule(**TINY["data"]), 1, 2)
    two.setup("fit")  # as rank 1 of 2, so a pool drawn or stored per rank would show here
    state = two.state_dict()
    for name, pool in tiny_dm().pools.items():
        assert torch.equal(state["pools"][name], pool)  # the global pool, not rank 1's share
    three = [attach(ElasticDataModule(**TINY["data"]), r, 3) for r in range(3)]
    for dm in three:
        dm.load_state_dict(state)
    for name, points in tiny_dm().batch(5).items():
        assert rows(torch.cat([dm.batch(5)[name] for dm in three])) == rows(points)


def test_too_few_points_per_process_names_the_pool():
    dm = attach(tiny_dm(n_boundary=6, batch_size=32), 0, 4)  # 2 steps per pass -> 3 boundary points per step
    with pytest.raises(ValueError, match=r"data\.n_boundary=6 gives 3 points per step .* processes \(4\)"):
        dm.train_dataloader()
    with pytest.raises(ValueError, match=r"data\.n_boundary=6"):
        dm.batch(0)


# ---- real runs through the CLI --------------------------------------------------------------------------------
def fit(tmp: Path, name: str, *args: str, devices: int = 1, logs: str | None = None) -> Path:
    """Run ``pinn fit`` in a subprocess on the tiny config, logging to ``tmp/logs-<logs or name>``, with a probe
    writing to ``tmp/<name>``."""
    tiny = tmp / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY))
    overlay = {"trainer": {
        "devices": devices, "strategy": "ddp" if devices > 1 else "auto",
        "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                   "init_args": {"save_dir": str(tmp / f"logs-{logs or name}"), "name": "run"}},
        "callbacks": [RESAMPLE, {"class_path": "tests.ddp_probe.Probe", "init_args": {"out_dir": str(tmp / name)}}],
    }}
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump(overlay))
    cmd = [sys.executable, "-m", "pinn", "fit", "-c", BASE, "-c", str(tiny), "-c", str(config), *args]
    # One thread per process, as Lightning gives each DDP process here: the same kernels in every run.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=500, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tmp / name


def load(probe: Path, what: str) -> dict:
    return torch.load(probe / f"{what}.pt", weights_only=True)


def assert_weights_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"parameter {k}")  # seen: 3e-8


@pytest.mark.slow
def test_ddp_fit_validate_and_resume(tmp_path):
    ddp = fit(tmp_path, "ddp", devices=2)  # steps 0-4 on 2 processes
    single = fit(tmp_path, "single", "--trainer.max_steps", "8")  # steps 0-8 on one process: the reference
    last = tmp_path / "logs-ddp" / "run" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4

    # The ranks trained on disjoint halves of the single-process batch and ended with identical weights,
    # equal to the single-process weights.
    first = [load(ddp, f"rank{r}-first-batch") for r in (0, 1)]
    for name, points in load(single, "rank0-first-batch")["batch"].items():
        assert rows(torch.cat([f["batch"][name] for f in first])) == rows(points)
    end = [load(ddp, f"rank{r}-step4") for r in (0, 1)]
    for k, v in end[0]["weights"].items():
        assert torch.equal(v, end[1]["weights"][k]), k
    assert_weights_close(end[0]["weights"], load(single, "rank0-step4")["weights"])

    # The resample at step 3 left the same global pools on both ranks: the pools the single process drew.
    assert not torch.equal(end[0]["pools"]["interior"], tiny_dm().pools["interior"])
    for name, pool in load(single, "rank0-step4")["pools"].items():
        assert torch.equal(end[0]["pools"][name], pool) and torch.equal(end[1]["pools"][name], pool), name

    # Each grid point validated on exactly one rank, and the reduced metric is the single-process validate.
    grid = tiny_dm().grid()
    assert rows(torch.cat([e["val_points"] for e in end])) == rows(grid)
    cli = cli_main(["validate", "-c", BASE, "-c", str(tmp_path / "tiny.yaml"), "--trainer.logger", "false",
                    "--trainer.default_root_dir", str(tmp_path / "validate"), "--ckpt_path", str(last)])
    reference = cli.trainer.callback_metrics["val/rel_l2"].item()
    assert end[0]["rel_l2"] == end[1]["rel_l2"] == pytest.approx(reference, rel=1e-6)

    # Checkpoints are written by rank 0 only, each file once per step.
    writes = [line.split() for line in (ddp / "writes.txt").read_text().splitlines()]
    assert writes and {rank for rank, _, _ in writes} == {"0"}
    assert len({(step, path) for _, step, path in writes}) == len(writes)

    # Resume the DDP checkpoint on one process (another device count), then on 2 processes via --ckpt_path last:
    # both continue from step 4 and end where the uninterrupted single-process run did.
    one = fit(tmp_path, "resume1", "--trainer.max_steps", "8", "--ckpt_path", str(last))
    two = fit(tmp_path, "resume2", "--trainer.max_steps", "8", "--ckpt_path", "last", devices=2, logs="ddp")
    single8 = load(single, "rank0-step8")
    reference8 = single8["weights"]
    for probe, ranks in ((one, (0,)), (two, (0, 1))):
        for r in ranks:
            assert load(probe, f"rank{r}-first-batch")["step"] == 4
            assert_weights_close(load(probe, f"rank{r}-step8")["weights"], reference8)
            assert torch.equal(load(probe, f"rank{r}-step8")["pools"]["interior"], single8["pools"]["interior"])
    assert torch.load(last, weights_only=True)["global_step"] == 8  # the DDP resume continued in the same run
    assert {line.split()[0] for line in (two / "writes.txt").read_text().splitlines()} == {"0"}


@pytest.mark.slow
def test_levenberg_marquardt_on_two_processes_takes_the_single_process_steps(tmp_path):
    """Each process holds half the rows; the normal matrices, gradients and trial losses averaged over processes are
    the single process's, so two processes end with its weights (Adam for steps 0-1, then two Levenberg-Marquardt
    steps on full batches in float64)."""
    lm = ("--data.batch_size", "null", "--trainer.precision", "64-true", "--model.lbfgs.start_step", "2",
          "--model.lbfgs.float64", "false")
    ddp = fit(tmp_path, "lm-ddp", *lm, devices=2)
    single = fit(tmp_path, "lm-single", *lm)
    end = [load(ddp, f"rank{r}-step4") for r in (0, 1)]
    for k, v in end[0]["weights"].items():
        assert torch.equal(v, end[1]["weights"][k]), k
    assert_weights_close(end[0]["weights"], load(single, "rank0-step4")["weights"])
    saved = torch.load(tmp_path / "logs-lm-ddp" / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["optimizer_stage"]["name"] == "lbfgs"
    assert saved["optimizer_states"][0]["param_groups"][0]["accepted"] >= 1  # Levenberg-Marquardt took its steps
