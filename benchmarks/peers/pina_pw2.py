"""PW2, the reference plane-wave problem of ``configs/plane_wave.yaml``, trained with PINA.

Domain [0, 1]^2 x [0, 1] (x, y, t); rho = 1, lam = 1, mu = 0.5; a P plane wave at 0.3 rad and an S plane wave at
1.2 rad, |k| = 2 pi, amplitude 1, phase 0. The 2D Navier-Cauchy residual on the interior points, the exact
displacement on the four edges, the exact displacement and velocity at t = 0. PINA's ``FeedForward`` with 3 x 64
tanh (Glorot normal, zero biases) behind a map of the inputs to [-1, 1]; PINA's physics-informed solver (``PINN``)
with Adam lr 1e-3, full batch of fixed points (conditions with ``input`` point sets), trained by PINA's
``Trainer`` (Lightning).

Run inside the PINA environment that ``benchmarks/throughput.py`` creates:

    ~/.cache/pinn-benchmark-peers/pina/bin/python benchmarks/peers/pina_pw2.py --steps 20

Prints one JSON line: the median wall time of the timed steps (each from Lightning's ``on_train_batch_start`` to
its ``on_train_batch_end``: PINA's loss of every condition, backward and the Adam step), the points per second,
the loss at the initial weights (``loss_first``) and the mean time per step from the first timed step's start to
the last one's end (``ms_per_step_loop``, which also holds Lightning's work between steps: one step is one epoch).

The loss matches this project's (sum over terms of weight x mean over points of the squared Euclidean misfit):
PINA's mean squared error averages over the two components too, so every weight is doubled.
"""

from __future__ import annotations

import importlib.metadata
import statistics
import time
import warnings

import lightning
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
from pw2 import LAM, MU, RHO, WEIGHTS, arguments, exact, points, report, synchronize

XYT = ["x", "y", "t"]



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



def main() -> None:
    args = arguments(__doc__.splitlines()[0])
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
            if len(self.starts) == args.warmup:  # the first timed step starts with the device idle
                synchronize(args.device)
            self.starts.append(time.perf_counter())
            if self.points is None:  # every point in every step: the batch is the full set
                self.points = module.get_batch_size(batch)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            if len(self.ends) + 1 == args.warmup + args.steps:  # the last one ends when the device has finished
                synchronize(args.device)
            self.ends.append(time.perf_counter())
            loss = (outputs["loss"] if isinstance(outputs, dict) else outputs).detach()
            if self.first_loss is None:  # the loss of the first step: at the initial weights
                self.first_loss = float(loss)
            self.last_loss = loss  # read once, at the end: a read per step would wait for the device each step

    timer = Timer()
    trainer = Trainer(solver, max_steps=args.warmup + args.steps, batch_size=None, train_size=1.0, val_size=0.0,
                      test_size=0.0, shuffle=False, accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
                      logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[timer])
    trainer.train()
    starts, ends = timer.starts[args.warmup:], timer.ends[args.warmup:]
    if len(starts) != args.steps:
        raise RuntimeError(f"PINA ran {len(timer.starts)} steps, not {args.warmup + args.steps}")
    ms = statistics.median(e - s for s, e in zip(starts, ends)) * 1e3
    report("pina", importlib.metadata.version("pina-mathlab"), torch.__version__, ms, args, torch.get_num_threads(),
           loss_first=timer.first_loss, loss_last=float(timer.last_loss),
           ms_per_step_loop=(ends[-1] - starts[0]) / args.steps * 1e3, points_per_step=timer.points)


if __name__ == "__main__":
    main()
