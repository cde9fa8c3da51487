"""A multilayer perceptron ``(x, y, t) -> (u, v)`` with input normalisation from the domain, optionally with random
Fourier features of the input and random weight factorisation of its layers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Activation = Literal["tanh", "sin"]


@dataclass
class FourierFeatures:
    r"""Spatio-temporal random Fourier features of the normalised input z (Tancik et al. 2020; Wang, Wang &
    Perdikaris 2021, "On the eigenvector bias of Fourier feature networks", CMAME 384):

    .. math::
        \gamma(z) = [\cos(B z), \sin(B z)], \qquad B_{kj} \sim \mathcal{N}(0, \sigma_j^2),

    with :math:`\sigma_j` = ``sigma_space`` for x and y and ``sigma_time`` for t. B is drawn once (from the seeded
    global generator) and kept fixed, as a buffer in the checkpoint; the first hidden layer reads :math:`\gamma(z)`.

    Args:
        features: Number of frequencies m (the embedding has 2m entries).
        sigma_space: Standard deviation of the spatial frequencies, in radians per unit of normalised input
            (the domain spans [-1, 1]); about pi x the number of wavelengths across the domain.
        sigma_time: The same for time.
    """

    features: int = 64
    sigma_space: float = 1.0
    sigma_time: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.features, int) and self.features >= 1):
            raise ValueError(f"model.fourier.features={self.features} must be an integer >= 1.")
        for name in ("sigma_space", "sigma_time"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"model.fourier.{name}={value} must be a finite number > 0.")


@dataclass
class Factorization:
    r"""Random weight factorisation (Wang, Wang, Seidman & Perdikaris 2022, "Random weight factorization improves
    the training of continuous neural representations"): each weight matrix is :math:`W = \mathrm{diag}(e^{s}) V`,
    with the scale :math:`s \sim \mathcal{N}(\mu, \sigma^2)` per output unit drawn at initialisation and
    :math:`V = W_0 / e^{s}`, so the network starts as the plain one and trains s and V.

    Args:
        mean: mu, the mean of the log-scales (1.0 in the paper).
        std: sigma, their standard deviation (0.1 in the paper).
    """

    mean: float = 1.0
    std: float = 0.1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std >= 0):
            raise ValueError(f"model.factorization mean={self.mean}, std={self.std} must be finite, std >= 0.")


class FactorizedLinear(nn.Module):
    """A linear layer with the weight ``exp(s)[:, None] * V`` (:class:`Factorization`); ``weight`` is that product,
    so code that reads ``layer.weight`` (the Taylor engine) works unchanged."""

    def __init__(self, layer: nn.Linear, factorization: Factorization) -> None:
        super().__init__()
        s = factorization.mean + factorization.std * torch.randn(layer.out_features)
        self.log_scale = nn.Parameter(s)
        self.direction = nn.Parameter(layer.weight.detach() / torch.exp(s)[:, None])
        self.bias = nn.Parameter(layer.bias.detach().clone())

    @property
    def weight(self) -> Tensor:
        return torch.exp(self.log_scale)[:, None] * self.direction

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


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
        fourier: Random Fourier features of the normalised input (:class:`FourierFeatures`), or ``None``.
        factorization: Random weight factorisation of every layer (:class:`Factorization`), or ``None``.
        shots: How many shots' wavefields the network represents (:mod:`pinn.problems.shots`): with more than one, the
            shot is an extra one-hot input, i.e. a learned vector of the first hidden layer's width added to its
            pre-activation, chosen by the attribute ``shot``.
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
        fourier: FourierFeatures | None = None,
        factorization: Factorization | None = None,
        shots: int = 1,
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
        self.fourier = fourier
        if fourier is not None:
            sigma = torch.tensor([fourier.sigma_space, fourier.sigma_space, fourier.sigma_time])
            self.register_buffer("frequencies", torch.randn(fourier.features, 3) * sigma)  # B (m, 3)
        sizes = [3 if fourier is None else 2 * fourier.features] + [width] * depth
        layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])] + [nn.Linear(width, 2)]
        for layer in layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        if factorization is not None:
            layers = [FactorizedLinear(layer, factorization) for layer in layers]
        self.hidden = nn.ModuleList(layers[:-1])
        self.out = layers[-1]
        if not (isinstance(shots, int) and shots >= 1):
            raise ValueError(f"MLP shots={shots} must be an integer >= 1.")
        self.shots, self.shot = shots, 0  # `shot`: which shot's wavefield the network gives now
        if shots > 1:  # the one-hot input's columns of the first layer, initialised as Glorot's normal would them
            std = math.sqrt(2.0 / (sizes[0] + shots + width))
            self.shot_embedding = nn.Parameter(std * torch.randn(shots, width))

    def shifted(self, a: Tensor) -> Tensor:
        """The first hidden layer's pre-activation ``a`` ``(N, W)`` plus the current shot's input (unchanged with
        one shot); it does not depend on (x, y, t), so no derivative sees it."""
        return a if self.shots == 1 else a + self.shot_embedding[self.shot]

    def act(self, z: Tensor) -> Tensor:
        return torch.tanh(z) if self.activation == "tanh" else torch.sin(z)

    def forward(self, xyt: Tensor) -> Tensor:
        z = (xyt - self.center) * self.scale  # (N, 3) in [-1, 1]^3 times input_scale
        if self.fourier is not None:
            phase = z @ self.frequencies.T  # (N, m)
            z = torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)  # (N, 2m)
        for i, layer in enumerate(self.hidden):
            a = layer(z)
            z = self.act(self.shifted(a) if i == 0 else a)  # (N, width)
        out = self.out(z)  # (N, 2)
        return out if self.output_scale == 1.0 else out * self.output_scale

    def extra_repr(self) -> str:
        return f"activation={self.activation}" + ("" if self.fourier is None else f", fourier={self.fourier}")


