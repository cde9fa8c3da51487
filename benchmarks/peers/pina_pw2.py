"""PW2, the reference plane-wave problem of ``configs/plane_wave.yaml``, trained with PINA.

Domain [0, 1]^2 x [0, 1] (x, y, t); rho = 1, lam = 1, mu = 0.5; a P plane wave at 0.3 rad and an S plane wave at
1.2 rad, |k| = 2 pi, amplitude 1, phase 0. The 2D Navier-Cauchy residual on the interior points, the exact
displacement on the four edges, the exact displacement and velocity at t = 0. PINA's ``FeedForward`` with 3 x 64
tanh (Glorot normal, zero biases) behind a map of the inputs to [-1, 1]; PINA's physics-informed solver (``PINN``)
with Adam lr 1e-3, full batch of fixed points (conditions with ``input`` point sets), trained by PINA's
``Trainer`` (Lightning).

Run inside the PINA environment that ``benchmarks/throughput.py`` creates:

    benchmarks/peers/.venv-pina/bin/python benchmarks/peers/pina_pw2.py --steps 20

Prints one JSON line: the median wall time of the timed steps (each from Lightning's ``on_train_batch_start`` to
its ``on_train_batch_end``: PINA's loss of every condition, backward and the Adam step), the points per second,
the loss at the initial weights (``loss_first``) and the mean time per step from the first timed step's start to
the last one's end (``ms_per_step_loop``, which also holds Lightning's work between steps: one step is one epoch).

The loss matches this project's (sum over terms of weight x mean over points of the squared Euclidean misfit):
PINA's mean squared error averages over the two components too, so every weight is doubled.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import statistics
import time
import warnings

import lightning
import numpy as np
import torch
from pina import Condition, LabelTensor, Trainer
from pina.domain import CartesianDomain
from pina.equation import Equation
from pina.model import FeedForward
from pina.operator import grad
from pina.optim import TorchOptimizer
from pina.problem import SpatialProblem, TimeDependentProblem
from pina.solver import PhysicsInformedSingleModelSolver  # alias PINN (deprecated name)
from pina.weighting import ScalarWeighting

LAM, MU, RHO = 1.0, 0.5, 1.0
WAVES = [("P", 0.3), ("S", 1.2)]  # kind, angle; |k| = 2 pi, amplitude 1, phase 0
K = 2 * math.pi
N_INTERIOR, N_BOUNDARY, N_INITIAL = 4096, 1024, 1024
XYT = ["x", "y", "t"]
WEIGHTS = {"pde": 0.001, "bc": 1.0, "ic_disp": 1.0, "ic_vel": 0.02}


def exact(xyt, lib=np):
    """Exact displacement and velocity ``(N, 2)`` of the two plane waves (numpy arrays or torch tensors)."""
    u, vel = 0.0, 0.0
    for kind, angle in WAVES:
        c = math.sqrt((LAM + 2 * MU) / RHO) if kind == "P" else math.sqrt(MU / RHO)
        d = (math.cos(angle), math.sin(angle)) if kind == "P" else (-math.sin(angle), math.cos(angle))
        arg = K * math.cos(angle) * xyt[:, 0] + K * math.sin(angle) * xyt[:, 1] - c * K * xyt[:, 2]
        s, co = lib.sin(arg), -c * K * lib.cos(arg)
        u = u + lib.stack([d[0] * s, d[1] * s], 1)
        vel = vel + lib.stack([d[0] * co, d[1] * co], 1)
    return u, vel


def navier_cauchy(input_, output_):
    """The two components of rho u_tt - div sigma (a PINA equation: input and output LabelTensors)."""
    first = grad(output_, input_, components=["u", "v"], d=XYT)
    second = grad(first, input_, components=first.labels, d=XYT)  # ddudxdx, ddudxdy, ..., ddvdtdt

    def d2(c, i, j):
        return second.extract([f"dd{c}d{i}d{j}"])

    ru = (RHO * d2("u", "t", "t") - (LAM + 2 * MU) * d2("u", "x", "x") - MU * d2("u", "y", "y")
          - (LAM + MU) * d2("v", "x", "y"))
    rv = (RHO * d2("v", "t", "t") - MU * d2("v", "x", "x") - (LAM + 2 * MU) * d2("v", "y", "y")
          - (LAM + MU) * d2("u", "x", "y"))
    return torch.cat([ru, rv], dim=-1)


def initial_velocity(input_, output_):
    """The misfit of the velocity (u_t, v_t) to the exact one."""
    velocity = grad(output_, input_, components=["u", "v"], d=["t"])  # dudt, dvdt
    return velocity - exact(input_.extract(XYT).as_subclass(torch.Tensor), torch)[1]


def points(scale: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform random interior points, boundary points (once around the perimeter x time) and points at t = 0."""
    rng = np.random.default_rng(seed)
    interior = rng.random((N_INTERIOR * scale, 3))
    s, tau = 4 * rng.random(N_BOUNDARY * scale), rng.random(N_BOUNDARY * scale)
    edge, a = np.minimum(np.floor(s), 3), s - np.minimum(np.floor(s), 3)  # bottom, right, top, left
    x = np.select([edge == 0, edge == 1, edge == 2], [a, np.ones_like(a), 1 - a], np.zeros_like(a))
    y = np.select([edge == 0, edge == 1, edge == 2], [np.zeros_like(a), a, np.ones_like(a)], 1 - a)
    boundary = np.stack([x, y, tau], axis=1)
    initial = np.concatenate([rng.random((N_INITIAL * scale, 2)), np.zeros((N_INITIAL * scale, 1))], axis=1)
    return interior, boundary, initial


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--points-scale", type=int, default=1, help="multiply every point count by this")
    args = p.parse_args()
    warnings.filterwarnings("ignore")  # Lightning's advice on dataloader workers and the like

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    interior, boundary, initial = points(args.points_scale)

    def labelled(a, labels):
        return LabelTensor(torch.tensor(a, dtype=torch.float32), labels)

    class PW2(TimeDependentProblem, SpatialProblem):
        output_variables = ["u", "v"]
        spatial_domain = CartesianDomain({"x": [0, 1], "y": [0, 1]})
        temporal_domain = CartesianDomain({"t": [0, 1]})
        conditions = {
            "pde": Condition(input=labelled(interior, XYT), equation=Equation(navier_cauchy)),
            "bc": Condition(input=labelled(boundary, XYT), target=labelled(exact(boundary)[0], ["u", "v"])),
            "ic_disp": Condition(input=labelled(initial, XYT), target=labelled(exact(initial)[0], ["u", "v"])),
            "ic_vel": Condition(input=labelled(initial, XYT), equation=Equation(initial_velocity)),
        }

    class UnitBox(torch.nn.Module):
        def forward(self, x):  # the box [0, 1]^3 onto [-1, 1]^3, as this project's MLP
            return 2 * x - 1

    net = FeedForward(input_dimensions=3, output_dimensions=2, inner_size=64, n_layers=3, func=torch.nn.Tanh)
    for layer in net.layers:
        torch.nn.init.xavier_normal_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    model = torch.nn.Sequential(UnitBox(), net)
    # MSE averages over the 2 components too: twice each weight gives the sum over components
    weighting = ScalarWeighting({k: 2 * w for k, w in WEIGHTS.items()})
    solver = PhysicsInformedSingleModelSolver(problem=PW2(), model=model, weighting=weighting,
                                              optimizer=TorchOptimizer(torch.optim.Adam, lr=1e-3))

    class Timer(lightning.pytorch.Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []
            self.ends: list[float] = []
            self.first_loss: float | None = None
            self.points: int | None = None

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.starts.append(time.perf_counter())
            if self.points is None:  # every point in every step: the batch is the full set
                self.points = module.get_batch_size(batch)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.ends.append(time.perf_counter())
            if self.first_loss is None:  # the loss of the first step: at the initial weights
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                self.first_loss = float(loss)
            self.last_loss = float(outputs["loss"] if isinstance(outputs, dict) else outputs)

    timer = Timer()
    trainer = Trainer(solver, max_steps=args.warmup + args.steps, batch_size=None, train_size=1.0, val_size=0.0,
                      test_size=0.0, shuffle=False, accelerator="cpu", devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[timer])
    trainer.train()
    starts, ends = timer.starts[args.warmup:], timer.ends[args.warmup:]
    if len(starts) != args.steps:
        raise RuntimeError(f"PINA ran {len(timer.starts)} steps, not {args.warmup + args.steps}")
    ms = statistics.median(e - s for s, e in zip(starts, ends)) * 1e3
    n = (N_INTERIOR + N_BOUNDARY + N_INITIAL) * args.points_scale
    print(json.dumps({
        "library": "pina", "version": importlib.metadata.version("pina-mathlab"),
        "torch": torch.__version__, "ms_per_step": ms, "points_per_s": n / (ms / 1e3), "steps": args.steps,
        "threads": torch.get_num_threads(), "loss_first": timer.first_loss, "loss_last": timer.last_loss,
        "ms_per_step_loop": (ends[-1] - starts[0]) / args.steps * 1e3, "points_per_step": timer.points,
    }))


if __name__ == "__main__":
    main()
