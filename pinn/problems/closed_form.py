r"""Problems with closed-form truth: plane waves and manufactured solutions.

They are posed in non-dimensional units (all scales 1), with exact Dirichlet data on the four edges and an exact
initial state, so their tests guard the physics: the exact solution makes the residual vanish.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from pinn.physics.device_cache import device_cache
from pinn.physics.elasticity import Material, stress
from pinn.physics.fields import Fields
from pinn.physics.media import Medium, MediumValues
from pinn.problems.domain import Domain
from pinn.problems.problem import Problem

__all__ = ["Domain", "HeterogeneousManufactured", "Manufactured", "PlaneWaves", "Problem", "Wave"]


@dataclass(frozen=True)
class Wave:
    r"""One plane wave :math:`\mathbf{u} = A\,\mathbf{d}\,\sin(\mathbf{k}\cdot\mathbf{x} - \omega t + \phi)`.

    Args:
        kind: ``"P"`` (d parallel to k, omega = c_p |k|) or ``"S"`` (d perpendicular to k, omega = c_s |k|).
        angle: Direction of propagation, radians from the x axis.
        wavenumber: |k| (rad per unit length), > 0.
        amplitude: A.
        phase: phi, radians.
    """

    kind: Literal["P", "S"] = "P"
    angle: float = 0.0
    wavenumber: float = 2 * math.pi
    amplitude: float = 1.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("P", "S"):
            raise ValueError(f"Wave kind={self.kind!r} must be 'P' or 'S'.")
        if not (math.isfinite(self.wavenumber) and self.wavenumber > 0):
            raise ValueError(f"Wave wavenumber={self.wavenumber} must be a finite number > 0.")


class PlaneWaves(Problem):
    """Any sum of P and S plane waves in free space: an exact solution of the Navier-Cauchy equations
    without body force. Dirichlet data on the four edges and initial data come from the exact field.

    Args:
        waves: The plane waves to superpose.
        domain: The space-time box.
        material: The elastic material (sets the wave speeds).
    """

    def __init__(
        self, waves: list[Wave] | None = None, domain: Domain | None = None, material: Material | None = None
    ) -> None:
        super().__init__(domain, material)
        self.waves = list(waves or [])
        if not self.waves:
            raise ValueError("PlaneWaves needs at least one wave in `waves`.")

    def _terms(self, xyt: Tensor):
        for w in self.waves:
            kx, ky = w.wavenumber * math.cos(w.angle), w.wavenumber * math.sin(w.angle)
            speed = self.material.c_p if w.kind == "P" else self.material.c_s
            omega = speed * w.wavenumber
            d = (math.cos(w.angle), math.sin(w.angle)) if w.kind == "P" else (-math.sin(w.angle), math.cos(w.angle))
            arg = kx * xyt[:, 0] + ky * xyt[:, 1] - omega * xyt[:, 2] + w.phase  # (N,)
            yield w.amplitude, d, (kx, ky), omega, arg

    def max_frequency(self) -> float:
        speeds = {"P": self.material.c_p, "S": self.material.c_s}
        return max(speeds[w.kind] * w.wavenumber for w in self.waves) / (2 * math.pi)

    def displacement(self, xyt: Tensor) -> Tensor:
        out = torch.zeros_like(xyt[:, :2])
        for a, d, _, _, arg in self._terms(xyt):
            s = a * torch.sin(arg)
            out = out + torch.stack([d[0] * s, d[1] * s], dim=-1)
        return out

    def velocity(self, xyt: Tensor) -> Tensor:
        out = torch.zeros_like(xyt[:, :2])
        for a, d, _, omega, arg in self._terms(xyt):
            c = -a * omega * torch.cos(arg)
            out = out + torch.stack([d[0] * c, d[1] * c], dim=-1)
        return out

    def gradient(self, xyt: Tensor) -> Tensor:
        out = xyt.new_zeros(xyt.shape[0], 2, 2)
        for i, (a, d, k, _, arg) in enumerate(self._terms(xyt)):
            c = a * torch.cos(arg)  # d u_i / d x_j = A d_i k_j cos(arg)
            dk = device_cache(self).like(("dk", i), lambda: [[d[0] * k[0], d[0] * k[1]], [d[1] * k[0], d[1] * k[1]]],
                                         xyt)
            out = out + c[:, None, None] * dk
        return out


class Manufactured(Problem):
    r"""Manufactured solution: a smooth closed-form field plus the body force that makes it exact.

    .. math::
        u = A \sin(k_x x)\sin(k_y y)\cos(\omega t), \qquad v = A \cos(k_x x)\cos(k_y y)\sin(\omega t)

    and :math:`\mathbf{f} = \rho\mathbf{u}_{tt} - \nabla\cdot\sigma(\mathbf{u})` in closed form.

    Args:
        amplitude: A.
        kx: Spatial wavenumber along x.
        ky: Spatial wavenumber along y.
        omega: Angular frequency.
        domain: The space-time box.
        material: The elastic material.
    """

    def __init__(
        self, amplitude: float = 1.0, kx: float = math.pi, ky: float = math.pi, omega: float = 2 * math.pi,
        domain: Domain | None = None, material: Material | None = None,
    ) -> None:
        super().__init__(domain, material)
        self.amplitude, self.kx, self.ky, self.omega = amplitude, kx, ky, omega

    def _parts(self, xyt: Tensor):
        x, y, t = xyt[:, 0], xyt[:, 1], xyt[:, 2]
        kx, ky, w = self.kx, self.ky, self.omega
        return (torch.sin(kx * x), torch.cos(kx * x), torch.sin(ky * y), torch.cos(ky * y),
                torch.sin(w * t), torch.cos(w * t))

    def displacement(self, xyt: Tensor) -> Tensor:
        sx, cx, sy, cy, st, ct = self._parts(xyt)
        return self.amplitude * torch.stack([sx * sy * ct, cx * cy * st], dim=-1)

    def velocity(self, xyt: Tensor) -> Tensor:
        sx, cx, sy, cy, st, ct = self._parts(xyt)
        return self.amplitude * self.omega * torch.stack([-sx * sy * st, cx * cy * ct], dim=-1)

    def gradient(self, xyt: Tensor) -> Tensor:
        sx, cx, sy, cy, st, ct = self._parts(xyt)
        a, kx, ky = self.amplitude, self.kx, self.ky
        row_u = torch.stack([a * kx * cx * sy * ct, a * ky * sx * cy * ct], dim=-1)
        row_v = torch.stack([-a * kx * sx * cy * st, -a * ky * cx * sy * st], dim=-1)
        return torch.stack([row_u, row_v], dim=-2)

    def body_force(self, xyt: Tensor) -> Tensor:
        sx, cx, sy, cy, st, ct = self._parts(xyt)
        m, a, kx, ky, w = self.material, self.amplitude, self.kx, self.ky, self.omega
        u, v = a * sx * sy * ct, a * cx * cy * st
        f_x = (-m.rho * w**2 + (m.lam + 2 * m.mu) * kx**2 + m.mu * ky**2) * u - (m.lam + m.mu) * a * kx * ky * sx * sy * st
        f_y = (-m.rho * w**2 + m.mu * kx**2 + (m.lam + 2 * m.mu) * ky**2) * v - (m.lam + m.mu) * a * kx * ky * cx * cy * ct
        return torch.stack([f_x, f_y], dim=-1)


class HeterogeneousManufactured(Manufactured):
    r"""The manufactured field of :class:`Manufactured` in a medium that varies in space.

    The body force :math:`\mathbf{f} = \rho\mathbf{u}_{tt} - \nabla\cdot\sigma(\mathbf{u})` is obtained by
    differentiating the closed-form flux :math:`\sigma = \lambda(\mathbf{x})\,\mathrm{tr}\,\varepsilon\, I +
    2\mu(\mathbf{x})\varepsilon` directly (exact differentiation of closed-form expressions by autograd), not
    through the expanded form that :func:`pinn.physics.elasticity.residual` evaluates, so the residual's gradient
    terms are checked against an independent computation.

    Args:
        medium: The medium (e.g. a smoothed :class:`~pinn.physics.media.Inclusion` or ``Layered``).
        amplitude: A.
        kx: Spatial wavenumber along x.
        ky: Spatial wavenumber along y.
        omega: Angular frequency.
        domain: The space-time box.
    """

    def __init__(self, medium: Medium | None = None, amplitude: float = 1.0, kx: float = math.pi,
                 ky: float = math.pi, omega: float = 2 * math.pi, domain: Domain | None = None) -> None:
        super().__init__(amplitude, kx, ky, omega, domain, Material())
        if medium is None:
            raise ValueError("HeterogeneousManufactured needs a medium.")
        self.medium = medium

    def material_at(self, xy: Tensor) -> MediumValues:
        return self.medium.values(xy)

    def body_force(self, xyt: Tensor) -> Tensor:
        with torch.enable_grad():
            xyt = xyt.detach().requires_grad_(True)
            g = self.gradient(xyt)  # (N, 2, 2)
            lam, mu, rho = self.medium.properties(xyt[:, :2])
            zero = xyt[:, 0] * 0
            grad_u = Fields(zero, zero, u_x=g[:, 0, 0], u_y=g[:, 0, 1], v_x=g[:, 1, 0], v_y=g[:, 1, 1])
            sigma = stress(grad_u, MediumValues(lam, mu, rho))  # (N, 2, 2), the constitutive law only
            div = torch.stack([  # d sigma_ij / d x_j
                sum(torch.autograd.grad(sigma[:, i, j].sum(), xyt, retain_graph=True)[0][:, j] for j in range(2))
                for i in range(2)], dim=-1)  # (N, 2)
        return (-rho[:, None] * self.omega**2 * self.displacement(xyt) - div).detach()
