"""Callbacks that make a run watchable: field figures and residual histograms in TensorBoard, the HParams tab,
and a progress bar that counts optimisation steps.

Each callback writes through the SummaryWriter of every TensorBoard logger of the trainer and does nothing
without one, so a run with another logger (or none) still trains. Figures and histograms are drawn on global
rank zero only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams as hparams_summary

from pinn import compat
from pinn.io.figures import field_figure, slice_error_figure, to_rgb

VAL_METRICS = ("val/rel_l2", "val/rel_l2_u", "val/rel_l2_v", "val/rel_l2_end")


def summary_writers(trainer: L.Trainer) -> list:
    """The ``SummaryWriter`` of each TensorBoard logger of the trainer."""
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


class _EveryNValidations(Callback):
    """Base of callbacks that act after every n-th validation (sanity checks excluded)."""

    def __init__(self, every_n_validations: int) -> None:
        if every_n_validations < 0:
            raise ValueError(f"{type(self).__name__}: every_n_validations={every_n_validations} must be >= 0 "
                             "(0 switches it off).")
        self.every_n_validations = every_n_validations
        self._validations = 0

    def _due(self, trainer: L.Trainer) -> bool:
        if trainer.sanity_checking or not self.every_n_validations:
            return False
        self._validations += 1
        due = (self._validations - 1) % self.every_n_validations == 0
        return due and trainer.is_global_zero and bool(summary_writers(trainer))


class ValidationFigures(_EveryNValidations):
    """After validation, log one image of the predicted, exact and error fields of u and v at t = start, middle
    and end (see :func:`pinn.io.figures.field_figure`), titled with the step and the validation error.

    Args:
        every_n_validations: Draw after every n-th validation; 0 switches the figure off.
        resolution: Grid points along x and y of each panel.
        tag: TensorBoard image tag.
        dpi: Resolution of the image (dots per inch of a ~12 x 7 inch figure).
    """

    def __init__(
        self, every_n_validations: int = 1, resolution: tuple[int, int] = (81, 81), tag: str = "val/fields",
        dpi: int = 80,
    ) -> None:
        super().__init__(every_n_validations)
        if len(resolution) != 2 or min(resolution) < 2:
            raise ValueError(f"val_figures.resolution={list(resolution)} must be two counts >= 2 (x, y).")
        self.resolution, self.tag, self.dpi = tuple(resolution), tag, dpi

    @torch.no_grad()
    def render(self, pl_module: L.LightningModule, step: int, metrics: Mapping[str, Any]) -> np.ndarray:
        """The figure as an ``(H, W, 3)`` uint8 image."""
        problem = pl_module.problem
        nx, ny = self.resolution
        xyt = problem.scored_domain.grid(nx, ny, 3).to(pl_module.device)  # (3*ny*nx, 3), t slowest
        pred = pl_module(xyt).float().cpu().numpy().reshape(3, ny, nx, 2)
        exact = problem.truth(xyt).float().cpu().numpy().reshape(3, ny, nx, 2)  # closed form or reference
        errors = None
        if all(k in metrics for k in VAL_METRICS):  # the whole validation grid's error, as in the scalars
            errors = {k.removeprefix("val/"): float(metrics[k]) for k in VAL_METRICS}
        grid = xyt.cpu().numpy().reshape(3, ny, nx, 3)
        fig = field_figure(grid[0, 0, :, 0], grid[0, :, 0, 1], grid[:, 0, 0, 2], pred, exact, step, errors, self.dpi,
                           "exact" if problem.has_exact else "reference")
        return to_rgb(fig)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._due(trainer):
            return
        image = self.render(pl_module, trainer.global_step, trainer.callback_metrics)
        slices = getattr(pl_module, "val_slices", None)  # (times, errors) of the last validation
        curve = None
        if slices is not None and len(slices[0]) > 1:
            marching = getattr(pl_module, "marching", None)
            starts = [] if marching is None else [marching.start(k) for k in range(marching.settings.count)]
            curve = to_rgb(slice_error_figure(slices[0].numpy(), slices[1].float().cpu().numpy(), starts,
                                              trainer.global_step, self.dpi))
        for writer in summary_writers(trainer):
            writer.add_image(self.tag, image, trainer.global_step, dataformats="HWC")
            if curve is not None:  # the error against time: where a seismogram goes wrong
                writer.add_image("val/error_in_time", curve, trainer.global_step, dataformats="HWC")


class ResidualHistogram(_EveryNValidations):
    r"""After validation, log histograms of the Navier-Cauchy residual :math:`r = \rho u_{tt} - \nabla\cdot\sigma
    - f` on the interior collocation points: ``residual/x``, ``residual/y`` and ``residual/log10_norm``
    (:math:`\log_{10}|r|`, which shows the heavy tail that a linear histogram squeezes into one bin).

    Args:
        every_n_validations: Log after every n-th validation; 0 switches the histograms off.
        max_points: At most this many interior points (the first of the pool, which is in random order).
    """

    def __init__(self, every_n_validations: int = 1, max_points: int = 4096) -> None:
        super().__init__(every_n_validations)
        if max_points < 1:
            raise ValueError(f"residual_histogram.max_points={max_points} must be >= 1.")
        self.max_points = max_points

    def residual(self, pl_module: L.LightningModule, xyt: torch.Tensor) -> torch.Tensor:
        """Residual ``(N, 2)`` at ``xyt (N, 3)``; gradients are switched on here, even under inference mode."""
        with torch.inference_mode(False), torch.enable_grad():
            return pl_module.pde_residual(xyt.to(pl_module.device).clone()).detach()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pools = getattr(trainer.datamodule, "pools", None) or {}
        if "interior" not in pools or not self._due(trainer):
            return
        r = self.residual(pl_module, pools["interior"][: self.max_points]).float().cpu()  # (N, 2)
        norm = r.norm(dim=-1).clamp_min(torch.finfo(torch.float32).tiny)
        for writer in summary_writers(trainer):
            writer.add_histogram("residual/x", r[:, 0], trainer.global_step)
            writer.add_histogram("residual/y", r[:, 1], trainer.global_step)
            writer.add_histogram("residual/log10_norm", norm.log10(), trainer.global_step)


def flatten_hparams(params: Mapping[str, Any], prefix: str = "") -> dict[str, int | float | str | bool]:
    """Nested hyper-parameters as ``{"a/b": value}`` with values TensorBoard accepts (others become strings)."""
    out: dict[str, int | float | str | bool] = {}
    for key, value in params.items():
        if str(key).startswith("_"):  # Lightning's bookkeeping (e.g. `_instantiator`), not a hyper-parameter
            continue
        name = f"{prefix}{key}"
        if is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        if isinstance(value, Mapping):
            out.update(flatten_hparams(value, f"{name}/"))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        elif isinstance(value, torch.Tensor) and value.numel() == 1:
            out[name] = value.item()
        else:
            out[name] = str(value)
    return out


class HParamsSummary(Callback):
    """Fill TensorBoard's HParams tab: the run's hyper-parameters next to the latest value of each metric.

    The tab reads a metric's value from the run's own scalar of that tag, so it always shows the last logged
    value (the final one once training ends, or the latest of an interrupted run) without logging anything
    twice. Hyper-parameters are the model's and the data module's (``save_hyperparameters``), the problem
    class, the optimizer with its initial learning rate, and ``max_steps``.

    Args:
        metrics: Scalar tags shown as metric columns.
    """

    def __init__(self, metrics: list[str] | None = None) -> None:
        self.metrics = list(metrics) if metrics is not None else [*VAL_METRICS, "train/loss"]

    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | float | str | bool]:
        params: dict[str, Any] = {"model": dict(pl_module.hparams)}
        if is_dataclass(getattr(pl_module, "weights", None)):  # the weights in use, also when left at default
            params["model"]["loss_weights"] = pl_module.weights
        if trainer.datamodule is not None and trainer.datamodule.hparams:
            params["data"] = dict(trainer.datamodule.hparams)
        if hasattr(pl_module, "problem"):
            params["problem"] = type(pl_module.problem).__name__
        if trainer.optimizers:
            group = trainer.optimizers[0].param_groups[0]
            params["optimizer"] = {"class": type(trainer.optimizers[0]).__name__}
            if "lr" in group:  # Levenberg-Marquardt has a damping instead
                params["optimizer"]["lr"] = group.get("initial_lr", group["lr"])
        params["trainer"] = {"max_steps": trainer.max_steps}
        return flatten_hparams(params)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        params = self.collect(trainer, pl_module)
        summaries = hparams_summary(params, dict.fromkeys(self.metrics, 0.0))  # only the tags are used
        for writer in summary_writers(trainer):
            file_writer = compat.event_file_writer(writer)  # hparams summaries go into the run's own event file
            for summary in summaries:
                file_writer.add_summary(summary)


class StepProgressBar(TQDMProgressBar):
    """One bar over the whole fit, counting optimisation steps to ``max_steps`` (the unit PINN runs are
    measured in), with the latest loss and the last validation error: ``step: 1200/20000 [..., loss=0.0123,
    val/rel_l2=0.0456, v_num=3]``. A resumed run starts the bar at its checkpoint's step.

    Args:
        refresh_rate: Redraw every this many steps.
        process_position: Vertical offset of the bars (for several trainings at once).
        leave: Keep finished validation bars on screen.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate, process_position, leave)

    def total_steps(self, trainer: L.Trainer) -> int | None:
        if trainer.max_steps > 0:
            return trainer.max_steps
        if trainer.max_epochs is not None and trainer.max_epochs > 0 and math.isfinite(trainer.num_training_batches):
            return trainer.max_epochs * int(trainer.num_training_batches)
        return None

    def init_train_tqdm(self) -> Tqdm:
        bar = super().init_train_tqdm()
        bar.unit = "step"
        bar.bar_format = "{desc}{n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
        return bar

    def on_train_start(self, trainer: L.Trainer, *_: Any) -> None:
        self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.reset(total=self.total_steps(trainer))
        bar.initial = bar.n = trainer.global_step  # a resumed run continues its count (and its rate is right)
        bar.set_description("step")

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        pass  # one bar for the whole fit, not one per epoch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        bar, step = self.train_progress_bar, trainer.global_step
        if bar is not None and self._should_update(step, bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # also redraws

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float]:
        items = dict(super().get_metrics(trainer, pl_module))
        if "train/loss" in items:
            items = {"loss": items.pop("train/loss"), **items}
        return items
