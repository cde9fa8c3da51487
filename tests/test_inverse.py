"""Inverse problems: the positive parametrisation, the identifiability guard, parameter groups, checkpoints,
an inversion against the exact field, a small joint inversion and the reference config through the CLI."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from pinn.cli import cli_main, main
from pinn.io.checkpointing import load_checkpoint
from pinn.optim.persistent_adam import PersistentAdam
from pinn.physics.elasticity import Material
from pinn.physics.unknowns import TrainableMaterial, Unknowns
from pinn.problems.closed_form import Domain, Manufactured, PlaneWaves, Wave
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN, LossWeights
from pinn.training.observations import SyntheticObservations

ROOT = Path(__file__).resolve().parents[1]
TRUTH = Material(1.0, 0.5, 1.0)


def plane_waves() -> PlaneWaves:
    return PlaneWaves([Wave("P", 0.3, 2 * math.pi), Wave("S", 1.2, 2 * math.pi)], Domain(), TRUTH)


# ---- parametrisation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("names", [("lam",), ("mu",), ("rho",), ("lam", "mu"), ("mu", "rho"), ("lam", "mu", "rho")])
def test_starts_at_the_guess_and_keeps_known_values(names):
    guess = {"lam": 2.0, "mu": 1.5, "rho": 3.0}
    m = TrainableMaterial(TRUTH, Unknowns(**{n: guess[n] for n in names}))
    assert sorted(n.removeprefix("raw_") for n, _ in m.named_parameters()) == sorted(names)
    for name in ("lam", "mu", "rho"):
        expected = guess[name] if name in names else getattr(TRUTH, name)
        assert m.values()[name] == pytest.approx(expected, rel=1e-6)


def test_raw_parameters_map_through_the_exponential():
    m = TrainableMaterial(TRUTH, Unknowns(lam=2.0, mu=0.7, rho=1.3))
    with torch.no_grad():
        m.raw_mu.fill_(math.log(0.25))
        m.raw_lam.fill_(math.log(0.5))
        m.raw_rho.fill_(math.log(4.0))
    v = m.values()
    assert v["mu"] == pytest.approx(0.25) and v["rho"] == pytest.approx(4.0)
    assert v["lam"] == pytest.approx(0.5 - 0.25)  # lam = exp(s_lam) - mu: lam + mu = 0.5
    m.lam.backward()  # d lam / d s_lam = lam + mu, d lam / d s_mu = -mu
    assert float(m.raw_lam.grad) == pytest.approx(0.5) and float(m.raw_mu.grad) == pytest.approx(-0.25)


def test_material_stays_admissible_under_any_update():
    m = TrainableMaterial(TRUTH, Unknowns(lam=2.0, mu=2.0, rho=2.0))
    for raw in (-80.0, -10.0, 0.0, 10.0, 30.0):  # any raw value maps to an admissible material
        with torch.no_grad():
            for p in m.parameters():
                p.fill_(raw)
        v = m.values()
        assert v["mu"] > 0 and v["rho"] > 0 and v["lam"] + v["mu"] > 0, (raw, v)
    m = TrainableMaterial(TRUTH, Unknowns(lam=2.0, mu=2.0, rho=2.0))
    opt = torch.optim.SGD(m.parameters(), lr=5.0)
    for _ in range(20):  # a loss that pulls lam + mu, mu and rho hard towards -infinity
        opt.zero_grad()
        (m.lam + 2 * m.mu + m.rho).backward()
        opt.step()
        v = m.values()
        assert v["mu"] > 0 and v["rho"] > 0 and v["lam"] + v["mu"] > 0
    assert v["mu"] < 1e-3 and v["rho"] < 1e-3 and v["lam"] + v["mu"] < 1e-3  # at the bound, never through it


def test_negative_known_lam_raises_the_floor_of_mu():
    known = Material(lam=-0.3, mu=0.5, rho=1.0)
    m = TrainableMaterial(known, Unknowns(mu=0.4))
    assert m.values()["mu"] == pytest.approx(0.4)
    with torch.no_grad():
        m.raw_mu.fill_(-10.0)
    v = m.values()
    assert v["mu"] == pytest.approx(0.3 + math.exp(-10.0), rel=1e-6) and v["lam"] + v["mu"] > 0


@pytest.mark.parametrize(
    "unknowns, word",
    [(dict(mu=-1.0), "unknowns.*mu=-1.0"), (dict(rho=0.0), "unknowns.*rho=0.0"),
     (dict(lam=-3.0), "unknowns.*lam=-3.0.*lam \\+ mu"), (dict(lam=math.inf), "unknowns.lam=inf"),
     (dict(mu=1.0, lr=0.0), "unknowns.lr=0.0")],
)
def test_inadmissible_guesses_and_settings_are_refused(unknowns, word):
    with pytest.raises(ValueError, match=word):
        TrainableMaterial(TRUTH, Unknowns(**unknowns))


# ---- identifiability guard ---------------------------------------------------------------------------------
def test_guard_refuses_all_three_without_body_force():
    with pytest.raises(ValueError) as info:
        ElasticPINN(plane_waves(), width=8, depth=1, unknowns=Unknowns(lam=2.0, mu=2.0, rho=2.0))
    message = str(info.value)
    assert "rho: null" in message and "body force" in message and "(lam, mu, rho) -> c (lam, mu, rho)" in message


def test_guard_accepts_two_unknowns_or_a_body_force():
    ElasticPINN(plane_waves(), width=8, depth=1, unknowns=Unknowns(mu=2.0, rho=2.0))
    ElasticPINN(Manufactured(material=TRUTH), width=8, depth=1, unknowns=Unknowns(lam=2.0, mu=2.0, rho=2.0))


def test_cli_prints_the_guard_in_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    argv = ["pinn", "fit", "-c", str(ROOT / "configs/inverse_plane_wave.yaml"), "--model.unknowns.rho", "2.0",
            "--trainer.logger.init_args.save_dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("pinn: error: model.unknowns") and "rho: null" in errors[0]
    assert not any(tmp_path.iterdir())  # refused before anything was written


# ---- module wiring -----------------------------------------------------------------------------------------
def test_material_has_its_own_param_group_and_lr():
    model = ElasticPINN(plane_waves(), width=8, depth=2, unknowns=Unknowns(lam=2.0, mu=2.0, lr=0.03),
                        optimizer=lambda params: PersistentAdam(params, lr=0.002))
    opt = model.configure_optimizers()
    net_group, material_group = opt.param_groups
    assert net_group["lr"] == 0.002 and material_group["lr"] == 0.03
    assert {id(p) for p in material_group["params"]} == {id(model.trainable_material.raw_lam),
                                                        id(model.trainable_material.raw_mu)}
    assert len(net_group["params"]) + 2 == len(list(model.parameters()))
    forward = ElasticPINN(plane_waves(), width=8, depth=2)
    assert forward.trainable_material is None and forward.material is forward.problem.material
    assert len(forward.configure_optimizers().param_groups) == 1


def test_checkpoint_state_carries_the_material():
    model = ElasticPINN(plane_waves(), width=8, depth=2, unknowns=Unknowns(lam=2.0, mu=2.0))
    with torch.no_grad():
        model.trainable_material.raw_mu.fill_(math.log(0.7))
    state = model.state_dict()
    assert {"trainable_material.raw_lam", "trainable_material.raw_mu", "trainable_material.rho_known"} <= set(state)
    fresh = ElasticPINN(plane_waves(), width=8, depth=2, unknowns=Unknowns(lam=2.0, mu=2.0))
    fresh.load_state_dict(state)
    assert fresh.trainable_material.values() == model.trainable_material.values()


class ExactField(nn.Module):
    """The problem's closed-form displacement in place of the network: only the material is left to fit."""

    def __init__(self, problem) -> None:
        super().__init__()
        self.problem = problem

    def forward(self, xyt: torch.Tensor) -> torch.Tensor:
        return self.problem.displacement(xyt)


class RecordMaterial(L.Callback):
    """Keeps the material each training step starts from (the value that step logs)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.last = pl_module.trainable_material.values()


def _fit(model, datamodule, steps: int, tmp_path, callbacks=()) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, inference_mode=False,
                        default_root_dir=tmp_path, accelerator="cpu", devices=1, callbacks=list(callbacks))
    trainer.fit(model, datamodule)
    return trainer


def test_exact_field_recovers_the_truth(tmp_path):
    # With the exact displacement the residual vanishes only at the true material, so the trainable material
    # must converge onto it; rho stays known. This checks residual, parametrisation, param group and logging.
    problem = plane_waves()
    model = ElasticPINN(problem, width=4, depth=1, engine="autograd", unknowns=Unknowns(lam=2.0, mu=2.0, lr=0.1),
                        loss_weights=LossWeights(pde=1.0, bc=0.0, ic_disp=0.0, ic_vel=0.0, data=0.0))
    model.net = ExactField(problem)
    dm = ElasticDataModule(problem, n_interior=64, n_boundary=8, n_initial=8, steps_per_epoch=50)
    record = RecordMaterial()
    trainer = _fit(model, dm, 200, tmp_path, [record])
    values = model.trainable_material.values()  # from lam = 2, mu = 2: 100 % and 300 % off
    assert values["lam"] == pytest.approx(1.0, rel=0.02) and values["mu"] == pytest.approx(0.5, rel=0.02)
    assert values["rho"] == 1.0
    metrics = trainer.callback_metrics  # the last step logs the material it started from
    for name in ("lam", "mu", "rho"):
        assert float(metrics[f"material/{name}"]) == record.last[name]


def test_small_joint_inversion_moves_towards_the_truth(tmp_path):
    # A tiny network fitted to 40 sensors jointly with the material: 400 steps must cut the distance to the truth
    # in log space by more than half (about to a quarter; the README figures come from inverse_plane_wave.yaml).
    L.seed_everything(0)
    problem = plane_waves()
    model = ElasticPINN(problem, width=32, depth=3, unknowns=Unknowns(lam=2.0, mu=2.0, lr=0.01),
                        loss_weights=LossWeights(pde=0.001, bc=1.0, ic_disp=1.0, ic_vel=0.02, data=1.0))
    obs = SyntheticObservations(n_sensors=40, n_times=11, seed=0)
    dm = ElasticDataModule(problem, n_interior=256, n_boundary=128, n_initial=128, observations=obs)
    trainer = _fit(model, dm, 400, tmp_path)
    values = model.trainable_material.values()
    start = abs(math.log(2.0 / 1.0)) + abs(math.log(2.0 / 0.5))
    now = abs(math.log(values["lam"] / 1.0)) + abs(math.log(values["mu"] / 0.5))
    assert now < 0.4 * start, values
    assert 0.5 < values["lam"] < 1.5 and 0.4 < values["mu"] < 0.8, values
    assert "train/loss_data" in trainer.callback_metrics


def test_reference_config_runs_through_the_cli_and_checkpoints_the_material(tmp_path):
    args = ["fit", "-c", str(ROOT / "configs/inverse_plane_wave.yaml"),
            "--trainer.max_steps", "3", "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1",
            "--trainer.check_val_every_n_epoch", "1", "--data.steps_per_epoch", "3",
            "--model.width", "8", "--model.depth", "1", "--data.n_interior", "32", "--data.batch_size", "16",
            "--data.n_boundary", "16", "--data.n_initial", "16", "--data.val_grid", "[4, 4, 3]",
            "--data.observations.init_args.n_sensors", "5", "--data.observations.init_args.noise", "0.01"]
    cli = cli_main(args)
    metrics = cli.trainer.callback_metrics
    assert {"material/lam", "material/mu", "material/rho", "train/loss_data"} <= set(metrics)
    assert float(metrics["material/rho"]) == 1.0 and float(metrics["material/lam"]) != 2.0
    assert cli.datamodule.observations.noise == 0.01 and cli.datamodule.observed.shape == (5 * 21, 5)
    ckpt = load_checkpoint(next(tmp_path.glob("inverse_plane_wave/version_0/checkpoints/last.ckpt")))
    material = cli.model.trainable_material
    assert torch.equal(ckpt["state_dict"]["trainable_material.raw_lam"], material.raw_lam.detach())
    assert torch.equal(ckpt["state_dict"]["trainable_material.raw_mu"], material.raw_mu.detach())
    assert ckpt["hyper_parameters"]["unknowns"] == {"lam": 2.0, "mu": 2.0, "rho": None, "lr": 0.01, "layers": None,
                                                  "field": None, "start_step": 0}
    observations = ckpt["datamodule_hyper_parameters"]["observations"]
    assert observations["class_path"] == "pinn.training.observations.SyntheticObservations"
    assert observations["init_args"]["noise"] == 0.01 and observations["init_args"]["n_sensors"] == 5
