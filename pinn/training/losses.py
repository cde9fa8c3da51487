"""The loss terms' weights and the pieces of the loss that do not need the module's state."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from pinn.physics.elasticity import absorbing_residual, traction
from pinn.physics.material import NAMES
from pinn.problems.closed_form import Problem


@dataclass
class LossWeights:
    """Weights of the loss terms; the training loss is their weighted sum.

    Args:
        pde: Navier-Cauchy residual (mean over interior points of |r|^2).
        bc: Dirichlet boundary displacement.
        ic_disp: Initial displacement.
        ic_vel: Initial velocity.
        data: Observed displacements (inverse problems).
    """

    pde: float = 1.0
    bc: float = 1.0
    ic_disp: float = 1.0
    ic_vel: float = 1.0
    data: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value >= 0:
                raise ValueError(f"model.loss_weights.{name}={value} must be >= 0.")


def config_of(cls, value):
    """A settings dataclass from YAML (a dict), as given (an instance), or ``None``."""
    return cls(**value) if isinstance(value, dict) else value


def problem_difference(a: Problem, b: Problem) -> str:
    """How two problem objects differ where it shows cheaply (type, domain, material at a few points), else ''."""
    if type(a) is not type(b):
        return f"{type(a).__name__} and {type(b).__name__}"
    if (a.domain.lower, a.domain.upper) != (b.domain.lower, b.domain.upper):
        return f"domains {a.domain} and {b.domain}"
    xy = torch.tensor(a.domain.lower[:2], dtype=torch.float64) + torch.rand(
        16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * torch.tensor(
        [a.domain.upper[0] - a.domain.lower[0], a.domain.upper[1] - a.domain.lower[1]], dtype=torch.float64)
    ma, mb = a.material_at(xy), b.material_at(xy)
    for name in NAMES:
        if not torch.allclose(torch.as_tensor(getattr(ma, name)), torch.as_tensor(getattr(mb, name))):
            return f"different {name}"
    return ""


def mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean over points of the squared Euclidean distance of ``(N, 2)`` vectors."""
    return ((a - b) ** 2).sum(-1).mean()


def masked_mse(a: Tensor, b: Tensor) -> Tensor:
    """:func:`mse` over the entries where ``b`` is finite (NaN marks a component that was not recorded); the same as
    ``mse`` when every entry is."""
    seen = torch.isfinite(b)
    # NaN never enters the arithmetic: a fused (compiled) kernel that multiplies by the mask instead would give NaN
    miss = torch.where(seen, a - torch.nan_to_num(b), 0.0)
    return (miss**2).sum(-1).mean()


def boundary_loss(model, xyt: Tensor) -> Tensor:
    """Mean squared misfit of ``model`` at boundary points ``xyt``, each point's condition from its edge
    (:class:`~pinn.problems.problem.Boundaries`); displacements divided by U, tractions by S U / L
    (:mod:`pinn.physics.units`)."""
    p, s = model.problem, model.scales
    kinds = p.boundaries.kinds()
    if all(k == "exact" for k in kinds):  # closed-form problems: Dirichlet data everywhere
        return mse(model.net(xyt), p.boundary_displacement(xyt)) / s.displacement**2
    edge = p.domain.edge_index(xyt)  # (N,)
    on = {kind: torch.tensor([k == kind for k in kinds], device=edge.device)[edge] for kind in set(kinds)}  # (N,)
    if not ({"free", "absorbing"} & set(kinds)):
        f = model.fields(xyt, "value")
    else:
        f = model.fields(xyt, "gradient")
    disp = f.displacement  # (N, 2)
    if "exact" in on:
        disp = disp - torch.where(on["exact"][:, None], p.displacement(xyt), 0.0)
    miss = disp / s.displacement  # fixed and exact edges
    if "free" in on or "absorbing" in on:
        normal = p.domain.outward_normal(xyt)
        material = model.material_at(xyt[:, :2])
        if "free" in on:
            miss = torch.where(on["free"][:, None], traction(f, material, normal) / s.traction, miss)
        if "absorbing" in on:
            miss = torch.where(on["absorbing"][:, None], absorbing_residual(f, material, normal) / s.traction, miss)
    return (miss**2).sum(-1).mean()
