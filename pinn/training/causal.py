r"""Causal weighting of the PDE residual in time (Wang, Sankaran & Perdikaris 2022, "Respecting causality is all you
need for training physics-informed neural networks", CMAME 421).

The interior points are split into M equal slices of the time interval; with :math:`L_i` the mean squared
(non-dimensional) residual of slice i, the PDE loss is

.. math::
    \mathcal{L}_r = \frac{1}{M}\sum_{i=1}^{M} w_i L_i, \qquad w_i = \exp\Big(-\varepsilon \sum_{k<i} L_k\Big),

with the weights held constant (no gradient flows through them). A slice trains only once the slices before it fit,
so the network cannot fit late times with a solution that the initial state does not lead to. The weights need no
state: they follow from the current residuals, so a resumed run computes the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Causal:
    """Causal weighting of the PDE residual over time slices (see the module docstring).

    Args:
        slices: Number of equal time slices M, >= 2.
        epsilon: Causality strength; the weight of a slice is exp(-epsilon x the summed residual losses of the slices
            before it). With the non-dimensional losses of this project, 1 to 100.
    """

    slices: int = 16
    epsilon: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.slices, int) and self.slices >= 2):
            raise ValueError(f"model.causal.slices={self.slices} must be an integer >= 2.")
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"model.causal.epsilon={self.epsilon} must be a finite number > 0.")

    def slice_losses(self, t: Tensor, squared: Tensor, t_range: tuple[float, float]) -> Tensor:
        """Mean of ``squared`` ``(N,)`` over each time slice ``(M,)``; an empty slice counts as 0."""
        t0, t1 = t_range
        index = ((t.detach() - t0) / (t1 - t0) * self.slices).long().clamp(0, self.slices - 1)  # (N,)
        sums = squared.new_zeros(self.slices).index_add(0, index, squared)
        counts = torch.bincount(index, minlength=self.slices).to(squared.dtype).clamp(min=1)
        return sums / counts

    def weights(self, losses: Tensor) -> Tensor:
        """``w_i = exp(-epsilon sum_{k<i} L_k)`` ``(M,)``, detached."""
        before = torch.cumsum(losses.detach(), 0) - losses.detach()
        return torch.exp(-self.epsilon * before)

    def loss(self, t: Tensor, squared: Tensor, t_range: tuple[float, float]) -> tuple[Tensor, Tensor]:
        """The causally weighted residual loss and the weights ``(M,)``."""
        losses = self.slice_losses(t, squared, t_range)
        w = self.weights(losses)
        return (w * losses).mean(), w
