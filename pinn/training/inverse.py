"""The pieces of an inverse run that the module composes: which unknown medium, its scales, and holding it."""

from __future__ import annotations

from dataclasses import fields, replace

import torch
from torch import Tensor

from pinn.physics.inversion import TrainableField, TrainableLayers
from pinn.physics.material import TrainableMaterial, Unknowns
from pinn.physics.units import Scales
from pinn.problems.closed_form import Problem


def hold(values, distributed: bool):
    """``values`` (a material) with no gradient reaching its parameters: none at all in one process, so that the
    optimizer skips them and starts their moments when they are released; a zero gradient under DDP, which needs
    every parameter to take part in every step."""
    held = {f.name: getattr(values, f.name) for f in fields(values)}
    return replace(values, **{k: (v.detach() + 0 * v if distributed else v.detach()) for k, v in held.items()
                              if isinstance(v, Tensor) and v.requires_grad})


def trainable_medium(problem: Problem, unknowns: Unknowns):
    """The unknown material of an inverse run: per layer, a map on a grid, or one constant material."""
    if unknowns.layers is not None:
        return TrainableLayers(unknowns.layers)
    if unknowns.field is not None:
        return TrainableField(unknowns.field, problem.domain)
    return TrainableMaterial(problem.material, unknowns)


def inverse_scales(problem: Problem, material) -> Scales:
    """The problem's scales with the time and density scales taken from the starting material, not the true
    medium (which an inverse run must not see); the displacement scale is the one the problem is given."""
    scales = problem.scales
    if problem.has_exact:  # non-dimensional closed-form problems: all scales 1
        return scales
    domain, n = problem.domain, 21
    x = torch.linspace(*domain.x, n, dtype=torch.float64)
    y = torch.linspace(*domain.y, n, dtype=torch.float64)
    gy, gx = torch.meshgrid(y, x, indexing="ij")
    with torch.no_grad():
        v = material.at(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1).float())
    vp = ((v.lam + 2 * v.mu) / v.rho).sqrt()
    vp_max, rho_max = float(torch.as_tensor(vp).max()), float(torch.as_tensor(v.rho).max())
    return Scales(scales.length, scales.length / vp_max, scales.displacement, rho_max)
