"""Problems without a closed form through the command line: bad values stop with one line naming the key (exit 2,
nothing written); a tiny fit validates against the Devito reference, and predict writes the receivers'
seismograms that ObsPy reads."""

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pinn.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY_PROBLEM = {
    "class_path": "pinn.problems.WaveProblem",
    "init_args": {
        "domain": {"x": [0.0, 200.0], "y": [0.0, 200.0], "t": [0.0, 0.08]},
        "medium": {"class_path": "pinn.physics.media.Layered",
                   "init_args": {"layers": [{"vp": 1500.0, "vs": 800.0, "rho": 1800.0},
                                            {"vp": 2500.0, "vs": 1400.0, "rho": 2100.0}],
                                 "interfaces": [100.0], "smoothing": 10.0}},
        "sources": [{"class_path": "pinn.physics.sources.PointForce",
                     "init_args": {"position": [100.0, 150.0], "amplitude": 1.0e6, "width": 12.0,
                                   "wavelet": {"class_path": "pinn.physics.sources.Ricker",
                                               "init_args": {"f0": 8.0, "t0": 0.04}}}}],
        "boundaries": {"bottom": "absorbing", "right": "absorbing", "top": "free", "left": "fixed"},
        "receivers": {"line": {"start": [20.0, 190.0], "end": [180.0, 190.0], "count": 3}, "samples": 41},
        "reference": {"spacing": 10.0, "space_order": 4, "absorbing_cells": 10, "output_times": 9},
    },
}


def _config(tmp_path: Path, problem: dict, **model) -> str:
    config = {"seed_everything": 0,
              "trainer": {"max_steps": 4, "inference_mode": False, "check_val_every_n_epoch": 1,
                          "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
                          "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                     "init_args": {"save_dir": str(tmp_path / "logs"), "name": "tiny"}}},
              "model": {"width": 8, "depth": 2, **model},
              "data": {"problem": problem, "n_interior": 64, "n_boundary": 32, "n_initial": 32, "steps_per_epoch": 2,
                       "val_grid": [5, 5, 3], "predict_resolution": [6, 6], "predict_times": 3}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["pinn", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
        sys.exit(0)
    return exit_info.value.code, capsys.readouterr().err


def _with(path: str, value):
    """A copy of the tiny problem with the entry at ``path`` (keys and list indices under init_args) set."""
    problem = copy.deepcopy(TINY_PROBLEM)
    node = problem["init_args"]
    *parents, last = path
    for key in parents:
        node = node[key]
    node[last] = value
    return problem


def _bad_wavelet(tmp_path: Path) -> dict:
    (tmp_path / "wavelet.csv").write_text("t,w\n0.0,0.0\n0.01,abc\n")
    return _with(("sources", 0, "init_args", "wavelet"),
                 {"class_path": "pinn.physics.sources.FileWavelet",
                  "init_args": {"path": str(tmp_path / "wavelet.csv")}})


def _grid(tmp_path: Path, covers: bool = True, nan: bool = False) -> dict:
    x = np.linspace(0.0, 200.0 if covers else 150.0, 11)
    vp = np.full((11, 11), 2000.0)
    if nan:
        vp[4, 5] = np.nan
    np.savez(tmp_path / "model.npz", x=x, y=np.linspace(0.0, 200.0, 11), vp=vp, vs=vp / 2, rho=np.full((11, 11), 2e3))
    return _with(("medium",), {"class_path": "pinn.physics.grid.GridMedium",
                               "init_args": {"path": str(tmp_path / "model.npz")}})


CASES = {
    "vs >= vp": (lambda p: _with(("medium", "init_args", "layers", 1), {"vp": 1000.0, "vs": 1200.0, "rho": 2e3}),
                 "vs=1200.0"),
    "rho <= 0": (lambda p: _with(("medium", "init_args", "layers", 0, "rho"), 0.0), "rho=0.0"),
    "grid not finite": (lambda p: _grid(p, nan=True), "vp is not finite"),
    "grid does not cover": (lambda p: _grid(p, covers=False), "not the domain"),
    "source outside": (lambda p: _with(("sources", 0, "init_args", "position"), [100.0, 250.0]), "sources[0].position"),
    "receiver outside": (lambda p: _with(("receivers",), {"positions": [[50.0, 50.0], [300.0, 10.0]]}),
                         "receivers.positions[1]"),
    "unknown boundary kind": (lambda p: _with(("boundaries", "top"), "slippery"), "boundaries.top='slippery'"),
    "malformed wavelet file": (_bad_wavelet, "wavelet.csv: line 1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_problem_values_stop_with_one_line(case, tmp_path, monkeypatch, capsys):
    make, expected = CASES[case]
    code, err = _run(monkeypatch, capsys, "fit", "-c", _config(tmp_path, make(tmp_path)))
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "logs").exists() and not (tmp_path / "references").exists()


@pytest.mark.slow
def test_tiny_fit_validates_against_the_reference_and_predict_writes_seismograms(tmp_path, monkeypatch, capsys):
    obspy = pytest.importorskip("obspy")
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, TINY_PROBLEM)
    code, err = _run(monkeypatch, capsys, "reference", "-c", config)
    assert code == 0, err
    cached = list((tmp_path / "references").glob("*.npz"))
    assert len(cached) == 1
    code, err = _run(monkeypatch, capsys, "fit", "-c", config)
    assert code == 0, err
    assert list((tmp_path / "references").glob("*.npz")) == cached  # fit used the cached reference
    last = tmp_path / "logs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    code, err = _run(monkeypatch, capsys, "predict", "-c", config, "--ckpt_path", str(last))
    assert code == 0, err
    out = tmp_path / "logs" / "tiny" / "version_0" / "predictions" / "step_4"
    with np.load(out / "prediction.npz") as p:
        assert p["reference"].shape == p["displacement"].shape == (3, 6, 6, 2)
        assert np.abs(p["reference"]).max() > 0
    stream = obspy.read(str(out / "seismograms.mseed"))
    assert sorted({tr.stats.station for tr in stream}) == ["R001", "R002", "R003"]
    assert len(stream) == 12 and all(tr.stats.npts == 41 for tr in stream)  # 3 receivers x (u, v) x (PINN, ref)
    with np.load(out / "seismograms.npz") as s:
        reference = stream.select(station="R002", location="RF", channel="??Z")[0].data
        np.testing.assert_allclose(reference, s["reference"][1, :, 1], rtol=1e-6)
