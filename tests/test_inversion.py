"""Unknown media (layers, a grid map) against the media they stand for and finite differences; observations simulated
by the reference; the guards that keep the truth out of an inverse run; the material held before ``start_step``;
velocity and one-component data; the recovered-material maps in TensorBoard."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pinn.io.material_maps import MaterialMaps
from pinn.physics.inversion import (
    FieldUnknowns,
    LayerUnknowns,
    TrainableField,
    TrainableLayers,
    material_errors,
    trained_quantities,
)
from pinn.physics.media import Inclusion, Layered, Properties
from pinn.physics.sources import PointForce, Ricker
from pinn.physics.unknowns import Unknowns, check_inverse_setup
from pinn.problems import Boundaries, Domain, PlaneWaves, Wave, WaveProblem
from pinn.problems.receivers import ReceiverLine, Receivers
from pinn.problems.reference import ReferenceSettings
from pinn.training.data import ElasticDataModule
from pinn.training.losses import masked_mse, mse
from pinn.training.module import ElasticPINN, LossWeights
from pinn.training.observations import ReferenceObservations

pytestmark = pytest.mark.usefixtures("one_thread")

DOMAIN = Domain((0.0, 200.0), (0.0, 100.0), (0.0, 0.1))
TRUE_LAYERS = [Properties(vp=1600.0, vs=900.0, rho=1900.0), Properties(vp=2400.0, vs=1350.0, rho=2100.0)]


def layer_spec(**kw) -> LayerUnknowns:
    args = {"interfaces": [50.0], "vp": [1600.0, 2400.0], "vs": [900.0, 1350.0], "rho": [1900.0, 2100.0],
            "smoothing": 8.0} | kw
    return LayerUnknowns(**args)


def points(n: int = 200, seed: int = 0, domain: Domain = DOMAIN) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    return torch.stack([domain.x[0] + u[:, 0] * (domain.x[1] - domain.x[0]),
                        domain.y[0] + u[:, 1] * (domain.y[1] - domain.y[0])], -1)


# ---- layers ------------------------------------------------------------------------------------------------------
def test_layers_at_the_true_values_are_the_layered_medium():
    # the same blend of Lame parameters and density, and gradients equal to autograd's through Layered
    layers = TrainableLayers(layer_spec()).double()
    xy = points()
    got, want = layers.at(xy), Layered(TRUE_LAYERS, [50.0], 8.0).values(xy)
    for name in ("lam", "mu", "rho", "lam_x", "lam_y", "mu_x", "mu_y"):
        torch.testing.assert_close(getattr(got, name).detach(), getattr(want, name), rtol=1e-6, atol=1e-3)
    assert float(want.mu_y.abs().max()) > 1e6  # the interface is inside the sample: the gradients are not all zero


@pytest.mark.parametrize("train", [["vp", "vs"], ["vs"], ["vp"], ["vp", "vs", "rho"]])
def test_layers_start_at_the_guess_and_stay_physical(train):
    spec = layer_spec(vp=[2000.0, 2000.0], vs=[1000.0, 1500.0], train=train)
    layers = TrainableLayers(spec).double()
    s = layers.speeds()
    torch.testing.assert_close(s["vp"].detach(), torch.tensor([2000.0, 2000.0], dtype=torch.float64), rtol=1e-6,
                               atol=0)
    torch.testing.assert_close(s["vs"].detach(), torch.tensor([1000.0, 1500.0], dtype=torch.float64), rtol=1e-6,
                               atol=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(50):  # any values the optimizer can reach
            for p in layers.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 5)
            s = layers.speeds()
            assert bool((s["vs"] > 0).all() and (s["vp"] > s["vs"]).all() and (s["rho"] > 0).all())
    assert {n.removeprefix("raw_") for n, _ in layers.named_parameters()} == set(train)


def test_layer_settings_are_checked():
    with pytest.raises(ValueError, match="layer 2 has vs=2500.0 >= vp=2400.0"):
        layer_spec(vs=[900.0, 2500.0])
    with pytest.raises(ValueError, match="vp has 3 values for 2 layers"):
        layer_spec(vp=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="train=\\['lam'\\]"):
        layer_spec(train=["lam"])
    with pytest.raises(ValueError, match="y=150.0 lies outside"):
        layer_spec(interfaces=[150.0]).check(DOMAIN)


# ---- field -------------------------------------------------------------------------------------------------------
def field(train=("mu",), shape=(5, 4)) -> TrainableField:
    spec = FieldUnknowns(shape=list(shape), start={"lam": 4.0e9, "mu": 2.0e9, "rho": 1200.0}, train=list(train))
    return TrainableField(spec, DOMAIN).double()


def test_field_interpolates_a_linear_map_exactly_with_its_gradient():
    # log mu linear in x and y at the nodes: bilinear interpolation reproduces it everywhere, and mu_x = b mu
    f = field()
    a, b, c = math.log(2.0e9), 3e-3, -5e-3
    ny, nx = f.raw_mu.shape
    x = torch.linspace(*DOMAIN.x, nx, dtype=torch.float64)
    y = torch.linspace(*DOMAIN.y, ny, dtype=torch.float64)
    with torch.no_grad():
        f.raw_mu.copy_(a + b * x[None, :] + c * y[:, None])
    xy = points()
    v = f.at(xy)
    mu = torch.exp(a + b * xy[:, 0] + c * xy[:, 1])
    torch.testing.assert_close(v.mu, mu, rtol=1e-12, atol=0)
    torch.testing.assert_close(v.mu_x, b * mu, rtol=1e-10, atol=0)
    torch.testing.assert_close(v.mu_y, c * mu, rtol=1e-10, atol=0)
    torch.testing.assert_close(v.lam, torch.full_like(mu, 4.0e9))


def test_field_gradients_match_finite_differences_and_stay_physical():
    f = field(train=("mu", "lam"))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    xy, h = points(100, seed=4), 1e-4
    v = f.at(xy)
    for k, d in ((0, "x"), (1, "y")):
        step = torch.zeros(2, dtype=torch.float64)
        step[k] = h
        plus, minus = f.at(xy + step), f.at(xy - step)
        for name in ("lam", "mu"):
            fd = (getattr(plus, name) - getattr(minus, name)) / (2 * h)
            torch.testing.assert_close(getattr(v, f"{name}_{d}"), fd, rtol=1e-5, atol=1e-3)
    assert bool((v.mu > 0).all() and (v.lam + v.mu > 0).all())
    assert set(trained_quantities(f)) == {"mu", "lam"}


def test_field_goes_on_beyond_its_nodes_as_its_edge_values():
    """A padded box trains the map of the scored box: outside the outer nodes the map is its edge value, constant
    across the edge, so its gradient there is zero (finite differences of the values agree)."""
    f = field(train=("mu", "lam"))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    # beyond each edge and each corner, by up to half the box
    inside = points(40, seed=6)
    outside = torch.cat([inside + torch.tensor([dx, dy], dtype=torch.float64)
                         for dx, dy in ((-150.0, 0.0), (150.0, 0.0), (0.0, -60.0), (0.0, 60.0), (-150.0, 60.0))])
    clamped = torch.stack([outside[:, 0].clamp(*DOMAIN.x), outside[:, 1].clamp(*DOMAIN.y)], 1)
    v, edge = f.at(outside), f.at(clamped)
    beyond_x = (outside[:, 0] < DOMAIN.x[0]) | (outside[:, 0] > DOMAIN.x[1])
    beyond_y = (outside[:, 1] < DOMAIN.y[0]) | (outside[:, 1] > DOMAIN.y[1])
    assert bool(beyond_x.any() and beyond_y.any())
    for name in ("lam", "mu"):
        torch.testing.assert_close(getattr(v, name), getattr(edge, name), rtol=1e-12, atol=0)
        assert bool((getattr(v, f"{name}_x")[beyond_x] == 0).all() and (getattr(v, f"{name}_y")[beyond_y] == 0).all())
    h = 1e-3
    for k, d, beyond in ((0, "x", beyond_x), (1, "y", beyond_y)):
        step = torch.zeros(2, dtype=torch.float64)
        step[k] = h
        for name in ("lam", "mu"):
            fd = (getattr(f.at(outside + step), name) - getattr(f.at(outside - step), name)) / (2 * h)
            torch.testing.assert_close(getattr(v, f"{name}_{d}")[beyond], fd[beyond], rtol=0, atol=1e-3)


def test_material_errors_against_an_inclusion():
    medium = Inclusion({"lam": 4.0e9, "mu": 2.0e9, "rho": 1200.0}, {"lam": 4.0e9, "mu": 6.0e9, "rho": 1200.0},
                       (100.0, 50.0), (20.0, 20.0))
    f = field()
    n = 41
    x = torch.linspace(*DOMAIN.x, n, dtype=torch.float64)
    y = torch.linspace(*DOMAIN.y, n, dtype=torch.float64)
    gy, gx = torch.meshgrid(y, x, indexing="ij")
    true_mu = medium.values(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)).mu
    want = float((2.0e9 - true_mu).norm() / true_mu.norm())  # the uniform start against the truth
    errors = material_errors(f, medium, DOMAIN, n)
    assert errors["mu"] == pytest.approx(want, rel=1e-6) and errors["all"] == errors["mu"] and want > 0.1


# ---- losses ------------------------------------------------------------------------------------------------------
def test_masked_mse_ignores_unrecorded_components_and_keeps_gradients_finite():
    a = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 2, dtype=torch.float64)
    assert torch.equal(masked_mse(a, b), mse(a, b))
    b[:3, 1] = math.nan
    loss = masked_mse(a, b)
    want = (((a - b)[:, 0] ** 2).sum() + ((a - b)[3:, 1] ** 2).sum()) / 6
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert bool(torch.isfinite(a.grad).all()) and bool((a.grad[:3, 1] == 0).all())


# ---- inverse wave problems ---------------------------------------------------------------------------------------
def wave_problem(cache, initial="rest", scale: float | None = 1e-5, medium=None) -> WaveProblem:
    source = PointForce((100.0, 30.0), 1e6, (0.0, 1.0), 15.0, Ricker(10.0, 0.1))
    return WaveProblem(DOMAIN, medium or Layered(TRUE_LAYERS, [50.0], 8.0), [source],
                       Boundaries("absorbing", "absorbing", "free", "absorbing"), initial, -0.05 if initial ==
                       "snapshot" else 0.0, Receivers(line=ReceiverLine((0.0, 100.0), (200.0, 100.0), 5)),
                       ReferenceSettings(spacing=10.0, space_order=4, absorbing_cells=8, output_times=11,
                                         cache_dir=str(cache)), scale)


def test_reference_observations_read_the_reference(tmp_path):
    problem = wave_problem(tmp_path)
    ref = problem.solution(log=lambda *_: None)
    obs = ReferenceObservations("receivers", n_times=6, components="v", quantity="velocity").load(problem)
    assert obs.shape == (5 * 6, 5) and bool(torch.isnan(obs[:, 3]).all())
    torch.testing.assert_close(obs[:, 4], ref.velocity_at(obs[:, :3])[:, 1].double())
    torch.testing.assert_close(obs[:5, :2], problem.receivers.positions_array())  # the 5 receivers, time slowest
    snap = ReferenceObservations("snapshots", grid=[5, 3], n_times=4).load(problem)
    assert snap.shape == (15 * 4, 5)
    torch.testing.assert_close(snap[:, 3:], ref.displacement_at(snap[:, :3]).double())
    assert sorted(set(snap[:, 0].tolist())) == [0.0, 50.0, 100.0, 150.0, 200.0]
    noisy = ReferenceObservations("snapshots", grid=[21, 11], n_times=11, noise=0.02, seed=5).load(problem)
    clean = ReferenceObservations("snapshots", grid=[21, 11], n_times=11).load(problem)
    ratio = float((noisy[:, 3:] - clean[:, 3:]).std() / clean[:, 3:].pow(2).mean().sqrt())
    assert ratio == pytest.approx(0.02, rel=0.05)
    assert torch.equal(noisy, ReferenceObservations("snapshots", grid=[21, 11], n_times=11, noise=0.02,
                                                    seed=5).load(problem))


def test_guards_keep_the_truth_out_of_an_inverse_run(tmp_path):
    unknowns = Unknowns(layers=layer_spec(vp=[2000.0, 2000.0], vs=[1000.0, 1000.0]))
    with pytest.raises(ValueError, match="initial: snapshot"):
        check_inverse_setup(wave_problem(tmp_path, "snapshot"), unknowns)
    with pytest.raises(ValueError, match="displacement_scale is unset"):
        check_inverse_setup(wave_problem(tmp_path, scale=None), unknowns)
    with pytest.raises(ValueError, match="needs a problem in SI units"):
        check_inverse_setup(PlaneWaves([Wave()]), unknowns)
    with pytest.raises(ValueError, match="either constant unknowns"):
        Unknowns(mu=1.0, layers=layer_spec())
    with pytest.raises(ValueError, match="start_step=-1"):
        Unknowns(mu=1.0, start_step=-1)
    check_inverse_setup(wave_problem(tmp_path), unknowns)  # at rest, scale given: accepted


def test_inverse_scales_come_from_the_guess_not_the_truth(tmp_path):
    problem = wave_problem(tmp_path)
    model = ElasticPINN(problem, width=8, depth=1, unknowns=Unknowns(layers=layer_spec(vp=[1800.0, 1900.0],
                                                                                       vs=[900.0, 1000.0])))
    # vp_max of the guess (the truth's is 2400) sets L = vp_max T, with T = 1 / omega from the source's peak frequency
    omega = 2 * math.pi * problem.peak_frequency()
    assert model.scales.time == pytest.approx(1 / omega, rel=1e-6)
    assert model.scales.length == pytest.approx(1900.0 / omega, rel=1e-6)
    assert model.scales.density == pytest.approx(2100.0) and model.scales.displacement == 1e-5


class _Record(L.Callback):
    def __init__(self) -> None:
        self.raw: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.raw[trainer.global_step] = torch.cat([p.detach().flatten().clone()
                                                   for p in pl_module.trainable_material.parameters()])


def test_material_is_held_until_start_step_then_trained(tmp_path):
    problem = wave_problem(tmp_path)
    unknowns = Unknowns(layers=layer_spec(vp=[2000.0, 2000.0], vs=[1000.0, 1000.0]), lr=0.05, start_step=3)
    model = ElasticPINN(problem, width=8, depth=1, unknowns=unknowns)
    dm = ElasticDataModule(problem, n_interior=32, n_boundary=16, n_initial=16, steps_per_epoch=3,
                           observations=ReferenceObservations("receivers", n_times=5, quantity="velocity"))
    record = _Record()
    trainer = L.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, inference_mode=False,
                        default_root_dir=tmp_path, accelerator="cpu", devices=1, callbacks=[record])
    trainer.fit(model, dm)
    assert torch.equal(record.raw[0], record.raw[3])  # held for steps 0, 1, 2
    assert not torch.equal(record.raw[3], record.raw[4])  # trained from step 3 on
    # the optimizer saw no gradient while held: its moments begin at the release
    state = trainer.optimizers[0].state[model.trainable_material.raw_vs]
    assert int(state["step"]) == 3


def test_velocity_data_term_is_the_time_derivative_misfit(tmp_path):
    problem = wave_problem(tmp_path)
    model = ElasticPINN(problem, width=8, depth=2, unknowns=Unknowns(layers=layer_spec(vp=[2000.0, 2000.0],
                                                                                       vs=[1000.0, 1000.0])))
    obs = ReferenceObservations("receivers", n_times=4, components="u", quantity="velocity").load(problem)
    batch = {"interior": torch.rand(8, 3, dtype=torch.float64) * torch.tensor([200.0, 100.0, 0.1]),
             "boundary": problem.domain.boundary_from_unit(torch.rand(8, 2)).double(),
             "initial": problem.domain.initial_from_unit(torch.rand(8, 2)).double(), "velocity_observations": obs}
    terms = model.loss_terms(batch)
    xyt = obs[:, :3].float().requires_grad_(True)
    out = model.net(xyt)
    u_t = torch.autograd.grad(out[:, 0].sum(), xyt)[0][:, 2]
    want = ((u_t - obs[:, 3].float()) ** 2).mean() / model.scales.velocity**2
    torch.testing.assert_close(terms["data"], want, rtol=1e-4, atol=0)


def test_material_maps_reach_tensorboard(tmp_path):
    medium = Inclusion(Properties(lam=4.0e9, mu=2.0e9, rho=1200.0), Properties(lam=4.0e9, mu=5.0e9, rho=1200.0),
                       (100.0, 50.0), (25.0, 25.0), smoothing=5.0)
    source = PointForce((40.0, 50.0), 1e8, (0.0, 1.0), 10.0, Ricker(20.0, 0.05))
    problem = WaveProblem(DOMAIN, medium, [source], Boundaries("absorbing", "absorbing", "absorbing", "absorbing"),
                          reference=ReferenceSettings(spacing=10.0, space_order=4, absorbing_cells=8,
                                                      output_times=11, cache_dir=str(tmp_path)),
                          displacement_scale=1e-4)
    unknowns = Unknowns(field=FieldUnknowns([5, 4], {"lam": 4.0e9, "mu": 3.0e9, "rho": 1200.0}))
    model = ElasticPINN(problem, width=8, depth=1, unknowns=unknowns,
                        loss_weights=LossWeights(pde=1e-3, data=1.0))
    dm = ElasticDataModule(problem, n_interior=32, n_boundary=16, n_initial=16, steps_per_epoch=2, val_grid=(4, 4, 2),
                           observations=ReferenceObservations("snapshots", grid=[9, 5], n_times=5))
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="maps")
    trainer = L.Trainer(max_steps=4, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, inference_mode=False, default_root_dir=tmp_path,
                        accelerator="cpu", devices=1, callbacks=[MaterialMaps(1, (21, 11))], num_sanity_val_steps=0)
    trainer.fit(model, dm)
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert "inverse/material" in events.Tags()["images"]
    errors = material_errors(model.trainable_material, medium, DOMAIN)
    assert float(trainer.callback_metrics["inverse/rel_error/mu"]) == pytest.approx(errors["mu"], rel=1e-5)
    assert np.isfinite(float(trainer.callback_metrics["inverse/rel_error"]))
    assert {"material/mu_min", "material/mu_max"} <= set(trainer.callback_metrics)


def test_recordings_written_as_mseed_read_back_as_the_reference_observations(tmp_path):
    # geophone records written in miniSEED with a station file, read as observations: the same samples as the
    # observations simulated at those receivers
    from pinn.io.seismograms import write_seismograms
    from pinn.training.traces import TraceObservations

    problem = wave_problem(tmp_path)
    simulated = ReferenceObservations("receivers", n_times=6, quantity="velocity").load(problem)
    receivers = problem.receivers
    positions = receivers.positions_array().numpy()
    t = np.linspace(*problem.domain.t, 6)
    traces = simulated[:, 3:].reshape(6, len(positions), 2).transpose(0, 1).numpy()  # (R, T, 2)
    write_seismograms(tmp_path / "rec", receivers.names, positions, t, traces)
    stations = tmp_path / "stations.csv"
    stations.write_text("station,x,y\n" + "".join(f"{n},{x},{y}\n" for n, (x, y) in zip(receivers.names, positions)))
    read = TraceObservations(str(tmp_path / "rec/seismograms.mseed"), str(stations), "velocity").load(problem)
    order = lambda s: s[torch.argsort(s[:, 2] * 1e6 + s[:, 0])]  # noqa: E731  (time, then x)
    torch.testing.assert_close(order(read), order(simulated), rtol=1e-9, atol=1e-12)


def test_layers_config_runs_through_the_cli_and_loads_back(tmp_path, monkeypatch):
    # the shipped config end to end (a few steps on tiny pools), then pinn.load rebuilds the run from its stored
    # config: the same layers, from a config far longer than a file name may be
    import pinn
    from pinn.cli import cli_main

    monkeypatch.chdir(tmp_path)
    config = str(Path(__file__).resolve().parents[1] / "configs/inverse_layers.yaml")
    args = ["fit", "-c", config, "--trainer.max_steps", "4", "--data.steps_per_epoch", "2", "--data.n_interior", "32",
            "--data.n_boundary", "16", "--data.n_initial", "16", "--data.val_grid", "[4, 4, 2]",
            "--model.unknowns.start_step", "2", "--trainer.callbacks", "[]", "--trainer.check_val_every_n_epoch", "1",
            "--data.problem.init_args.reference.points_per_wavelength", "4", "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(tmp_path)]
    cli = cli_main(args)
    assert {"material/upper/vp", "material/lower/vs", "inverse/rel_error/c_p"} <= set(cli.trainer.callback_metrics)
    loaded = pinn.load(next(tmp_path.glob("inverse_layers/version_0/checkpoints/last.ckpt")))
    for k, v in cli.model.trainable_material.speeds().items():
        assert torch.equal(loaded.trainable_material.speeds()[k], v.detach())
    assert float(cli.model.trainable_material.speeds()["vp"][0]) != 2000.0  # trained after the release


def test_an_inverse_run_without_observations_is_refused(tmp_path):
    problem = wave_problem(tmp_path)
    model = ElasticPINN(problem, width=8, depth=1, unknowns=Unknowns(layers=layer_spec()))
    dm = ElasticDataModule(problem, n_interior=16, n_boundary=8, n_initial=8)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu", devices=1)
    with pytest.raises(ValueError, match="data.observations is not"):
        trainer.fit(model, dm)
