r"""Pure point samplers on the unit cube ``[0, 1]^d``, all driven by a caller-owned ``torch.Generator``.

- ``uniform``: i.i.d. uniform points.
- ``lhs``: Latin hypercube (McKay, Beckman & Conover 1979): each axis cut into n strata, one point per
  stratum, strata paired by independent random permutations.
- ``sobol``: scrambled Sobol sequence (Owen scrambling as in ``torch.quasirandom.SobolEngine``), the scramble
  seed drawn from the generator.
- ``grid``: a regular cell-centred grid with ``ceil(n^(1/d))`` points per axis, thinned evenly to n points.

The data module maps unit points onto the domain, the boundary edges or the initial slice.

Residual-based adaptive rules of Wu, Zhu, Tan, Kartha & Lu (2023), "A comprehensive study of non-adaptive and
residual-based adaptive sampling for physics-informed neural networks", CMAME 403, 115671:

- :func:`residual_density`: :math:`p(x) \propto \varepsilon^k(x) / \mathbb{E}[\varepsilon^k] + c` over a dense
  candidate set, :math:`\varepsilon` the PDE residual norm;
- :func:`rad`: RAD, a whole new pool drawn from that density;
- :func:`rar_d`: RAR-D, points drawn from that density appended to the pool, up to a cap.

They are pure functions of (pool, candidates, residuals, generator) and know nothing of networks or Lightning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Sampler = Literal["uniform", "lhs", "sobol", "grid"]
SAMPLERS: tuple[str, ...] = ("uniform", "lhs", "sobol", "grid")


def uniform(n: int, dim: int, generator: torch.Generator) -> Tensor:
    """``(n, dim)`` i.i.d. uniform points."""
    return torch.rand(n, dim, generator=generator, dtype=torch.float64)


def lhs(n: int, dim: int, generator: torch.Generator) -> Tensor:
    """``(n, dim)`` Latin hypercube sample: exactly one point in each of the n strata of every axis."""
    cols = []
    for _ in range(dim):
        perm = torch.randperm(n, generator=generator).to(torch.float64)
        cols.append((perm + torch.rand(n, generator=generator, dtype=torch.float64)) / n)
    return torch.stack(cols, dim=-1)


def sobol(n: int, dim: int, generator: torch.Generator) -> Tensor:
    """``(n, dim)`` scrambled Sobol points (Owen-scrambled, seed drawn from ``generator``)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
    return engine.draw(n, dtype=torch.float64)


def grid(n: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
    """``(n, dim)`` cell-centred regular grid; deterministic (the generator is not used)."""
    m = max(1, math.ceil(n ** (1.0 / dim) - 1e-9))
    axis = (torch.arange(m, dtype=torch.float64) + 0.5) / m
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


# ---- residual-based adaptive sampling (Wu et al. 2023) -----------------------------------------------------
Method = Literal["rad", "rar-d"]


@dataclass(frozen=True)
class ResampleRule:
    """How the interior pool is redrawn from residuals (Wu et al. 2023): which rule and its parameters.

    Args:
        method: ``rad`` replaces the whole pool; ``rar-d`` appends ``n_add`` points and keeps the old ones.
        n_candidates: Size of the dense candidate set the density is evaluated on (drawn afresh each time).
        k: Exponent of the residual in the density (1 in the paper's default RAD).
        c: Uniform floor of the density (1 in the paper's default RAD).
        n_add: RAR-D only: points appended per resample.
        max_points: RAR-D only: cap on the pool size; ``None`` means twice the initial interior count.
    """

    method: Method = "rad"
    n_candidates: int = 65536
    k: float = 1.0
    c: float = 1.0
    n_add: int = 256
    max_points: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ("rad", "rar-d"):
            raise ValueError(f"resampling method={self.method!r} must be 'rad' or 'rar-d'.")
        if self.n_candidates < 1:
            raise ValueError(f"resampling n_candidates={self.n_candidates} must be >= 1.")
        if not (math.isfinite(self.k) and self.k >= 0):
            raise ValueError(f"resampling k={self.k} must be a finite number >= 0.")
        if not (math.isfinite(self.c) and self.c >= 0):
            raise ValueError(f"resampling c={self.c} must be a finite number >= 0.")
        if self.n_add < 1:
            raise ValueError(f"resampling n_add={self.n_add} must be >= 1.")
        if self.max_points is not None and self.max_points < 1:
            raise ValueError(f"resampling max_points={self.max_points} must be >= 1 or null.")


def residual_density(residual: Tensor, k: float = 1.0, c: float = 1.0) -> Tensor:
    r"""Probabilities ``(M,)`` of M candidates, :math:`p_i \propto \varepsilon_i^k / \overline{\varepsilon^k} + c`.

    Wu et al. (2023), eq. (2): ``k`` sharpens the focus on large residuals, ``c`` keeps a uniform floor
    (``k = 0`` or ``c -> inf`` is uniform sampling; ``c = 0`` samples in proportion to :math:`\varepsilon^k`).
    Computed in float64 on the residual's device; an all-zero residual gives the uniform density.

    Args:
        residual: Residual norms :math:`\varepsilon_i \geq 0` of the candidates, ``(M,)``.
        k: Exponent, >= 0.
        c: Uniform floor, >= 0.
    """
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"residual density exponent k={k} must be a finite number >= 0.")
    if not (math.isfinite(c) and c >= 0):
        raise ValueError(f"residual density floor c={c} must be a finite number >= 0.")
    if residual.ndim != 1 or residual.numel() == 0:
        raise ValueError(f"residual must be a non-empty (M,) tensor, got shape {tuple(residual.shape)}.")
    bad = int((~torch.isfinite(residual)).sum())
    if bad:
        raise ValueError(
            f"{bad} of {residual.numel()} candidate residuals are NaN or infinite: training has diverged; "
            "lower the learning rate or resume from an earlier checkpoint."
        )
    w = residual.double().abs() ** k  # (M,)
    mean = w.mean()
    w = (w / mean if mean > 0 else torch.zeros_like(w)) + c
    if not w.sum() > 0:  # c = 0 and a zero residual everywhere: nothing to prefer
        w = torch.ones_like(w)
    return w / w.sum()


def weighted_choice(p: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` distinct indices drawn with probabilities ``p`` ``(M,)`` without replacement, sorted ascending.

    Gumbel-top-k (Kool, van Hoof & Welling 2019): the n largest of ``log p_i + G_i``, G_i i.i.d. Gumbel, have the
    law of n successive draws without replacement (as ``numpy.random.choice(replace=False, p=p)``), with no
    category limit (``torch.multinomial`` stops at 2^24) and one uniform draw per candidate from ``generator``.
    """
    if not 0 <= n <= p.numel():
        raise ValueError(f"cannot choose n={n} distinct points out of {p.numel()} candidates.")
    u = torch.rand(p.numel(), generator=generator, dtype=torch.float64).to(p.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(torch.float64).tiny)))  # (M,)
    keys = torch.log(p.double()) + gumbel
    return keys.topk(n).indices.sort().values


def rad(
    n: int, candidates: Tensor, residual: Tensor, generator: torch.Generator, k: float = 1.0, c: float = 1.0
) -> Tensor:
    """RAD (residual-based adaptive distribution): a new pool of ``n`` points drawn without replacement from the
    candidates ``(M, d)`` with :func:`residual_density`; the old pool is discarded. Returns ``(n, d)``."""
    idx = weighted_choice(residual_density(residual, k, c), n, generator)
    return candidates[idx.to(candidates.device)]


def rar_d(
    pool: Tensor, candidates: Tensor, residual: Tensor, generator: torch.Generator, n_add: int,
    max_points: int, k: float = 1.0, c: float = 1.0,
) -> Tensor:
    """RAR-D (residual-based adaptive refinement with distribution): ``min(n_add, max_points - len(pool))`` points
    drawn from the candidates with :func:`residual_density` are appended to the pool, whose old points all stay.

    Returns ``(len(pool) + added, d)``; the pool unchanged (and no randomness drawn) once it holds ``max_points``.
    """
    if n_add < 1:
        raise ValueError(f"RAR-D n_add={n_add} must be >= 1.")
    room = min(n_add, max_points - pool.shape[0])
    if room <= 0:
        return pool
    idx = weighted_choice(residual_density(residual, k, c), room, generator)
    return torch.cat([pool, candidates[idx.to(candidates.device)].to(pool)])
