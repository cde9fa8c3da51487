"""Relative L2 error of the displacement, accumulated over batches and processes."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class RelativeL2(Metric):
    r"""Relative L2 error :math:`\|\hat u - u\|_2 / \|u\|_2` over all points seen, for the displacement vector
    and for each component.

    The states are sums of squares, reduced by summation across processes, so the value over a grid split
    into batches (or over ranks) equals the value over the whole grid at once.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("err2", default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ref2", default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate ``pred`` and ``target`` of shape ``(N, 2)``."""
        self.err2 += ((pred.detach() - target) ** 2).sum(0).to(torch.float64)
        self.ref2 += (target**2).sum(0).to(torch.float64)

    def compute(self) -> dict[str, Tensor]:
        return {
            "rel_l2": (self.err2.sum() / self.ref2.sum()).sqrt(),
            "rel_l2_u": (self.err2[0] / self.ref2[0]).sqrt(),
            "rel_l2_v": (self.err2[1] / self.ref2[1]).sqrt(),
        }
