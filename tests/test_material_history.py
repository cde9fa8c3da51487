"""``material_history.csv``: the estimates of a tiny inverse run at the expected steps, equal to the material's values
there; a run resumed from an earlier checkpoint continues the file without repeating a step; nothing for a forward
run; the columns of layers and maps; the callback is on by default in the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from pinn.io.material_history import MaterialHistory, estimates, read_history
from pinn.physics.elasticity import Material
from pinn.physics.inversion import FieldUnknowns, LayerUnknowns, TrainableField, TrainableLayers
from pinn.physics.unknowns import Unknowns
from pinn.problems import Domain
from pinn.problems.closed_form import PlaneWaves, Wave
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN
from pinn.training.observations import SyntheticObservations

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


class RecordMaterial(Callback):
    """The trained material's values after every step, the oracle of the file's rows."""

    def __init__(self) -> None:
        self.values: dict[int, dict[str, float]] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.values[trainer.global_step] = pl_module.trainable_material.values()

    def on_train_batch_end(self, trainer, pl_module, *_) -> None:
        self.values[trainer.global_step] = pl_module.trainable_material.values()


def fit(tmp_path: Path, steps: int, unknowns: Unknowns | None, ckpt_path: str | None = None) -> RecordMaterial:
    """A tiny fit of the closed-form plane waves from 12 sensors, logging into ``tmp_path/logs/h/version_0``."""
    torch.manual_seed(0)
    problem = PlaneWaves([Wave("P", 0.3, 2 * math.pi), Wave("S", 1.2, 2 * math.pi)], Domain(), Material(1.0, 0.5, 1.0))
    model = ElasticPINN(problem, width=8, depth=1, unknowns=unknowns)
    observations = SyntheticObservations(n_sensors=12, n_times=3, seed=0) if unknowns else None
    dm = ElasticDataModule(problem, n_interior=32, n_boundary=16, n_initial=16, steps_per_epoch=4,
                           observations=observations)
    record = RecordMaterial() if unknowns else Callback()
    trainer = L.Trainer(max_steps=steps, logger=TensorBoardLogger(tmp_path / "logs", "h", version=0),
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        inference_mode=False, accelerator="cpu", devices=1,
                        callbacks=[MaterialHistory(every_n_steps=3, dpi=40), record,
                                   ModelCheckpoint(filename="{step}", every_n_train_steps=4, save_top_k=-1)])
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return record


def test_rows_at_the_start_every_n_steps_and_the_end_then_a_resumed_run_continues(tmp_path):
    run = tmp_path / "logs/h/version_0"
    first = fit(tmp_path, 8, Unknowns(lam=2.0, mu=2.0, lr=0.05))
    columns, rows = read_history(run / "material_history.csv")
    assert columns == ["step", "lam", "mu"]  # the estimated quantities; rho is known
    assert rows[:, 0].tolist() == [0, 3, 6, 8]  # the start, every 3rd step, the end
    assert rows[0, 1:].tolist() == [2.0, 2.0]  # the initial guess
    for row in rows:
        expected = first.values[int(row[0])]
        np.testing.assert_allclose(row[1:], [expected["lam"], expected["mu"]], rtol=1e-8)
    assert len(np.unique(rows[1:, 1])) == 3  # the estimate moved
    assert (run / "material_history.png").stat().st_size > 0
    # resumed from the checkpoint of step 4: rows 6 and 8 were written after it, so they are written again, once
    second = fit(tmp_path, 10, Unknowns(lam=2.0, mu=2.0, lr=0.05), str(run / "checkpoints/step=4.ckpt"))
    columns, resumed = read_history(run / "material_history.csv")
    assert columns == ["step", "lam", "mu"]
    assert resumed[:, 0].tolist() == [0, 3, 4, 6, 9, 10]
    np.testing.assert_array_equal(resumed[:2], rows[:2])
    np.testing.assert_allclose(resumed[3, 1:], rows[2, 1:], rtol=1e-8)  # step 6 again: a resumed run is the same run
    for row in resumed[2:]:
        expected = second.values[int(row[0])]
        np.testing.assert_allclose(row[1:], [expected["lam"], expected["mu"]], rtol=1e-8)


def test_a_forward_run_writes_no_history(tmp_path):
    fit(tmp_path, 2, None)
    assert not list((tmp_path / "logs").rglob("material_history*"))


def test_columns_of_layers_and_of_a_map():
    layers = TrainableLayers(LayerUnknowns([50.0], [2000.0, 2200.0], [1000.0, 1100.0], [1900.0, 2100.0],
                                           train=["vp", "vs"], names=["upper", "lower"]))
    assert estimates(layers) == pytest.approx({"upper/vp": 2000.0, "upper/vs": 1000.0, "lower/vp": 2200.0,
                                               "lower/vs": 1100.0}, rel=1e-6)
    field = TrainableField(FieldUnknowns([3, 3], {"lam": 4e9, "mu": 2e9, "rho": 1200.0}, ["mu", "rho"]),
                           Domain((0.0, 1.0), (0.0, 1.0), (0.0, 1.0)))
    assert estimates(field) == pytest.approx({"mu_min": 2e9, "mu_max": 2e9, "rho_min": 1200.0, "rho_max": 1200.0},
                                             rel=1e-6)


def test_the_cli_registers_it_and_checks_its_settings(tmp_path, monkeypatch):
    from pinn.cli import cli_main

    monkeypatch.chdir(tmp_path)
    cli = cli_main(["-c", str(ROOT / "configs/inverse_plane_wave.yaml"), "--material_history.every_n_steps", "7"],
                   run=False)
    assert [c.every_n_steps for c in cli.trainer.callbacks if isinstance(c, MaterialHistory)] == [7]
    with pytest.raises(ValueError, match="every_n_steps=-1 must be >= 0"):
        MaterialHistory(every_n_steps=-1)
