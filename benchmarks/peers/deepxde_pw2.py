"""PW2, the reference plane-wave problem of ``configs/plane_wave.yaml``, trained with DeepXDE (PyTorch backend).

Domain [0, 1]^2 x [0, 1] (x, y, t); rho = 1, lam = 1, mu = 0.5; a P plane wave at 0.3 rad and an S plane wave at
1.2 rad, |k| = 2 pi, amplitude 1, phase 0. The 2D Navier-Cauchy residual on the interior points, the exact
displacement on the four edges, the exact displacement and velocity at t = 0. 3 x 64 tanh MLP (Glorot normal,
zero biases, inputs mapped to [-1, 1]), full batch of fixed points, Adam lr 1e-3.

Run inside the DeepXDE environment that ``benchmarks/throughput.py`` creates:

    DDE_BACKEND=pytorch benchmarks/peers/.venv-deepxde/bin/python benchmarks/peers/deepxde_pw2.py --steps 20

Prints one JSON line: the median wall time of the timed steps (each from DeepXDE's ``on_batch_begin`` to its
``on_batch_end`` inside ``Model.train``: loss, backward and Adam step), the points per second, the loss at the
initial weights (``loss_first``) and the mean time per step over the whole timed ``Model.train`` call
(``ms_per_step_loop``, which also holds the loss evaluations DeepXDE runs at the start and end of ``train``).

The loss matches this project's (sum over terms of weight x mean over points of the squared Euclidean misfit):
DeepXDE's mean squared error averages over components too, so the weights of terms that hold both components
in one error are doubled, and the two PDE components and the two initial velocity components are separate terms.
DeepXDE evaluates the network and the PDE residual on every training point, boundary and initial ones included
(it then keeps the residual of the interior points only); that is how the library works and is part of its cost.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

os.environ.setdefault("DDE_BACKEND", "pytorch")

import deepxde as dde  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

LAM, MU, RHO = 1.0, 0.5, 1.0
WAVES = [("P", 0.3), ("S", 1.2)]  # kind, angle; |k| = 2 pi, amplitude 1, phase 0
K = 2 * math.pi
N_INTERIOR, N_BOUNDARY, N_INITIAL = 4096, 1024, 1024
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


def pde(x, y):
    """The two components of rho u_tt - div sigma (DeepXDE's PDE function: inputs x, outputs y)."""
    h = dde.grad.hessian
    u_xx, u_yy, u_tt, u_xy = (h(y, x, component=0, i=i, j=j) for i, j in ((0, 0), (1, 1), (2, 2), (0, 1)))
    v_xx, v_yy, v_tt, v_xy = (h(y, x, component=1, i=i, j=j) for i, j in ((0, 0), (1, 1), (2, 2), (0, 1)))
    return [
        RHO * u_tt - (LAM + 2 * MU) * u_xx - MU * u_yy - (LAM + MU) * v_xy,
        RHO * v_tt - MU * v_xx - (LAM + 2 * MU) * v_yy - (LAM + MU) * u_xy,
    ]


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

    torch.set_num_threads(args.threads)
    dde.config.set_default_float("float32")
    dde.config.set_random_seed(0)

    interior, boundary, initial = points(args.points_scale)
    u_bc, _ = exact(boundary)
    u_ic, v_ic = exact(initial)

    def velocity(component):
        return lambda x, y, _: dde.grad.jacobian(y, x, i=component, j=2)

    bcs = [
        dde.icbc.PointSetBC(boundary, u_bc, component=[0, 1]),
        dde.icbc.PointSetBC(initial, u_ic, component=[0, 1]),
        dde.icbc.PointSetOperatorBC(initial, v_ic[:, :1], velocity(0)),
        dde.icbc.PointSetOperatorBC(initial, v_ic[:, 1:], velocity(1)),
    ]
    geom = dde.geometry.GeometryXTime(dde.geometry.Rectangle([0, 0], [1, 1]), dde.geometry.TimeDomain(0, 1))
    # the fixed interior points as anchors: no points of DeepXDE's own sampling
    data = dde.data.TimePDE(geom, pde, bcs, num_domain=0, num_boundary=0, num_initial=0, anchors=interior)
    net = dde.nn.FNN([3] + [64] * 3 + [2], "tanh", "Glorot normal")
    net.apply_feature_transform(lambda x: 2 * x - 1)  # the box [0, 1]^3 onto [-1, 1]^3, as this project's MLP
    w = WEIGHTS
    # per-element means: a two-component term gets twice the weight, separate components their own
    loss_weights = [w["pde"], w["pde"], 2 * w["bc"], 2 * w["ic_disp"], w["ic_vel"], w["ic_vel"]]
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3, loss_weights=loss_weights)

    class Timer(dde.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []
            self.first_loss: float | None = None

        def on_train_begin(self) -> None:  # after train() evaluated the loss at the current weights
            if self.first_loss is None:
                self.first_loss = float(np.sum(self.model.train_state.loss_train))

        def on_batch_begin(self) -> None:
            self.start = time.perf_counter()

        def on_batch_end(self) -> None:
            self.times.append(time.perf_counter() - self.start)

    warm = Timer()
    if args.warmup:
        model.train(iterations=args.warmup, display_every=10**9, callbacks=[warm], verbose=0)
    timer = Timer()
    t0 = time.perf_counter()
    model.train(iterations=args.steps, display_every=10**9, callbacks=[timer], verbose=0)
    loop = time.perf_counter() - t0
    ms = statistics.median(timer.times) * 1e3
    n = (N_INTERIOR + N_BOUNDARY + N_INITIAL) * args.points_scale
    print(json.dumps({
        "library": "deepxde", "version": dde.__version__, "torch": torch.__version__, "ms_per_step": ms,
        "points_per_s": n / (ms / 1e3), "steps": args.steps, "threads": torch.get_num_threads(),
        "loss_first": warm.first_loss if args.warmup else timer.first_loss,
        "loss_last": float(np.sum(model.train_state.loss_train)), "ms_per_step_loop": loop / args.steps * 1e3,
        "points_per_step": int(len(data.train_x)),
    }))


if __name__ == "__main__":
    main()
