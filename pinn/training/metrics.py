"""Relative L2 error of the displacement per time slice, accumulated over batches and processes."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class RelativeL2(Metric):
    r"""Relative L2 error :math:`\|\hat u - u\|_2 / \|u\|_2` of the displacement vector and of each component, over
    the validation grid's time slices.

    Each point falls in the slice of its time (the grid's times are ``slices`` evenly spaced times over ``t_range``).
    ``rel_l2`` leaves out the first slice, the initial state the network is trained on, which would otherwise lower
    the error it reports; ``rel_l2_end`` is the error on the last slice, the end of the seismogram a user reads.
    The states are sums of squares per slice, reduced by summation across processes, so the value over a grid split
    into batches (or over ranks) equals the value over the whole grid at once.

    Args:
        t_range: The time interval (t0, t1) of the grid.
        slices: Its number of time slices (1: one slice, nothing left out).
    """

    full_state_update = False

    def __init__(self, t_range: tuple[float, float] = (0.0, 1.0), slices: int = 1) -> None:
        super().__init__()
        self.t0, self.t1 = float(t_range[0]), float(t_range[1])
        self.slices = int(slices)
        self.add_state("err2", default=torch.zeros(self.slices, 2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ref2", default=torch.zeros(self.slices, 2, dtype=torch.float64), dist_reduce_fx="sum")

    def slice_of(self, t: Tensor) -> Tensor:
        """The slice of each time ``(N,)``: the nearest of the grid's times."""
        if self.slices == 1:
            return torch.zeros_like(t, dtype=torch.long)
        s = (t.detach().to(torch.float64) - self.t0) / (self.t1 - self.t0) * (self.slices - 1)
        return s.round().long().clamp(0, self.slices - 1)

    def update(self, pred: Tensor, target: Tensor, t: Tensor | None = None) -> None:
        """Accumulate ``pred`` and ``target`` ``(N, 2)`` at times ``t`` ``(N,)`` (``None``: all in slice 0)."""
        index = torch.zeros(pred.shape[0], dtype=torch.long, device=pred.device) if t is None else self.slice_of(t)
        self.err2.index_add_(0, index, ((pred.detach() - target) ** 2).to(torch.float64))
        self.ref2.index_add_(0, index, (target**2).to(torch.float64))

    def per_slice(self) -> Tensor:
        """The error of each slice ``(slices,)``; NaN where the truth is zero (a medium at rest)."""
        err, ref = self.err2.sum(-1), self.ref2.sum(-1)
        return torch.where(ref > 0, (err / ref.clamp(min=1e-300)).sqrt(), torch.full_like(ref, float("nan")))

    def compute(self) -> dict[str, Tensor]:
        kept = slice(1, None) if self.slices > 1 else slice(None)
        err, ref = self.err2[kept].sum(0), self.ref2[kept].sum(0)  # (2,)
        return {
            "rel_l2": (err.sum() / ref.sum()).sqrt(),
            "rel_l2_u": (err[0] / ref[0]).sqrt(),
            "rel_l2_v": (err[1] / ref[1]).sqrt(),
            "rel_l2_end": self.per_slice()[-1],
        }
