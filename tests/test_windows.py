"""Time windows and the exact initial state: the spline against polynomials and a sine, the product rule of the
exact initial state against nested autograd, the state holding at each window's start, and the time map."""

import math

import lightning as L
import numpy as np
import pytest
import torch

from pinn.networks.derivatives import autograd_fields, compute_fields
from pinn.networks.mlp import MLP
from pinn.physics.splines import GridSpline
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN
from pinn.training.stages import LBFGSStage
from pinn.training.windows import Marching, TimeWindows, exact_initial_fields

F64 = torch.float64
NAMES = ("u", "v", "u_x", "u_y", "u_t", "v_x", "v_y", "v_t", "u_xx", "u_yy", "u_xy", "u_tt", "v_xx", "v_yy", "v_xy",
         "v_tt")


def _points(n: int, lo=(-1.0, 0.0), hi=(2.0, 1.0), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(lo, dtype=F64), torch.tensor(hi, dtype=F64)
    return lo + torch.rand(n, 2, generator=g, dtype=F64) * (hi - lo)


def test_spline_reproduces_cubics_and_their_derivatives():
    x, y = torch.linspace(-1, 2, 13, dtype=F64), torch.linspace(0, 1, 9, dtype=F64)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    cubic = lambda a, b: a**3 - 2 * a * b**2 + b**3 + 1  # noqa: E731
    s = GridSpline.fit(x, y, cubic(xx, yy)[..., None])
    p = _points(200)
    a, b = p[:, 0], p[:, 1]
    out = {k: v[:, 0] for k, v in s(p).items()}
    expected = {"f": cubic(a, b), "f_x": 3 * a**2 - 2 * b**2, "f_y": -4 * a * b + 3 * b**2, "f_xx": 6 * a,
                "f_yy": -4 * a + 6 * b, "f_xy": -4 * b}
    for name, value in expected.items():
        torch.testing.assert_close(out[name], value, rtol=0, atol=1e-11, msg=name)


def test_spline_second_derivatives_converge_like_h_squared():
    p = _points(400, (0.0, 0.0), (1.0, 1.0))
    errors = []
    for n in (21, 41, 81):
        x = torch.linspace(0, 1, n, dtype=F64)
        yy, xx = torch.meshgrid(x, x, indexing="ij")
        wave = lambda a, b: torch.sin(2 * math.pi * (a + 0.5 * b))  # noqa: E731
        f_xx = GridSpline.fit(x, x, wave(xx, yy)[..., None])(p)["f_xx"][:, 0]
        errors.append(float((f_xx + 4 * math.pi**2 * wave(p[:, 0], p[:, 1])).abs().max()) / (4 * math.pi**2))
    # halving h divides the error by about 4 or more (order 2, better away from the ends)
    assert errors[1] < errors[0] / 3.5 and errors[2] < errors[1] / 3.5, errors
    assert errors[2] < 5e-3  # 80 nodes per wavelength; the largest error is at the ends


def _state(x, y) -> GridSpline:
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    values = torch.stack([torch.sin(xx + 2 * yy), xx * yy, torch.cos(3 * xx) * yy, yy**2 - xx], -1)  # (ny, nx, 4)
    return GridSpline.fit(x, y, values)


@pytest.mark.parametrize("order", ["value", "velocity", "gradient", "pde"])
def test_exact_initial_fields_equal_nested_autograd(order):
    torch.manual_seed(0)
    net = MLP((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), width=16, depth=2).double()
    x, y = torch.linspace(0, 1, 11, dtype=F64), torch.linspace(0, 1, 9, dtype=F64)
    spline, t_k, ramp = _state(x, y), 0.25, 0.2

    def composite(xyt):  # u = b + g (N - b), differentiated by autograd as a whole
        s = spline(xyt[:, :2])["f"]
        tau = xyt[:, 2:] - t_k
        b = s[:, :2] + tau * s[:, 2:]
        return b + (1 - torch.exp(-((tau / ramp) ** 2))) * (net(xyt) - b)

    xyt = torch.cat([_points(64, (0, 0), (1, 1)), 0.25 + 0.5 * torch.rand(64, 1, dtype=F64)], 1)
    expected = autograd_fields(composite, xyt, order)
    got = exact_initial_fields(spline(xyt[:, :2]), compute_fields(net, xyt, order), xyt[:, 2] - t_k, ramp, order)
    for name in NAMES:
        e, g = getattr(expected, name), getattr(got, name)
        assert (e is None) == (g is None), name
        if e is not None:
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-10, msg=name)


def test_the_state_holds_exactly_at_each_window_start():
    torch.manual_seed(0)
    net = MLP((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), width=16, depth=2)
    marching = Marching(net, (0.0, 1.0), TimeWindows(count=2, steps=1, exact_initial=True))
    x, y = torch.linspace(0, 1, 7, dtype=F64), torch.linspace(0, 1, 6, dtype=F64)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    snapshot = torch.stack([xx, yy**2, torch.sin(xx), xx * yy], -1)
    marching.set_state(0, x, y, snapshot)
    nodes = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.zeros(xx.numel(), dtype=F64)], 1).float()
    f = marching.fields(net, 0, nodes, "velocity", compute_fields)
    torch.testing.assert_close(torch.cat([f.displacement, f.velocity], -1), snapshot.reshape(-1, 4).float(),
                               rtol=0, atol=1e-6)
    end = marching.sample_end(net, compute_fields)  # window 0's solution at t = 0.5, which window 1 starts from
    marching.advance(net, compute_fields, 7)
    assert marching.current == 1 and int(marching.started_at) == 7
    f = marching.fields(net, 1, torch.cat([nodes[:, :2], torch.full_like(nodes[:, :1], 0.5)], 1), "velocity",
                        compute_fields)
    torch.testing.assert_close(torch.cat([f.displacement, f.velocity], -1), end.reshape(-1, 4), rtol=0, atol=1e-5)


def test_training_times_map_into_the_current_window():
    net = MLP((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), width=8, depth=1)
    marching = Marching(net, (0.2, 1.0), TimeWindows(count=4, steps=1))
    xyt = torch.tensor([[0.1, 0.2, 0.2], [0.3, 0.4, 1.0], [0.5, 0.6, 0.6]], dtype=F64)
    marching.index += 2  # the third window, [0.6, 0.8], as a checkpoint would hold it
    marching.refresh()
    torch.testing.assert_close(marching.to_current(xyt)[:, 2], torch.tensor([0.6, 0.8, 0.7], dtype=F64))
    torch.testing.assert_close(marching.to_current(xyt)[:, :2], xyt[:, :2])
    assert marching.window_of(torch.tensor([0.25, 0.65, 0.95])).tolist() == [0, 2, 2]  # clamped to the current


def test_an_overlapping_window_trains_past_the_next_windows_start():
    """``overlap: 0.5`` on [0.2, 1.0] in 4 windows of 0.2: the third window trains on [0.6, 0.9], its network reads
    that interval on [-1, 1], and each time is still routed to the window it falls in (0.65 and 0.75 to the third, 0.85
    to the fourth once it trains)."""
    net = MLP((0.0, 0.0, 0.2), (1.0, 1.0, 1.0), width=8, depth=1)
    marching = Marching(net, (0.2, 1.0), TimeWindows(count=4, steps=1, overlap=0.5))
    torch.testing.assert_close(net.center[2], torch.tensor(0.35))
    torch.testing.assert_close(net.scale[2], torch.tensor(2 / 0.3))
    for _ in range(2):
        marching.advance(net, compute_fields, 1)
    xyt = torch.tensor([[0.1, 0.2, 0.2], [0.3, 0.4, 1.0], [0.5, 0.6, 0.6]], dtype=F64)
    torch.testing.assert_close(marching.to_current(xyt)[:, 2], torch.tensor([0.6, 0.9, 0.75], dtype=F64))
    torch.testing.assert_close(net.center[2], torch.tensor(0.75))  # [0.6, 0.9] on [-1, 1]
    torch.testing.assert_close((torch.tensor([0.6, 0.9]) - net.center[2]) * net.scale[2], torch.tensor([-1.0, 1.0]))
    assert marching.window_of(torch.tensor([0.65, 0.75, 0.85])).tolist() == [2, 2, 2]
    marching.advance(net, compute_fields, 2)
    assert marching.window_of(torch.tensor([0.65, 0.75, 0.85])).tolist() == [2, 2, 3]


def test_window_settings_are_checked():
    with pytest.raises(ValueError, match="model.windows.count=0"):
        TimeWindows(count=0)
    for bad in (0, [], [3, 0], [2.5]):
        with pytest.raises(ValueError, match=r"model.windows.steps=.* one per time window"):
            TimeWindows(count=2, steps=bad)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"model.windows.overlap={bad} must be in \[0, 1\]"):
            TimeWindows(count=2, overlap=bad)
    with pytest.raises(ValueError, match=r"model.lbfgs.start_step=\[-1\]"):
        LBFGSStage(start_step=[-1])


def test_steps_and_the_stage_start_per_window(plane_waves):
    """``windows.steps: [3, 2]`` and ``lbfgs.start_step: [2, 0]``: window 0 trains steps 0-2 with L-BFGS from its
    step 2, window 1 steps 3-4 and window 2 (the last entries repeating) from step 5 on, both in L-BFGS from their
    first step."""
    L.seed_everything(0, verbose=False)
    dm = ElasticDataModule(plane_waves, n_interior=32, n_boundary=8, n_initial=8, steps_per_epoch=4, val_grid=(3, 3, 3))
    model = ElasticPINN(plane_waves, width=8, depth=2, windows=TimeWindows(count=3, steps=[3, 2]),
                        lbfgs=LBFGSStage(start_step=[2, 0], max_iter=1))
    seen = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            seen.append((pl_module.marching.current, pl_module.stage))

    trainer = L.Trainer(max_steps=7, inference_mode=False, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, accelerator="cpu", callbacks=[Record()])
    trainer.fit(model, dm)
    assert seen == [(0, "adam"), (0, "adam"), (0, "lbfgs"), (1, "lbfgs"), (1, "lbfgs"), (2, "lbfgs"), (2, "lbfgs")]


def test_values_route_each_time_to_its_window():
    torch.manual_seed(0)
    net = MLP((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), width=8, depth=2)
    marching = Marching(net, (0.0, 1.0), TimeWindows(count=2, steps=1))
    xyt = torch.tensor([[0.2, 0.3, 0.1], [0.4, 0.5, 0.7], [0.6, 0.1, 0.45]])
    before = net(xyt).detach()
    marching.advance(net, compute_fields, 3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)  # the next window trains on; the finished one keeps its weights
    out = marching.values(net, xyt, compute_fields).detach()
    torch.testing.assert_close(out[[0, 2]], before[[0, 2]])  # t < 0.5: the frozen first window, as it was
    torch.testing.assert_close(out[1], net(xyt[1:2])[0].detach())  # t >= 0.5: the network being trained
    assert not torch.allclose(out[1], before[1])


@pytest.mark.slow
def test_a_windowed_run_resumes_and_predicts_through_the_cli(tmp_path):
    """``pinn fit`` with windows and the exact initial state, resumed with ``--ckpt_path last`` past a window switch,
    then ``pinn predict`` of its checkpoint: the spline buffers take their size from the saved run."""
    from pinn.cli import cli_main

    common = ["-c", "configs/plane_wave.yaml", "--model.width", "8", "--model.depth", "2", "--model.lbfgs", "null",
              "--model.compile", "false", "--model.windows", '{"count": 2, "steps": 3, "exact_initial": true}',
              "--data.n_interior", "64", "--data.n_boundary", "16", "--data.n_initial", "16",
              "--data.steps_per_epoch", "2", "--data.val_grid", "[4, 4, 3]", "--data.predict_resolution", "[5, 4]",
              "--data.predict_times", "3", "--trainer.logger.init_args.save_dir", str(tmp_path),
              "--trainer.enable_progress_bar", "false", "--val_figures.every_n_validations", "0",
              "--prediction_writer.output_dir", str(tmp_path / "pred"), "--trainer.accelerator", "cpu"]
    cli_main(["fit", *common, "--trainer.max_steps", "2"])
    cli = cli_main(["fit", *common, "--trainer.max_steps", "5", "--ckpt_path", "last"])
    assert cli.trainer.global_step == 5 and cli.model.marching.current == 1
    cli_main(["predict", *common, "--ckpt_path", "last"])
    with np.load(tmp_path / "pred" / "prediction.npz") as f:
        assert f["displacement"].shape == (3, 4, 5, 2) and np.isfinite(f["displacement"]).all()


def test_a_later_window_starts_from_the_frozen_previous_window(plane_waves):
    """Without the exact initial state, window 1's initial targets are window 0's displacement and velocity at the
    switch time, from its frozen copy, whatever the network trains on; ``fields(..., window=k)`` reads window k's."""
    torch.manual_seed(0)
    model = ElasticPINN(plane_waves, width=8, depth=2, windows=TimeWindows(count=2, steps=1))
    g = torch.Generator().manual_seed(1)
    start = torch.cat([torch.rand(16, 2, generator=g), torch.full((16, 1), 0.5)], 1)  # window 1's start
    xyt = start.clone().requires_grad_(True)
    u = model.net(xyt)
    u_t = torch.stack([torch.autograd.grad(u[:, i].sum(), xyt, retain_graph=True)[0][:, 2] for i in range(2)], -1)
    first = torch.cat([start[:, :2], torch.zeros(16, 1)], 1)  # window 0 starts from the closed form
    torch.testing.assert_close(model.initial_targets(first)[0], plane_waves.initial_displacement(first))
    model.marching.advance(model.net, model._compute, 3)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.1)  # window 1 trains on; window 0 keeps its weights
    displacement, velocity = model.initial_targets(start)
    torch.testing.assert_close(displacement, u.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(velocity, u_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.fields(start, "value", window=0).displacement, u.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(model.fields(start, "value").displacement, u.detach(), atol=1e-3)  # the current one
