r"""Forward Taylor propagation through :class:`pinn.network.MLP`: the value and its input derivatives in one pass.

For a hidden layer :math:`h = \sigma(a)`, :math:`a = W h^- + b`, the derivatives along input directions i, j follow
from the chain rule applied layer by layer (Griewank & Walther 2008, *Evaluating Derivatives*, ch. 13):

.. math::
    a_i = W h^-_i, \qquad a_{ij} = W h^-_{ij}, \qquad
    h_i = \sigma'(a)\, a_i, \qquad h_{ij} = \sigma''(a)\, a_i a_j + \sigma'(a)\, a_{ij}.

The value and the derivative "streams" are stacked as one ``(K, N, W)`` tensor (stream 0 is the value), so each
Linear layer is a single matmul over ``K * N`` rows, and the backward pass to the weights runs once through this
graph. The elementwise part of a layer is one :class:`torch.autograd.Function` with a hand-written backward, which
keeps eager mode to a few memory passes per stream instead of autograd's generic broadcasting chain.

Streams by order: ``"velocity"`` value, t (K = 2); ``"gradient"`` value, x, y, t (K = 4); ``"pde"`` value, x, y, t,
xx, yy, tt, xy (K = 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from pinn.network import MLP

DIRECTIONS = {"velocity": (2,), "gradient": (0, 1, 2), "pde": (0, 1, 2)}


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


def _third(h: Tensor, d1: Tensor, activation: str) -> Tensor:
    """sigma'''(a): tanh''' = (6 tanh^2 - 2) tanh'; sin''' = -cos."""
    return (6 * h * h - 2) * d1 if activation == "tanh" else -d1


class _TaylorActivation(torch.autograd.Function):
    """Streams ``z`` ``(K, N, W)`` of pre-activations (without bias) -> streams of activations ``(K, N, W)``."""

    @staticmethod
    def forward(ctx, z: Tensor, bias: Tensor, activation: str, second: bool) -> Tensor:
        h, d1, d2 = _derivatives(z[0] + bias, activation)  # (N, W) each
        out = torch.empty_like(z)
        out[0] = h
        g = z[1:4] if second else z[1:]  # first-derivative streams (D, N, W)
        torch.mul(g, d1, out=out[1 : 1 + g.shape[0]])
        if second:
            hh = out[4:8]  # xx, yy, tt, xy
            torch.mul(g, g, out=hh[:3])
            torch.mul(g[0], g[1], out=hh[3])
            hh.mul_(d2).addcmul_(z[4:8], d1)
        ctx.save_for_backward(z, h, d1, d2)
        ctx.activation, ctx.second = activation, second
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        z, h, d1, d2 = ctx.saved_tensors
        gz = torch.empty_like(z)
        # d out / d sigma'(a) collects every stream multiplied by sigma'
        rest = grad[1:]
        gd1 = (rest * z[1:]).sum(0)  # (N, W)
        torch.mul(rest, d1, out=gz[1:])
        ga = torch.addcmul(grad[0] * d1, gd1, d2)
        if ctx.second:
            gh = grad[4:8]
            t = gh * d2  # (4, N, W)
            g = z[1:4]
            gz[1:4].addcmul_(t[:3], g, value=2)  # d(a_i^2) / d a_i = 2 a_i
            gz[1].addcmul_(t[3], g[1])
            gz[2].addcmul_(t[3], g[0])
            gd2 = (gh[:3] * g * g).sum(0).addcmul_(gh[3], g[0] * g[1])
            ga.addcmul_(gd2, _third(h, d1, ctx.activation))
        gz[0] = ga
        return gz, ga.sum(0), None, None


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
    dirs = list(DIRECTIONS[order])
    second = order == "pde"
    first = net.hidden[0]
    a = first((xyt - net.center) * net.scale)  # (N, W)
    # z = (x - c) * s makes da/dx_i = s_i W[:, i] the same at every point, and a_ij = 0
    c = (first.weight[:, dirs] * net.scale[dirs]).T.unsqueeze(1)  # (D, 1, W)
    h, d1, d2 = _derivatives(a, net.activation)
    streams = [h[None], d1 * c]
    if second:
        cc = torch.cat([c * c, c[0:1] * c[1:2]])  # (4, 1, W): xx, yy, tt, xy
        streams.append(d2 * cc)
    x = torch.cat(streams)  # (K, N, W)
    for layer in net.hidden[1:]:
        x = _TaylorActivation.apply(F.linear(x, layer.weight), layer.bias, net.activation, second)  # (K, N, W)
    y = F.linear(x, net.out.weight)  # (K, N, 2)
    uv = y[0] + net.out.bias
    return uv, y[1 : 1 + len(dirs)], y[4:8] if second else None
