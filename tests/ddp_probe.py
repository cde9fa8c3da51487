"""A callback that records, per process, what a multi-process run did, for tests/test_ddp.py.

Loaded by the CLI in the launched processes (``trainer.callbacks`` in a test config), so it must be importable as
``tests.ddp_probe`` from the repository root. Per rank it writes, under ``out_dir``:

- ``rank{r}-first-batch.pt``: the global step and the batch of the first training step it ran;
- ``rank{r}-step{s}.pt``: after each validation, the weights, the grid points the rank validated, the
  logged ``val/rel_l2`` and the data module's (global) pools;
- ``writes.txt``: one line ``rank step path`` for every checkpoint file written (through the strategy's
  ``CheckpointIO``, the only way Lightning writes checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import CheckpointIO


class RecordingIO(CheckpointIO):
    """Delegates to the strategy's ``CheckpointIO`` and appends every save to a log."""

    def __init__(self, inner: CheckpointIO, trainer: L.Trainer, log: Path) -> None:
        self.inner, self.trainer, self.log = inner, trainer, log

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with self.log.open("a") as f:
            f.write(f"{self.trainer.global_rank} {checkpoint['global_step']} {path}\n")
        self.inner.save_checkpoint(checkpoint, path, storage_options)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None):
        return self.inner.load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def remove_checkpoint(self, path) -> None:
        self.inner.remove_checkpoint(path)

    def teardown(self) -> None:
        self.inner.teardown()


class Probe(L.Callback):
    """Records per-rank batches, weights, validation points and checkpoint writes.

    Args:
        out_dir: Folder for the records.
    """

    def __init__(self, out_dir: str = "probe") -> None:
        self.out = Path(out_dir)
        self.val_points: list[torch.Tensor] = []
        self.seen_first_batch = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        strategy = trainer.strategy
        strategy.checkpoint_io = RecordingIO(strategy.checkpoint_io, trainer, self.out / "writes.txt")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if not self.seen_first_batch:
            self.seen_first_batch = True
            record = {"step": trainer.global_step, "batch": {k: v.cpu() for k, v in batch.items()}}
            torch.save(record, self.out / f"rank{trainer.global_rank}-first-batch.pt")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self.val_points.append(batch.cpu())

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        record = {
            "weights": {k: v.cpu().clone() for k, v in pl_module.state_dict().items()},
            "val_points": torch.cat(self.val_points),
            "rel_l2": trainer.callback_metrics["val/rel_l2"].item(),
            "pools": {k: v.clone() for k, v in trainer.datamodule.pools.items()},
        }
        torch.save(record, self.out / f"rank{trainer.global_rank}-step{trainer.global_step}.pt")
        self.val_points = []
