r"""Domains and problems with closed-form truth.

A :class:`Problem` owns the domain, the material and every known function of the setup: the exact
displacement (when there is one), its velocity and gradient, the body force, boundary values, and the
initial displacement and velocity. The model and the data module both read it; nothing else defines the
physics. Points are ``(N, 3)`` columns ``(x, y, t)``; displacements ``(N, 2)`` columns ``(u, v)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from pinn.networks.derivatives import Fields
from pinn.physics.elasticity import Material, traction


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
        x, y = xyt[:, 0], xyt[:, 1]
        gaps = torch.stack([y - self.y[0], self.x[1] - x, self.y[1] - y, x - self.x[0]], dim=-1)  # (N, 4)
        normals = torch.tensor([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=xyt.dtype, device=xyt.device)
        return normals[gaps.argmin(dim=-1)]


class Problem:
    """Base class of an elastic-wave problem on a :class:`Domain` with a :class:`Material`.

    Subclasses with a closed-form solution implement :meth:`displacement`, :meth:`velocity` and
    :meth:`gradient`; the boundary and initial data default to that solution.
    """

    def __init__(self, domain: Domain | None = None, material: Material | None = None) -> None:
        self.domain = domain or Domain()
        self.material = material or Material()

    has_exact: bool = True

    def displacement(self, xyt: Tensor) -> Tensor:
        """Exact displacement ``(N, 2)``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form displacement")

    def velocity(self, xyt: Tensor) -> Tensor:
        """Exact velocity ``(N, 2)`` = d(u, v)/dt."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form velocity")

    def gradient(self, xyt: Tensor) -> Tensor:
        """Exact spatial displacement gradient ``(N, 2, 2)``, entry ``[i, j] = d u_i / d x_j``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form gradient")

    def body_force(self, xyt: Tensor) -> Tensor | None:
        """Body force ``(N, 2)``, or ``None`` when there is none."""
        return None

    def boundary_displacement(self, xyt: Tensor) -> Tensor:
        """Dirichlet data on the boundary ``(N, 2)``."""
        return self.displacement(xyt)

    def initial_displacement(self, xyt: Tensor) -> Tensor:
        """Displacement at t = t0, ``(N, 2)``."""
        return self.displacement(xyt)

    def initial_velocity(self, xyt: Tensor) -> Tensor:
        """Velocity at t = t0, ``(N, 2)``."""
        return self.velocity(xyt)

    def traction(self, xyt: Tensor, normal: Tensor) -> Tensor:
        """Exact traction ``sigma . n`` ``(N, 2)`` from the closed-form gradient."""
        g = self.gradient(xyt)  # (N, 2, 2)
        f = Fields(u=xyt[:, 0] * 0, v=xyt[:, 0] * 0, u_x=g[:, 0, 0], u_y=g[:, 0, 1], v_x=g[:, 1, 0], v_y=g[:, 1, 1])
        return traction(f, self.material, normal)


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
        for a, d, k, _, arg in self._terms(xyt):
            c = a * torch.cos(arg)  # d u_i / d x_j = A d_i k_j cos(arg)
            dk = torch.tensor([[d[0] * k[0], d[0] * k[1]], [d[1] * k[0], d[1] * k[1]]], dtype=xyt.dtype, device=xyt.device)
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
