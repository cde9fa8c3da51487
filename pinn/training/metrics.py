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
        starts: The start time of each time window (:mod:`pinn.training.windows`), whose errors are then reported as
            ``rel_l2_window/<k>``; ``None`` for none.
    """

    full_state_update = False

    def __init__(self, t_range: tuple[float, float] = (0.0, 1.0), slices: int = 1,
                 starts: list[float] | None = None) -> None:
        super().__init__()
        self.starts = list(starts or [])
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

    def times(self) -> Tensor:
        """The slices' times ``(slices,)``."""
        return torch.linspace(self.t0, self.t1, self.slices, dtype=torch.float64)

    def compute(self) -> dict[str, Tensor]:
        """``rel_l2``, ``rel_l2_u``, ``rel_l2_v`` (without the first slice), ``rel_l2_end`` and ``slices``, the error
        of each slice ``(slices,)``."""
        kept = slice(1, None) if self.slices > 1 else slice(None)
        err, ref = self.err2[kept].sum(0), self.ref2[kept].sum(0)  # (2,)
        per_slice = self.per_slice()
        return {
            "rel_l2": (err.sum() / ref.sum()).sqrt(),
            "rel_l2_u": (err[0] / ref[0]).sqrt(),
            "rel_l2_v": (err[1] / ref[1]).sqrt(),
            "rel_l2_end": per_slice[-1],
            "slices": per_slice,
            **self._windows(),
        }

    def _windows(self) -> dict[str, Tensor]:
        """The error over the slices in each time window; the first slice is left out as in ``rel_l2``."""
        times = self.times().to(self.err2.device)
        starts = torch.tensor(self.starts, dtype=torch.float64, device=times.device)
        k = torch.searchsorted(starts, times + 1e-9 * (self.t1 - self.t0), right=True) - 1  # (slices,)
        if self.slices > 1:
            k[0] = -1
        out = {}
        for j in range(len(self.starts)):
            err, ref = self.err2[k == j].sum(), self.ref2[k == j].sum()
            out[f"rel_l2_window/{j}"] = (err / ref).sqrt() if ref > 0 else err.new_tensor(float("nan"))
        return out


def log_training_step(model, loss: Tensor, terms: dict[str, Tensor]) -> None:
    """Log one training step of :class:`~pinn.training.module.ElasticPINN`: ``train/loss`` and its terms, ``lr`` (or
    ``lm/damping`` under Levenberg-Marquardt), and where they apply the causal weights' minimum, the time window and
    the trained material."""
    log = dict(on_step=True, on_epoch=False)
    model.log_dict({f"train/loss_{k}": v.detach() for k, v in terms.items()}, **log)
    model.log("train/loss", loss.detach(), prog_bar=True, **log)
    group = model.trainer.optimizers[0].param_groups[0]
    if "damping" in group:  # Levenberg-Marquardt: its damping in place of a learning rate
        model.log("lm/damping", float(group["damping"]), **log)
    else:
        model.log("lr", group["lr"], **log)
    if model.causal_weights is not None:
        model.log("causal/weight_min", model.causal_weights.min(), **log)
    if model.marching is not None:
        model.log("window", float(model.marching.current), **log)
    if model.trainable_material is not None:
        # tensors, not floats: converting to a float every step would make a GPU synchronise every step
        model.log_dict({f"material/{k}": v for k, v in model.trainable_material.scalars().items()}, **log)


def log_validation(model) -> None:
    """Log the validation metric of a validation epoch (``val/rel_l2`` and the rest), keep its errors per slice for
    the figure of the error in time, and the recovered material's error where the truth is known."""
    from pinn.physics.inversion import material_errors

    values = model.val_metric.compute()  # already global: the metric sums its states over processes
    model.val_slices = (model.val_metric.times(), values.pop("slices"))
    # sync_dist averages the equal copies on the ranks; without it Lightning warns that epoch values are per-rank.
    model.log("val/rel_l2", values.pop("rel_l2").float(), prog_bar=True, sync_dist=True)
    model.log_dict({f"val/{k}": v.float() for k, v in values.items()}, sync_dist=True)
    model.val_metric.reset()
    if model.trainable_material is not None and model.truth_known():
        errors = material_errors(model.trainable_material, model.problem.medium, model.problem.scored_domain)
        model.log("inverse/rel_error", errors.pop("all"), sync_dist=True)
        model.log_dict({f"inverse/rel_error/{k}": v for k, v in errors.items()}, sync_dist=True)


def log_test(model) -> None:
    """Log the test metric of a test epoch as ``test/rel_l2`` and the rest."""
    values = model.test_metric.compute()
    values.pop("slices")
    model.log_dict({f"test/{k}": v.float() for k, v in values.items()}, sync_dist=True)
    model.test_metric.reset()
