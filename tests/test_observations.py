"""Observations: synthetic sensors against the exact solution, the .npz/.csv loader, and malformed files."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pinn.cli import cli_main, main
from pinn.io.observation_files import read_observations, write_observations
from pinn.physics.elasticity import Material
from pinn.problems.closed_form import Domain, PlaneWaves, Wave
from pinn.training.data import ElasticDataModule
from pinn.training.observations import FileObservations, SyntheticObservations

DOMAIN = Domain(x=(0.0, 2.0), y=(-1.0, 1.0), t=(0.0, 0.5))


def plane_waves() -> PlaneWaves:
    waves = [Wave("P", 0.3, 2 * math.pi), Wave("S", 1.2, 2 * math.pi)]
    return PlaneWaves(waves, DOMAIN, Material(1.0, 0.5, 1.0))


def samples() -> torch.Tensor:
    return SyntheticObservations(n_sensors=7, n_times=3, seed=1).load(plane_waves())


# ---- synthetic ---------------------------------------------------------------------------------------------
def test_synthetic_reads_the_exact_solution_at_sensors_and_times():
    problem = plane_waves()
    obs = SyntheticObservations(n_sensors=10, n_times=4, layout="sobol", seed=3).load(problem)
    assert obs.shape == (40, 5) and obs.dtype == torch.float64
    xyt = obs[:, :3].double()
    torch.testing.assert_close(obs[:, 3:], problem.displacement(xyt), rtol=0, atol=1e-12)
    assert sorted(set(obs[:, 2].tolist())) == pytest.approx([0.0, 0.5 / 3, 1.0 / 3, 0.5])
    sensors = {tuple(row) for row in obs[:, :2].tolist()}
    assert len(sensors) == 10  # every sensor is sampled at every time
    assert (obs[:, 0] >= 0).all() and (obs[:, 0] <= 2).all() and (obs[:, 1] >= -1).all() and (obs[:, 1] <= 1).all()


def test_synthetic_is_reproducible_and_seeded():
    a = SyntheticObservations(n_sensors=5, n_times=2, noise=0.1, seed=4).load(plane_waves())
    b = SyntheticObservations(n_sensors=5, n_times=2, noise=0.1, seed=4).load(plane_waves())
    c = SyntheticObservations(n_sensors=5, n_times=2, noise=0.1, seed=5).load(plane_waves())
    assert torch.equal(a, b)
    assert not torch.equal(a[:, :2], c[:, :2])


def test_synthetic_noise_has_the_requested_relative_level():
    problem = plane_waves()
    obs = SyntheticObservations(n_sensors=2000, n_times=10, noise=0.05, seed=0).load(problem)
    clean = problem.displacement(obs[:, :3].double())
    rms = clean.pow(2).mean().sqrt()
    noise = obs[:, 3:].double() - clean  # 40 000 Gaussian draws: the sample std is within ~1 % of sigma
    assert float(noise.std() / rms) == pytest.approx(0.05, rel=0.02)
    assert abs(float(noise.mean() / rms)) < 0.002


def test_sources_record_their_settings_as_plain_data(tmp_path):
    synthetic = SyntheticObservations(n_sensors=9, layout="sobol", n_times=2, noise=0.02, seed=7)
    config = synthetic.config()
    assert config == {"class_path": "pinn.training.observations.SyntheticObservations",
                      "init_args": {"n_sensors": 9, "layout": "sobol", "n_times": 2, "noise": 0.02, "seed": 7}}
    rebuilt = SyntheticObservations(**config["init_args"])
    assert torch.equal(rebuilt.load(plane_waves()), synthetic.load(plane_waves()))
    write_observations(tmp_path / "m.csv", samples())
    assert FileObservations(str(tmp_path / "m.csv")).config()["init_args"] == {"path": str(tmp_path / "m.csv"),
                                                                                "quantity": "displacement"}
    dm = ElasticDataModule(plane_waves(), n_interior=8, n_boundary=8, n_initial=8, observations=synthetic)
    assert dm.hparams["observations"] == config  # what a checkpoint stores: plain data, no pickled object


@pytest.mark.parametrize(
    "kwargs, word",
    [({"n_sensors": 0}, "n_sensors"), ({"n_times": 0}, "n_times"), ({"noise": -0.1}, "noise"),
     ({"noise": math.nan}, "noise"), ({"layout": "hex"}, "layout")],
)
def test_synthetic_rejects_bad_settings(kwargs, word):
    with pytest.raises(ValueError, match=word):
        SyntheticObservations(**kwargs)


# ---- files: good -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_file_round_trip(tmp_path, suffix):
    obs = samples()
    path = tmp_path / f"sensors{suffix}"
    write_observations(path, obs)
    loaded = FileObservations(str(path)).load(plane_waves())
    torch.testing.assert_close(loaded, obs, rtol=1e-7, atol=1e-7)


def test_csv_columns_in_any_order_extra_columns_and_blank_lines(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("station, v ,t,u,x,y\nA,0.5,0.1,-0.25,1.5,0.0\n\nB,1e-3,0.2,2,0.25,-0.5\n")
    expected = torch.tensor([[1.5, 0.0, 0.1, -0.25, 0.5], [0.25, -0.5, 0.2, 2.0, 1e-3]], dtype=torch.float64)
    torch.testing.assert_close(read_observations(path), expected)
    # a spreadsheet's byte-order mark does not glue onto the first column's name (the station files' reader)
    path.write_text("\ufeffstation, v ,t,u,x,y\nA,0.5,0.1,-0.25,1.5,0.0\n\nB,1e-3,0.2,2,0.25,-0.5\n", encoding="utf-8")
    torch.testing.assert_close(read_observations(path), expected)


def test_npz_with_extra_arrays_and_integer_columns(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, x=np.array([1, 0]), y=np.array([0.5, 0.25]), t=np.array([0.0, 0.1]), u=np.array([1.0, 2.0]),
             v=np.array([3.0, 4.0]), sensor_id=np.array([7, 8]))
    expected = torch.tensor([[1, 0.5, 0, 1, 3], [0, 0.25, 0.1, 2, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(read_observations(path), expected)


def test_data_module_puts_the_observations_in_every_batch(tmp_path):
    path = tmp_path / "m.npz"
    write_observations(path, samples())
    dm = ElasticDataModule(plane_waves(), n_interior=16, n_boundary=8, n_initial=8, batch_size=4,
                           observations=FileObservations(str(path)))
    torch.testing.assert_close(dm.observed, samples())  # loaded (and checked) when the data module is built
    dm.setup()
    for step in range(5):
        torch.testing.assert_close(dm.batch(step)["observations"], samples())
    plain = ElasticDataModule(plane_waves(), n_interior=16, n_boundary=8, n_initial=8)
    plain.setup()
    assert set(plain.batch(0)) == {"interior", "boundary", "initial"}


def test_processes_share_the_observations_without_overlap():
    obs = SyntheticObservations(n_sensors=7, n_times=3, seed=1)

    def make() -> ElasticDataModule:
        return ElasticDataModule(plane_waves(), n_interior=24, n_boundary=12, n_initial=12, batch_size=8,
                                 observations=obs)

    for world in (2, 3):
        shares = []
        for rank in range(world):
            dm = make()
            dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, global_step=0)
            dm.setup()
            shares.append(dm.batch(1)["observations"])
        assert sorted(map(tuple, torch.cat(shares).tolist())) == sorted(map(tuple, samples().tolist()))
        assert max(len(x) for x in shares) - min(len(x) for x in shares) <= 1
    few = ElasticDataModule(plane_waves(), n_interior=24, n_boundary=24, n_initial=24, observations=obs)
    few.trainer = SimpleNamespace(global_rank=0, world_size=22, global_step=0)
    few.setup()
    with pytest.raises(ValueError, match="21 observations cannot be shared among 22 processes"):
        few.batch(0)


# ---- files: malformed --------------------------------------------------------------------------------------
def _csv(tmp_path, text: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("x,y,t,u\n0,0,0,1\n", ["bad.csv", "missing column 'v'"]),
        ("x,y,t,u,v\n0,0,0,1,2\n0,0,0.1,oops,2\n", ["bad.csv", "line 3", "column 'u'", "'oops'"]),
        ("x,y,t,u,v\n0,0,0,1,2\n\n0,0,0.1,1,nan\n", ["bad.csv", "line 4", "column 'v'", "not a finite"]),
        ("x,y,t,u,v\n0,0,0,1\n", ["bad.csv", "line 2", "4 fields"]),
        ("x,y,t,u,v\n", ["bad.csv", "no samples"]),
        ("", ["bad.csv", "empty"]),
    ],
)
def test_malformed_csv_names_file_and_place(tmp_path, text, fragments):
    with pytest.raises(ValueError) as info:
        read_observations(_csv(tmp_path, text))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_malformed_npz_names_file_and_column(tmp_path):
    good = {c: np.zeros(3) for c in "xytuv"}
    cases = [
        ({k: v for k, v in good.items() if k != "t"}, ["missing column 't'"]),
        ({**good, "u": np.array([0.0, np.inf, 1.0])}, ["column 'u'", "sample 1", "not a finite"]),
        ({**good, "v": np.zeros(4)}, ["column 'v'", "4 samples"]),
        ({**good, "y": np.zeros((3, 2))}, ["column 'y'", "1-D numeric"]),
        ({**good, "x": np.array(["a", "b", "c"])}, ["column 'x'", "1-D numeric"]),
    ]
    for i, (arrays, fragments) in enumerate(cases):
        path = tmp_path / f"bad{i}.npz"
        np.savez(path, **arrays)
        with pytest.raises(ValueError) as info:
            read_observations(path)
        for fragment in [path.name, *fragments]:
            assert fragment in str(info.value), (i, str(info.value))


def test_unreadable_missing_and_foreign_files(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip archive at all")
    with pytest.raises(ValueError, match="corrupt.npz.*not a readable .npz"):
        read_observations(corrupt)
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_observations(tmp_path / "nowhere.csv")
    other = tmp_path / "data.txt"
    other.write_text("x,y,t,u,v\n")
    with pytest.raises(ValueError, match="data.txt.*.npz or .csv"):
        read_observations(other)


def test_sample_outside_the_domain_is_named(tmp_path):
    path = tmp_path / "far.csv"
    path.write_text("x,y,t,u,v\n0.5,0,0.1,0,0\n0.5,0,0.7,0,0\n")  # t = 0.7 > t1 = 0.5
    with pytest.raises(ValueError, match=r"far.csv: sample 1 .* outside the problem's domain"):
        FileObservations(str(path)).load(plane_waves())


# ---- through the command line ------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false", "--model.width", "8", "--model.depth",
        "1", "--data.n_interior", "16", "--data.batch_size", "null", "--data.n_boundary", "8", "--data.n_initial", "8",
        "--data.val_grid", "[3, 3, 2]"]


def _overlay(tmp_path, measurements: Path) -> Path:
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("data:\n  observations:\n    class_path: pinn.training.observations.FileObservations\n"
                       f"    init_args:\n      path: {measurements}\n")
    return overlay


def test_cli_inverts_measurements_from_a_file_overlay(tmp_path):
    reference = PlaneWaves([Wave("P", 0.3, 2 * math.pi), Wave("S", 1.2, 2 * math.pi)], Domain(), Material(1, 0.5, 1))
    measured = SyntheticObservations(n_sensors=6, n_times=3, noise=0.01, seed=2).load(reference)
    write_observations(tmp_path / "measured.csv", measured)
    args = ["fit", "-c", str(ROOT / "configs/inverse_plane_wave.yaml"), "-c", str(_overlay(tmp_path, tmp_path /
            "measured.csv")), "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"), *TINY]
    cli = cli_main(args)
    torch.testing.assert_close(cli.datamodule.observed, measured, rtol=1e-7, atol=1e-7)
    assert "train/loss_data" in cli.trainer.callback_metrics and cli.trainer.global_step == 2


def test_cli_reports_a_malformed_file_in_one_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "field.csv"
    bad.write_text("x,y,t,u,v\n0.1,0.2,0.3,1,2\n0.1,0.2,0.4,1,\n")
    logs = tmp_path / "logs"
    argv = ["pinn", "fit", "-c", str(ROOT / "configs/inverse_plane_wave.yaml"), "-c", str(_overlay(tmp_path, bad)),
            "--trainer.logger.init_args.save_dir", str(logs), *TINY]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "field.csv" in errors[0] and "line 3" in errors[0] and "column 'v'" in errors[0]
    assert not logs.exists()  # stopped before anything was written
