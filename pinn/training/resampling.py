"""ResidualResampling: the callback that redraws the interior pool from PDE residuals every N steps.

The callback decides *when* (a pure function of the global step) and supplies the residual; the data module
does the *how* (:meth:`pinn.training.data.ElasticDataModule.resample`, with the rules of :mod:`pinn.training.sampling`).

Candidate residuals are evaluated in chunks of ``chunk_size`` points: each chunk needs the second derivatives
of the network, whose autograd graph costs far more memory than the points, so peak memory is set by the chunk
and not by the candidate count.

With several processes (DDP) every rank holds the same data-module generator and so draws the same candidates;
each rank evaluates a contiguous share of them, the shares are all-gathered, and every rank then makes the same
draw from the same residuals: the global pool stays identical on all ranks, the same pool a single process
would choose (up to floating-point differences of the residual), and the work is split between ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from pinn.training.sampling import Method, ResampleRule


def chunked(
    fn: Callable[[Tensor], Tensor], points: Tensor, chunk_size: int, device: torch.device | None = None
) -> Tensor:
    """``fn`` applied to ``points`` ``(M, d)`` ``chunk_size`` rows at a time; returns ``(M,)`` on the CPU.

    Only one chunk (moved to ``device``) and its autograd graph are alive at a time.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1.")
    parts = [fn(chunk.to(device) if device is not None else chunk).detach().cpu()
             for chunk in points.split(chunk_size)]
    return torch.cat(parts) if parts else points.new_zeros(0)


def sharded(fn: Callable[[Tensor], Tensor], points: Tensor, rank: int, world_size: int,
            all_gather: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn`` over ``points`` ``(M, d)`` split across ranks: this rank evaluates its contiguous share,
    ``all_gather`` (``(s,) -> (world_size, s)``) collects them, and every rank returns the full ``(M,)``."""
    if world_size == 1:
        return fn(points)
    share = math.ceil(points.shape[0] / world_size)
    local = fn(points[rank * share:(rank + 1) * share])  # (<= share,)
    padded = torch.zeros(share, dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local  # shares must be equal-sized to gather; the padding is cut off below
    return all_gather(padded).reshape(-1)[: points.shape[0]].cpu()


def scatter_figure(points: Tensor, title: str):
    """Matplotlib figure of interior points ``(N, 3)``: the (x, y) plane coloured by t, and (x, t)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    p = points.detach().cpu().numpy()
    fig, (ax_xy, ax_xt) = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
    sc = ax_xy.scatter(p[:, 0], p[:, 1], c=p[:, 2], s=2, cmap="viridis")
    ax_xy.set(xlabel="x", ylabel="y", title=title, aspect="equal")
    fig.colorbar(sc, ax=ax_xy, label="t")
    ax_xt.scatter(p[:, 0], p[:, 2], s=2, c="k", alpha=0.4)
    ax_xt.set(xlabel="x", ylabel="t", title="(x, t) projection")
    return fig


class ResidualResampling(L.Callback):
    """Redraws the interior collocation pool every ``every_n_steps`` training steps with RAD or RAR-D
    (Wu et al. 2023, CMAME 403, 115671), using the current network's Navier-Cauchy residual norm.

    A resample runs after the optimizer step that makes ``global_step`` a multiple of ``every_n_steps`` (never at
    step 0 nor at ``max_steps``), so the next step trains on the new pool. It logs ``resample/moved`` (points new
    to the pool), ``resample/pool_size``, ``resample/residual_mean`` and, to TensorBoard, a histogram of the
    candidate residuals and a scatter image of the new interior pool.

    Args:
        method: ``rad`` (replace the pool) or ``rar-d`` (append ``n_add`` points, keep the old ones, up to
            ``max_points``).
        every_n_steps: Training steps between resamples.
        n_candidates: Dense candidate set drawn afresh at every resample (RAD needs at least the pool size).
        k: Residual exponent of the density r^k / mean(r^k) + c.
        c: Uniform floor of that density.
        n_add: RAR-D: points added per resample.
        max_points: RAR-D: cap on the interior pool; ``null`` is twice ``data.n_interior``.
        chunk_size: Candidates per residual evaluation; bounds the memory of a resample.
        log_images: Also log the residual histogram and the scatter image (TensorBoard only).
    """

    def __init__(
        self,
        method: Method = "rad",
        every_n_steps: int = 1000,
        n_candidates: int = 65536,
        k: float = 1.0,
        c: float = 1.0,
        n_add: int = 256,
        max_points: int | None = None,
        chunk_size: int = 4096,
        log_images: bool = True,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"ResidualResampling every_n_steps={every_n_steps} must be >= 1.")
        if chunk_size < 1:
            raise ValueError(f"ResidualResampling chunk_size={chunk_size} must be >= 1.")
        self.rule = ResampleRule(method, n_candidates, k, c, n_add, max_points)
        self.every_n_steps = every_n_steps
        self.chunk_size = chunk_size
        self.log_images = log_images

    def due(self, step: int) -> bool:
        """Whether a resample follows the optimizer step that brought the trainer to ``step``.

        Also at ``max_steps``: the run does not train on that pool, but its last checkpoint then holds it, so a run
        resumed with a larger ``max_steps`` goes on exactly as one uninterrupted run would.
        """
        return step > 0 and step % self.every_n_steps == 0

    def residual_fn(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Callable[[Tensor], Tensor]:
        """Candidates ``(M, 3)`` -> residual norms ``(M,)``, chunked, and sharded over ranks when there are several."""

        def local(points: Tensor) -> Tensor:
            return chunked(pl_module.residual_norm, points, self.chunk_size, pl_module.device)

        def gather(t: Tensor) -> Tensor:
            return pl_module.all_gather(t.to(pl_module.device))

        return lambda points: sharded(local, points, trainer.global_rank, trainer.world_size, gather)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int):
        step = trainer.global_step
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # mid-accumulation: the global step has not moved, and must not trigger a second resample
        if not self.due(step):
            return
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "resample"):
            raise ValueError("ResidualResampling needs an ElasticDataModule (the `data:` section); none is attached.")
        was_training = pl_module.training
        pl_module.eval()
        stats = dm.resample(self.rule, self.residual_fn(trainer, pl_module))
        pl_module.train(was_training)
        self._log(trainer, step, stats, dm.pools["interior"])

    def _log(self, trainer: L.Trainer, step: int, stats: dict, pool: Tensor) -> None:
        metrics = {"resample/moved": float(stats["moved"]), "resample/pool_size": float(stats["pool_size"])}
        r = stats["residual"]
        if r is not None:
            metrics["resample/residual_mean"] = float(r.mean())
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            if not (self.log_images and trainer.is_global_zero and isinstance(logger, TensorBoardLogger)):
                continue
            if r is not None:
                logger.experiment.add_histogram("resample/residual", r.float(), global_step=step)
            fig = scatter_figure(pool, f"interior points, step {step}")
            logger.experiment.add_figure("resample/interior_points", fig, global_step=step, close=True)

