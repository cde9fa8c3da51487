"""Observation files: samples ``(M, 5)``, columns ``(x, y, t, u, v)``, in a ``.npz`` (arrays ``x, y, t, u, v`` of
equal length) or a ``.csv`` (a header naming the columns ``x, y, t, u, v`` in any order, extra columns ignored, one
sample per row). A malformed file raises a ``ValueError`` naming the file and the column or row at fault.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pinn.io.csv_table import finite, read_table

COLUMNS = ("x", "y", "t", "u", "v")


def read_observations(path: str | Path) -> Tensor:
    """Read ``(M, 5)`` float64 samples ``(x, y, t, u, v)`` from a ``.npz`` or ``.csv`` file.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Unknown extension, a missing column, a non-numeric or non-finite value, ragged columns or no
            samples; the message names the file and the column or row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"observation file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        columns = _read_npz(path)
    elif suffix == ".csv":
        columns = _read_csv(path)
    else:
        raise ValueError(
            f"observation file {path}: unknown format {suffix!r}; use .npz or .csv with columns x, y, t, u, v."
        )
    data = np.stack([columns[c] for c in COLUMNS], axis=-1)  # (M, 5)
    if data.shape[0] == 0:
        raise ValueError(f"observation file {path} holds no samples.")
    return torch.from_numpy(data).double()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as err:  # a truncated or foreign file: numpy raises several different types
        raise ValueError(f"observation file {path} is not a readable .npz archive ({err}).") from err
    with archive:
        missing = [c for c in COLUMNS if c not in archive.files]
        if missing:
            raise ValueError(f"observation file {path}: missing column {missing[0]!r} (arrays present: "
                             f"{sorted(archive.files)}; needed: {list(COLUMNS)}).")
        columns = {}
        for c in COLUMNS:
            a = archive[c]
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.number):
                raise ValueError(f"observation file {path}: column {c!r} must be a 1-D numeric array, "
                                 f"got shape {a.shape} dtype {a.dtype}.")
            bad = np.flatnonzero(~np.isfinite(a))
            if len(bad):
                raise ValueError(f"observation file {path}: column {c!r}, sample {bad[0]} (0-based) is {a[bad[0]]}, "
                                 "not a finite number.")
            columns[c] = a.astype(np.float64)
    lengths = {c: len(a) for c, a in columns.items()}
    if len(set(lengths.values())) > 1:
        c = next(c for c in COLUMNS if lengths[c] != lengths["x"])
        raise ValueError(f"observation file {path}: column {c!r} has {lengths[c]} samples but 'x' has {lengths['x']}.")
    return columns


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    kind = "observation file"
    table = read_table(path, kind, COLUMNS)
    values = np.array([[finite(cells[c], path, kind, line, c) for c in COLUMNS] for line, cells in table])
    values = values.reshape(len(table), len(COLUMNS))
    return {c: values[:, j] for j, c in enumerate(COLUMNS)}


def write_observations(path: str | Path, observations: Tensor) -> None:
    """Write samples ``(M, 5)`` to a ``.npz`` or ``.csv`` file in the format :func:`read_observations` reads."""
    path = Path(path)
    data = observations.detach().cpu().double().numpy()
    if path.suffix.lower() == ".npz":
        np.savez(path, **{c: data[:, j] for j, c in enumerate(COLUMNS)})
    elif path.suffix.lower() == ".csv":
        np.savetxt(path, data, delimiter=",", header=",".join(COLUMNS), comments="", fmt="%.9g")
    else:
        raise ValueError(f"observation file {path}: unknown format {path.suffix!r}; use .npz or .csv.")
