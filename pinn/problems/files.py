"""Writing a file so that it is, at every instant, either absent, the old file or the new one: for checkpoints
(:mod:`pinn.io.checkpoint_format`) and cached references (:mod:`pinn.problems.reference`) alike."""

from __future__ import annotations

import os
import secrets
import socket
import time
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
    # A writer killed mid-write leaves its temporary file behind; it is garbage, never a checkpoint. Another
    # writer of the same file may be at work at this moment (two runs computing the same reference), so only the
    # files of writers that are gone are cleared.
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{prefix}*.tmp"):
        if _abandoned(stale.name[len(prefix):-len(".tmp")], stale):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f"{prefix}{os.getpid()}.{secrets.token_hex(4)}.{_HOST}.tmp")
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


# Dots would make the host's name ambiguous in a temporary file's name.
_HOST = socket.gethostname().replace(".", "_") or "host"

# A temporary file of another machine (a shared filesystem) is taken as abandoned after this long unchanged: its
# writer's process cannot be looked up from here, and a write takes seconds, not an hour.
ABANDONED_AFTER_S = 3600.0


def _abandoned(tag: str, tmp: Path) -> bool:
    """Whether the temporary file ``tmp``, named ``<pid>.<token>[.<host>]`` after its target's name, was left by a
    writer that is gone: a process of this machine that no longer runs, or, from another machine, a file unchanged
    for :data:`ABANDONED_AFTER_S`. A name without a host is of this machine (files written before hosts were named)."""
    pid, _, rest = tag.partition(".")
    host = rest.partition(".")[2] or _HOST
    if host == _HOST and pid.isdigit() and os.name == "posix":
        return int(pid) != os.getpid() and not _running(int(pid))
    try:
        return time.time() - tmp.stat().st_mtime > ABANDONED_AFTER_S
    except FileNotFoundError:  # its writer renamed it meanwhile
        return False


def _running(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (signal 0 checks without sending anything; POSIX only)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
