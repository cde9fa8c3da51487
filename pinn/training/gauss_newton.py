r"""The training loss as residual rows and their Jacobian, for the Levenberg-Marquardt stage.

The weighted training loss (:func:`~pinn.training.losses.loss_terms`, summed over shots) is a sum of squares,

.. math::
    L = \sum_k \sum_j w_j \frac{1}{N_j} \sum_{n=1}^{N_j} |\rho_j(x_n)|^2 = \|r\|^2, \qquad
    r = \Big(\sqrt{w_j / N_j}\, \rho_j(x_n)\Big)_{k, j, n},

with :math:`\rho_j` the non-dimensional residual of term j at a point (the PDE residual over F, an edge's misfit,
the initial displacement over U and velocity over V, an observation's misfit) and k the shot. Levenberg-Marquardt
(:mod:`pinn.optim.levenberg_marquardt`) needs r and :math:`J = \partial r / \partial \theta`. Each row depends on
one point only, so J is built point by point: ``torch.func.jacrev`` of one point's rows with respect to the trained
parameters, vectorised over the points with ``torch.func.vmap`` (in chunks, so that memory is set by a chunk). The
test is :math:`\nabla L = 2 J^T r` against autograd's gradient of the training loss.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from pinn.physics.elasticity import residual
from pinn.physics.media import MediumValues
from pinn.training.losses import boundary_misfit, masked_difference
from pinn.training.shots import on_shot, shot_batch

CHUNK = 512  # points per vectorised Jacobian: (chunk x rows x parameters) values are alive at once


def term_rows(model, term: str, xyt: Tensor, extra: Tensor | None) -> Tensor:
    """The non-dimensional residual ``(N, 2)`` of loss term ``term`` at points ``xyt`` (already in the current time
    window for the edge and initial terms); ``extra`` holds what the term compares with (initial state, recordings)."""
    s = model.scales
    if term == "pde":
        return model.pde_residual(xyt) / s.force_density
    if term == "bc":
        return boundary_misfit(model, xyt)
    if term == "ic_disp":
        return (model.fields(xyt, "value").displacement - extra) / s.displacement
    if term == "ic_vel":
        return (model.fields(xyt, "velocity").velocity - extra) / s.velocity
    if term == "data":  # displacement recordings; NaN where a component is not recorded
        return masked_difference(model.fields(xyt, "value").displacement, extra) / s.displacement
    # "data_velocity": particle-velocity recordings
    return masked_difference(model.fields(xyt, "velocity").velocity, extra) / s.velocity


def fixed_inputs(model, term: str, xyt: Tensor) -> tuple | None:
    """What a term's rows read that does not depend on the trained parameters, at points ``xyt``: the known material
    (its values and gradients, found by autograd in ``xy``), and for the residual the body force and the damping, as
    ``(material, force, damping)`` of ``(N, ...)`` tensors or ``None``. Computed outside the vectorised Jacobian,
    whose transforms cannot run autograd inside; ``None`` where the term needs none."""
    if term not in ("pde", "bc"):
        return None
    xy = xyt[:, :2]
    material = None
    if model.trainable_material is None:  # a trainable material depends on the parameters: computed inside
        values = model.material_at(xy)
        if isinstance(values, MediumValues):
            material = tuple(getattr(values, f.name) for f in dataclasses.fields(MediumValues))
    if term == "bc":
        return None if material is None else (material, None, None)
    return material, model.problem.shot(model.shot).body_force(xyt), model.problem.damping(xy)


def _dims(given: tuple | None):
    """vmap's ``in_dims`` for fixed inputs: the points' axis of each tensor, ``None`` for an absent entry."""
    if given is None:
        return None
    return tuple(_dims(g) if isinstance(g, tuple) else (None if g is None else 0) for g in given)


@contextmanager
def _given(model, given: tuple | None, one: bool):
    """Within the block ``model`` takes the fixed inputs ``given`` (:func:`fixed_inputs`) instead of computing them;
    ``one``: they are one point's (a vectorising map's slice), made rows of one."""
    if given is None:
        yield
        return
    lift = (lambda t: None if t is None else t[None]) if one else (lambda t: t)
    material, force, damping = given
    known = None if material is None else MediumValues(*map(lift, material))
    if known is not None:
        model.material_at = lambda xy: known
    force, damping = lift(force), lift(damping)
    model.residual_of = lambda fields, xyt: residual(fields, model.material_at(xyt[:, :2]), force, damping)
    try:
        yield
    finally:
        model.__dict__.pop("material_at", None)
        model.__dict__.pop("residual_of", None)


class _Rows(nn.Module):
    """A module whose forward is one term's rows, so that ``functional_call`` can swap the model's parameters."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, term: str, xyt: Tensor, extra: Tensor | None) -> Tensor:
        return term_rows(self.model, term, xyt, extra)


@contextmanager
def _eager(model):
    """Rows are computed without the compiled kernel (vectorising maps would trace it anew)."""
    kernel, model._kernel = model._kernel, None
    try:
        yield
    finally:
        model._kernel = kernel


class LossRows:
    """The rows r of the model's training loss on the current batch and their Jacobian (see the module docstring).

    Args:
        model: The :class:`~pinn.training.module.ElasticPINN`.
        params: The trained parameters, the Jacobian's columns in their order.
    """

    def __init__(self, model, params: list[nn.Parameter]) -> None:
        if model.causal is not None:
            raise ValueError("model.lbfgs.method=levenberg_marquardt needs a plain sum of squares: drop model.causal "
                             "(its weights change with the loss) or use method: lbfgs.")
        self.model, self._batch, self._parts = model, None, None
        names = {id(p): n for n, p in model.named_parameters()}
        self.names = [names[id(p)] for p in params]
        self.wrapper = _Rows(model)

    @property
    def batch(self) -> dict[str, Tensor] | None:
        """The training step's batch; setting it drops what was derived from the previous one."""
        return self._batch

    @batch.setter
    def batch(self, batch: dict[str, Tensor] | None) -> None:
        self._batch, self._parts = batch, None

    def parts(self) -> list[tuple[int, str, Tensor, Tensor | None, float, tuple | None]]:
        """(shot, term, points, extra, sqrt(w / N), fixed inputs) for every term of the batch with a positive
        weight; found once per batch (a step's trial evaluations and iterations share them)."""
        if self._parts is None:
            self._parts = self._find_parts()
        return self._parts

    def _find_parts(self) -> list[tuple[int, str, Tensor, Tensor | None, float, tuple | None]]:
        if self.batch is None:
            raise RuntimeError("LossRows has no batch: the training step sets it before the optimizer steps.")
        model = self.model
        batch = {k: v.to(model.dtype) for k, v in self.batch.items()}
        out = []
        for k in range(model.problem.n_shots):
            b = shot_batch(batch, k) if model.problem.n_shots > 1 else batch
            with on_shot(model, k), torch.no_grad():
                initial = model.to_window(b["initial"])
                targets = model.initial_targets(initial)
                pieces = [("pde", b["interior"], None), ("bc", model.to_window(b["boundary"]), None)]
                if targets is not None:
                    pieces += [("ic_disp", initial, targets[0].detach()), ("ic_vel", initial, targets[1].detach())]
                for key, term in (("observations", "data"), ("velocity_observations", "data_velocity")):
                    if key in b:
                        pieces.append((term, b[key][:, :3], b[key][:, 3:]))
                for term, xyt, extra in pieces:
                    weight = float(model.weight("data" if term == "data_velocity" else term))
                    if weight > 0 and len(xyt) > 0:
                        at = model.to_window(xyt) if term == "pde" else xyt  # where the residual is evaluated
                        out.append((k, term, xyt, extra, math.sqrt(weight / len(xyt)), fixed_inputs(model, term, at)))
        return out

    def rows(self) -> Tensor:
        """r ``(M,)`` at the current parameters."""
        out = []
        with _eager(self.model):
            for k, term, xyt, extra, scale, given in self.parts():
                with on_shot(self.model, k), _given(self.model, given, one=False):
                    out.append((term_rows(self.model, term, xyt, extra) * scale).reshape(-1))
        return torch.cat(out)

    def rows_and_jacobian(self) -> tuple[Tensor, Tensor]:
        """r ``(M,)`` and J ``(M, P)``."""
        params = dict(self.model.named_parameters())
        theta = {"model." + n: params[n].detach() for n in self.names}
        wrapper = self.wrapper

        rows, jacobians = [], []
        model = self.model
        with _eager(model):
            for k, term, xyt, extra, scale, given in self.parts():
                with on_shot(model, k):
                    with _given(model, given, one=False):
                        rows.append((term_rows(model, term, xyt, extra).detach() * scale).reshape(-1))

                    def point(theta, p, e, g, term=term):  # one point's rows (2,)
                        with _given(model, g, one=True):
                            return functional_call(wrapper, theta, (term, p[None], None if e is None else e[None]))[0]

                    jac = vmap(jacrev(point), in_dims=(None, 0, None if extra is None else 0, _dims(given)),
                               chunk_size=CHUNK)(theta, xyt, extra, given)
                columns = [jac["model." + n].reshape(len(xyt) * 2, -1) for n in self.names]
                jacobians.append(torch.cat(columns, dim=1) * scale)
        return torch.cat(rows), torch.cat(jacobians)
