"""Signals: a ``pinn fit`` stopped by SIGTERM or SIGINT (or SLURM's SIGUSR1) writes ``last.ckpt`` where it stands,
exits with ``128 + signal``, and ``--ckpt_path last`` continues it bit for bit.

Each test starts a real ``python -m pinn fit`` subprocess on a tiny problem, holds it at a known step with
:class:`tests.interrupt_probe.PauseAt`, sends the signal, then resumes in this process and compares the final
checkpoint with an uninterrupted run of the same config, tensor for tensor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pinn.cli import cli_main
from pinn.io.checkpointing import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MAX_STEPS = 8
SECTIONS = {
    # 5 steps an epoch, a validation after each: step 3 is mid-epoch, step 5 is followed by a validation
    "data": {"n_interior": 48, "n_boundary": 12, "n_initial": 12, "batch_size": 16, "steps_per_epoch": 5,
             "val_grid": [4, 4, 3]},
    # no periodic last.ckpt before the end: the one found after a signal is the signal's
    "checkpoint": {"every_n_train_steps": 1000, "save_top_k": 2},
}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def _config(tmp_path: Path, tiny_run_config, name: str, **trainer) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(tiny_run_config(tmp_path, name, {"max_steps": MAX_STEPS, "check_val_every_n_epoch": 1,
                                                     **trainer}, **SECTIONS))
    return path


def _checkpoints(tmp_path: Path, name: str) -> Path:
    return tmp_path / "logs" / name / "version_0" / "checkpoints"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_run_config) -> dict:
    """The final checkpoint of the uninterrupted run."""
    tmp = tmp_path_factory.mktemp("reference")
    cli_main(["fit", "-c", str(_config(tmp, tiny_run_config, "ref"))])
    return load_checkpoint(_checkpoints(tmp, "ref") / "last.ckpt")


def _interrupt(config: Path, tmp_path: Path, step: int, signum: int, env: dict | None = None) -> tuple[int, str]:
    """Run ``pinn fit -c config`` in a subprocess, send ``signum`` at the end of step ``step``: exit code, stderr."""
    probe = tmp_path / "probe.yaml"
    probe.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "tests.interrupt_probe.PauseAt", "init_args": {"step": step, "folder": str(tmp_path)}}]}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "pinn", "fit", "-c", str(config), "-c", str(probe)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "paused").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "paused").exists(), f"the run never reached step {step}: {proc.communicate()[1][-2000:]}"
        proc.send_signal(signum)
        (tmp_path / "signalled").touch()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, err


def _assert_equal(a, b, where: str = "checkpoint") -> None:
    """``a`` and ``b`` hold the same tensors (bit for bit: same dtype, shape and values) and the same plain data."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _assert_same_run(final: dict, ref: dict) -> None:
    assert final["global_step"] == ref["global_step"] == MAX_STEPS
    for key in ("state_dict", "optimizer_states", "lr_schedulers", "ElasticDataModule"):
        _assert_equal(final[key], ref[key], key)


@pytest.mark.parametrize(("signum", "code", "step"), [
    (signal.SIGTERM, 143, 3),  # mid-epoch
    (signal.SIGINT, 130, 5),  # the last step of an epoch: last.ckpt comes after its validation
], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_last_exits_and_resumes_bit_for_bit(signum, code, step, tmp_path, tiny_run_config, reference):
    config = _config(tmp_path, tiny_run_config, "run")
    returncode, err = _interrupt(config, tmp_path, step, signum)
    assert returncode == code, err[-2000:]
    folder = _checkpoints(tmp_path, "run")
    last = load_checkpoint(folder / "last.ckpt")
    assert last["global_step"] == step
    assert "continue with --ckpt_path last" in err
    # a validation due at the step runs first, so the checkpoint knows it ran (and ranked it)
    assert len(list(folder.glob(f"step={step}-rel_l2=*.ckpt"))) == (step == 5)
    cli = cli_main(["fit", "-c", str(config), "--ckpt_path", "last"])
    assert cli.trainer.global_step == MAX_STEPS
    _assert_same_run(load_checkpoint(folder / "last.ckpt"), reference)


def test_slurm_requeue_signal_saves_requeues_and_resumes(tmp_path, tiny_run_config, reference, monkeypatch):
    """Under SLURM, SIGUSR1 (``#SBATCH --signal=SIGUSR1@90``) writes last.ckpt and Lightning's hpc checkpoint at the
    end of the step, calls ``scontrol requeue``, exits 138; the requeued job, the same command, resumes by itself."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'scontrol.txt'}\n")
    scontrol.chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "pinn", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
             "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    root = tmp_path / "root"
    config = _config(tmp_path, tiny_run_config, "run", default_root_dir=str(root))
    returncode, err = _interrupt(config, tmp_path, 3, signal.SIGUSR1, slurm)
    assert returncode == 138, err[-2000:]
    assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "4242"]
    assert load_checkpoint(_checkpoints(tmp_path, "run") / "last.ckpt")["global_step"] == 3
    assert load_checkpoint(root / "hpc_ckpt_1.ckpt")["global_step"] == 3

    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    cli = cli_main(["fit", "-c", str(config)])  # no --ckpt_path: Lightning finds the hpc checkpoint
    assert cli.trainer.global_step == MAX_STEPS
    _assert_same_run(load_checkpoint(Path(cli.trainer.checkpoint_callback.last_model_path)), reference)



def test_save_on_exception_writes_a_post_mortem_file_and_leaves_last_alone(tmp_path, tiny_run_config):
    config = _config(tmp_path, tiny_run_config, "crash")
    crash = {"class_path": "tests.interrupt_probe.CrashAt", "init_args": {"step": 4}}
    with pytest.raises(RuntimeError, match="crash at step 4"):
        cli_main(["fit", "-c", str(config), "--checkpoint.save_on_exception", "true",
                  "--checkpoint.every_n_train_steps", "3", "--trainer.callbacks", yaml.safe_dump([crash])])
    folder = _checkpoints(tmp_path, "crash")
    # no file named as if it had a score, and last.ckpt stays the exact resume point of step 3
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["exception-step=4.ckpt", "last.ckpt"]
    assert load_checkpoint(folder / "exception-step=4.ckpt")["global_step"] == 4
    assert load_checkpoint(folder / "last.ckpt")["global_step"] == 3

if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
