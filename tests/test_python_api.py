"""Python use: the README's example runs, ``pinn.load`` rebuilds a model with its own problem, and a model and a
data module with different problems refuse to train."""

from __future__ import annotations

import os
import re
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import pinn
from pinn.cli import cli_main
from pinn.io.checkpointing import CheckpointError, save_checkpoint
from pinn.problems import PlaneWaves, Wave

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert Path("runs/first.ckpt").is_file()
    assert "tensor" in capsys.readouterr().out


def test_load_rebuilds_the_model_with_its_own_problem(tmp_path, tiny_run_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(tiny_run_config(tmp_path, "own", {"max_steps": 6}, data={
        "problem": {"class_path": "pinn.problems.PlaneWaves", "init_args": {
            "material": {"lam": 2.0, "mu": 0.7, "rho": 1.3}, "waves": [{"kind": "S", "angle": 0.4}]}},
        "n_interior": 64, "n_boundary": 16, "n_initial": 16, "steps_per_epoch": 3, "val_grid": [4, 4, 3]}))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = cli_main(["fit", "-c", str(path)])
    ckpt = next((tmp_path / "logs" / "own").glob("version_0/checkpoints/last.ckpt"))
    before = sorted(str(p) for p in tmp_path.rglob("*"))

    for model in (pinn.load(ckpt), pinn.ElasticPINN.load_from_checkpoint(ckpt)):
        assert isinstance(model.problem, PlaneWaves) and not model.training
        assert float(model.problem.material.lam) == 2.0 and float(model.problem.material.rho) == 1.3
        assert model.problem.waves[0].kind == "S"
        xyt = torch.rand(32, 3, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(model(xyt), cli.model.eval()(xyt), rtol=0, atol=0)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # loading wrote nothing


def test_load_names_a_checkpoint_without_a_config(tmp_path):
    problem = PlaneWaves([Wave()])
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        inference_mode=False, limit_val_batches=0, enable_model_summary=False)
    trainer.fit(pinn.ElasticPINN(problem, width=4, depth=1),
                pinn.ElasticDataModule(problem, n_interior=16, n_boundary=8, n_initial=8))
    path = tmp_path / "bare.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"bare.ckpt: not a pinn checkpoint"):  # written without a checksum
        pinn.load(path)
    save_checkpoint(torch.load(path, weights_only=True), path)  # sealed, as `python -m pinn.io.checkpointing seal`
    with pytest.raises(CheckpointError, match=r"bare.ckpt: holds no run config"):
        pinn.load(path)


def test_model_and_data_with_different_problems_refuse_to_train(tmp_path):
    data = pinn.ElasticDataModule(PlaneWaves([Wave()], material=pinn.Material(2.0, 0.5, 1.0)), n_interior=16,
                                  n_boundary=8, n_initial=8)
    model = pinn.ElasticPINN(PlaneWaves([Wave()]), width=4, depth=1)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="the model and the data module hold different problems"):
        trainer.fit(model, data)
    assert model.global_step == 0 and not os.listdir(tmp_path)
