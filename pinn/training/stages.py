r"""The quasi-Newton stage that follows Adam: ``torch.optim.LBFGS`` with a strong-Wolfe line search, or
Levenberg-Marquardt (``method: levenberg_marquardt``; :mod:`pinn.optim.levenberg_marquardt`), which needs no
history and suits small networks (see ``LBFGSStage``).

Adam finds the basin; L-BFGS (Liu & Nocedal 1989; Nocedal & Wright 2006, alg. 7.4 and 3.6) then converges within
it far faster than a first-order method, the standard recipe for PINNs (Raissi, Perdikaris & Karniadakis 2019;
Rathore et al. 2024, "Challenges in training PINNs: a loss landscape perspective"). One training step of this stage
is one call of ``LBFGS.step``, which runs up to ``max_iter`` iterations, each a line search of one or more loss
evaluations.

How the stage fits the rest of a run:

- **Switch.** At global step ``start_step`` the trainer's optimizer is replaced by L-BFGS over the same parameters
  (network and trainable material, in one group: L-BFGS has no per-group options) and any learning-rate scheduler
  is dropped (the line search chooses the step length).
- **Checkpoints.** A checkpoint records which stage it was written in; its optimizer state is then L-BFGS's own
  ``state_dict``: the curvature pairs (``old_dirs``, ``old_stps``, ``ro``), ``H_diag``, the previous gradient,
  loss and direction, the step length and the counters, all of which a resumed run restores, so it continues bit
  for bit.
- **Changing points.** The curvature pairs are differences of gradients of one loss function. When the points
  change (adaptive resampling, RAR-D growth) the loss function changes with them, so the stage starts afresh: its
  history is cleared and the next step begins with a steepest-descent step. With ``keep_history`` only the pair
  that would span the change is dropped: a fresh draw from the same distribution changes the loss's curvature
  little, so the pairs of the old points still give a quasi-Newton direction, and the points can be redrawn often
  without starting the stage over. Mini-batches would change the loss at every step, so the stage needs full
  batches.
- **Fixed objective.** The line search compares losses of one function; adaptive loss weights are frozen while
  this stage runs (they keep the values they had when Adam stopped).
- **float64.** With ``float64: true`` the stage runs in double precision: at the switch the network (and any
  trainable material) is converted to float64, the points are read in float64, and checkpoints of the stage hold
  float64 weights, which a resumed run loads into a float64 network. Adam runs at float32 speed, while L-BFGS,
  whose line search stalls once loss differences reach float32 rounding, goes on converging.
- **Several processes.** The losses the line search compares are averaged over processes (the gradients already
  are), so every process takes the same step and the copies of the network stay equal.
- **Stalls.** Once the line search stops finding descent (float32 rounding, or a network that has fitted its fixed
  points and no more), further steps cost time and change nothing. With ``patience`` the stage watches its training
  loss: after ``patience`` steps without a relative improvement of ``min_improvement`` on the best loss so far it
  draws fresh points for every pool (a fixed point set is over-fitted: the same network scores worse on fresh
  points), which clears the history; after ``refreshes`` such redraws it ends the fit instead of spinning. The
  watch (best loss, steps since, redraws) is run state, saved in the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.types import LRSchedulerConfig
from torch import nn

from pinn.optim.levenberg_marquardt import LevenbergMarquardt, check_settings
from pinn.training.gauss_newton import LossRows

LARGE = 6000  # trained weights above which Levenberg-Marquardt's dense normal matrix warns of its cost


@dataclass
class LBFGSStage:
    """Settings of the L-BFGS stage (see the module docstring); the names follow ``torch.optim.LBFGS``.

    Args:
        start_step: Global step at which L-BFGS replaces the first optimizer (Adam), >= 0; with time windows,
            steps into each window, or a list, one entry per window, the last repeating for the windows after it
            (``[1400, 100]``: 1400 steps into the first window, 100 into each later one).
        lr: Initial step length of each line search (1 is the natural step of a quasi-Newton method).
        max_iter: Iterations per training step (default 20 for L-BFGS, 1 for Levenberg-Marquardt); checkpoints,
            validation and logging count training steps.
        max_eval: Loss evaluations per training step at most (default ``max_iter * 5 // 4``, torch's default).
        history_size: Curvature pairs kept (m in Nocedal & Wright).
        line_search: ``strong_wolfe`` (Nocedal & Wright alg. 3.5/3.6) or ``none`` (fixed step ``lr``).
        tolerance_grad: A step stops when the largest gradient entry is at most this.
        tolerance_change: A step stops when the loss or the parameters change by less than this.
        float64: Run the stage in float64 (see the module docstring); a run already in float64
            (``trainer.precision: 64-true``) needs no switch.
        patience: Steps without a relative improvement of ``min_improvement`` of the training loss after which the
            stage counts as stalled (see *Stalls* in the module docstring); ``None`` never stops.
        min_improvement: The relative decrease of the best training loss that counts as progress.
        refreshes: Fresh point draws on a stall before the next stall ends the fit.
        method: ``lbfgs``, or ``levenberg_marquardt``: damped Gauss-Newton on the loss's residual rows
            (:mod:`pinn.optim.levenberg_marquardt`, :mod:`pinn.training.gauss_newton`), ``max_iter`` iterations a
            step, each with a new Jacobian; it builds a dense normal matrix of P x P for P trained weights, so it
            suits networks of a few thousand weights. ``lr``, ``max_eval``, ``history_size``, ``line_search`` and
            the tolerances are L-BFGS's only.
        damping: Levenberg-Marquardt's initial damping (> 0); it then adapts and is saved in checkpoints.
        keep_history: When the points are redrawn, keep the curvature pairs and drop only the pair that would span
            the change of points (see *Changing points* in the module docstring), instead of starting afresh.
    """

    start_step: int | list[int] = 0
    lr: float = 1.0
    max_iter: int | None = None
    max_eval: int | None = None
    history_size: int = 50
    line_search: Literal["strong_wolfe", "none"] = "strong_wolfe"
    tolerance_grad: float = 1e-9
    tolerance_change: float = 1e-12
    float64: bool = False
    patience: int | None = None
    min_improvement: float = 1e-3
    refreshes: int = 3
    method: Literal["lbfgs", "levenberg_marquardt"] = "lbfgs"
    damping: float = 1e-3
    keep_history: bool = False

    def __post_init__(self) -> None:
        if self.patience is not None and not (isinstance(self.patience, int) and self.patience >= 1):
            raise ValueError(f"model.lbfgs.patience={self.patience} must be an integer >= 1 or null.")
        if not (isinstance(self.refreshes, int) and self.refreshes >= 0):
            raise ValueError(f"model.lbfgs.refreshes={self.refreshes} must be an integer >= 0.")
        if not (math.isfinite(self.min_improvement) and 0 <= self.min_improvement < 1):
            raise ValueError(f"model.lbfgs.min_improvement={self.min_improvement} must be in [0, 1).")
        if self.max_iter is None:  # a Levenberg-Marquardt iteration builds a whole Jacobian: one a step
            self.max_iter = 1 if self.method == "levenberg_marquardt" else 20
        check_steps(self.start_step, "model.lbfgs.start_step", 0)
        for name in ("max_iter", "history_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"model.lbfgs.{name}={value} must be an integer >= 1.")
        if self.max_eval is not None and not (isinstance(self.max_eval, int) and self.max_eval >= 1):
            raise ValueError(f"model.lbfgs.max_eval={self.max_eval} must be an integer >= 1 or null.")
        if self.method not in ("lbfgs", "levenberg_marquardt"):
            raise ValueError(f"model.lbfgs.method={self.method!r} must be 'lbfgs' or 'levenberg_marquardt'.")
        check_settings(self.damping)
        if self.line_search not in ("strong_wolfe", "none"):
            raise ValueError(f"model.lbfgs.line_search={self.line_search!r} must be 'strong_wolfe' or 'none'.")
        for name in ("lr", "tolerance_grad", "tolerance_change"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
                raise ValueError(f"model.lbfgs.{name}={value} must be a finite number "
                                 f"{'> 0' if name == 'lr' else '>= 0'}.")

    def start_in(self, window: int) -> int:
        """Steps into time window ``window`` (0 without windows) at which the stage starts."""
        return per_window(self.start_step, window)

    def optimizer(self, params: list[nn.Parameter], model=None) -> torch.optim.Optimizer:
        """``torch.optim.LBFGS`` over ``params`` with these settings, or with ``method: levenberg_marquardt``
        :class:`~pinn.optim.levenberg_marquardt.LevenbergMarquardt` on ``model``'s loss rows."""
        if self.method == "levenberg_marquardt":
            n = sum(p.numel() for p in params)
            if n > LARGE:
                rank_zero_warn(f"Levenberg-Marquardt on {n} trained weights: its dense normal matrix holds {n} x {n} "
                               f"values ({n * n * 8 / 1e9:.1f} GB in float64) and costs about (rows x {n}^2) "
                               "operations an iteration; it suits a few thousand weights (a smaller network, or "
                               "method: lbfgs).")
            return LevenbergMarquardt(params, LossRows(model, params), damping=self.damping,
                                      iterations=self.max_iter)
        return torch.optim.LBFGS(
            params, lr=self.lr, max_iter=self.max_iter, max_eval=self.max_eval, history_size=self.history_size,
            line_search_fn=None if self.line_search == "none" else "strong_wolfe",
            tolerance_grad=self.tolerance_grad, tolerance_change=self.tolerance_change,
        )


def per_window(value: int | list[int], window: int) -> int:
    """A setting given once or per time window (a list whose last entry repeats), for window ``window``."""
    return value if isinstance(value, int) else value[min(window, len(value) - 1)]


def check_steps(value, name: str, low: int) -> None:
    """Raise unless ``value`` is an integer >= ``low`` or a non-empty list of them."""
    entries = value if isinstance(value, list) else [value]
    if not entries or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in entries):
        raise ValueError(f"{name}={value} must be an integer >= {low}, or a list of them, one per time window.")


def check_full_batch(datamodule) -> None:
    """Raise unless every training step sees the same points (a changing loss breaks the curvature pairs)."""
    if datamodule is not None and getattr(datamodule, "batch_size", None) is not None:
        raise ValueError(f"model.lbfgs needs full batches, but data.batch_size={datamodule.batch_size}: set "
                         "data.batch_size to null (L-BFGS builds its curvature model from one fixed loss function).")


def clear_history(optimizer: torch.optim.Optimizer, keep_pairs: bool = False) -> None:
    """Forget the curvature pairs and previous step, as if L-BFGS started now (the points have changed);
    Levenberg-Marquardt keeps no history of the points, only its damping. With ``keep_pairs`` the pairs stay and
    only the next one, whose gradient difference would mix the two loss functions, is skipped: torch's L-BFGS stores
    a pair (y, s) = (g_new - g_prev, t d) only when y . s > 1e-10, so a zero last direction d skips it, and the next
    direction comes from the kept pairs."""
    if not isinstance(optimizer, torch.optim.LBFGS):
        return
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    if keep_pairs and state.get("d") is not None:
        state["d"].zero_()
    else:
        optimizer.state.clear()


def advance_stage(module, batch=None) -> None:
    """Before each training step: switch to L-BFGS ``module.lbfgs.start_step`` steps after the stage began (the run's
    or the time window's start, ``module.stage_start()``), and clear its history when the
    points have changed since it began (see the module docstring)."""
    trainer = module.trainer
    version = getattr(trainer.datamodule, "pool_version", 0)
    window = 0 if module.marching is None else module.marching.current
    if module.stage == "adam" and trainer.global_step >= module.stage_start() + module.lbfgs.start_in(window):
        check_full_batch(trainer.datamodule)
        if module.lbfgs.float64 and module.dtype != torch.float64:
            if trainer.world_size > 1:  # DDP's gradient buckets keep the dtype they were built with
                raise ValueError("model.lbfgs.float64 cannot switch precision under several processes: set "
                                 "--trainer.precision 64-true for the whole run instead.")
            module.double()
        # no scheduler: the line search sets the step length
        switch_optimizers(trainer, module.lbfgs.optimizer(module.trained_parameters(), module))
        module.stage, module.pool_version = "lbfgs", version
    elif module.stage == "lbfgs" and version != module.pool_version:
        clear_history(trainer.optimizers[0], module.lbfgs.keep_history)
        module.pool_version = version
    if module.stage == "lbfgs" and isinstance(trainer.optimizers[0], LevenbergMarquardt):
        trainer.optimizers[0].residuals.batch = batch  # its rows are this step's points


@dataclass
class StallWatch:
    """The L-BFGS stage's watch for stalls (see *Stalls* in the module docstring); run state."""

    best: float = math.inf
    since: int = 0
    redraws: int = 0

    def update(self, loss: float, settings: LBFGSStage) -> str | None:
        """Record one step's training loss; ``"redraw"`` or ``"stop"`` when the stage has stalled, else ``None``."""
        if settings.patience is None or not math.isfinite(loss):
            return None
        if loss < self.best * (1 - settings.min_improvement):
            self.best, self.since = loss, 0
            return None
        self.since += 1
        if self.since < settings.patience:
            return None
        if self.redraws >= settings.refreshes:
            return "stop"
        self.redraws += 1
        self.best, self.since = math.inf, 0  # fresh points: a new loss, so progress is measured afresh
        return "redraw"

    def state_dict(self) -> dict:
        return {"best": self.best, "since": self.since, "redraws": self.redraws}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.since, self.redraws = float(state["best"]), int(state["since"]), int(state["redraws"])


def watch_stall(module, loss) -> None:
    """After an L-BFGS step with ``lbfgs.patience``: feed the step's loss to the stall watch and act on a stall (fresh
    points; then the end of the time window, or of the fit)."""
    trainer = module.trainer
    action = module.stall.update(float(loss), module.lbfgs)
    if action == "redraw":
        rank_zero_info(f"L-BFGS stalled at step {trainer.global_step}: fresh points for every pool.")
        trainer.datamodule.redraw()
    elif action == "stop" and module.marching is not None and module.marching.current + 1 < module.windows.count:
        module.marching.finish_early()  # the next step starts the next window
    elif action == "stop":
        rank_zero_info(f"L-BFGS stalled at step {trainer.global_step} after {module.lbfgs.refreshes} fresh draws: "
                       "the fit ends here.")
        trainer.should_stop = True


def switch_optimizers(trainer, configured) -> None:
    """Hand the trainer the optimizer (and step-wise scheduler) of ``configured``, what ``configure_optimizers``
    returns, in place of the ones it trains with: a new window starts with fresh moments and a fresh schedule, as a
    run does, and the L-BFGS stage replaces the first optimizer and drops its schedule."""
    if isinstance(configured, dict):
        trainer.strategy.optimizers = [configured["optimizer"]]
        scheduler = configured["lr_scheduler"]
        trainer.strategy.lr_scheduler_configs = [LRSchedulerConfig(scheduler["scheduler"], interval="step")]
    else:
        trainer.strategy.optimizers = [configured]
        trainer.strategy.lr_scheduler_configs = []
