"""Several shots: one network per shot against one network with the shot as an input, on a small survey.

A two-layer section 300 m x 200 m under a free surface, absorbing elsewhere, three shots (a vertical Ricker force of
6 Hz peaking at 0.17 s, Gaussian width 20 m, at x = 75, 150 and 225 m, 60 m deep) recorded for 0.3 s by 7 surface
geophones (particle velocity). The material is known: each design trains the forward problem, PDE, edges and initial
state plus the recordings (the data an inverse run fits; the loss weights and scales of configs/inverse_layers.yaml),
on 512 collocation points per shot, for the same number of Adam steps from the same seed, and is scored against each
shot's Devito reference on a 31 x 21 x 11 grid over the whole section and time window (relative L2 of the
displacement). Rows:

- ``networks``: one network per shot (``model.shot_network: networks``), width W each;
- ``input``: one network of width W with the shot as a one-hot input (``model.shot_network: input``);
- ``input, same size``: the same with the width that gives it as many weights as the three networks together.

ms/step is the mean CPU time of a training step after the first 20 (one thread: the wall time of a quiet core, and
less disturbed than it by other jobs on a shared machine). Run from the repository root (about four minutes on one
core; the references are computed once, cached under references/):

    OMP_NUM_THREADS=1 python benchmarks/shots.py
    OMP_NUM_THREADS=1 python benchmarks/shots.py --steps 50     # a quick check that the script works
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pinn.physics.media import Layered, Properties  # noqa: E402
from pinn.physics.sources import PointForce, Ricker  # noqa: E402
from pinn.problems import Boundaries, Domain, WaveProblem  # noqa: E402
from pinn.problems.receivers import ReceiverLine, Receivers  # noqa: E402
from pinn.problems.reference import ReferenceSettings  # noqa: E402
from pinn.problems.shots import Shot  # noqa: E402
from pinn.training.data import ElasticDataModule  # noqa: E402
from pinn.training.losses import LossWeights  # noqa: E402
from pinn.training.module import ElasticPINN  # noqa: E402
from pinn.training.observations import ReferenceObservations  # noqa: E402
from pinn.training.shots import on_shot  # noqa: E402

SHOTS_X = (75.0, 150.0, 225.0)


def survey() -> WaveProblem:
    """The small survey of the module docstring."""
    layers = [Properties(vp=1600.0, vs=900.0, rho=1900.0), Properties(vp=2400.0, vs=1350.0, rho=2100.0)]
    shots = [Shot([PointForce((x, 60.0), 1e6, (0.0, 1.0), 20.0, Ricker(6.0, 0.17))]) for x in SHOTS_X]
    return WaveProblem(Domain((0.0, 300.0), (0.0, 200.0), (0.0, 0.3)), Layered(layers, [120.0], 10.0), None,
                       Boundaries("absorbing", "absorbing", "free", "absorbing"),
                       receivers=Receivers(line=ReceiverLine((30.0, 200.0), (270.0, 200.0), 7)),
                       reference=ReferenceSettings(points_per_wavelength=8.0, output_times=51),
                       displacement_scale=None, time_scale="crossing", shots=shots)


class StepTimer(Callback):
    """CPU time of every training step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.process_time() - self.start)


def errors(model: ElasticPINN, grid: torch.Tensor) -> list[float]:
    """Relative L2 of each shot's displacement against its reference on ``grid`` ``(N, 3)``."""
    out = []
    with torch.no_grad():
        for k in range(model.problem.n_shots):
            with on_shot(model, k):
                pred = model(grid).double()
            truth = model.problem.shot(k).truth(grid)
            out.append(float((pred - truth).norm() / truth.norm()))
    return out


def run(kind: str, width: int, depth: int, steps: int, seed: int) -> dict:
    """Train one design for ``steps`` Adam steps; its errors per shot and ms per step."""
    L.seed_everything(seed, verbose=False)
    problem = survey()
    dm = ElasticDataModule(problem, n_interior=512, n_boundary=128, n_initial=128, steps_per_epoch=steps,
                           val_grid=(31, 21, 11), observations=ReferenceObservations(
                               "receivers", n_times=26, quantity="velocity"))
    model = ElasticPINN(problem, width=width, depth=depth, input_scale=2.0, shot_network=kind, compile=False,
                        loss_weights=LossWeights(pde=0.01, bc=1.0, ic_disp=1.0, ic_vel=0.1, data=1.0),
                        optimizer=lambda params: torch.optim.Adam(params, lr=2e-3))
    timer = StepTimer()
    trainer = L.Trainer(max_steps=steps, inference_mode=False, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, accelerator="cpu", callbacks=[timer])
    trainer.fit(model, dm)
    model.eval()
    return {"errors": errors(model, dm.grid()), "ms": 1e3 * sum(timer.times[20:]) / max(1, len(timer.times[20:])),
            "weights": sum(p.numel() for p in model.parameters())}


def same_size_width(width: int, depth: int, shots: int) -> int:
    """The width of one network with ``shots`` one-hot inputs and about as many weights as ``shots`` networks of
    ``width``: solve (depth - 1) w^2 + (3 + shots + depth + 2) w = shots x ((depth - 1) W^2 + (depth + 5) W)."""
    target = shots * ((depth - 1) * width**2 + (depth + 5) * width + 2)
    a, b = depth - 1, 3 + shots + depth + 2
    return round((-b + math.sqrt(b * b + 4 * a * target)) / (2 * a))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1, help="seeds of the networks' initialisation, 0, 1, ...")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # the table only
    for k in range(len(SHOTS_X)):  # outside the timings
        survey().shot(k).solution()
    rows = [("networks", "networks", args.width), ("input", "input", args.width),
            ("input, same size", "input", same_size_width(args.width, args.depth, len(SHOTS_X)))]
    print(f"{len(SHOTS_X)} shots, {args.steps} Adam steps, depth {args.depth}, {torch.get_num_threads()} thread\n")
    print("| design | width | weights | seed | " + " | ".join(f"rel L2 shot {k}" for k in range(len(SHOTS_X)))
          + " | mean | ms/step |")
    print("|---|---|---|---|" + "---|" * len(SHOTS_X) + "---|---|")
    for seed in range(args.seeds):
        for name, kind, width in rows:
            r = run(kind, width, args.depth, args.steps, seed)
            e = r["errors"]
            print(f"| {name} | {width} | {r['weights']} | {seed} | " + " | ".join(f"{v:.3f}" for v in e)
                  + f" | {sum(e) / len(e):.3f} | {r['ms']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
