r"""Adaptive loss balancing by gradient norms (learning-rate annealing; Wang, Teng & Perdikaris 2021, "Understanding
and mitigating gradient flow pathologies in physics-informed neural networks", SIAM J. Sci. Comput. 43(5); in the
form of Wang et al. 2023, "An expert's guide to training physics-informed neural networks").

The loss is :math:`\sum_k w_k \lambda_k L_k`, with :math:`w_k` the configured weights and :math:`\lambda_k` adaptive
factors that equalise the size of each term's gradient with respect to the network parameters :math:`\theta`:

.. math::
    \hat\lambda_k = \frac{\sum_j \lVert \nabla_\theta L_j \rVert}{\lVert \nabla_\theta L_k \rVert}, \qquad
    \lambda_k \leftarrow \alpha \lambda_k + (1 - \alpha) \hat\lambda_k,

recomputed every ``every`` steps (one extra forward pass and one backward pass per term) and held in between.
The factors are a buffer of the module, so checkpoints carry them and a resumed run continues with the same loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class GradNormBalancing:
    """Settings of gradient-norm loss balancing (see the module docstring).

    Args:
        every: Steps between updates of the factors.
        alpha: Moving-average factor alpha in [0, 1); 0 takes each new estimate as it is.
    """

    every: int = 100
    alpha: float = 0.9

    def __post_init__(self) -> None:
        if not (isinstance(self.every, int) and self.every >= 1):
            raise ValueError(f"model.balancing.every={self.every} must be an integer >= 1.")
        if not (math.isfinite(self.alpha) and 0 <= self.alpha < 1):
            raise ValueError(f"model.balancing.alpha={self.alpha} must be in [0, 1).")


class Balancer(nn.Module):
    """The adaptive factors :math:`\\lambda_k` of the loss terms ``names``, all 1 at the start."""

    def __init__(self, names: Sequence[str], settings: GradNormBalancing) -> None:
        super().__init__()
        self.names = tuple(names)
        self.settings = settings
        self.register_buffer("factors", torch.ones(len(self.names), dtype=torch.float64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def factor(self, name: str) -> Tensor:
        return self.factors[self.names.index(name)]

    def due(self, step: int) -> bool:
        return step % self.settings.every == 0

    @torch.no_grad()
    def update(self, terms: dict[str, Tensor], params: Sequence[nn.Parameter]) -> dict[str, float]:
        """Move the factors towards the gradient-norm balance of ``terms`` (unweighted, with their graphs)."""
        params = [p for p in params if p.requires_grad]
        norms = {}
        for name, term in terms.items():
            with torch.enable_grad():
                grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            norms[name] = torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None))
        total = sum(norms.values())
        first = int(self.updates) == 0  # the first estimate replaces the initial ones
        alpha = 0.0 if first else self.settings.alpha
        for name, norm in norms.items():
            if norm > 0 and torch.isfinite(total):
                i = self.names.index(name)
                self.factors[i] = alpha * self.factors[i] + (1 - alpha) * (total / norm).to(self.factors.device)
        self.updates += 1
        return {name: float(self.factor(name)) for name in terms}
