"""PersistentAdam inside Lightning: checkpoint resume, corrupt optimizer state, optimizer/scheduler chosen in YAML."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch

from pinn.cli import cli_main, main
from pinn.io.checkpointing import save_checkpoint
from pinn.optim.persistent_adam import FORMAT_VERSION, PersistentAdam
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_CLI = ["--model.width", "8", "--model.depth", "1", "--data.n_interior", "32", "--data.n_boundary", "16",
            "--data.n_initial", "16", "--data.val_grid", "[3, 3, 2]", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]


def fit(max_steps: int, root: Path, ckpt_path: str | None = None) -> tuple[L.Trainer, ElasticPINN]:
    L.seed_everything(0, verbose=False)
    model = ElasticPINN(width=8, depth=2, optimizer=partial(PersistentAdam, lr=0.01, amsgrad=True),
                        scheduler=partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.9))
    data = ElasticDataModule(n_interior=32, n_boundary=16, n_initial=16, batch_size=16, steps_per_epoch=2,
                             val_grid=(3, 3, 2))
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, inference_mode=False, accelerator="cpu",
                        devices=1, default_root_dir=root)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return trainer, model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A run stopped after 4 steps and its checkpoint, plus the same run done in one go to 6 steps."""
    root = tmp_path_factory.mktemp("resume")
    _, uninterrupted = fit(6, root)
    trainer, _ = fit(4, root)
    path = root / "step4.ckpt"
    trainer.save_checkpoint(path)
    return path, uninterrupted


def test_lightning_checkpoint_resume_continues_exactly(checkpoint, tmp_path):
    path, uninterrupted = checkpoint
    saved = torch.load(path, weights_only=True)  # plain data only
    opt_state = saved["optimizer_states"][0]
    assert opt_state["format_version"] == FORMAT_VERSION
    assert {entry["step"].item() for entry in opt_state["state"].values()} == {4.0}
    trainer, resumed = fit(6, tmp_path, str(path))
    assert trainer.global_step == 6
    for (name, a), b in zip(resumed.named_parameters(), uninterrupted.parameters()):
        assert torch.equal(a, b), name
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, PersistentAdam)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.9**6, rel=1e-12)
    assert all(s["step"].item() == 6 and "max_exp_avg_sq" in s for s in optimizer.state.values())


@pytest.mark.parametrize(("damage", "message"), [
    ("group_count", r"2 parameter group\(s\), the optimizer has 1"),
    ("shape", r"group 0, parameter 0 \(shape \(8, 3\)\): exp_avg has shape \(3, 8\)"),
    ("missing_key", r"group 0, parameter 1 \(shape \(8,\)\): missing key\(s\) \['exp_avg_sq'\]"),
])
def test_resume_from_damaged_optimizer_state_raises(checkpoint, tmp_path, damage, message):
    saved = torch.load(checkpoint[0], weights_only=True)
    opt_state = saved["optimizer_states"][0]
    if damage == "group_count":
        opt_state["param_groups"].append(dict(opt_state["param_groups"][0], params=[]))
    elif damage == "shape":
        opt_state["state"][0]["exp_avg"] = opt_state["state"][0]["exp_avg"].T.contiguous()
    else:
        del opt_state["state"][1]["exp_avg_sq"]
    bad = tmp_path / "damaged.ckpt"
    torch.save(saved, bad)
    with pytest.raises(ValueError, match=message):
        fit(6, tmp_path, str(bad))


def test_cli_reports_damaged_optimizer_state_in_one_line(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the CLI writes config.yaml and logs relative to the working directory
    saved = torch.load(checkpoint[0], weights_only=True)
    del saved["optimizer_states"][0]["state"][1]["exp_avg_sq"]
    bad = tmp_path / "damaged.ckpt"
    save_checkpoint(saved, bad)  # with a valid checksum: the damage is in the content
    # the checkpoint's weights are for width 8, depth 2 with PersistentAdam(amsgrad=True): build the same model
    args = ["pinn", "fit", "-c", str(CONFIGS / "plane_wave.yaml"), *TINY_CLI, "--model.depth", "2",
            "--model.fourier", "null", "--model.optimizer.amsgrad", "true", "--trainer.max_steps", "6", "--trainer.logger", "false",
            "--ckpt_path", str(bad)]
    monkeypatch.setattr(sys, "argv", args)
    monkeypatch.delenv("PINN_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pinn: error: optimizer state_dict: group 0, parameter 1")
    assert "missing key(s) ['exp_avg_sq']" in err[-1]


def test_cli_selects_torch_adam_and_a_scheduler(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pinn"])
    cli = cli_main(["fit", "-c", str(CONFIGS / "plane_wave.yaml"), *TINY_CLI, "--trainer.fast_dev_run", "2",
                    "--model.optimizer", "torch.optim.Adam", "--model.optimizer.lr", "0.01",
                    "--model.optimizer.foreach", "true",
                    "--model.scheduler", "torch.optim.lr_scheduler.ExponentialLR", "--model.scheduler.gamma", "0.5"])
    optimizer = cli.trainer.optimizers[0]
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["foreach"] is True
    assert optimizer.param_groups[0]["initial_lr"] == 0.01
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**2)  # stepped every training step
    config = cli.trainer.lr_scheduler_configs[0]
    assert type(config.scheduler) is torch.optim.lr_scheduler.ExponentialLR and config.interval == "step"


def test_cli_default_is_persistent_adam_and_the_cosine_overlay_composes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pinn"])
    cli = cli_main(["fit", "-c", str(CONFIGS / "plane_wave.yaml"), "-c", str(CONFIGS / "cosine_lr.yaml"),
                    *TINY_CLI, "--trainer.fast_dev_run", "1"])
    optimizer = cli.trainer.optimizers[0]
    assert type(optimizer) is PersistentAdam and optimizer.defaults["lr"] == 0.001
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert type(scheduler) is torch.optim.lr_scheduler.CosineAnnealingLR
    assert scheduler.T_max == 100 and scheduler.eta_min == 1e-5
    assert scheduler.T_max == cli.model.lbfgs.start_step  # the overlay's advice holds for the base config
