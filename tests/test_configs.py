"""Every YAML in configs/ parses and instantiates: on its own where it is complete, else on top of plane_wave.yaml."""

import sys
from pathlib import Path

import pytest

from pinn.cli import cli_main
from pinn.problems.closed_form import PlaneWaves
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN
from pinn.training.stages import LBFGSStage

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
REFERENCE = CONFIGS[0].parent / "plane_wave.yaml"


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_config_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pinn"])
    args = ["-c", str(REFERENCE)] if config != REFERENCE else []
    cli = cli_main([*args, "-c", str(config), "--trainer.logger.init_args.save_dir", str(tmp_path)], run=False)
    assert isinstance(cli.model, ElasticPINN) and isinstance(cli.datamodule, ElasticDataModule)
    assert cli.model.problem is cli.datamodule.problem  # one problem, shared


def test_reference_config_is_the_reference_problem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pinn"])
    cli = cli_main(["-c", str(REFERENCE)], run=False)
    problem, dm, model = cli.datamodule.problem, cli.datamodule, cli.model
    assert isinstance(problem, PlaneWaves)
    assert (problem.material.lam, problem.material.mu, problem.material.rho) == (1.0, 0.5, 1.0)
    assert (problem.domain.x, problem.domain.y, problem.domain.t) == ((0, 1), (0, 1), (0, 1))
    waves = [(w.kind, w.angle, w.wavenumber, w.amplitude, w.phase) for w in problem.waves]
    assert waves == [("P", 0.3, pytest.approx(6.283185307179586), 1.0, 0.0),
                     ("S", 1.2, pytest.approx(6.283185307179586), 1.0, 0.0)]
    assert (dm.n["interior"], dm.n["boundary"], dm.n["initial"], dm.val_grid) == (4096, 1024, 1024, (41, 41, 11))
    assert (model.hparams.width, model.hparams.depth, model.hparams.activation) == (32, 3, "tanh")
    assert model.net.fourier is None
    assert model.lbfgs == LBFGSStage(method="levenberg_marquardt", start_step=100, max_iter=1, damping=1e-3,
                                     float64=True, patience=25, min_improvement=1e-3, refreshes=3)
    assert cli.trainer.max_steps == 1500
    optimizer = model.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    assert type(optimizer).__name__ == "PersistentAdam" and optimizer.defaults["lr"] == 1e-3
