"""End to end through the command line: a tiny fit writes checkpoints and TensorBoard events; validate reads them."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--trainer.max_steps", "6", "--data.steps_per_epoch", "3", "--trainer.check_val_every_n_epoch", "1",
    "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--data.n_interior", "64", "--data.n_boundary", "32",
    "--data.n_initial", "32", "--data.val_grid", "[6, 6, 3]", "--model.width", "16", "--model.depth", "2",
]


def run_pinn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pinn", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(ROOT),
                          "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


@pytest.mark.slow
def test_fit_writes_checkpoints_and_events_then_validate_and_resume(tmp_path):
    config = str(ROOT / "configs" / "plane_wave.yaml")
    fit = run_pinn("fit", "-c", config, *TINY, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run_dir = tmp_path / "lightning_logs" / "plane_wave" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file()
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6
    assert any(p.name.startswith("step=") for p in (run_dir / "checkpoints").iterdir())  # best-by-val_rel_l2 copy

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/loss_pde", "train/loss_bc", "train/loss_ic_disp", "train/loss_ic_vel", "lr",
                "val/rel_l2", "val/rel_l2_u", "val/rel_l2_v"):
        assert tag in tags, tag
    logged_val = events.Scalars("val/rel_l2")[-1].value
    assert [e.step for e in events.Scalars("train/loss")] == list(range(6))

    val = run_pinn("validate", "-c", config, *TINY, "--ckpt_path", str(last), cwd=tmp_path)
    assert val.returncode == 0, val.stderr[-3000:]
    # the validate run prints a table with val/rel_l2; it must equal the value logged at the end of training
    line = next(ln for ln in val.stdout.splitlines() if "val/rel_l2 " in ln or "val/rel_l2│" in ln.replace(" ", ""))
    printed = float(line.replace("│", " ").split()[-1])
    assert printed == pytest.approx(logged_val, rel=1e-5)

    resumed = run_pinn("fit", "-c", config, *TINY, "--trainer.max_steps", "9", "--ckpt_path", "last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 9
    # continued in the run's own folder (validate made version_1; no version_2 for the resumed fit)
    assert not (tmp_path / "lightning_logs" / "plane_wave" / "version_2").exists()
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(9))  # the curve joins: no gap, no shift


@pytest.mark.slow
def test_bad_config_value_exits_with_one_line(tmp_path):
    config = str(ROOT / "configs" / "plane_wave.yaml")
    out = run_pinn("fit", "-c", config, *TINY, "--data.problem.init_args.material.mu", "-1", cwd=tmp_path)
    assert out.returncode != 0
    assert "mu=-1.0" in out.stderr
    assert not (tmp_path / "lightning_logs" / "plane_wave").exists()


@pytest.mark.slow
def test_resume_last_without_a_previous_run_is_an_error(tmp_path):
    config = str(ROOT / "configs" / "plane_wave.yaml")
    out = run_pinn("fit", "-c", config, *TINY, "--ckpt_path", "last", cwd=tmp_path)
    assert out.returncode == 2
    assert "no last.ckpt" in out.stderr


def test_help_lists_every_subcommand():
    out = run_pinn("--help", cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    for sub in ("fit", "validate", "test", "predict", "reference"):
        assert sub in out.stdout, sub
    assert "pinn reference --help" in " ".join(out.stdout.split())  # argparse wraps the description
    out = run_pinn("reference", "--help", cwd=ROOT)
    assert out.returncode == 0 and out.stdout.startswith("usage: pinn reference -c CONFIG"), out.stderr[-2000:]
