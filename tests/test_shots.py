"""Several shots in one medium: each shot's reference and recordings are those of a problem of its sources alone, two
mirrored shots in a mirror-symmetric medium give mirrored wavefields, the loss is the sum of the shots' losses, a run
with shots resumes bit for bit, ``pinn predict`` writes every shot, and bad shot configs stop with one line."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_problem_cli import TINY_PROBLEM, _config, _run
from test_resume import TOTAL_STEPS, Case, stop_and_resume, train

import pinn
from pinn.networks.derivatives import compute_fields
from pinn.networks.mlp import MLP
from pinn.physics.inversion import LayerUnknowns
from pinn.physics.media import Homogeneous, Layered, Properties
from pinn.physics.sources import PointForce, Ricker
from pinn.physics.unknowns import Unknowns
from pinn.problems import Boundaries, Domain, WaveProblem
from pinn.problems.receivers import ReceiverLine, Receivers
from pinn.problems.reference import ReferenceSettings, reference_path
from pinn.problems.shots import Shot
from pinn.training.data import ElasticDataModule
from pinn.training.losses import loss_terms
from pinn.training.module import ElasticPINN
from pinn.training.observations import FileObservations, ReferenceObservations
from pinn.training.resampling import ResidualResampling
from pinn.training.shots import on_shot, shot_batch
from pinn.training.stages import LBFGSStage
from pinn.training.windows import TimeWindows

pytest.importorskip("devito")
pytestmark = pytest.mark.usefixtures("one_thread")

WIDTH = 200.0  # the section is [0, 200] m wide: x and 200 - x are mirror images


def source(x: float) -> PointForce:
    """A vertical Ricker force 60 m deep at ``x``."""
    return PointForce((x, 60.0), 1e6, (0.0, 1.0), 15.0, Ricker(10.0, 0.1))


def problem(cache: Path, *xs: float, medium=None) -> WaveProblem:
    """A shot at each of ``xs`` (one: the problem of that source alone, given as ``sources``), absorbing sides and
    bottom, a free top, 5 surface geophones placed symmetrically, a tiny cached Devito reference."""
    grouped = dict(sources=[source(xs[0])]) if len(xs) == 1 else dict(shots=[Shot([source(x)]) for x in xs])
    return WaveProblem(Domain((0.0, WIDTH), (0.0, 200.0), (0.0, 0.15)),
                       medium or Layered([Properties(vp=1500.0, vs=800.0, rho=1800.0),
                                          Properties(vp=2500.0, vs=1400.0, rho=2100.0)], [100.0], 10.0),
                       boundaries=Boundaries("absorbing", "absorbing", "free", "absorbing"),
                       receivers=Receivers(line=ReceiverLine((20.0, 200.0), (180.0, 200.0), 5)),
                       reference=ReferenceSettings(spacing=10.0, space_order=4, absorbing_cells=8, output_times=7,
                                                   cache_dir=str(cache)), displacement_scale=1e-5, **grouped)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("references")


# ---- the reference and the recordings of each shot -------------------------------------------------------------
def test_each_shot_is_the_problem_of_its_sources(cache):
    both = problem(cache, 60.0, 140.0)
    assert both.n_shots == 2 and [s.position for s in both.shot(1).sources] == [(140.0, 60.0)]
    keys = [reference_path(both.shot(k)) for k in range(2)]
    assert keys[0] != keys[1]  # the cache key names the shot's sources
    assert keys == [reference_path(problem(cache, x)) for x in (60.0, 140.0)]  # ... and only them
    assert reference_path(both) == keys[0]  # the problem itself reads as its first shot, as before shots
    xyt = torch.tensor([[100.0, 60.0, 0.1], [60.0, 60.0, 0.1]], dtype=torch.float64)
    torch.testing.assert_close(both.shot(1).body_force(xyt), problem(cache, 140.0).body_force(xyt))
    assert both.peak_frequency() == 10.0 and problem(cache, 60.0).shot(0) is not None


def test_mirrored_shots_in_a_mirrored_medium_give_mirrored_wavefields(cache):
    """x -> W - x maps the medium, the edges and shot 0's vertical force onto shot 1's: u(x) = -u'(W - x),
    v(x) = v'(W - x) (u is odd under the mirror, v even)."""
    both = problem(cache, 60.0, 140.0, medium=Homogeneous(vp=2000.0, vs=1000.0, rho=2000.0))
    a, b = (both.shot(k).solution() for k in range(2))
    np.testing.assert_allclose(a.x, WIDTH - b.x[::-1], atol=1e-9)
    mirrored = b.displacement[:, :, ::-1] * np.array([-1.0, 1.0])
    peak = np.abs(a.displacement).max()
    assert peak > 0 and np.abs(a.displacement - b.displacement).max() > 0.1 * peak  # different shots ...
    np.testing.assert_allclose(a.displacement, mirrored, rtol=0, atol=1e-5 * peak)  # ... mirror images


def test_observations_are_each_shots_recordings(cache):
    both = problem(cache, 60.0, 140.0)
    observations = ReferenceObservations("receivers", n_times=4, quantity="velocity", noise=0.02, seed=3)
    shots = observations.load_shots(both)
    assert len(shots) == 2
    torch.testing.assert_close(shots[0], observations.load(problem(cache, 60.0)), rtol=0, atol=0)  # as before shots
    clean = ReferenceObservations("receivers", n_times=4, quantity="velocity")
    for k, x in enumerate((60.0, 140.0)):
        torch.testing.assert_close(clean.load_shots(both)[k], clean.load(problem(cache, x)), rtol=0, atol=0)
    noise = [shots[k][:, 3:] - clean.load_shots(both)[k][:, 3:] for k in range(2)]
    assert not torch.allclose(noise[0], noise[1])  # each shot's own noise
    dm = ElasticDataModule(both, n_interior=16, n_boundary=8, n_initial=8, observations=observations)
    dm.setup()
    batch = dm.batch(0)
    assert torch.equal(batch["velocity_observations"], shots[0])
    assert torch.equal(batch["velocity_observations/shot1"], shots[1])
    assert torch.equal(shot_batch(batch, 1)["velocity_observations"], shots[1])


# ---- the loss --------------------------------------------------------------------------------------------------
def test_the_loss_is_the_sum_of_each_shots_loss(cache):
    """Every term of a two-shot model equals the sum over shots of the terms of a one-shot model with that shot's
    network, sources and recordings: the residual uses its shot's body force, the data term its recordings."""
    both = problem(cache, 60.0, 140.0)
    observations = ReferenceObservations("receivers", n_times=4, quantity="velocity")
    torch.manual_seed(0)
    model = ElasticPINN(both, width=8, depth=2, shot_network="networks")
    dm = ElasticDataModule(both, n_interior=32, n_boundary=16, n_initial=16, observations=observations)
    dm.setup()
    batch = dm.batch(0)
    terms = model.loss_terms(batch)
    assert set(terms) == {"pde", "bc", "ic_disp", "ic_vel", "data"}
    expected = {}
    for k, x in enumerate((60.0, 140.0)):
        single = ElasticPINN(problem(cache, x), width=8, depth=2)
        single.net.load_state_dict((model.net if k == 0 else model.shot_nets[k - 1]).state_dict())
        one = {name: batch[name] for name in ("interior", "boundary", "initial")}
        one["velocity_observations"] = observations.load(problem(cache, x))
        for name, value in loss_terms(single, single.problem, one)[0].items():
            expected[name] = expected.get(name, 0) + value
    for name in terms:
        torch.testing.assert_close(terms[name], expected[name], rtol=1e-5, atol=0)


def test_the_shot_input_moves_the_value_and_no_derivative(float64):
    """With the shot as an input, each shot gives its own wavefield, and the Taylor engine's derivatives match
    autograd's for every shot (the shot's input is constant in x, y and t)."""
    torch.manual_seed(0)
    net = MLP((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 8, 2, shots=3)
    xyt = torch.rand(10, 3)
    values = []
    for k in range(3):
        net.shot = k
        taylor, auto = compute_fields(net, xyt, "pde", "taylor"), compute_fields(net, xyt, "pde", "autograd")
        for name in ("u", "v", "u_x", "v_y", "u_tt", "v_xy", "u_yy"):
            torch.testing.assert_close(getattr(taylor, name), getattr(auto, name))
        values.append(taylor.u)
    assert not torch.allclose(values[0], values[1]) and not torch.allclose(values[1], values[2])


def test_validation_scores_every_shot(cache):
    both = problem(cache, 60.0, 140.0)
    model = ElasticPINN(both, width=8, depth=2, shot_network="input")
    grid = both.domain.grid(4, 4, 3, dtype=torch.float64)
    model.val_metric.update(model(grid), both.shot(0).truth(grid), grid[:, 2])
    shot0 = float(model.val_metric.compute()["rel_l2"])
    model.val_metric.reset()
    model.validation_step(grid, 0)
    every = float(model.val_metric.compute()["rel_l2"])
    with on_shot(model, 1):
        pred1 = model(grid).double().detach()
    pred0, truths = model(grid).double().detach(), [both.shot(k).truth(grid) for k in range(2)]
    expected = ((pred0 - truths[0]).pow(2).sum() + (pred1 - truths[1]).pow(2).sum()).sqrt() / (
        truths[0].pow(2).sum() + truths[1].pow(2).sum()).sqrt()
    assert every == pytest.approx(float(expected), rel=1e-4) and every != pytest.approx(shot0, rel=1e-4)


# ---- resume ----------------------------------------------------------------------------------------------------
_LAYERS = Unknowns(layers=LayerUnknowns([100.0], [2000.0, 2000.0], [1000.0, 1000.0], [1800.0, 2100.0]), lr=0.05,
                   start_step=3)
SHOT_CASES = {
    # layer velocities from two shots' noisy recordings, one network per shot, L-BFGS on all of them from step 8
    "networks": Case(
        data={"observations": ReferenceObservations("receivers", n_times=4, components="v", quantity="velocity",
                                                    noise=0.02)},
        model={"unknowns": _LAYERS, "lbfgs": LBFGSStage(start_step=8, max_iter=2, history_size=4),
               "shot_network": "networks"},
        problem=lambda cache: problem(cache, 60.0, 140.0)),
    # the shot as an input (the default), mini-batches and residual-driven resampling over both shots' residuals
    "input": Case(
        data={"batch_size": 16, "observations": ReferenceObservations("receivers", n_times=4, quantity="velocity")},
        model={"unknowns": _LAYERS},
        callbacks=lambda: [ResidualResampling("rad", every_n_steps=3, n_candidates=96, chunk_size=40,
                                              log_images=False)],
        problem=lambda cache: problem(cache, 60.0, 140.0)),
    # Levenberg-Marquardt from step 8 (float64) on the shared network: both shots' rows and recordings in one Jacobian
    "levenberg-marquardt": Case(
        data={"observations": ReferenceObservations("receivers", n_times=4, components="v", quantity="velocity")},
        model={"unknowns": _LAYERS, "lbfgs": LBFGSStage(start_step=8, method="levenberg_marquardt", float64=True)},
        problem=lambda cache: problem(cache, 60.0, 140.0)),
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}

    def get(name: str):
        if name not in runs:
            runs[name] = train(SHOT_CASES[name], tmp_path_factory.mktemp(f"ref-{name}"), TOTAL_STEPS)
        return runs[name]

    return get


@pytest.mark.parametrize("stop", ["max_steps mid-epoch", "crash mid-epoch"])
@pytest.mark.parametrize("name", list(SHOT_CASES))
def test_a_run_with_shots_resumes_bit_for_bit(name, stop, uninterrupted, tmp_path):
    ref = uninterrupted(name)
    first, second, k = stop_and_resume(SHOT_CASES[name], stop, tmp_path)
    assert first.losses == ref.losses[: len(first.losses)]
    assert second.losses == ref.losses[k:]
    assert second.vals == [(s, v) for s, v in ref.vals if s > k or (s == k and (k, v) not in first.vals)]


# ---- the command line -------------------------------------------------------------------------------------------
def _shots_problem(*xs: float) -> dict:
    """The tiny CLI problem with a shot at each of ``xs`` (its one source moved)."""
    p = copy.deepcopy(TINY_PROBLEM)
    base = p["init_args"].pop("sources")[0]
    p["init_args"]["shots"] = [{"sources": [{**base, "init_args": {**base["init_args"], "position": [x, 150.0]}}]}
                               for x in xs]
    return p


@pytest.mark.slow
def test_fit_and_predict_with_shots_write_every_shot(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, _shots_problem(70.0, 130.0))
    code, err = _run(monkeypatch, capsys, "fit", "-c", config)
    assert code == 0, err
    assert len(list((tmp_path / "references").glob("*.npz"))) == 2  # one reference per shot
    last = tmp_path / "logs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    code, err = _run(monkeypatch, capsys, "predict", "-c", config, "--ckpt_path", str(last))
    assert code == 0, err
    model = pinn.load(last)  # rebuilt from the stored config: both shots, both networks
    assert model.problem.n_shots == 2 and model.net.shots == 2 and not model.shot_nets  # one net, the shot an input
    out = tmp_path / "logs" / "tiny" / "version_0" / "predictions" / "step_4"
    assert sorted(p.name for p in out.iterdir()) == ["shot_0", "shot_1"]
    for k in range(2):
        with np.load(out / f"shot_{k}" / "prediction.npz") as p:
            xyt = torch.from_numpy(p["xyt"].reshape(-1, 3)).double()
            with torch.no_grad(), on_shot(model, k):
                mine = model(xyt).numpy().reshape(p["displacement"].shape)
            np.testing.assert_allclose(p["displacement"], mine, rtol=1e-5, atol=1e-6 * np.abs(mine).max())
            truth = model.problem.shot(k).truth(xyt).numpy().reshape(p["reference"].shape)
            # (the grid's coordinates come back in float32)
            np.testing.assert_allclose(p["reference"], truth, rtol=1e-5, atol=1e-5 * np.abs(truth).max())
        with np.load(out / f"shot_{k}" / "seismograms.npz") as s:
            receivers = model.problem.receivers
            points = receivers.points(model.problem.domain, torch.float64)
            truth = model.problem.shot(k).truth(points).numpy().reshape(s["reference"].shape)
            np.testing.assert_allclose(s["reference"], truth, rtol=1e-6, atol=0)
    with np.load(out / "shot_0" / "prediction.npz") as a, np.load(out / "shot_1" / "prediction.npz") as b:
        assert not np.allclose(a["reference"], b["reference"])


def _shots_with(**init_args) -> dict:
    """The tiny CLI problem with one shot at x = 70 m and ``init_args`` on top."""
    p = _shots_problem(70.0)
    p["init_args"].update(init_args)
    return p


BAD_SHOTS = {
    "sources and shots": (lambda: _shots_with(sources=TINY_PROBLEM["init_args"]["sources"]), "both sources and shots"),
    "no shots": (lambda: _shots_with(shots=[]), "data.problem.shots=[] must be a non-empty list"),
    "a shot without sources": (lambda: _shots_with(shots=[_shots_problem(70.0)["init_args"]["shots"][0],
                                                          {"sources": []}]),
                               "data.problem.shots[1].sources=[] must be a non-empty list of sources"),
    "a source outside": (lambda: _shots_problem(70.0, 250.0), "shots[1].sources[0].position=[250.0, 150.0]"),
}


@pytest.mark.parametrize("case", list(BAD_SHOTS))
def test_bad_shots_stop_with_one_line(case, tmp_path, monkeypatch, capsys):
    make, expected = BAD_SHOTS[case]
    code, err = _run(monkeypatch, capsys, "fit", "-c", _config(tmp_path, make()))
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "logs").exists() and not (tmp_path / "references").exists()


def test_settings_that_do_not_combine_with_shots_are_refused(cache, tmp_path):
    both = problem(cache, 60.0, 140.0)
    with pytest.raises(ValueError, match="model.windows with several shots"):
        ElasticPINN(both, width=8, depth=1, windows=TimeWindows(count=2, steps=3))
    with pytest.raises(ValueError, match="model.shot_network='one' must be 'networks' or 'input'"):
        ElasticPINN(both, width=8, depth=1, shot_network="one")
    path = tmp_path / "obs.csv"
    path.write_text("x,y,t,u,v\n10,200,0.1,0,0\n")
    with pytest.raises(ValueError, match="FileObservations holds the recordings of one shot, and data.problem has 2"):
        ElasticDataModule(both, observations=FileObservations(str(path)))


def test_a_source_near_an_edge_is_named_by_its_shot(cache):
    with pytest.warns(UserWarning, match=r"shots\[1\].sources\[0\] at \[195.0, 60.0\]"):
        problem(cache, 60.0, 195.0)


def test_the_shipped_layers_survey_has_three_shots_and_no_edge_warning():
    from pinn.cli import cli_main

    config = str(Path(__file__).resolve().parents[1] / "configs/inverse_layers.yaml")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*of its Gaussian.*")
        p = cli_main(["-c", config, "--data.observations=null"], run=False).datamodule.problem
    assert p.n_shots == 3 and [p.shot(k).sources[0].position[0] for k in range(3)] == [150.0, 300.0, 450.0]


def test_the_fwi_baseline_fits_every_shot(cache):
    """The classical baseline inverts both shots' recordings (made by its own propagator at the truth) together."""
    pytest.importorskip("deepwave", reason='the FWI baseline needs deepwave: pip install -e ".[fwi]"')
    from pinn.baselines.fwi import Survey, invert

    both = problem(cache, 60.0, 140.0)
    spec = LayerUnknowns([100.0], [1500.0, 2200.0], [800.0, 1400.0], [1800.0, 2100.0], ["vp"], 10.0, ["upper", "lower"])
    recordings = []
    for k, clean in enumerate(ReferenceObservations("receivers", n_times=16, quantity="velocity").load_shots(both)):
        positions, p_index = torch.unique(clean[:, :2], dim=0, return_inverse=True)
        times, t_index = torch.unique(clean[:, 2], return_inverse=True)
        survey = Survey(both.shot(k), positions, times, vs_min=800.0, max_vel=5000.0)
        with torch.no_grad():
            rec = survey.record(*survey.model(both.medium.values(survey.node_points().reshape(-1, 2))))
        recordings.append(torch.cat([clean[:, :3], rec[p_index, t_index].double()], 1))
    assert not torch.allclose(recordings[0][:, 3:], recordings[1][:, 3:])
    result = invert(both, spec, recordings, max_iter=15)
    assert result.estimates["lower/vp"] == pytest.approx(2500.0, rel=2e-3)  # from 12 % off
    assert result.estimates["upper/vp"] == pytest.approx(1500.0, rel=2e-3)
