"""The derivative engines that fill the physics' :class:`~pinn.physics.fields.Fields` record.

A network maps ``(N, 3)`` points ``(x, y, t)`` to ``(N, 2)`` displacements ``(u, v)``. The physics reads the
displacement and exactly the partial derivatives it needs from a :class:`Fields`; an engine computes them.
The loss terms ask for as little as they need (``order``):

- ``"value"``:    u, v                                   (Dirichlet boundary, data, validation)
- ``"velocity"``: u, v, u_t, v_t                         (initial velocity)
- ``"gradient"``: u, v and all first derivatives          (strain, stress, traction)
- ``"pde"``:      first derivatives plus u_xx, u_yy, u_xy, u_tt and the same for v (Navier-Cauchy residual)

:func:`autograd_fields` is the reference engine (nested reverse mode) and works for any differentiable callable.
:func:`taylor_fields` is the fast engine for :class:`pinn.networks.mlp.MLP` (:mod:`pinn.networks.taylor`): it pushes the value and
the needed derivatives forward through the layers in a single pass (forward Taylor mode), so the backward pass to
the weights runs once through one graph instead of through nested derivative graphs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from pinn.networks.mlp import MLP
from pinn.networks.taylor import DIRECTIONS, Streams, taylor_applies, taylor_streams
from pinn.physics.fields import Fields

Order = Literal["value", "velocity", "gradient", "pde"]
ORDERS: tuple[str, ...] = ("value", "velocity", "gradient", "pde")
FIRST = ("u_x", "u_y", "u_t", "v_x", "v_y", "v_t")
SECOND = ("u_xx", "u_yy", "u_xy", "u_tt", "v_xx", "v_yy", "v_xy", "v_tt")


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"derivative order {order!r} is not one of {ORDERS}.")


def _grad(out: Tensor, inp: Tensor) -> Tensor:
    # create_graph keeps the derivative differentiable w.r.t. the weights (the loss backpropagates through it).
    return torch.autograd.grad(out.sum(), inp, create_graph=torch.is_grad_enabled())[0]


def autograd_fields(net: Callable[[Tensor], Tensor], xyt: Tensor, order: Order = "pde") -> Fields:
    """Reference engine: nested reverse-mode autograd through any callable ``(N, 3) -> (N, 2)``.

    First derivatives take one backward pass per output component; each second derivative column
    (xx/xy, yy, tt) one more, so ``"pde"`` costs 2 + 6 backward passes.
    """
    _check_order(order)
    if order == "value":
        uv = net(xyt)  # (N, 2)
        return Fields(uv[:, 0], uv[:, 1])
    with torch.enable_grad():
        xyt = xyt.detach().requires_grad_(True)
        uv = net(xyt)  # (N, 2)
        u, v = uv[:, 0], uv[:, 1]
        du, dv = _grad(u, xyt), _grad(v, xyt)  # (N, 3) each
        f = Fields(u, v, u_x=du[:, 0], u_y=du[:, 1], u_t=du[:, 2], v_x=dv[:, 0], v_y=dv[:, 1], v_t=dv[:, 2])
        if order == "velocity":
            f.u_x = f.u_y = f.v_x = f.v_y = None
            return f
        if order == "pde":
            du_x, dv_x = _grad(f.u_x, xyt), _grad(f.v_x, xyt)
            f.u_xx, f.u_xy, f.v_xx, f.v_xy = du_x[:, 0], du_x[:, 1], dv_x[:, 0], dv_x[:, 1]
            f.u_yy, f.v_yy = _grad(f.u_y, xyt)[:, 1], _grad(f.v_y, xyt)[:, 1]
            f.u_tt, f.v_tt = _grad(f.u_t, xyt)[:, 2], _grad(f.v_t, xyt)[:, 2]
        return f


def taylor_fields(net: MLP, xyt: Tensor, order: Order = "pde", streams: Streams | None = None) -> Fields:
    """Fast engine for :class:`MLP`: forward Taylor propagation (see :mod:`pinn.networks.taylor`), one pass for all orders.

    Args:
        net: The MLP (see :func:`pinn.networks.taylor.taylor_applies`).
        xyt: Points ``(N, 3)``.
        order: Which derivatives to compute (see the module docstring).
        streams: A replacement for :func:`~pinn.networks.taylor.taylor_streams` (a compiled one), or ``None``.
    """
    _check_order(order)
    if not taylor_applies(net):
        raise ValueError(
            f"the taylor derivative engine needs a pinn.networks.mlp.MLP with tanh or sin, got {type(net).__name__}; "
            "use engine='autograd' (or 'auto') for other networks."
        )
    if order == "value":
        uv = net(xyt)  # (N, 2)
        return Fields(uv[:, 0], uv[:, 1])
    uv, grad, hess = (streams or taylor_streams)(net, xyt, order)  # (N, 2), (D, N, 2), (4, N, 2) | None
    f = Fields(uv[:, 0], uv[:, 1])
    for k, d in enumerate(DIRECTIONS[order]):
        setattr(f, "u_" + "xyt"[d], grad[k, :, 0])
        setattr(f, "v_" + "xyt"[d], grad[k, :, 1])
    if hess is not None:
        f.u_xx, f.u_yy, f.u_tt, f.u_xy = hess[..., 0].unbind()
        f.v_xx, f.v_yy, f.v_tt, f.v_xy = hess[..., 1].unbind()
    return f


Engine = Literal["auto", "autograd", "taylor"]
ENGINES: tuple[str, ...] = ("auto", "autograd", "taylor")


def compute_fields(
    net: Callable[[Tensor], Tensor], xyt: Tensor, order: Order = "pde", engine: Engine = "auto",
    streams: Streams | None = None,
) -> Fields:
    """Fields of ``net`` at ``xyt`` ``(N, 3)`` with the chosen engine.

    ``"auto"`` takes :func:`taylor_fields` where it applies (:func:`taylor_applies`) and :func:`autograd_fields`
    for any other network. ``streams`` goes to :func:`taylor_fields`.
    """
    if engine not in ENGINES:
        raise ValueError(f"derivative engine {engine!r} is not one of {ENGINES}.")
    if engine == "taylor" or (engine == "auto" and taylor_applies(net)):
        return taylor_fields(net, xyt, order, streams)
    return autograd_fields(net, xyt, order)
