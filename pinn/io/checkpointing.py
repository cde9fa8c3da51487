"""Checkpoints that can be trusted: atomic writes, a whole-file checksum, a format version, safe loading.

A checkpoint is an ordinary ``torch.save`` zip archive (its entries DEFLATE-compressed, which ``torch.load``
reads as it reads stored ones) whose end-of-archive comment (a field every zip reader skips) holds
``PINN-SHA256:<64 hex digits>``, the SHA-256 of every byte before it. ``torch.load`` and ``zipfile`` read the
file as usual; :func:`load_checkpoint` first checks the digest, so a truncated or bit-flipped file is refused
before any of it is unpickled, then unpickles with ``torch.load(weights_only=True)``, which builds only tensors
and plain containers: a file crafted to run code on load is refused even when its checksum is valid.

Writes go to a temporary file in the same folder, are flushed to disk (``fsync``) and renamed over the target
(``os.replace``, atomic on POSIX and Windows), so a crash or ``SIGKILL`` at any moment leaves either the old
complete file or the new complete file, never a mix. ``format_version`` inside the checkpoint says how its
contents are laid out; :data:`MIGRATIONS` upgrades older layouts on load.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import os
import pickle
import secrets
import signal
import struct
import zipfile
from argparse import Namespace
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any

import fsspec.utils
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor

from pinn import compat
from pinn.io.interrupts import Interrupted, SignalLatch
from pinn.run_state import CheckpointError

FORMAT_VERSION = 1
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
"""``MIGRATIONS[v]`` turns a format-``v`` checkpoint dict into a format-``v + 1`` one (applied in turn on load)."""

_MAGIC = b"PINN-SHA256:"
_TRAILER = len(_MAGIC) + 64  # the comment: magic + hex digest
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes, the last 2 are the comment length
# Exact types: a subclass (numpy.float64, a str enum) pickles as its own class, which weights_only refuses.
_PLAIN_LEAVES = {str, int, float, bool, bytes, type(None), torch.Size, torch.dtype, torch.device, torch.nn.Parameter}


# ---- the checksum -----------------------------------------------------------------------------------------
def seal(archive: bytes) -> bytes:
    """Append the SHA-256 trailer (as the zip comment) to a ``torch.save`` archive that has no comment yet."""
    if len(archive) < 22 or archive[-22:-18] != _EOCD or archive[-2:] != b"\0\0":
        raise ValueError("seal() expects the bytes of a torch.save archive without a zip comment")
    head = archive[:-2] + struct.pack("<H", _TRAILER)
    return head + _MAGIC + hashlib.sha256(head).hexdigest().encode("ascii")


def verify(data: bytes, path: str | PurePath) -> None:
    """Raise :class:`CheckpointError` unless ``data`` (the bytes of ``path``) carry an intact checksum."""
    if not data:
        raise CheckpointError(f"{path}: not a checkpoint: the file is empty.")
    if data[-_TRAILER:-64] != _MAGIC:
        if data[:4] != b"PK\x03\x04":
            raise CheckpointError(f"{path}: not a checkpoint: it is not a torch.save archive.")
        eocd = data.rfind(_EOCD, max(0, len(data) - 22 - 65535))
        declared = struct.unpack("<H", data[eocd + 20:eocd + 22])[0] if 0 <= eocd <= len(data) - 22 else -1
        if declared == len(data) - eocd - 22 != _TRAILER:  # a whole archive, just without our checksum
            raise CheckpointError(
                f"{path}: not a pinn checkpoint: it carries no checksum, so it cannot be verified. If you trust "
                f"it, add one with `python -m pinn.io.checkpointing seal {path}`."
            )
        raise CheckpointError(
            f"{path}: truncated or damaged: the end of the file, with its checksum, is missing or garbled. "
            "Resume from another checkpoint (an earlier step=*.ckpt in the same folder)."
        )
    recorded = data[-64:].decode("ascii", errors="replace")
    actual = hashlib.sha256(data[:-_TRAILER]).hexdigest()
    if actual != recorded:
        raise CheckpointError(
            f"{path}: checksum mismatch (sha256 {actual[:16]}..., recorded {recorded[:16]}...): the file is "
            "corrupted. Resume from another checkpoint (an earlier step=*.ckpt in the same folder)."
        )


# ---- writing ----------------------------------------------------------------------------------------------
def atomic_write(path: str | PurePath, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is, at every instant, either absent, the old file or ``data``.

    Local files: temporary sibling, ``fsync``, ``os.replace``, then ``fsync`` of the folder so the rename itself
    survives a power cut. Other filesystems (``s3://`` ...) write the object in one upload.
    """
    fs = get_filesystem(path)
    if fsspec.utils.get_protocol(str(path)) != "file":
        with fs.open(str(path), "wb") as f:
            f.write(data)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A writer killed mid-write leaves its temporary file behind; it is garbage, never a checkpoint.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if not stale.name.startswith(f".{path.name}.{os.getpid()}."):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def plain(value: Any, where: str = "checkpoint") -> Any:
    """``value`` with dataclasses, namespaces, mapping subclasses, paths, enums and numpy values turned into plain
    containers, scalars and tensors, which ``torch.load(weights_only=True)`` can rebuild. Returns ``value`` itself
    when it is plain already (so ``OrderedDict`` state dicts keep their metadata)."""
    if type(value) in _PLAIN_LEAVES or type(value) is Tensor:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, where)
    if isinstance(value, Namespace):
        return plain(vars(value), where)
    if isinstance(value, Mapping):
        items = {k: plain(v, f"{where}[{k!r}]") for k, v in value.items()}
        if type(value) in (dict, OrderedDict) and all(items[k] is value[k] for k in value):
            return value
        return items
    if isinstance(value, (list, tuple)):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if type(value) in (list, tuple) and all(a is b for a, b in zip(items, value)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return plain(value.value, where)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    raise CheckpointError(
        f"cannot save {where}: a {type(value).__qualname__} is not plain data. Checkpoints hold only tensors, "
        "numbers, strings and containers of them, so that they load without running code; store its settings instead."
    )


def deflate(archive: bytes) -> bytes:
    """The same zip archive with every entry DEFLATE-compressed (zlib level 1) and a fixed timestamp.

    Float tensors shrink by about 13 % (their exponent bytes repeat); ``torch.load`` reads deflated entries as it
    reads stored ones (only ``mmap=True`` needs stored entries). The fixed timestamp makes the bytes a function
    of the state alone.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w") as dst:
        for entry in src.infolist():
            info = zipfile.ZipInfo(entry.filename, date_time=(1980, 1, 1, 0, 0, 0))
            dst.writestr(info, src.read(entry), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return out.getvalue()


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | PurePath, compress: bool = True) -> None:
    """Save ``checkpoint`` (plain data and tensors) to ``path`` atomically, with format version and checksum,
    its zip entries compressed with :func:`deflate` unless ``compress`` is false."""
    payload = plain({**checkpoint, "format_version": FORMAT_VERSION})
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    archive = deflate(buffer.getvalue()) if compress else buffer.getvalue()
    atomic_write(path, seal(archive))


# ---- reading ----------------------------------------------------------------------------------------------
def load_checkpoint(path: str | PurePath, map_location: Any = "cpu") -> dict[str, Any]:
    """Read, verify, safely unpickle and migrate the checkpoint at ``path``.

    Raises:
        CheckpointError: The file is missing, not a checkpoint, corrupted, holds non-plain objects, or has a
            format this version cannot read. The message names the file and the problem.
    """
    fs = get_filesystem(path)
    try:
        with fs.open(str(path), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file.") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file.") from None
    verify(data, path)
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused: it holds a pickled object that is not plain data ({reason[:200]}). pinn checkpoints "
            "hold only tensors and plain data; this file was crafted or written by other code. Do not load it."
        ) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0][:200]}).") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a checkpoint: it holds a {type(checkpoint).__name__}, not a dict.")
    return migrate(checkpoint, path)


def migrate(checkpoint: dict[str, Any], path: str | PurePath = "checkpoint") -> dict[str, Any]:
    """Upgrade ``checkpoint`` to :data:`FORMAT_VERSION` with :data:`MIGRATIONS`, one version at a time."""
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: not a pinn checkpoint: it has no valid format_version ({version!r}).")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {version} is newer than this pinn reads ({FORMAT_VERSION}); upgrade pinn."
        )
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise CheckpointError(f"{path}: no migration from format version {version}; use the pinn that wrote it.")
        checkpoint = MIGRATIONS[version](checkpoint)
        version += 1
        checkpoint["format_version"] = version
    return checkpoint


# ---- Lightning plugin -------------------------------------------------------------------------------------
class VerifiedCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` that writes with :func:`save_checkpoint` and reads with :func:`load_checkpoint`.

    ``Trainer(plugins=[VerifiedCheckpointIO()])``; the ``pinn`` command line installs it by default. Loading is
    always ``weights_only``, whatever the caller asks for.

    Args:
        compress: DEFLATE the archive's entries (about 13 % smaller; costs about 10 ms per MB saved).
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
