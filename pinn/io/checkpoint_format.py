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
import pickle
import struct
import zipfile
from argparse import Namespace
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

import fsspec
import numpy as np
import torch
from torch import Tensor

from pinn.optim.run_state import CheckpointError
from pinn.problems.files import atomic_write

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
    try:
        with fsspec.core.url_to_fs(str(path))[0].open(str(path), "rb") as f:
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
