"""Accuracy against wall time of each training technique and their combinations, on the reference problem.

Every run is ``pinn fit -c configs/plane_wave.yaml`` with the overrides of its variant, run in this process with
validation every ``--val-every`` steps on the config's grid (the same ``val/rel_l2`` the main job logs). The clock
starts at the first training step; a run stops at its wall-time budget. The table gives, per variant, the error at
3 minutes and at the end, the best error, and the time to reach 3.41e-2 (DeepXDE's error after 5000 steps on this
problem), 1e-3 and 1e-4. ``main job`` is the config as shipped (Levenberg-Marquardt), ``main job with L-BFGS`` the
one before it; ``t in [0, 3]`` is the same waves over three times
as many periods (the main job's settings, more points in time). Run from the repository root, on an otherwise idle
machine:

    python benchmarks/accuracy.py                         # every variant (about an hour on 2 cores)
    python benchmarks/accuracy.py --variants "main job"   # one of them
    python benchmarks/accuracy.py --budget 20             # a quick check that the script works
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pinn.cli import cli_main  # noqa: E402

CONFIG = str(ROOT / "configs" / "plane_wave.yaml")
# What each technique adds, as command-line overrides of configs/plane_wave.yaml (100 Adam steps, then
# Levenberg-Marquardt in float64 on a 3 x 32 network). The other variants start from the previous main job, kept as
# LBFGS: a 3 x 64 network, 500 Adam steps, then L-BFGS (10 iterations a step, 50 pairs) with the stall watch; the
# Adam-only baseline is that network without a second stage.
LBFGS = ["--model.width", "64", "--model.lbfgs.method", "lbfgs", "--model.lbfgs.start_step", "500",
         "--model.lbfgs.max_iter", "10", "--model.lbfgs.history_size", "50"]
BASE = ["--model.width", "64", "--model.lbfgs", "null"]
FOURIER = ["--model.fourier.features", "32", "--model.fourier.sigma_space", "1.0", "--model.fourier.sigma_time", "1.0"]
F64 = LBFGS + ["--model.lbfgs.float64", "true"]
F32 = LBFGS + ["--model.lbfgs.float64", "false", "--model.lbfgs.patience", "null"]  # before the stall watch
VARIANTS: dict[str, tuple[list[str], float]] = {  # name: (overrides, budget in seconds)
    "adam": (BASE, 180),
    "adam + causal": (BASE + ["--model.causal.slices", "16", "--model.causal.epsilon", "1.0"], 180),
    # the balancer sets the terms' relative weights itself: the config's hand-set weights (1e-3 on the residual)
    # would multiply its factors, so they are set to 1 here
    "adam + balancing": (BASE + ["--model.balancing.every", "100", "--model.loss_weights.pde", "1.0",
                                 "--model.loss_weights.ic_vel", "1.0"], 180),
    "adam + fourier": (BASE + FOURIER, 180),
    "adam + factorization": (BASE + ["--model.factorization.mean", "1.0"], 180),
    "adam + lbfgs (float32)": (F32, 180),
    "adam + lbfgs (float64)": (F64, 180),
    "main job": ([], 600),
    "main job with L-BFGS (the previous one)": (F64, 600),
    "main job before (float32, no stall watch)": (F32, 600),
    "fourier + lbfgs (float64), 10 min": (FOURIER + F64, 600),
    "t in [0, 3]": (FOURIER + F64 + ["--model.fourier.sigma_time", "3.0", "--data.n_interior", "8192",
                                     "--data.problem.init_args.domain.t", "[0.0, 3.0]",
                                     "--data.val_grid", "[41, 41, 31]"], 900),
}
MILESTONES = (3.41e-2, 1e-3, 1e-4)


class Clock(L.Callback):
    """Wall time from the first training step; ``val/rel_l2`` of every validation; stop at the budget."""

    def __init__(self, budget: float) -> None:
        self.budget, self.start, self.vals = budget, None, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if time.perf_counter() - self.start > self.budget:
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self.start is not None:
            value = float(trainer.callback_metrics["val/rel_l2"])
            self.vals.append((time.perf_counter() - self.start, trainer.global_step, value))


def run(name: str, overrides: list[str], budget: float, val_every: int, save_dir: str) -> dict:
    clock = Clock(budget)
    args = ["-c", CONFIG, *overrides, "--trainer.logger.init_args.save_dir", save_dir,
            "--trainer.logger.init_args.name", name.replace(" ", "_"), "--trainer.enable_progress_bar", "false",
            "--trainer.max_steps", "1000000", "--data.steps_per_epoch", str(val_every),
            "--trainer.check_val_every_n_epoch", "1", "--checkpoint.every_n_train_steps", "1000000",
            "--val_figures.every_n_validations", "0", "--residual_histogram.every_n_validations", "0"]
    cli = cli_main(args, run=False)
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    vals = clock.vals
    at = {m: next((t for t, _, v in vals if v <= m), None) for m in MILESTONES}
    before3 = [v for t, _, v in vals if t <= 180]
    return {"name": name, "steps": cli.trainer.global_step, "wall_s": vals[-1][0] if vals else math.nan,
            "at_3min": before3[-1] if before3 else math.nan, "final": vals[-1][2] if vals else math.nan,
            "best": min(v for _, _, v in vals) if vals else math.nan, "to": at, "curve": vals}


def fmt_t(t: float | None) -> str:
    return "-" if t is None else f"{t:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--budget", type=float, default=None, help="seconds per run (default: each variant's own)")
    parser.add_argument("--val-every", type=int, default=10, help="steps between validations")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--save-dir", default="lightning_logs/accuracy")
    parser.add_argument("--json", default=None, help="also write the results, curves included, to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.variants:
        overrides, budget = VARIANTS[name]
        rows.append(run(name, overrides, args.budget or budget, args.val_every, args.save_dir))
        r = rows[-1]
        print(f"# {name}: {r['steps']} steps, final {r['final']:.3e}, best {r['best']:.3e}", flush=True)
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          "threads, float32 unless stated; times from the first training step")
    print("| variant | budget | steps | val/rel_l2 at 3 min | at the end | best | to 3.41e-2 | to 1e-3 | to 1e-4 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        to = r["to"]
        print(f"| {r['name']} | {args.budget or VARIANTS[r['name']][1]:.0f} s | {r['steps']} | {r['at_3min']:.2e} | "
              f"{r['final']:.2e} | {r['best']:.2e} | {fmt_t(to[3.41e-2])} | {fmt_t(to[1e-3])} | {fmt_t(to[1e-4])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
