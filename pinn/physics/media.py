r"""Elastic media whose Lamé parameters and density vary in space, with the gradients the residual needs.

A medium maps points ``xy`` ``(N, 2)`` (SI metres) to :class:`MediumValues`: :math:`\lambda, \mu` (Pa),
:math:`\rho` (kg/m^3) and :math:`\partial_x\lambda, \partial_y\lambda, \partial_x\mu, \partial_y\mu` (Pa/m), which
the conservative form :math:`\rho u_{tt} = \nabla\cdot\sigma + f` needs where the medium varies. Each medium writes
its properties as a differentiable torch expression of ``xy``; the gradients come from one reverse pass through
that expression (the medium has no trainable parameter, so nothing reaches the network's graph).

A PINN cannot represent a jump in the material, so interfaces are smoothed over a width ``w``: across an interface
the properties blend with :math:`H(d) = \tfrac12 (1 + \tanh(d / w))`, ``d`` the signed distance to the interface
(``w = 0`` keeps the jump, with zero gradient everywhere off the interface).

Coordinates: x to the right, y up; the top edge of a domain is its largest y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class MediumValues:
    """Material at N points; every entry ``(N,)``. Gradients are ``None`` for a homogeneous medium."""

    lam: Tensor
    mu: Tensor
    rho: Tensor
    lam_x: Tensor | None = None
    lam_y: Tensor | None = None
    mu_x: Tensor | None = None
    mu_y: Tensor | None = None

    @property
    def c_p(self) -> Tensor:
        """P-wave speed sqrt((lam + 2 mu) / rho) ``(N,)``."""
        return ((self.lam + 2 * self.mu) / self.rho).sqrt()

    @property
    def c_s(self) -> Tensor:
        """S-wave speed sqrt(mu / rho) ``(N,)``."""
        return (self.mu / self.rho).sqrt()


@dataclass(frozen=True)
class Properties:
    """Isotropic elastic properties, by wave speeds (vp, vs, rho) or by Lamé parameters (lam, mu, rho).

    Args:
        vp: P-wave speed (m/s); give vp and vs, or lam and mu.
        vs: S-wave speed (m/s), 0 < vs < vp.
        rho: Density (kg/m^3), > 0.
        lam: First Lamé parameter (Pa), with mu instead of vp and vs.
        mu: Shear modulus (Pa), > 0.
    """

    vp: float | None = None
    vs: float | None = None
    rho: float = 1000.0
    lam: float | None = None
    mu: float | None = None

    def __post_init__(self) -> None:
        by_speed, by_moduli = self.vp is not None or self.vs is not None, self.lam is not None or self.mu is not None
        incomplete = (by_speed and None in (self.vp, self.vs)) or (by_moduli and None in (self.lam, self.mu))
        if by_speed == by_moduli or incomplete:
            raise ValueError(f"{self._name()}: give either vp and vs, or lam and mu (got vp={self.vp}, vs={self.vs}, "
                             f"lam={self.lam}, mu={self.mu}).")
        values = {k: getattr(self, k) for k in ("vp", "vs", "rho", "lam", "mu") if getattr(self, k) is not None}
        for key, value in values.items():
            if not math.isfinite(value):
                raise ValueError(f"{self._name()}: {key}={value} is not a finite number.")
        if self.rho <= 0:
            raise ValueError(f"{self._name()}: rho={self.rho} must be > 0 (density, kg/m^3).")
        if by_speed and not 0 < self.vs < self.vp:
            raise ValueError(f"{self._name()}: vs={self.vs} must satisfy 0 < vs < vp={self.vp} (m/s).")
        if by_moduli and not (self.mu > 0 and self.lam + self.mu > 0):
            raise ValueError(f"{self._name()}: mu={self.mu} must be > 0 and lam + mu = {self.lam + self.mu} > 0 (Pa).")

    def _name(self) -> str:
        return "medium properties"

    @property
    def lame(self) -> tuple[float, float, float]:
        """``(lam, mu, rho)`` in Pa, Pa, kg/m^3."""
        if self.lam is not None:
            return float(self.lam), float(self.mu), float(self.rho)
        mu = self.rho * self.vs**2
        return self.rho * self.vp**2 - 2 * mu, mu, float(self.rho)


def smooth_step(d: Tensor, width: float) -> Tensor:
    r"""Blend :math:`H(d) = \tfrac12(1 + \tanh(d / w))`: 0 where ``d`` << 0, 1 where ``d`` >> 0; a step for w = 0."""
    if width > 0:
        return 0.5 * (1 + torch.tanh(d / width))
    return (d > 0).to(d.dtype)


class Medium:
    """Base class: a medium gives ``(lam, mu, rho)`` at points as differentiable torch expressions of ``xy``."""

    def properties(self, xy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``lam, mu, rho`` ``(N,)`` at points ``xy`` ``(N, 2)``, differentiable in ``xy``."""
        raise NotImplementedError

    def values(self, xy: Tensor) -> MediumValues:
        """Material and its gradients at ``xy`` ``(N, 2)``."""
        with torch.enable_grad():
            xy = xy.detach().requires_grad_(True)
            lam, mu, rho = self.properties(xy)
            # a medium with sharp interfaces only (smoothing 0) does not depend differentiably on xy
            d_lam = (torch.autograd.grad(lam.sum(), xy, allow_unused=True, retain_graph=True)[0]
                     if lam.requires_grad else None)
            d_mu = torch.autograd.grad(mu.sum(), xy, allow_unused=True)[0] if mu.requires_grad else None
        d_lam = torch.zeros_like(xy) if d_lam is None else d_lam  # (N, 2)
        d_mu = torch.zeros_like(xy) if d_mu is None else d_mu
        return MediumValues(lam.detach(), mu.detach(), rho.detach(), d_lam[:, 0], d_lam[:, 1], d_mu[:, 0], d_mu[:, 1])

    def check(self, domain) -> None:
        """Raise if the medium cannot be evaluated over ``domain`` (a gridded model that does not cover it)."""

    def extremes(self, domain, n: int = 101) -> dict[str, float]:
        """``vp_min, vp_max, vs_min, vs_max, rho_min, rho_max`` over an ``n x n`` grid of ``domain``."""
        x = torch.linspace(*domain.x, n, dtype=torch.float64)
        y = torch.linspace(*domain.y, n, dtype=torch.float64)
        gy, gx = torch.meshgrid(y, x, indexing="ij")
        with torch.no_grad():
            v = self.values(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1))
        out = {}
        for name, q in (("vp", v.c_p), ("vs", v.c_s), ("rho", v.rho)):
            out[name + "_min"], out[name + "_max"] = float(q.min()), float(q.max())
        return out


class Homogeneous(Medium):
    """One material everywhere. Gives ``vp, vs, rho`` or ``lam, mu, rho`` (see :class:`Properties`).

    Args:
        vp: P-wave speed (m/s).
        vs: S-wave speed (m/s).
        rho: Density (kg/m^3).
        lam: First Lamé parameter (Pa), instead of vp and vs.
        mu: Shear modulus (Pa), instead of vp and vs.
    """

    def __init__(self, vp: float | None = None, vs: float | None = None, rho: float = 1000.0,
                 lam: float | None = None, mu: float | None = None) -> None:
        self.lam, self.mu, self.rho = Properties(vp, vs, rho, lam, mu).lame

    def properties(self, xy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ones = torch.ones_like(xy[:, 0])
        return self.lam * ones, self.mu * ones, self.rho * ones

    def values(self, xy: Tensor) -> MediumValues:
        lam, mu, rho = self.properties(xy)
        return MediumValues(lam, mu, rho)  # no gradient terms: the residual takes the constant-coefficient form


class Layered(Medium):
    """Horizontal layers, listed from the top of the domain down, separated by interfaces at given heights.

    Args:
        layers: The layers' properties, top layer first.
        interfaces: Heights y (m) of the interfaces between consecutive layers, decreasing (top to bottom);
            one fewer than the layers.
        smoothing: Width w (m) over which each interface is smoothed (see the module docstring); 0 keeps the jump.
    """

    def __init__(self, layers: list[Properties] | None = None, interfaces: list[float] | None = None,
                 smoothing: float = 0.0) -> None:
        self.layers = [p if isinstance(p, Properties) else Properties(**p) for p in (layers or [])]
        self.interfaces = [float(y) for y in (interfaces or [])]
        if not self.layers:
            raise ValueError("medium.layers is empty: give at least one layer (vp, vs, rho).")
        if len(self.interfaces) != len(self.layers) - 1:
            raise ValueError(f"medium.interfaces has {len(self.interfaces)} heights for {len(self.layers)} layers; "
                             "give one fewer interface than layers.")
        if any(b >= a for a, b in zip(self.interfaces, self.interfaces[1:])):
            raise ValueError(f"medium.interfaces={self.interfaces} must decrease (heights from the top down).")
        if not (math.isfinite(smoothing) and smoothing >= 0):
            raise ValueError(f"medium.smoothing={smoothing} must be a width >= 0 (m).")
        self.smoothing = float(smoothing)

    def properties(self, xy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y = xy[:, 1]
        top = self.layers[0].lame
        out = [torch.full_like(y, q) for q in top]
        for y_i, upper, lower in zip(self.interfaces, self.layers, self.layers[1:]):
            below = smooth_step(y_i - y, self.smoothing)  # 1 below the interface
            out = [q + (b - a) * below for q, a, b in zip(out, upper.lame, lower.lame)]
        return out[0], out[1], out[2]


class Inclusion(Medium):
    """An elliptical inclusion (a circle when both radii agree) with its own properties inside a background.

    Args:
        background: Properties outside.
        inclusion: Properties inside.
        center: Centre ``(x, y)`` (m).
        radii: Semi-axes ``(a, b)`` (m) along the ellipse's own axes.
        angle: Rotation of the ``a`` axis from the x axis (radians).
        smoothing: Width (m) over which the rim is smoothed; 0 keeps the jump.
    """

    def __init__(self, background: Properties | None = None, inclusion: Properties | None = None,
                 center: tuple[float, float] = (0.0, 0.0), radii: tuple[float, float] = (1.0, 1.0),
                 angle: float = 0.0, smoothing: float = 0.0) -> None:
        if background is None or inclusion is None:
            raise ValueError("medium: an Inclusion needs both `background` and `inclusion` properties.")
        self.background = background if isinstance(background, Properties) else Properties(**background)
        self.inclusion = inclusion if isinstance(inclusion, Properties) else Properties(**inclusion)
        self.center = tuple(float(c) for c in center)
        self.radii = tuple(float(r) for r in radii)
        if len(self.radii) != 2 or min(self.radii) <= 0:
            raise ValueError(f"medium.radii={list(radii)} must be two semi-axes > 0 (m).")
        if not (math.isfinite(smoothing) and smoothing >= 0):
            raise ValueError(f"medium.smoothing={smoothing} must be a width >= 0 (m).")
        self.angle, self.smoothing = float(angle), float(smoothing)

    def properties(self, xy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = xy[:, 0] - self.center[0], xy[:, 1] - self.center[1]
        p, q = (c * dx + s * dy) / self.radii[0], (-s * dx + c * dy) / self.radii[1]  # ellipse coordinates
        r = (p * p + q * q + 1e-30).sqrt()
        # signed distance to the rim, exact for a circle, first order for an ellipse: (r - 1) / |grad r| on the rim
        grad_r = ((c * p / self.radii[0] - s * q / self.radii[1]) ** 2
                  + (s * p / self.radii[0] + c * q / self.radii[1]) ** 2 + 1e-30).sqrt() / r
        inside = smooth_step((1 - r) / grad_r, self.smoothing)
        return tuple(a + (b - a) * inside for a, b in zip(self.background.lame, self.inclusion.lame))
