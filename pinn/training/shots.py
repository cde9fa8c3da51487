r"""Training on several shots (:mod:`pinn.problems.shots`): one wavefield per shot, the material shared.

The loss of a problem of S shots is the sum over shots of the loss of each, every term (PDE residual, edges,
initial state, data misfit) with that shot's body force, initial state and recordings:

.. math::
    L = \sum_{k=1}^{S} \sum_j w_j L_j^{(k)}.

Every shot is evaluated on the same collocation, boundary and initial points (a shot needs as many points as a
problem of one shot would), and residual-driven resampling ranks a point by its residual over all shots,
:math:`\sqrt{\sum_k |r^{(k)}|^2}`. The shots' wavefields come from ``model.shot_network``:

- ``input`` (the default): one network with the shot as an extra one-hot input (:class:`~pinn.networks.mlp.MLP`
  ``shots``), so the shots share what their wavefields have in common (the medium's response, shifted);
- ``networks``: one network per shot, each like the network of a problem of one shot (the first shot's is
  ``model.net``, the others ``model.shot_nets``).

``benchmarks/shots.py`` measured both (docs/inverse.md, Shots): at the same width the shared network was more
accurate on every shot, at the same cost per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

from pinn.training.data import shot_key
from pinn.training.losses import loss_terms

ShotNetwork = Literal["networks", "input"]
POINTS = ("interior", "boundary", "initial")


def shot_networks(shots: int, kind: ShotNetwork, make: Callable[[int], nn.Module]) -> tuple[nn.Module, nn.ModuleList]:
    """The first shot's network and the other shots' (none with ``input``); ``make(s)`` builds a network of ``s``
    shot inputs."""
    if kind == "input":
        return make(shots), nn.ModuleList()
    nets = [make(1) for _ in range(shots)]
    return nets[0], nn.ModuleList(nets[1:])


def shot_net(model) -> nn.Module:
    """The network of the model's current shot."""
    return model.net if model.shot == 0 or not model.shot_nets else model.shot_nets[model.shot - 1]


@contextmanager
def on_shot(model, k: int) -> Iterator[None]:
    """Make shot ``k`` the one ``model`` computes (its network, body force, initial state and truth) inside the
    ``with`` block; the first shot after it."""
    shared = getattr(model.net, "shots", 1) > 1  # one network, the shot its input
    model.shot = k
    if shared:
        model.net.shot = k
    try:
        yield
    finally:
        model.shot = 0
        if shared:
            model.net.shot = 0


def shot_batch(batch: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    """Shot ``k``'s part of a training batch: the points, which every shot shares, and its own recordings under the
    keys of a problem of one shot."""
    out = {name: batch[name] for name in POINTS}
    for key in ("observations", "velocity_observations"):
        if shot_key(key, k) in batch:
            out[key] = batch[shot_key(key, k)]
    return out


def shot_loss_terms(model, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor | None]:
    """The loss terms of ``batch`` summed over the shots (:func:`~pinn.training.losses.loss_terms` of each), and
    the causal weights (the smallest of each slice over the shots, ``None`` without causal weighting)."""
    n = model.problem.n_shots
    if n == 1:
        return loss_terms(model, model.problem, batch)
    total, weights = {}, None
    for k in range(n):
        with on_shot(model, k):
            terms, w = loss_terms(model, model.problem, shot_batch(batch, k))
        total = {name: total.get(name, 0) + value for name, value in terms.items()}
        weights = w if weights is None or w is None else torch.minimum(weights, w)
    return total, weights


def shot_residual_norm(model, xyt: Tensor) -> Tensor:
    """The residual's norm over all shots at each point ``(N,)``, detached: what adaptive sampling ranks by."""
    rows = []
    # No graph through the weights: the Taylor engine then runs as a plain forward pass, and the autograd engine
    # enables gradients itself for the input derivatives it needs.
    with torch.no_grad():
        for k in range(model.problem.n_shots):
            with on_shot(model, k):
                rows.append(model.pde_residual(xyt))  # (N, 2)
    return torch.cat(rows, dim=-1).norm(dim=-1)  # one shot: the norm of its residual, as without shots


def update_metric(model, metric, xyt: Tensor) -> None:
    """Add every shot's displacement and truth at grid points ``xyt`` ``(N, 3)`` to ``metric``: its relative L2 is
    then over all shots together."""
    for k in range(model.problem.n_shots):
        with on_shot(model, k):
            metric.update(model(xyt), model.problem.shot(k).truth(xyt), xyt[:, 2])


def shot_displacements(model, xyt: Tensor) -> Tensor:
    """Every shot's displacement at ``xyt`` ``(N, 3)``: ``(N, 2 S)``, columns (u, v) of shot 0, then of shot 1, ..."""
    out = []
    for k in range(model.problem.n_shots):
        with on_shot(model, k):
            out.append(model(xyt))
    return torch.cat(out, dim=-1)


def check_shots(model) -> None:
    """Raise where the model's settings do not combine with several shots."""
    if model.problem.n_shots > 1 and model.marching is not None:
        raise ValueError("model.windows with several shots (data.problem.shots): time windows march one wavefield; "
                         "drop model.windows or give one shot.")
    if model.shot_network not in ("networks", "input"):
        raise ValueError(f"model.shot_network={model.shot_network!r} must be 'networks' or 'input'.")
