"""Checkpoints in Lightning: the ``CheckpointIO`` plugin that writes and reads the sealed format, the callback that
saves a run (best, last, on an interrupt) and the one that stores the run's config in each checkpoint.

The format itself (checksum, atomic write, safe loading, migrations) is :mod:`pinn.io.checkpoint_format`, plain
torch; its public names are imported here too, where users and the docs have always found them
(``python -m pinn.io.checkpointing seal FILE`` adds a checksum to a trusted file).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from pinn import compat
from pinn.io.checkpoint_format import (
    FORMAT_VERSION,
    MIGRATIONS,
    load_checkpoint,
    migrate,
    plain,
    save_checkpoint,
    seal,
    verify,
)
from pinn.io.interrupts import Interrupted, SignalLatch
from pinn.optim.run_state import CheckpointError

__all__ = ["FORMAT_VERSION", "MIGRATIONS", "CheckpointError", "RunCheckpoint", "SaveConfigToCheckpoint",
           "VerifiedCheckpointIO", "load_checkpoint", "migrate", "plain", "save_checkpoint", "seal", "verify"]


# ---- Lightning plugin -------------------------------------------------------------------------------------
class VerifiedCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` that writes with :func:`save_checkpoint` and reads with :func:`load_checkpoint`.

    ``Trainer(plugins=[VerifiedCheckpointIO()])``; the ``pinn`` command line installs it by default. Loading is
    always ``weights_only``, whatever the caller asks for.

    Args:
        compress: DEFLATE the archive's entries: a smaller file for a little more save time (sizes and times in
            ``docs/benchmarks.md``, *Checkpoints*).
    """

    def __init__(self, compress: bool = True) -> None:
        super().__init__()
        self.compress = compress

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options.")
        save_checkpoint(checkpoint, path, self.compress)

    def load_checkpoint(self, path, map_location: Any = "cpu", weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location)


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` for long runs, with the same arguments and two roles kept apart:

    - the best ``save_top_k`` checkpoints by ``monitor`` (``step=...-rel_l2=....ckpt``), ranked only right after a
      validation, so each file's score belongs to its own weights (never a stale score from an older validation);
    - ``last.ckpt``, rewritten every ``every_n_train_steps`` steps (mid-epoch too; after the validation when one
      is due at that step), after every validation and at the end of training, so a crash loses at most
      ``every_n_train_steps`` steps.

    On SIGTERM, SIGINT (Ctrl-C) or, on SLURM, the requeue signal SIGUSR1, it writes ``last.ckpt`` at the end of
    the current step (after its validation, when one is due) and stops the run with exit code ``128 + signal``
    (143, 130, 138): ``--ckpt_path last`` continues it bit for bit (:mod:`pinn.io.interrupts`). With
    ``save_on_exception``, an error writes ``exception-step=K.ckpt`` (a state in the middle of a step, for a post
    mortem; it leaves ``last.ckpt`` alone, which stays an exact resume point).
    """

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        # Here, not earlier: Lightning installs its own SIGTERM and SLURM handlers just before training starts.
        self._latch = getattr(self, "_latch", None) or SignalLatch()
        self._latch.install(trainer)
        self._stopping = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stop_if_interrupted()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning resumes a checkpoint taken just before a scheduled validation as if that validation had run;
        # so when one follows this batch, last.ckpt is written after it instead (on_validation_end). The question
        # is asked of the epoch loop itself, which decides it with the same call right after this hook.
        if compat.validation_due(trainer):
            return
        n = compat.every_n_train_steps(self)
        if n >= 1 and not trainer.global_step % n and not compat.should_skip_saving(self, trainer):
            compat.save_last(self, trainer, compat.monitor_candidates(self, trainer))
        self._save_if_interrupted(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Nothing: the ranking happens after validation, ``last.ckpt`` every n steps."""

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        candidates = compat.monitor_candidates(self, trainer)
        if self.monitor is None or self.monitor in candidates:
            compat.save_top_k(self, trainer, candidates)
        compat.save_last(self, trainer, candidates)  # again: it carries the updated ranking
        self._save_if_interrupted(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.save_last and not trainer.fast_dev_run and compat.last_saved_step(self) != trainer.global_step:
            compat.save_last(self, trainer, compat.monitor_candidates(self, trainer))
        self._latch.uninstall()
        self._stop_if_interrupted()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if getattr(self, "_latch", None) is not None:
            self._latch.uninstall()
        if isinstance(exception, Interrupted) or not compat.should_save_on_exception(self, trainer):
            return
        # Not last.ckpt, nor a name with a score: the state is the one the error left, possibly mid-step.
        path = Path(self.dirpath, f"exception-step={trainer.global_step}.ckpt")
        trainer.save_checkpoint(path, self.save_weights_only)

    def _save_if_interrupted(self, trainer) -> None:
        """At a safe point: when a signal came (on any process), write last.ckpt here and stop at the next hook.

        The run stops at the next batch start (or the end of training), not here, so that Lightning still logs
        this step's metrics; nothing that runs in between changes the state the checkpoint holds."""
        if self._stopping or not self._latch.pending(trainer):
            return
        # (a smoke test, fast_dev_run, writes no checkpoints)
        unsaved = compat.last_saved_step(self) != trainer.global_step or not self.save_last
        if unsaved and not trainer.fast_dev_run:
            candidates = compat.monitor_candidates(self, trainer)
            if self.save_last:
                compat.save_last(self, trainer, candidates)
            else:  # an interrupted run always leaves its resume point
                last = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST)
                trainer.save_checkpoint(last, self.save_weights_only)
        self._stopping = True
        name = signal.Signals(self._latch.code_signal).name
        rank_zero_info(f"{name}: saved {Path(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)} at "
                       f"step {trainer.global_step}; continue with --ckpt_path last")
        self._latch.requeue()  # on SLURM, after SIGUSR1: Lightning's hpc checkpoint and `scontrol requeue`

    def _stop_if_interrupted(self) -> None:
        if getattr(self, "_stopping", False):
            self._stopping = False
            self._latch.uninstall()
            raise Interrupted(self._latch.code_signal)


class SaveConfigToCheckpoint(SaveConfigCallback):
    """Lightning's ``SaveConfigCallback`` (``config.yaml`` in the log folder) that also puts the parsed config, as
    YAML text, into every checkpoint (``checkpoint["config"]``): the checkpoint alone rebuilds the run."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if not hasattr(self, "_yaml"):
            config = self.config.clone()
            if "ckpt_path" in config:  # absent when the CLI was built with run=False (no subcommand)
                config.ckpt_path = None
            # keep null values: a null that overrides a non-null default must survive the round trip
            self._yaml = self.parser.dump(config, skip_unset=False)
        checkpoint["config"] = self._yaml


def _seal_file(path: str) -> None:
    """Add a checksum (and format version) to a trusted checkpoint written without one."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint.setdefault("format_version", FORMAT_VERSION)
    save_checkpoint(checkpoint, path)
    print(f"sealed {path}")


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "seal":
        sys.exit("usage: python -m pinn.io.checkpointing seal FILE.ckpt [...]")
    for file in sys.argv[2:]:
        _seal_file(file)
