"""Exact resume: a run interrupted at step k and resumed from its checkpoint continues the very same run.

The harness trains the same tiny problem twice on CPU: once straight through, once stopped (a crash raised in a
callback, or ``max_steps`` reached) and resumed from ``last.ckpt``. The per-step ``train/loss`` sequences, the
steps at which validation ran and its ``val/rel_l2`` must agree bit for bit. To cover a new feature (a resampling
rule, a scheduler), add a :class:`Case` to ``CASES``; every case runs under every interruption in ``STOPS``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins import AsyncCheckpointIO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pinn.cli import cli_main
from pinn.io.checkpointing import CheckpointError, RunCheckpoint, VerifiedCheckpointIO, load_checkpoint
from pinn.networks.mlp import Factorization, FourierFeatures
from pinn.physics.inversion import FieldUnknowns, LayerUnknowns
from pinn.physics.media import Inclusion, Layered, Properties
from pinn.physics.sources import PointForce, Ricker
from pinn.physics.unknowns import Unknowns
from pinn.problems import Boundaries, Domain, Problem, WaveProblem
from pinn.problems.closed_form import PlaneWaves, Wave
from pinn.problems.receivers import ReceiverLine, Receivers
from pinn.problems.reference import ReferenceSettings
from pinn.training.balancing import GradNormBalancing
from pinn.training.causal import Causal
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN
from pinn.training.observations import ReferenceObservations, SyntheticObservations
from pinn.training.resampling import ResidualResampling
from pinn.training.stages import LBFGSStage
from pinn.training.windows import TimeWindows

ROOT = Path(__file__).resolve().parents[1]

STEPS_PER_EPOCH = 4
TOTAL_STEPS = 14  # 2k with k = 7: the interruption falls mid-epoch


@dataclass
class Case:
    """One training configuration. ``data``/``model``/``trainer`` are keyword arguments on top of tiny defaults;
    ``callbacks`` builds fresh callbacks (e.g. a resampling rule) for each run."""

    data: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)
    callbacks: Callable[[], list[Callback]] = list
    plugins: Callable[[], list] = lambda: [VerifiedCheckpointIO()]
    problem: Callable[[Path], Problem] = lambda cache: PlaneWaves([Wave(kind="P", angle=0.3, wavenumber=6.0)])


def _wave_problem(cache: Path, padding: float = 0.0) -> WaveProblem:
    """A source in two layers under a free surface, from a snapshot of its (tiny, cached) Devito reference."""
    layers = [Properties(vp=1500.0, vs=800.0, rho=1800.0), Properties(vp=2500.0, vs=1400.0, rho=2100.0)]
    source = PointForce((100.0, 150.0), 1e6, (0.0, -1.0), 12.0, Ricker(8.0, 0.04))
    return WaveProblem(Domain((0.0, 200.0), (0.0, 200.0), (0.06, 0.1)), Layered(layers, [100.0], 10.0), [source],
                       Boundaries("absorbing", "absorbing", "free", "fixed"), "snapshot", 0.0,
                       reference=ReferenceSettings(spacing=10.0, space_order=4, absorbing_cells=8, output_times=5,
                                                   cache_dir=str(cache)), padding=padding)


def _inverse_problem(cache: Path, medium) -> WaveProblem:
    """An inverse setup: at rest at t0, the displacement scale given, recordings simulated on ``medium``."""
    source = PointForce((100.0, 60.0), 1e6, (0.0, 1.0), 15.0, Ricker(10.0, 0.1))
    return WaveProblem(Domain((0.0, 200.0), (0.0, 200.0), (0.0, 0.15)), medium, [source],
                       Boundaries("absorbing", "absorbing", "free", "absorbing"),
                       receivers=Receivers(line=ReceiverLine((0.0, 200.0), (200.0, 200.0), 6)),
                       reference=ReferenceSettings(spacing=10.0, space_order=4, absorbing_cells=8, output_times=7,
                                                   cache_dir=str(cache)), displacement_scale=1e-5)


class RanCompiled(Callback):
    """Fails the run unless its training steps ran the compiled kernels (not the eager fallback)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        assert pl_module._kernel is not None and pl_module._kernel.state == "compiled", pl_module._kernel.reason


_LAYERS = [Properties(vp=1500.0, vs=800.0, rho=1800.0), Properties(vp=2500.0, vs=1400.0, rho=2100.0)]
_INCLUSION = Inclusion(Properties(lam=4e9, mu=2e9, rho=1200.0), Properties(lam=4e9, mu=5e9, rho=1200.0),
                       (100.0, 100.0), (40.0, 40.0), smoothing=10.0)

CASES = {
    "full-batch": Case(),
    # 3 mini-batches per pass over 48 points and 4 steps per epoch: passes and epochs do not line up.
    "mini-batch": Case(data={"batch_size": 16}),
    "scheduler": Case(
        data={"batch_size": 24},
        model={"scheduler": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)},
    ),
    # adaptive resampling every 3 steps: the pools and the generator after each redraw must come back exactly
    "rad": Case(data={"batch_size": 16}, callbacks=lambda: [
        ResidualResampling("rad", every_n_steps=3, n_candidates=96, chunk_size=40, log_images=False)]),
    "rar-d": Case(callbacks=lambda: [
        ResidualResampling("rar-d", every_n_steps=5, n_candidates=64, n_add=8, chunk_size=40, log_images=False)]),
    # checkpoints written by a background thread from a snapshot taken at the step
    "async-io": Case(data={"batch_size": 16}, plugins=lambda: [AsyncCheckpointIO(VerifiedCheckpointIO())]),
    # trainable material in its own param group, noisy sensor data: the material and its Adam state come back
    "inverse": Case(data={"batch_size": 16, "observations": SyntheticObservations(n_sensors=6, n_times=3, noise=0.01)},
                    model={"unknowns": Unknowns(lam=2.0, mu=2.0, lr=0.05)}),
    # no closed form: a medium, a source, free and absorbing edges, the initial state and truth from the reference
    "wave-problem": Case(data={"batch_size": 16}, model={"causal": Causal(slices=4, epsilon=1.0)},
                         problem=_wave_problem),
    # layer velocities from one-component velocity recordings with noise: held until step 3, then Adam, then L-BFGS
    # from step 8 (the layers' parameters in its history)
    "inverse-layers": Case(
        data={"observations": ReferenceObservations("receivers", n_times=4, components="v", quantity="velocity",
                                                    noise=0.02)},
        model={"unknowns": Unknowns(layers=LayerUnknowns([100.0], [2000.0, 2000.0], [1000.0, 1000.0],
                                                         [1800.0, 2100.0]), lr=0.05, start_step=3),
               "lbfgs": LBFGSStage(start_step=8, max_iter=2, history_size=4)},
        problem=lambda cache: _inverse_problem(cache, Layered(_LAYERS, [100.0], 10.0))),
    # the same with Levenberg-Marquardt from step 8, in float64: velocity recordings with a NaN component, absorbing
    # and free edges and the layers' speeds in its Jacobian; its damping comes back from the checkpoint
    "inverse-layers-lm": Case(
        data={"observations": ReferenceObservations("receivers", n_times=4, components="v", quantity="velocity",
                                                    noise=0.02)},
        model={"unknowns": Unknowns(layers=LayerUnknowns([100.0], [2000.0, 2000.0], [1000.0, 1000.0],
                                                         [1800.0, 2100.0]), lr=0.05, start_step=3),
               "lbfgs": LBFGSStage(start_step=8, max_iter=1, method="levenberg_marquardt", float64=True)},
        problem=lambda cache: _inverse_problem(cache, Layered(_LAYERS, [100.0], 10.0))),
    # a mu map on a grid from noisy full-field snapshots, in mini-batches
    "inverse-field": Case(
        data={"batch_size": 16, "observations": ReferenceObservations("snapshots", grid=[5, 5], n_times=3,
                                                                      noise=0.02)},
        model={"unknowns": Unknowns(field=FieldUnknowns([4, 4], {"lam": 4e9, "mu": 3e9, "rho": 1200.0}), lr=0.05)},
        problem=lambda cache: _inverse_problem(cache, _INCLUSION)),
    # Adam, then L-BFGS from step 4: stops at 6, 7 and 8 fall inside the L-BFGS stage, the crash cases resume from
    # a checkpoint written before the switch (step 3) or after it (step 4); the curvature pairs must come back
    "lbfgs": Case(model={"lbfgs": LBFGSStage(start_step=4, max_iter=3, history_size=4)}),
    # the same with the stage in float64: the network is converted at the switch, and a resumed run loads the float64
    # weights into a float64 network
    "lbfgs-float64": Case(model={"lbfgs": LBFGSStage(start_step=4, max_iter=3, history_size=4, float64=True)}),
    # Levenberg-Marquardt from step 4 in float64, two iterations a step (each with its own Jacobian)
    "levenberg-marquardt": Case(model={"lbfgs": LBFGSStage(start_step=4, max_iter=2, method="levenberg_marquardt",
                                                           float64=True)}),
    # every accuracy option at once: Fourier features, factorised layers, gradient-norm balancing (factors updated
    # every 3 steps, carried in the checkpoint), L-BFGS from step 5 and RAR-D growth, which clears its history
    "accurate": Case(model={"fourier": FourierFeatures(8, 2.0, 1.0), "factorization": Factorization(),
                            "balancing": GradNormBalancing(every=3), "lbfgs": LBFGSStage(start_step=5, max_iter=2)},
                     callbacks=lambda: [ResidualResampling("rar-d", every_n_steps=5, n_candidates=64, n_add=8,
                                                           chunk_size=40, log_images=False)]),
    # the compiled layer update (inductor; kernels from the on-disk cache after the first run), through RAR-D growth,
    # which compiles the new shape, and an L-BFGS stage
    "compiled": Case(model={"compile": True, "depth": 3, "lbfgs": LBFGSStage(start_step=9, max_iter=2)},
                     callbacks=lambda: [ResidualResampling("rar-d", every_n_steps=5, n_candidates=64, n_add=8,
                                                           chunk_size=40, log_images=False), RanCompiled()]),
    # three time windows with the initial state built in: window switches at steps 5 and 10, L-BFGS (float64) from
    # the third step of the first window and the second of the others, and a stall watch that redraws the points,
    # then ends the window early; the stops fall before (crash during validation: last.ckpt at step 4), on and
    # after a switch
    "windows": Case(model={"windows": TimeWindows(count=3, steps=5, exact_initial=True),
                           "lbfgs": LBFGSStage(start_step=[2, 1], max_iter=2, float64=True, patience=1,
                                               min_improvement=0.9, refreshes=1)}),
    # a problem without a closed form in two windows, the first from the reference's snapshot (splines on its grid),
    # on a box padded beyond its absorbing edges with a damping layer
    "windows-wave": Case(data={"batch_size": 16}, model={"windows": TimeWindows(count=2, steps=6, exact_initial=True)},
                         problem=lambda cache: _wave_problem(cache, padding=20.0)),
}


pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(Callback):
    """Per-step training loss and every validation result, keyed by the global step they belong to."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []
        self.vals: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append((trainer.global_step, outputs["loss"].item()))

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.vals.append((trainer.global_step, trainer.callback_metrics["val/rel_l2"].item()))


class Crashed(RuntimeError):
    """Stands for anything that ends a run abruptly (an error, Ctrl-C, a pre-empted node)."""


class Crash(Callback):
    """Raise at the start of training step ``step`` (``where="train"``) or of the validation that follows it."""

    def __init__(self, step: int, where: str = "train") -> None:
        self.step, self.where = step, where

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.where == "train" and trainer.global_step == self.step:
            raise Crashed(f"step {self.step}")

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.where == "val" and trainer.global_step == self.step and not trainer.sanity_checking:
            raise Crashed(f"validation at step {self.step}")


@dataclass
class Stop:
    """How the first run ends: ``max_steps`` reached, or a crash after checkpoints every ``every`` steps."""

    max_steps: int
    every: int = 0
    crash: Crash | None = None


STOPS = {
    "max_steps mid-epoch": Stop(max_steps=7),
    # step 6 is a resampling step of the "rad" case: the first run skips that resample, the resumed one owes it
    "max_steps on a resampling step": Stop(max_steps=6),
    "crash mid-epoch": Stop(max_steps=TOTAL_STEPS, every=3, crash=Crash(8)),  # last.ckpt at step 6 (epoch 1)
    "crash during validation": Stop(max_steps=TOTAL_STEPS, every=4, crash=Crash(8, "val")),  # saved before val
}


def stop_and_resume(case: Case, stop: str, root: Path):
    """Train ``case`` until the interruption ``stop`` (:data:`STOPS`), then resume from its ``last.ckpt`` to
    ``TOTAL_STEPS``; returns both runs and the step ``k`` the checkpoint holds (checked to fall inside the run)."""
    spec = STOPS[stop]
    first = train(case, root, spec.max_steps, spec.every, [spec.crash] if spec.crash else [])
    k = load_checkpoint(root / "last.ckpt")["global_step"]
    assert 0 < k < TOTAL_STEPS
    second = train(case, root, TOTAL_STEPS, spec.every, ckpt_path=root / "last.ckpt")
    return first, second, k


def train(case: Case, root: Path, max_steps: int, every: int = 0, extra: list[Callback] = (), ckpt_path=None):
    """One run of ``case`` writing checkpoints under ``root``; returns its :class:`Recorder`."""
    L.seed_everything(0, verbose=False)
    problem = case.problem(root.parent / "references")  # one reference cache for all runs of a session
    data = dict(n_interior=48, n_boundary=12, n_initial=12, steps_per_epoch=STEPS_PER_EPOCH, val_grid=(4, 4, 3))
    dm = ElasticDataModule(problem, **{**data, **case.data})
    model = ElasticPINN(problem, **{"width": 8, "depth": 2, **case.model})
    recorder = Recorder()
    checkpoint = RunCheckpoint(dirpath=root, monitor="val/rel_l2", save_top_k=2, save_last=True,
                               every_n_train_steps=every or None, enable_version_counter=False)
    trainer = L.Trainer(
        max_steps=max_steps, inference_mode=False, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, check_val_every_n_epoch=1, accelerator="cpu",
        callbacks=[recorder, checkpoint, *case.callbacks(), *extra], plugins=case.plugins(),
        **case.trainer,
    )
    try:
        trainer.fit(model, dm, ckpt_path=ckpt_path)
    except Crashed:  # Lightning re-raises after its shutdown hooks
        pass
    return recorder


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of each case, computed once."""
    cache: dict[str, Recorder] = {}

    def get(name: str) -> Recorder:
        if name not in cache:
            cache[name] = train(CASES[name], tmp_path_factory.mktemp(f"ref-{name}"), TOTAL_STEPS)
        return cache[name]

    return get


@pytest.mark.parametrize("stop", list(STOPS), ids=list(STOPS))
@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_resume_is_bit_for_bit(name, stop, reference, tmp_path):
    ref = reference(name)
    assert [s for s, _ in ref.losses] == list(range(1, TOTAL_STEPS + 1))
    assert [s for s, _ in ref.vals] == list(range(STEPS_PER_EPOCH, TOTAL_STEPS + 1, STEPS_PER_EPOCH))

    first, second, k = stop_and_resume(CASES[name], stop, tmp_path)

    # Everything the first run did before it stopped matches the reference (including the steps it loses) ...
    assert first.losses == ref.losses[: len(first.losses)]
    assert first.vals == ref.vals[: len(first.vals)]
    # ... and the resumed run starts at step k + 1 and is the reference from there on, bit for bit.
    assert second.losses == ref.losses[k:]
    assert second.vals == [(s, v) for s, v in ref.vals if s > k or (s == k and (k, v) not in first.vals)]


def test_mid_epoch_checkpoint_resumes_at_the_right_batch(tmp_path):
    """A mini-batch run checkpointed mid-epoch and resumed trains step k + 1 on the batch of step k + 1."""
    case = CASES["mini-batch"]
    train(case, tmp_path, 5)  # 5 = epoch 1, batch 1 of 4
    ckpt = load_checkpoint(tmp_path / "last.ckpt")
    assert ckpt["global_step"] == 5
    seen = []

    class Batches(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((trainer.global_step, batch_idx, batch["interior"].clone()))

    train(case, tmp_path, 8, extra=[Batches()], ckpt_path=tmp_path / "last.ckpt")
    dm = ElasticDataModule(PlaneWaves([Wave()]), n_interior=48, n_boundary=12, n_initial=12, batch_size=16)
    dm.load_state_dict(ckpt["ElasticDataModule"])
    assert [(s, i) for s, i, _ in seen] == [(5, 1), (6, 2), (7, 3)]
    for step, _, interior in seen:
        assert torch.equal(interior, dm.batch(step)["interior"])


KILL_SECTIONS = {
    "data": {"n_interior": 48, "n_boundary": 12, "n_initial": 12, "batch_size": 16, "steps_per_epoch": 5,
             "val_grid": [4, 4, 3]},
    "checkpoint": {"every_n_train_steps": 1, "save_top_k": 2},
}


@pytest.mark.slow
def test_sigkill_then_resume_last_loses_only_the_steps_since_the_checkpoint(tmp_path, tiny_run_config):
    config = tmp_path / "kill.yaml"
    config.write_text(tiny_run_config(tmp_path, "kill", {"max_steps": 100000, "check_val_every_n_epoch": 2},
                                      **KILL_SECTIONS))
    folder = tmp_path / "logs" / "kill" / "version_0"
    last = folder / "checkpoints" / "last.ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pinn", "fit", "-c", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:  # a checkpoint is written every step: kill while they are being written
                if last.exists() and load_checkpoint(last)["global_step"] >= 8:
                    break
            except CheckpointError as err:
                pytest.fail(f"a reader saw a half-written checkpoint: {err}")
            time.sleep(0.02)
        assert proc.poll() is None, "training ended or never started"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # every checkpoint on disk is whole; the killed writer's temporary file, if any, is not a checkpoint
    for path in folder.glob("checkpoints/*.ckpt"):
        load_checkpoint(path)
    k = load_checkpoint(last)["global_step"]
    assert k >= 8

    cli = cli_main(["fit", "-c", str(config), "--ckpt_path", "last", "--trainer.max_steps", str(k + 3)])
    assert cli.trainer.global_step == k + 3 and cli.trainer.logger.version == 0
    assert not list(folder.glob("checkpoints/.*.tmp"))
    # the resumed run's TensorBoard curve starts right after the checkpoint, in the same folder: no gap, no shift
    # (Lightning logs the loss of the step that takes global_step from s to s + 1 at s, from s = 0)
    newest = max(folder.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    events = EventAccumulator(str(newest), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [k, k + 1, k + 2]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
