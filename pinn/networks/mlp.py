"""A plain multilayer perceptron ``(x, y, t) -> (u, v)`` with input normalisation from the domain."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

Activation = Literal["tanh", "sin"]


class MLP(nn.Module):
    r"""Fully connected network :math:`\mathbb{R}^3 \to \mathbb{R}^2`.

    The input is first mapped affinely from the domain box ``[lower, upper]`` to ``[-1, 1]^3``
    (:math:`z = (x - c) \cdot s`, ``c`` the centre, ``s = 2 / (upper - lower)``), then through ``depth`` hidden
    layers of ``width`` units with the activation, then a linear output layer. Weights use Glorot (Xavier)
    normal initialisation, biases zero (Glorot & Bengio 2010).

    Args:
        lower: Lower corner of the domain ``(x, y, t)``.
        upper: Upper corner of the domain ``(x, y, t)``.
        width: Units per hidden layer.
        depth: Number of hidden layers.
        activation: ``"tanh"`` or ``"sin"``.
        input_scale: The normalised inputs are multiplied by this before the first layer, a first-layer frequency
            like SIREN's omega_0 (Sitzmann et al. 2020): values > 1 start the network with finer features, for
            problems several wavelengths across.
        output_scale: The output layer's value is multiplied by this (the problem's displacement scale U, see
            :mod:`pinn.physics.units`), so the layers work on O(1) numbers while the output is in SI.
    """

    def __init__(
        self,
        lower: Sequence[float] = (0.0, 0.0, 0.0),
        upper: Sequence[float] = (1.0, 1.0, 1.0),
        width: int = 64,
        depth: int = 4,
        activation: Activation = "tanh",
        input_scale: float = 1.0,
        output_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"MLP width={width} and depth={depth} must both be >= 1.")
        if activation not in ("tanh", "sin"):
            raise ValueError(f"MLP activation={activation!r} must be 'tanh' or 'sin'.")
        lo, hi = torch.tensor(lower, dtype=torch.float32), torch.tensor(upper, dtype=torch.float32)
        if lo.shape != (3,) or hi.shape != (3,) or not bool((hi > lo).all()):
            raise ValueError(f"MLP bounds lower={list(lower)} upper={list(upper)} must be 3 values with upper > lower.")
        self.register_buffer("center", (lo + hi) / 2)
        if not (math.isfinite(input_scale) and input_scale > 0):
            raise ValueError(f"MLP input_scale={input_scale} must be a finite number > 0.")
        self.register_buffer("scale", input_scale * 2 / (hi - lo))
        self.activation = activation
        self.output_scale = float(output_scale)  # a plain float: not in the state dict, set by the problem
        sizes = [3] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(width, 2)
        for layer in [*self.hidden, self.out]:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def act(self, z: Tensor) -> Tensor:
        return torch.tanh(z) if self.activation == "tanh" else torch.sin(z)

    def forward(self, xyt: Tensor) -> Tensor:
        z = (xyt - self.center) * self.scale  # (N, 3) in [-1, 1]^3 times input_scale
        for layer in self.hidden:
            z = self.act(layer(z))  # (N, width)
        out = self.out(z)  # (N, 2)
        return out if self.output_scale == 1.0 else out * self.output_scale

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


