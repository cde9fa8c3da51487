"""Writing a file so that it is, at every instant, either absent, the old file or the new one: for checkpoints
(:mod:`pinn.io.checkpoint_format`) and cached references (:mod:`pinn.problems.reference`) alike."""

from __future__ import annotations

import os
import secrets
from pathlib import Path, PurePath

import fsspec


def atomic_write(path: str | PurePath, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is, at every instant, either absent, the old file or ``data``.

    Local files: temporary sibling, ``fsync``, ``os.replace``, then ``fsync`` of the folder so the rename itself
    survives a power cut. Other filesystems (``s3://`` ...) write the object in one upload.
    """
    if fsspec.utils.get_protocol(str(path)) != "file":
        fs = fsspec.core.url_to_fs(str(path))[0]
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
