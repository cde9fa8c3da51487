"""The ``Fields`` record: the displacement and the partial derivatives the physics reads.

The derivative engines (:mod:`pinn.networks.derivatives`) fill it from a network, the closed-form problems from
their exact solutions; the physics (:mod:`pinn.physics.elasticity`) reads it and nothing else of the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Fields:
    """Displacement and its partial derivatives at N points; every entry is ``(N,)`` or ``None`` if not computed."""

    u: Tensor
    v: Tensor
    u_x: Tensor | None = None
    u_y: Tensor | None = None
    u_t: Tensor | None = None
    v_x: Tensor | None = None
    v_y: Tensor | None = None
    v_t: Tensor | None = None
    u_xx: Tensor | None = None
    u_yy: Tensor | None = None
    u_xy: Tensor | None = None
    u_tt: Tensor | None = None
    v_xx: Tensor | None = None
    v_yy: Tensor | None = None
    v_xy: Tensor | None = None
    v_tt: Tensor | None = None

    @property
    def displacement(self) -> Tensor:
        """``(N, 2)`` stack of (u, v)."""
        return torch.stack([self.u, self.v], dim=-1)

    @property
    def velocity(self) -> Tensor:
        """``(N, 2)`` stack of (u_t, v_t)."""
        return torch.stack([self.u_t, self.v_t], dim=-1)
