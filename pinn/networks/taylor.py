r"""Forward Taylor propagation through :class:`pinn.networks.mlp.MLP`: the value and its input derivatives in one pass.

For a hidden layer :math:`h = \sigma(a)`, :math:`a = W h^- + b`, the derivatives along input directions i, j follow
from the chain rule applied layer by layer (Griewank & Walther 2008, *Evaluating Derivatives*, ch. 13):

.. math::
    a_i = W h^-_i, \qquad a_{ij} = W h^-_{ij}, \qquad
    h_i = \sigma'(a)\, a_i, \qquad h_{ij} = \sigma''(a)\, a_i a_j + \sigma'(a)\, a_{ij}.

The value ``(N, W)``, the first-derivative streams ``(D, N, W)`` and the second-derivative streams ``(4, N, W)``
go through each Linear layer as three matmuls, and the backward pass to the weights runs once through this graph
(autograd derives it). The elementwise products of the streams are about a third of an eager training step;
``torch.compile(taylor_streams)`` fuses them, forward and backward, into a few kernels (:mod:`pinn.training.compiled`).
Only the streams the order needs are pushed: t for ``"velocity"``; x, y, t for ``"gradient"``; x, y, t and
xx, yy, tt, xy for ``"pde"``. Random Fourier features enter as a first layer with the same rule (their phase is
linear in the input), and factorised layers through their product weight, so both keep the single pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from pinn.networks.mlp import MLP

Streams = Callable[[MLP, Tensor, str], "tuple[Tensor, Tensor, Tensor | None]"]
DIRECTIONS = {"velocity": (2,), "gradient": (0, 1, 2), "pde": (0, 1, 2)}
# The same as slices: indexing with a slice is a view, where a list of indices would become a tensor made from host
# data on every call (a host-to-device copy, which a captured CUDA graph cannot hold)
_SLICES = {k: slice(v[0], v[-1] + 1) for k, v in DIRECTIONS.items()}


def taylor_applies(net: object) -> bool:
    """Whether :func:`taylor_streams` can differentiate ``net``: a :class:`MLP` whose forward is not overridden."""
    return isinstance(net, MLP) and type(net).forward is MLP.forward and net.activation in ("tanh", "sin")


def _derivatives(a: Tensor, activation: str) -> tuple[Tensor, Tensor, Tensor]:
    """sigma(a), sigma'(a), sigma''(a), reusing sigma: tanh' = 1 - tanh^2, tanh'' = -2 tanh tanh'; sin'' = -sin."""
    if activation == "tanh":
        h = torch.tanh(a)
        d1 = 1 - h * h
        return h, d1, -2 * h * d1
    h = torch.sin(a)
    return h, torch.cos(a), -h


def _pairs(g: Tensor) -> Tensor:
    """Products a_i a_j of the first-derivative streams ``(3, ., W)`` -> ``(4, ., W)`` for xx, yy, tt, xy."""
    return torch.cat([g * g, g[0:1] * g[1:2]])


def hidden_layer(a: Tensor, ga: Tensor, aa: Tensor | None, activation: str) -> tuple[Tensor, Tensor, Tensor | None]:
    """The nonlinearity of a hidden layer on every stream, from its pre-activations ``a`` ``(N, W)``, ``a_i``
    ``(D, N, W)`` and ``a_ij`` ``(4, N, W)`` (or ``None``): h = sigma(a), h_i = sigma'(a) a_i and
    h_ij = sigma'(a) a_ij + sigma''(a) a_i a_j."""
    h, d1, d2 = _derivatives(a, activation)
    hh = None if aa is None else torch.addcmul(d1 * aa, d2, _pairs(ga))
    return h, d1 * ga, hh


def taylor_streams(net: MLP, xyt: Tensor, order: str) -> tuple[Tensor, Tensor, Tensor | None]:
    """Push the streams of ``order`` through ``net``.

    Args:
        net: The MLP (see :func:`taylor_applies`).
        xyt: Points ``(N, 3)``.
        order: ``"velocity"``, ``"gradient"`` or ``"pde"``.

    Returns:
        ``uv`` ``(N, 2)``; first derivatives ``(D, N, 2)`` along :data:`DIRECTIONS` ``[order]``; second derivatives
        ``(4, N, 2)`` in the order xx, yy, tt, xy for ``"pde"``, else ``None``.
    """
    dirs = _SLICES[order]
    second = order == "pde"
    z = (xyt - net.center) * net.scale  # (N, 3)
    # z = (x - c) * s makes dz/dx_i = s_i the same at every point, and z_ij = 0
    if net.fourier is None:
        first, layers = net.hidden[0], net.hidden[1:]
        a = net.shifted(first(z))  # (N, W); the shot's input, a constant, moves no derivative
        c = (first.weight[:, dirs] * net.scale[dirs]).T.unsqueeze(1)  # (D, 1, W): a_i, constant; a_ij = 0
        h, d1, d2 = _derivatives(a, net.activation)
        hh = d2 * _pairs(c) if second else None  # (4, N, W)
        g = d1 * c  # (D, N, W)
    else:
        # gamma = [cos(phi), sin(phi)] with phi = B z: phi_i = s_i B[:, i] is constant and phi_ij = 0, so
        # gamma_i = [-sin(phi), cos(phi)] phi_i and gamma_ij = -gamma phi_i phi_j
        layers = net.hidden
        phase = z @ net.frequencies.T  # (N, m)
        cos, sin = torch.cos(phase), torch.sin(phase)
        c = (net.frequencies[:, dirs] * net.scale[dirs]).T.unsqueeze(1)  # (D, 1, m)
        h = torch.cat([cos, sin], dim=-1)  # (N, 2m)
        g = torch.cat([-sin * c, cos * c], dim=-1)  # (D, N, 2m)
        hh = -h * _pairs(torch.cat([c, c], dim=-1)) if second else None  # (4, N, 2m)
    for i, layer in enumerate(layers):
        a, ga = layer(h), F.linear(g, layer.weight)  # (N, W), (D, N, W)
        a = net.shifted(a) if i == 0 and net.fourier is not None else a
        h, g, hh = hidden_layer(a, ga, F.linear(hh, layer.weight) if second else None, net.activation)
    uv, grad = net.out(h), F.linear(g, net.out.weight)  # (N, 2), (D, N, 2)
    hess = F.linear(hh, net.out.weight) if second else None  # (4, N, 2)
    if net.output_scale != 1.0:
        uv, grad = uv * net.output_scale, grad * net.output_scale
        hess = None if hess is None else hess * net.output_scale
    return uv, grad, hess
