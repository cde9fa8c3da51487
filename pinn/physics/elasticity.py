r"""Isotropic linear elastodynamics in 2D (plane strain), as pure functions of a :class:`Fields` record.

Navier-Cauchy equations for the displacement :math:`\mathbf{u} = (u, v)(x, y, t)` with body force
:math:`\mathbf{f} = (f_x, f_y)`:

.. math::
    \rho u_{tt} = (\lambda + 2\mu) u_{xx} + \mu u_{yy} + (\lambda + \mu) v_{xy} + f_x \\
    \rho v_{tt} = \mu v_{xx} + (\lambda + 2\mu) v_{yy} + (\lambda + \mu) u_{xy} + f_y

Strain :math:`\varepsilon = (\nabla u + \nabla u^T)/2`, stress
:math:`\sigma = \lambda\,\mathrm{tr}(\varepsilon) I + 2\mu\varepsilon`, traction :math:`t = \sigma n`.

The functions never call autograd: a derivative engine fills the ``Fields`` they read. Material values may be
Python floats or 0-d tensors (trainable in an inverse problem).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from pinn.networks.derivatives import Fields

Scalar = float | Tensor


class MaterialLike(Protocol):
    """Anything with Lamé parameters and density: a :class:`Material` or trainable parameters."""

    @property
    def lam(self) -> Scalar: ...

    @property
    def mu(self) -> Scalar: ...

    @property
    def rho(self) -> Scalar: ...


@dataclass(frozen=True)
class Material:
    """An isotropic linear elastic material.

    Args:
        lam: First Lamé parameter lambda (Pa, or any consistent unit).
        mu: Shear modulus mu; must be > 0.
        rho: Density; must be > 0. Admissibility also needs lam + mu > 0 (plane strain).
    """

    lam: float = 1.0
    mu: float = 0.5
    rho: float = 1.0

    def __post_init__(self) -> None:
        for name in ("lam", "mu", "rho"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"Material {name}={value} is not a finite number; give a real value.")
        if self.rho <= 0:
            raise ValueError(f"Material rho={self.rho} must be > 0 (density).")
        if self.mu <= 0:
            raise ValueError(f"Material mu={self.mu} must be > 0 (shear modulus).")
        if self.lam + self.mu <= 0:
            raise ValueError(
                f"Material lam={self.lam}, mu={self.mu}: lam + mu = {self.lam + self.mu} must be > 0 "
                "for an admissible plane-strain material."
            )

    @property
    def c_p(self) -> float:
        """P-wave speed sqrt((lam + 2 mu) / rho)."""
        return math.sqrt((self.lam + 2 * self.mu) / self.rho)

    @property
    def c_s(self) -> float:
        """S-wave speed sqrt(mu / rho)."""
        return math.sqrt(self.mu / self.rho)


def residual(fields: Fields, material: MaterialLike, force: Tensor | None = None) -> Tensor:
    r"""Navier-Cauchy residual :math:`\rho\mathbf{u}_{tt} - \nabla\cdot\sigma - \mathbf{f}`, shape ``(N, 2)``.

    Args:
        fields: Needs ``u_tt, v_tt, u_xx, u_yy, u_xy, v_xx, v_yy, v_xy``.
        material: Lamé parameters and density.
        force: Body force ``(N, 2)`` or ``None`` for no force.
    """
    lam, mu, rho = material.lam, material.mu, material.rho
    f = fields
    r_x = rho * f.u_tt - ((lam + 2 * mu) * f.u_xx + mu * f.u_yy + (lam + mu) * f.v_xy)
    r_y = rho * f.v_tt - (mu * f.v_xx + (lam + 2 * mu) * f.v_yy + (lam + mu) * f.u_xy)
    r = torch.stack([r_x, r_y], dim=-1)  # (N, 2)
    return r if force is None else r - force


def strain(fields: Fields) -> Tensor:
    r"""Small-strain tensor :math:`\varepsilon = (\nabla u + \nabla u^T)/2`, shape ``(N, 2, 2)``."""
    e_xy = 0.5 * (fields.u_y + fields.v_x)
    row_x = torch.stack([fields.u_x, e_xy], dim=-1)
    row_y = torch.stack([e_xy, fields.v_y], dim=-1)
    return torch.stack([row_x, row_y], dim=-2)  # (N, 2, 2)


def stress(fields: Fields, material: MaterialLike) -> Tensor:
    r"""Cauchy stress :math:`\sigma = \lambda\,\mathrm{tr}(\varepsilon) I + 2\mu\varepsilon`, shape ``(N, 2, 2)``."""
    eps = strain(fields)
    trace = eps.diagonal(dim1=-2, dim2=-1).sum(-1)  # (N,)
    eye = torch.eye(2, dtype=eps.dtype, device=eps.device)
    return material.lam * trace[:, None, None] * eye + 2 * material.mu * eps


def traction(fields: Fields, material: MaterialLike, normal: Tensor) -> Tensor:
    r"""Traction :math:`t = \sigma n` on a surface with outward unit normal ``normal`` ``(N, 2)``; returns ``(N, 2)``."""
    return torch.einsum("nij,nj->ni", stress(fields, material), normal)
