r"""Isotropic linear elastodynamics in 2D (plane strain), as pure functions of a :class:`Fields` record.

Conservative form for the displacement :math:`\mathbf{u} = (u, v)(x, y, t)` with body force
:math:`\mathbf{f} = (f_x, f_y)`, :math:`\rho \mathbf{u}_{tt} = \nabla\cdot\sigma + \mathbf{f}`, expanded for
:math:`\lambda, \mu` that vary in space (:math:`\theta = u_x + v_y`, :math:`\gamma = u_y + v_x`):

.. math::
    \rho u_{tt} = (\lambda + 2\mu) u_{xx} + \mu u_{yy} + (\lambda + \mu) v_{xy}
                  + \lambda_x \theta + 2\mu_x u_x + \mu_y \gamma + f_x \\
    \rho v_{tt} = \mu v_{xx} + (\lambda + 2\mu) v_{yy} + (\lambda + \mu) u_{xy}
                  + \lambda_y \theta + 2\mu_y v_y + \mu_x \gamma + f_y

For constant :math:`\lambda, \mu` the gradient terms vanish and this is the Navier-Cauchy form.

Strain :math:`\varepsilon = (\nabla u + \nabla u^T)/2`, stress
:math:`\sigma = \lambda\,\mathrm{tr}(\varepsilon) I + 2\mu\varepsilon`, traction :math:`t = \sigma n`.

The functions never call autograd: a derivative engine fills the ``Fields`` they read. Material values may be
Python floats, 0-d tensors (trainable in an inverse problem) or ``(N,)`` tensors, one value per point (a medium
that varies in space, :class:`~pinn.physics.media.MediumValues`, which also carries the gradients of lam and mu).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from pinn.physics.fields import Fields

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
    r"""Residual :math:`\rho\mathbf{u}_{tt} - \nabla\cdot\sigma - \mathbf{f}` in conservative form, shape ``(N, 2)``.

    Args:
        fields: Needs ``u_tt, v_tt, u_xx, u_yy, u_xy, v_xx, v_yy, v_xy`` (and the first derivatives where the
            material has gradients).
        material: Lamé parameters and density; with ``lam_x, lam_y, mu_x, mu_y`` (not ``None``) the gradient terms
            of a medium that varies in space are added.
        force: Body force ``(N, 2)`` or ``None`` for no force.
    """
    lam, mu, rho = material.lam, material.mu, material.rho
    f = fields
    r_x = rho * f.u_tt - ((lam + 2 * mu) * f.u_xx + mu * f.u_yy + (lam + mu) * f.v_xy)
    r_y = rho * f.v_tt - (mu * f.v_xx + (lam + 2 * mu) * f.v_yy + (lam + mu) * f.u_xy)
    if getattr(material, "lam_x", None) is not None:
        theta, gamma = f.u_x + f.v_y, f.u_y + f.v_x  # dilatation and engineering shear strain
        r_x = r_x - (material.lam_x * theta + 2 * material.mu_x * f.u_x + material.mu_y * gamma)
        r_y = r_y - (material.lam_y * theta + 2 * material.mu_y * f.v_y + material.mu_x * gamma)
    r = torch.stack([r_x, r_y], dim=-1)  # (N, 2)
    return r if force is None else r - force


def strain(fields: Fields) -> Tensor:
    r"""Small-strain tensor :math:`\varepsilon = (\nabla u + \nabla u^T)/2`, shape ``(N, 2, 2)``."""
    e_xy = 0.5 * (fields.u_y + fields.v_x)
    row_x = torch.stack([fields.u_x, e_xy], dim=-1)
    row_y = torch.stack([e_xy, fields.v_y], dim=-1)
    return torch.stack([row_x, row_y], dim=-2)  # (N, 2, 2)


def _column(value: Scalar) -> Scalar:
    """A per-point ``(N,)`` material value as ``(N, 1, 1)``, so it scales ``(N, 2, 2)`` tensors; scalars as they are."""
    return value[:, None, None] if isinstance(value, Tensor) and value.ndim == 1 else value


def stress(fields: Fields, material: MaterialLike) -> Tensor:
    r"""Cauchy stress :math:`\sigma = \lambda\,\mathrm{tr}(\varepsilon) I + 2\mu\varepsilon`, shape ``(N, 2, 2)``."""
    eps = strain(fields)
    trace = eps.diagonal(dim1=-2, dim2=-1).sum(-1)  # (N,)
    eye = torch.eye(2, dtype=eps.dtype, device=eps.device)
    return _column(material.lam) * trace[:, None, None] * eye + 2 * _column(material.mu) * eps


def traction(fields: Fields, material: MaterialLike, normal: Tensor) -> Tensor:
    r"""Traction :math:`t = \sigma n` on a surface with outward unit normal ``normal`` ``(N, 2)``; returns ``(N, 2)``."""
    return torch.einsum("nij,nj->ni", stress(fields, material), normal)


def absorbing_residual(fields: Fields, material: MaterialLike, normal: Tensor) -> Tensor:
    r"""First-order absorbing condition (Lysmer & Kuhlemeyer 1969; Clayton & Engquist 1977), ``(N, 2)``:

    .. math::
        \sigma n + \rho\left(c_p (\dot{\mathbf u}\cdot n)\, n
            + c_s (\dot{\mathbf u} - (\dot{\mathbf u}\cdot n)\, n)\right) = 0

    a dashpot that absorbs P and S waves arriving along the normal exactly and oblique ones in part.

    Args:
        fields: Needs the first derivatives (order ``"gradient"``).
        material: Lamé parameters and density (scalars or per point).
        normal: Outward unit normals ``(N, 2)``.
    """
    lam, mu, rho = material.lam, material.mu, material.rho
    c_p, c_s = ((lam + 2 * mu) / rho) ** 0.5, (mu / rho) ** 0.5
    vel = fields.velocity  # (N, 2)
    normal_part = (vel * normal).sum(-1, keepdim=True) * normal  # (N, 2)
    c_p, c_s, rho = (q[:, None] if isinstance(q, Tensor) and q.ndim == 1 else q for q in (c_p, c_s, rho))
    return traction(fields, material, normal) + rho * (c_p * normal_part + c_s * (vel - normal_part))
