"""PW2, the reference plane-wave problem of ``configs/plane_wave.yaml``, trained with DeepXDE (PyTorch backend).

Domain [0, 1]^2 x [0, 1] (x, y, t); rho = 1, lam = 1, mu = 0.5; a P plane wave at 0.3 rad and an S plane wave at
1.2 rad, |k| = 2 pi, amplitude 1, phase 0. The 2D Navier-Cauchy residual on the interior points, the exact
displacement on the four edges, the exact displacement and velocity at t = 0. 3 x 64 tanh MLP (Glorot normal,
zero biases, inputs mapped to [-1, 1]), full batch of fixed points, Adam lr 1e-3.

Run inside the DeepXDE environment that ``benchmarks/throughput.py`` creates:

    DDE_BACKEND=pytorch ~/.cache/pinn-benchmark-peers/deepxde/bin/python benchmarks/peers/deepxde_pw2.py --steps 20

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

import os
import statistics
import time

os.environ.setdefault("DDE_BACKEND", "pytorch")

import deepxde as dde  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from pw2 import LAM, MU, RHO, WEIGHTS, arguments, exact, points, report, synchronize  # noqa: E402


def pde(x, y):
    """The two components of rho u_tt - div sigma (DeepXDE's PDE function: inputs x, outputs y)."""
    h = dde.grad.hessian
    u_xx, u_yy, u_tt, u_xy = (h(y, x, component=0, i=i, j=j) for i, j in ((0, 0), (1, 1), (2, 2), (0, 1)))
    v_xx, v_yy, v_tt, v_xy = (h(y, x, component=1, i=i, j=j) for i, j in ((0, 0), (1, 1), (2, 2), (0, 1)))
    return [
        RHO * u_tt - (LAM + 2 * MU) * u_xx - MU * u_yy - (LAM + MU) * v_xy,
        RHO * v_tt - MU * v_xx - (LAM + 2 * MU) * v_yy - (LAM + MU) * u_xy,
    ]



def main() -> None:
    args = arguments(__doc__.splitlines()[0])

    torch.set_num_threads(args.threads)
    # DeepXDE's PyTorch backend makes every tensor on the GPU when one is visible, on the CPU otherwise
    if (args.device == "cuda") != torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: DeepXDE picks the GPU exactly when one is visible "
                         "(hide it with CUDA_VISIBLE_DEVICES= for the CPU)")
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
    synchronize(args.device)
    t0 = time.perf_counter()
    model.train(iterations=args.steps, display_every=10**9, callbacks=[timer], verbose=0)
    synchronize(args.device)
    loop = time.perf_counter() - t0
    ms = statistics.median(timer.times) * 1e3
    report("deepxde", dde.__version__, torch.__version__, ms, args, torch.get_num_threads(),
           loss_first=warm.first_loss if args.warmup else timer.first_loss,
           loss_last=float(np.sum(model.train_state.loss_train)), ms_per_step_loop=loop / args.steps * 1e3,
           points_per_step=int(len(data.train_x)))


if __name__ == "__main__":
    main()
