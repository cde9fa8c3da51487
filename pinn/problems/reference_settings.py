"""Settings of the finite-difference reference, and the stencil facts they are checked against.

Apart from the solver (:mod:`pinn.problems.devito_solver`) and the cache (:mod:`pinn.problems.reference`), so that
both import them and neither imports the other for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np


def staggered_weights(space_order: int) -> np.ndarray:
    r"""Weights :math:`c_j` of the staggered first derivative of order ``space_order`` (Fornberg 1988):
    :math:`f'(x) \approx h^{-1}\sum_{j=1}^{M} c_j\,[f(x + (j - \tfrac12)h) - f(x - (j - \tfrac12)h)]`, M = order/2."""
    m = space_order // 2
    d = np.arange(1, m + 1) - 0.5  # (M,) half offsets
    a = np.stack([2 * d ** (2 * p + 1) for p in range(m)])  # (M, M): odd moments of the stencil
    rhs = np.zeros(m)
    rhs[0] = 1.0
    return np.linalg.solve(a, rhs)


def courant_limit(space_order: int) -> float:
    r"""Largest stable ``courant`` (dt = courant h / vp) of the leapfrog velocity-stress scheme on a square grid:
    :math:`c_{max} = 1 / (\sqrt{2} \sum_j |c_j|)` (von Neumann analysis, e.g. Moczo et al. 2014, sec. 7.3)."""
    return 1.0 / (math.sqrt(2.0) * float(np.abs(staggered_weights(space_order)).sum()))


@dataclass(frozen=True)
class ReferenceSettings:
    """Grid and cache of the finite-difference reference (``data.problem.init_args.reference``).

    Args:
        spacing: Grid spacing (m); ``None`` takes ``vs_min / max_frequency / points_per_wavelength``. Either way it is
            reduced so that a whole number of cells spans each side of the domain (nodes lie on the edges).
        points_per_wavelength: Grid points per shortest S wavelength (used when ``spacing`` is ``None``).
        space_order: Order of the staggered spatial stencils (even, 2 to 16).
        courant: ``dt = courant * h / vp_max`` at most (then reduced so that the output times fall on steps); must
            stay below the stability limit of the scheme, 1 / (sqrt(2) sum|c_j|): 0.707 for order 2, 0.550 for 8,
            0.516 for 16.
        absorbing_cells: Width (cells) of the perfectly matched layer (C-PML) added outside each absorbing edge.
        absorbing: What an ``absorbing`` edge is in the reference: ``pml``, a C-PML layer (an unbounded medium, the
            physical truth), or ``first_order``, the PINN's own first-order dashpot sigma . n = -rho (c_p v_n n +
            c_s v_t t) on the edge (Lysmer & Kuhlemeyer 1969), which reflects part of an oblique wave as the PINN's
            condition does: the PINN's error against it is its training error alone, and the difference of the two
            references is the error of the boundary model.
        output_times: Number of snapshots, evenly spaced over the domain's time interval, ends included.
        cache_dir: Folder of the cached references, relative to the working directory.
    """

    spacing: float | None = None
    points_per_wavelength: float = 10.0
    space_order: int = 8
    courant: float = 0.5
    absorbing_cells: int = 40
    # added after references were cached: part of a cache key only when not the default (see `key_fields`)
    absorbing: Literal["pml", "first_order"] = field(default="pml", metadata={"key_unless_default": True})
    output_times: int = 101
    cache_dir: str = "references"

    def __post_init__(self) -> None:
        if self.spacing is not None and not (math.isfinite(self.spacing) and self.spacing > 0):
            raise ValueError(f"reference.spacing={self.spacing} must be a grid spacing > 0 (m) or null.")
        if not (math.isfinite(self.points_per_wavelength) and self.points_per_wavelength >= 2):
            raise ValueError(f"reference.points_per_wavelength={self.points_per_wavelength} must be >= 2.")
        if not (isinstance(self.space_order, int) and 2 <= self.space_order <= 16 and self.space_order % 2 == 0):
            raise ValueError(f"reference.space_order={self.space_order} must be an even integer from 2 to 16.")
        limit = courant_limit(self.space_order)
        if not (math.isfinite(self.courant) and 0 < self.courant < limit):
            raise ValueError(f"reference.courant={self.courant} must be > 0 and below {limit:.3f}, the stability "
                             f"limit of the scheme with space_order={self.space_order}.")
        if not (isinstance(self.absorbing_cells, int) and self.absorbing_cells >= 4):
            raise ValueError(f"reference.absorbing_cells={self.absorbing_cells} must be an integer >= 4 (cells).")
        if self.absorbing not in ("pml", "first_order"):
            raise ValueError(f"reference.absorbing={self.absorbing!r} must be 'pml' or 'first_order'.")
        if not (isinstance(self.output_times, int) and self.output_times >= 2):
            raise ValueError(f"reference.output_times={self.output_times} must be an integer >= 2 (ends included).")
        if not self.cache_dir:
            raise ValueError("reference.cache_dir is empty: give a folder for the cached references.")


def key_fields(obj) -> dict:
    """A dataclass's fields as a dict for a cache key, less those marked ``key_unless_default`` that hold their
    default: a field added later leaves the keys of references cached before it as they were."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)
            if not (f.metadata.get("key_unless_default") and getattr(obj, f.name) == f.default)}
