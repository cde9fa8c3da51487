"""The loss terms' weights and the pieces of the loss that do not need the module's state."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from pinn.physics.device_cache import DeviceCache
from pinn.physics.unknowns import NAMES
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


def loss_terms(model, problem: Problem, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor | None]:
    r"""The unweighted loss terms of one ``batch`` of points, each non-dimensional (divided by its scale squared,
    :mod:`pinn.physics.units`), and the causal weights of the PDE term (``None`` without causal weighting).

    .. math::
        L_{pde} = \overline{|r|^2} / F^2, \quad L_{bc} = \text{boundary\_loss}, \quad
        L_{ic\_disp} = \overline{|u - u_0|^2} / U^2, \quad L_{ic\_vel} = \overline{|u_t - v_0|^2} / V^2

    over the current time window (:mod:`pinn.training.windows`; u_0 and v_0 are then the state the previous window
    ends in), without the two initial terms when the initial state is built into the output, and ``data``, the misfit
    to observed displacements (over U^2) or particle velocities (over V^2), when the batch carries observations.

    Args:
        model: The :class:`~pinn.training.module.ElasticPINN` (its network, derivative engine, material and scales).
        problem: The problem it solves.
        batch: Points ``(N, 3)`` under ``interior``, ``boundary``, ``initial``; observations ``(M, 5)`` (x, y, t and
            two components, NaN where one is not recorded) under ``observations`` or ``velocity_observations``.
    """
    s = model.scales
    batch = {k: v.to(model.dtype) for k, v in batch.items()}  # float64 points, read in the model's dtype
    interior, boundary, initial = batch["interior"], batch["boundary"], batch["initial"]
    r = model.pde_residual(interior)  # (N, 2); the points are mapped into the current time window
    squared = (r**2).sum(-1)  # (N,)
    weights = None
    if model.causal is None:
        pde = squared.mean() / s.force_density**2
    else:  # the slices of the pool's times are those of the window's: the map between them is affine
        pde, weights = model.causal.loss(interior[:, 2], squared / s.force_density**2, problem.domain.t)
    terms = {"pde": pde, "bc": model.boundary_loss(boundary)}
    initial = model.to_window(initial)  # the start of the current time window
    targets = model.initial_targets(initial)  # None: the initial state is built into the output
    if targets is not None:
        f_ic = model.fields(initial, "velocity")
        terms["ic_disp"] = mse(f_ic.displacement, targets[0]) / s.displacement**2
        terms["ic_vel"] = mse(f_ic.velocity, targets[1]) / s.velocity**2
    if "observations" in batch:  # (M, 5) columns x, y, t, u, v; NaN where a component is not recorded
        observed = batch["observations"]
        displacement = model.fields(observed[:, :3], "value").displacement
        terms["data"] = masked_mse(displacement, observed[:, 3:]) / s.displacement**2
    if "velocity_observations" in batch:  # particle velocity (u_t, v_t), as geophones record it
        observed = batch["velocity_observations"]
        velocity = model.fields(observed[:, :3], "velocity").velocity
        terms["data"] = masked_mse(velocity, observed[:, 3:]) / s.velocity**2
    return terms, weights


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
    return (masked_difference(a, b) ** 2).sum(-1).mean()


def masked_difference(a: Tensor, b: Tensor) -> Tensor:
    """``a - b`` where ``b`` is finite, 0 where it is NaN (a component that was not recorded)."""
    # NaN never enters the arithmetic: a fused (compiled) kernel that multiplies by the mask instead would give NaN
    return torch.where(torch.isfinite(b), a - torch.nan_to_num(b), 0.0)


_EDGE_GROUPS = DeviceCache()


def _edge_groups(edges: tuple, device: torch.device) -> list[Tensor]:
    """For each distinct edge condition of ``edges`` (bottom, right, top, left), which of the four edges have it: made
    once per device, since a tensor made from host data in each step would be a host-to-device copy."""
    return [_EDGE_GROUPS.get((edges, k), lambda edge=edge: [e == edge for e in edges], device)
            for k, edge in enumerate(dict.fromkeys(edges))]


def boundary_loss(model, xyt: Tensor) -> Tensor:
    """Mean over boundary points ``xyt`` ``(N, 3)`` of the squared residual of each point's edge condition
    (:mod:`pinn.problems.boundaries`), non-dimensional: displacements divided by U, tractions by S U / L
    (:mod:`pinn.physics.units`)."""
    return (boundary_misfit(model, xyt) ** 2).sum(-1).mean()


def boundary_misfit(model, xyt: Tensor) -> Tensor:
    """The non-dimensional residual ``(N, 2)`` of each boundary point's edge condition (see :func:`boundary_loss`)."""
    p, s = model.problem, model.scales
    edges = p.boundaries.edges()
    order = "gradient" if any(e.order == "gradient" for e in edges) else "value"
    f = model.fields(xyt, order)  # one pass for all points, with what the most demanding edge needs
    normal = material = None
    if order == "gradient":
        normal, material = p.domain.outward_normal(xyt), model.material_at(xyt[:, :2])
    which = p.domain.edge_index(xyt)  # (N,)
    miss = None
    for k, edge in enumerate(dict.fromkeys(edges)):  # equal conditions once; a mask, not an index, keeps the shapes
        r = edge.residual(f, material, normal, xyt, p, s)  # (N, 2)
        on = _edge_groups(edges, which.device)[k][which]  # (N,)
        miss = r if miss is None else torch.where(on[:, None], r, miss)
    return miss
