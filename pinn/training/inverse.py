"""The pieces of an inverse run that the module composes: which unknown medium, its scales, and holding it."""

from __future__ import annotations

from dataclasses import fields, replace

import torch
from torch import Tensor

from pinn.physics.inversion import TrainableField, TrainableLayers, plane_points
from pinn.physics.units import Scales, wave_scales
from pinn.physics.unknowns import TrainableMaterial, Unknowns
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
        return TrainableField(unknowns.field, problem.scored_domain)
    return TrainableMaterial(problem.material, unknowns)


def inverse_scales(problem: Problem, material) -> Scales:
    """Scales of an inverse run (:func:`pinn.physics.units.wave_scales`): from the sources' peak frequency and vp_max
    and rho_max of the starting material, not the true medium (which an inverse run must not see), U the displacement
    scale the problem is given."""
    if problem.has_exact:  # non-dimensional closed-form problems: all scales 1
        return problem.scales
    d = problem.domain
    with torch.no_grad():
        v = material.at(plane_points(d, 21, 21).float())
    vp = ((v.lam + 2 * v.mu) / v.rho).sqrt()
    vp_max, rho_max = float(torch.as_tensor(vp).max()), float(torch.as_tensor(v.rho).max())
    return wave_scales(vp_max, rho_max, problem.displacement_scale, problem.peak_frequency(), problem.side(),
                       problem.time_scale)
