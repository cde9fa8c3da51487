"""Sampling strategies on a problem where the residual is local: val/rel_l2 for uniform, Sobol, RAD and RAR-D.

The problem is a manufactured solution, a sharp Gaussian pulse of displacement (s = 0.04) travelling
diagonally across [0, 1]^2 over t in [0, 1], with the body force that makes it exact. Away from the pulse the
field is ~0, so a uniform pool of 500 points puts only a few dozen where there is anything to learn;
residual-based sampling (Wu et al. 2023, CMAME 403, 115671) should move them onto the pulse.

Every method gets the same network, steps, optimizer and interior point budget (RAR-D starts from half of it
and grows to it). Runs the real data module, callback and Lightning module; prints a markdown table of the
final val/rel_l2 (mean, sample standard deviation and every seed). Each run uses one CPU thread; ``--jobs``
runs several at once. The defaults are 12 runs of 3000 steps: 7 min with ``--jobs 2`` on an idle 2-core machine
(about 22 ms a step per run), 64 min on the same machine heavily shared with other work.

    python benchmarks/sampling.py [--steps 3000] [--seeds 3] [--jobs 2]
    python benchmarks/sampling.py --quick        # about a minute: checks that it runs, figures meaningless
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pinn.networks.derivatives import autograd_fields  # noqa: E402
from pinn.physics.elasticity import Material, residual  # noqa: E402
from pinn.problems.closed_form import Domain, Problem  # noqa: E402

METHODS = ("uniform", "sobol", "rad", "rar-d")


class GaussianPulse(Problem):
    r"""Manufactured pulse :math:`\mathbf{u} = A\,\mathbf{d}\,\exp(-|\mathbf{x} - \mathbf{c}(t)|^2 / (2 s^2))`,
    centre :math:`\mathbf{c}(t) = \mathbf{c}_0 + \mathbf{w} t`, fixed direction :math:`\mathbf{d}`; the body
    force :math:`\rho\mathbf{u}_{tt} - \nabla\cdot\sigma(\mathbf{u})` is taken by autograd of the closed form.

    Args:
        width: s, the pulse's standard deviation.
        amplitude: A.
    """

    def __init__(self, width: float = 0.04, amplitude: float = 1.0) -> None:
        super().__init__(Domain(), Material(lam=1.0, mu=0.5, rho=1.0))
        self.s, self.a = width, amplitude
        self.c0, self.w, self.d = (0.3, 0.3), (0.4, 0.4), (math.cos(0.5), math.sin(0.5))

    def _gauss(self, xyt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dx = xyt[:, 0] - self.c0[0] - self.w[0] * xyt[:, 2]
        dy = xyt[:, 1] - self.c0[1] - self.w[1] * xyt[:, 2]
        return self.a * torch.exp(-(dx**2 + dy**2) / (2 * self.s**2)), dx, dy  # (N,) each

    def displacement(self, xyt: Tensor) -> Tensor:
        g, _, _ = self._gauss(xyt)
        return torch.stack([self.d[0] * g, self.d[1] * g], dim=-1)

    def velocity(self, xyt: Tensor) -> Tensor:
        g, dx, dy = self._gauss(xyt)
        g_t = g * (dx * self.w[0] + dy * self.w[1]) / self.s**2
        return torch.stack([self.d[0] * g_t, self.d[1] * g_t], dim=-1)

    def body_force(self, xyt: Tensor) -> Tensor:
        with torch.enable_grad():
            fields = autograd_fields(self.displacement, xyt.detach(), "pde")
            return residual(fields, self.material).detach()  # (N, 2)


def run(method: str, seed: int, args: argparse.Namespace) -> float:
    """Train one model and return its final val/rel_l2."""
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    import lightning as L

    from pinn.training.data import ElasticDataModule
    from pinn.training.module import ElasticPINN, LossWeights
    from pinn.training.resampling import ResidualResampling

    start = time.perf_counter()
    L.seed_everything(seed, verbose=False)
    n = args.n_interior
    adaptive = method in ("rad", "rar-d")
    n_resamples = max(1, math.ceil(args.steps / args.every) - 1)
    dm = ElasticDataModule(
        GaussianPulse(width=args.pulse_width), n_interior=n // 2 if method == "rar-d" else n,
        n_boundary=args.n_boundary, n_initial=args.n_initial, steps_per_epoch=args.steps,
        sampler="sobol" if method == "sobol" else "uniform", val_grid=(41, 41, 11), seed=seed,
    )
    model = ElasticPINN(dm.problem, width=args.width, depth=args.depth,
                        loss_weights=LossWeights(pde=args.pde_weight, ic_vel=0.1))
    callbacks = []
    if adaptive:
        callbacks.append(ResidualResampling(
            method, every_n_steps=args.every, n_candidates=args.candidates, k=1.0, c=1.0,
            n_add=math.ceil((n - n // 2) / n_resamples), max_points=n, chunk_size=4096, log_images=False,
        ))
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                 inference_mode=False, accelerator="cpu")
    trainer = L.Trainer(max_steps=args.steps, callbacks=callbacks, limit_val_batches=0, **quiet)
    trainer.fit(model, datamodule=dm)
    if method == "rar-d":
        assert dm.pools["interior"].shape[0] == n, "RAR-D should have grown to the point budget"
    rel_l2 = float(L.Trainer(**quiet).validate(model, datamodule=dm, verbose=False)[0]["val/rel_l2"])
    print(f"{method} seed {seed}: val/rel_l2 {rel_l2:.3e} ({time.perf_counter() - start:.0f} s)", flush=True)
    return rel_l2


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000, help="training steps per run")
    p.add_argument("--seeds", type=int, default=3, help="seeds per method (0, 1, ...)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--n-interior", type=int, default=500, help="interior point budget")
    p.add_argument("--n-boundary", type=int, default=400)
    p.add_argument("--n-initial", type=int, default=400)
    p.add_argument("--every", type=int, default=300, help="steps between resamples (RAD, RAR-D)")
    p.add_argument("--candidates", type=int, default=20000, help="dense candidate set per resample")
    p.add_argument("--pulse-width", type=float, default=0.04, help="s, the pulse's standard deviation")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--pde-weight", type=float, default=1e-4, help="the pulse's residual is O(A / s^2)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel, one CPU thread each")
    p.add_argument("--quick", action="store_true", help="tiny settings to check that everything runs")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.every, args.candidates, args.n_interior = 60, 1, 20, 2000, 200
    torch.set_num_threads(1)
    jobs = [(m, s) for m in args.methods for s in range(args.seeds)]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {job: pool.submit(run, *job, args) for job in jobs}
        results = {job: f.result() for job, f in futures.items()}
    elapsed = time.perf_counter() - start
    print(f"\nGaussian pulse (s = {args.pulse_width}), {args.steps} steps, {args.n_interior} interior points, "
          f"MLP {args.depth}x{args.width}, {args.seeds} seeds, resample every {args.every} steps from "
          f"{args.candidates} candidates; {elapsed / 60:.1f} min with --jobs {args.jobs}\n")
    print("| sampling | val/rel_l2 mean | std | per seed |")
    print("|---|---|---|---|")
    for m in args.methods:
        vals = [results[(m, s)] for s in range(args.seeds)]
        std = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        print(f"| {m} | {statistics.mean(vals):.3e} | {std:.1e} | {', '.join(f'{v:.3e}' for v in vals)} |")


if __name__ == "__main__":
    main()
