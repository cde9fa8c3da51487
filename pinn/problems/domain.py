"""The space-time box of a problem, its maps from the unit cube, grids, edges and outward normals.

Points are ``(N, 3)`` columns ``(x, y, t)``; x to the right, y up. The four edges are named and numbered
bottom (y = y0), right (x = x1), top (y = y1), left (x = x0), the order in which :meth:`Domain.boundary_from_unit`
walks the perimeter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pinn.physics.device_cache import device_cache

EDGES = ("bottom", "right", "top", "left")


@dataclass(frozen=True)
class Domain:
    """Space-time box ``[x0, x1] x [y0, y1] x [t0, t1]``.

    Args:
        x: ``(x0, x1)`` with x0 < x1.
        y: ``(y0, y1)`` with y0 < y1.
        t: ``(t0, t1)`` with t0 < t1; t0 is where initial conditions are imposed.
    """

    x: tuple[float, float] = (0.0, 1.0)
    y: tuple[float, float] = (0.0, 1.0)
    t: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("x", "y", "t"):
            bounds = tuple(getattr(self, name))
            if len(bounds) != 2 or not all(math.isfinite(b) for b in bounds) or not bounds[0] < bounds[1]:
                raise ValueError(f"Domain {name}={list(bounds)} must be two finite numbers [low, high] with low < high.")
            object.__setattr__(self, name, (float(bounds[0]), float(bounds[1])))

    @property
    def lower(self) -> tuple[float, float, float]:
        return (self.x[0], self.y[0], self.t[0])

    @property
    def upper(self) -> tuple[float, float, float]:
        return (self.x[1], self.y[1], self.t[1])

    def from_unit(self, unit: Tensor) -> Tensor:
        """Map ``(N, 3)`` points of the unit cube onto the domain."""
        lo = torch.tensor(self.lower, dtype=unit.dtype, device=unit.device)
        hi = torch.tensor(self.upper, dtype=unit.dtype, device=unit.device)
        return lo + unit * (hi - lo)

    def boundary_from_unit(self, unit: Tensor) -> Tensor:
        """Map ``(N, 2)`` unit points ``(s, tau)`` onto the four edges x time.

        ``s`` runs once around the perimeter in equal quarters (bottom, right, top, left) so that a
        stratified ``s`` gives stratified edges; ``tau`` is time.
        """
        s4, tau = unit[:, 0] * 4, unit[:, 1]
        edge = s4.floor().clamp(max=3)  # (N,) in {0, 1, 2, 3}
        a = s4 - edge  # (N,) position along the edge in [0, 1]
        ones, zeros = torch.ones_like(a), torch.zeros_like(a)
        ux = torch.where(edge == 0, a, torch.where(edge == 1, ones, torch.where(edge == 2, 1 - a, zeros)))
        uy = torch.where(edge == 0, zeros, torch.where(edge == 1, a, torch.where(edge == 2, ones, 1 - a)))
        return self.from_unit(torch.stack([ux, uy, tau], dim=-1))

    def initial_from_unit(self, unit: Tensor) -> Tensor:
        """Map ``(N, 2)`` unit points onto the initial slice ``t = t0``."""
        return self.from_unit(torch.cat([unit, torch.zeros_like(unit[:, :1])], dim=-1))

    def grid(self, nx: int, ny: int, nt: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Regular ``nx x ny x nt`` grid including the faces, ``(nx*ny*nt, 3)``, t slowest."""
        axes = [torch.linspace(lo, hi, n, dtype=dtype) for lo, hi, n in zip(self.lower, self.upper, (nx, ny, nt))]
        t, y, x = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        return torch.stack([x, y, t], dim=-1).reshape(-1, 3)

    def outward_normal(self, xyt: Tensor) -> Tensor:
        """Outward unit normal ``(N, 2)`` of boundary points (the nearest edge wins at corners)."""
        normals = device_cache(self).like("normals", lambda: [[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], xyt)
        return normals[self.edge_index(xyt)]

    def edge_index(self, xyt: Tensor) -> Tensor:
        """Index into :data:`EDGES` of the nearest edge of each point ``(N,)`` (ties at corners: the first)."""
        x, y = xyt[:, 0], xyt[:, 1]
        gaps = torch.stack([y - self.y[0], self.x[1] - x, self.y[1] - y, x - self.x[0]], dim=-1)  # (N, 4)
        return gaps.argmin(dim=-1)
