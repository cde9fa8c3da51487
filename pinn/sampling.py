"""Pure point samplers on the unit cube ``[0, 1]^d``, all driven by a caller-owned ``torch.Generator``.

- ``uniform``: i.i.d. uniform points.
- ``lhs``: Latin hypercube (McKay, Beckman & Conover 1979): each axis cut into n strata, one point per
  stratum, strata paired by independent random permutations.
- ``sobol``: scrambled Sobol sequence (Owen scrambling as in ``torch.quasirandom.SobolEngine``), the scramble
  seed drawn from the generator.
- ``grid``: a regular cell-centred grid with ``ceil(n^(1/d))`` points per axis, thinned evenly to n points.

The data module maps unit points onto the domain, the boundary edges or the initial slice.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Sampler = Literal["uniform", "lhs", "sobol", "grid"]
SAMPLERS: tuple[str, ...] = ("uniform", "lhs", "sobol", "grid")


def uniform(n: int, dim: int, generator: torch.Generator) -> Tensor:
    """``(n, dim)`` i.i.d. uniform points."""
    return torch.rand(n, dim, generator=generator)


def lhs(n: int, dim: int, generator: torch.Generator) -> Tensor:
    """``(n, dim)`` Latin hypercube sample: exactly one point in each of the n strata of every axis."""
    cols = []
    for _ in range(dim):
        perm = torch.randperm(n, generator=generator).to(torch.float32)
        cols.append((perm + torch.rand(n, generator=generator)) / n)
    return torch.stack(cols, dim=-1)


def sobol(n: int, dim: int, generator: torch.Generator) -> Tensor:
    """``(n, dim)`` scrambled Sobol points (Owen-scrambled, seed drawn from ``generator``)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
    return engine.draw(n).to(torch.float32)


def grid(n: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
    """``(n, dim)`` cell-centred regular grid; deterministic (the generator is not used)."""
    m = max(1, math.ceil(n ** (1.0 / dim) - 1e-9))
    axis = (torch.arange(m, dtype=torch.float32) + 0.5) / m
    full = torch.stack(torch.meshgrid(*([axis] * dim), indexing="ij"), dim=-1).reshape(-1, dim)
    keep = torch.linspace(0, full.shape[0] - 1, n).round().long()  # evenly thinned when m^dim > n
    return full[keep]


def sample(kind: Sampler, n: int, dim: int, generator: torch.Generator) -> Tensor:
    """Draw ``n`` points of ``[0, 1]^dim`` with the named sampler."""
    if kind not in SAMPLERS:
        raise ValueError(f"sampler {kind!r} is not one of {SAMPLERS}.")
    if n < 0:
        raise ValueError(f"number of points n={n} must be >= 0.")
    return {"uniform": uniform, "lhs": lhs, "sobol": sobol, "grid": grid}[kind](n, dim, generator)
