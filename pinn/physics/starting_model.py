r"""The starting model of an inverse run read from a file, for real data where it comes from a well log, a
tomography or an earlier inversion rather than a few numbers in YAML.

- Layers (``model.unknowns.layers.path``): a small text table, one row per layer, top first, columns ``vp``, ``vs``
  (m/s) and ``rho`` (kg/m^3), separated by commas or spaces, with an optional header that names them in any order;
  ``#`` starts a comment. The interfaces stay in ``model.unknowns.layers.interfaces``.
- A map (``model.unknowns.field.path``): the ``.npz`` gridded model that :class:`~pinn.physics.grid.GridMedium`
  reads (``x (nx,)``, ``y (ny,)``, ``vp``, ``vs``, ``rho`` ``(ny, nx)``), sampled at the unknowns' nodes by the same
  cubic convolution of lam, mu and rho.

Every problem with a file is one error that names the setting, the file, what is wrong and what to do.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pinn.physics.grid import cubic_sample, read_grid

LAYER_COLUMNS = ("vp", "vs", "rho")
LAYER_KEY = "model.unknowns.layers.path"
FIELD_KEY = "model.unknowns.field.path"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_layer_table(path: str, count: int, key: str = LAYER_KEY) -> dict[str, list[float]]:
    """Per layer ``{vp, vs, rho}``, top first, from the table at ``path`` (module docstring), checked: ``count``
    rows, every value a finite number > 0, vs below vp in every layer.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: Anything else wrong with it, naming ``key``, the file and the line.
    """
    where = f"{key}={path}"
    layout = "one row per layer, top first, columns vp, vs, rho (m/s, m/s, kg/m^3)"
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: no such file; give a text table with {layout}.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}: not a readable text file ({err}); give a table with {layout}.") from None
    rows = [(n, line.split("#")[0].replace(",", " ").split()) for n, line in enumerate(text.splitlines(), 1)]
    rows = [(n, fields) for n, fields in rows if fields]
    columns = list(LAYER_COLUMNS)
    if rows and all(_number(f) is None for f in rows[0][1]):  # a header: no field is a number
        n, header = rows.pop(0)
        columns = [f.lower() for f in header]
        if sorted(columns) != sorted(LAYER_COLUMNS):
            raise ValueError(f"{where}: line {n}: the header names {header}, not vp, vs, rho; the table has {layout} "
                             "(the interfaces stay in model.unknowns.layers.interfaces).")
    if len(rows) != count:
        raise ValueError(f"{where}: {len(rows)} layer rows, but model.unknowns.layers.interfaces gives {count} "
                         f"layers; the table has {layout}.")
    table: dict[str, list[float]] = {c: [] for c in LAYER_COLUMNS}
    for n, fields in rows:
        if len(fields) != len(columns):
            raise ValueError(f"{where}: line {n} has {len(fields)} values, expected {len(columns)} "
                             f"({', '.join(columns)}).")
        for name, text_value in zip(columns, fields):
            value = _number(text_value)
            if value is None or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{where}: line {n}, column {name}: {text_value!r} is not a finite number > 0 "
                                 "(m/s for speeds, kg/m^3 for rho).")
            table[name].append(value)
        if not table["vs"][-1] < table["vp"][-1]:
            raise ValueError(f"{where}: line {n}: vs={table['vs'][-1]:g} is not below vp={table['vp'][-1]:g}; every "
                             "layer needs 0 < vs < vp (are the columns in the right order? name them in a header).")
    return table


def grid_start(path: str, shape: list[int], domain, key: str = FIELD_KEY) -> dict[str, Tensor]:
    """``{lam, mu, rho}`` at the ``nx x ny`` nodes (``shape``) spanning ``domain``, each ``(ny, nx)`` float64, from
    the gridded model at ``path``, sampled by cubic convolution of lam, mu and rho
    (:func:`~pinn.physics.grid.cubic_sample`).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is malformed (:func:`~pinn.physics.grid.read_grid`), does not cover the domain, or the
            sampled model is not physical at a node.
    """
    x, y, vp, vs, rho = read_grid(Path(path), key)
    (x0, x1), (y0, y1) = domain.x, domain.y
    if x0 < x[0] or x1 > x[-1] or y0 < y[0] or y1 > y[-1]:
        raise ValueError(f"{key}={path}: the grid covers x in [{x[0]:g}, {x[-1]:g}], y in [{y[0]:g}, {y[-1]:g}], not "
                         f"the domain x={list(domain.x)}, y={list(domain.y)}; extend the grid or shrink the domain.")
    lam_mu_rho = torch.from_numpy(np.stack([rho * (vp**2 - 2 * vs**2), rho * vs**2, rho]))  # (3, ny, nx)
    nx, ny = shape
    nodes = domain.grid(nx, ny, 1, torch.float64)[:, :2]  # (ny*nx, 2), x fastest: the unknowns' nodes
    lam, mu, rho_n = cubic_sample(lam_mu_rho, x[0], x[1] - x[0], y[0], y[1] - y[0], nodes).reshape(3, ny, nx)
    bad = (mu <= 0) | (lam + mu <= 0) | (rho_n <= 0)  # cubic convolution overshoots next to sharp contrasts
    if bad.any():
        j, i = (int(k) for k in bad.nonzero()[0])
        xy = nodes.reshape(ny, nx, 2)[j, i].tolist()
        raise ValueError(f"{key}={path}: sampled at the {nx} x {ny} nodes, the model is not physical at node "
                         f"(x, y) = ({xy[0]:g}, {xy[1]:g}) (mu > 0, lam + mu > 0, rho > 0 fail): the interpolation "
                         "overshoots a sharp contrast there; smooth the model or use more nodes.")
    return {"lam": lam, "mu": mu, "rho": rho_n}
