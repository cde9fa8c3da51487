"""Checkpoint integrity and safety: checksum, atomic writes, format migrations, refusing crafted or mismatched
files with one clear error, and running ``validate|test|predict`` from a checkpoint alone."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import random
import re
import sys
import time
import zipfile
from argparse import Namespace
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import pinn.io.checkpoint_format as fmt
import pinn.io.checkpointing as ckpt
from pinn.cli import cli_main, main
from pinn.io.checkpointing import CheckpointError, load_checkpoint, plain, save_checkpoint
from pinn.optim.run_state import check_state_dict, rng_states, set_rng_states

pytestmark = pytest.mark.usefixtures("one_thread")


def sample_checkpoint() -> dict:
    return {"state_dict": OrderedDict(w=torch.arange(6.0).reshape(2, 3), b=torch.zeros(2)), "global_step": 7,
            "hyper_parameters": {"width": 8, "loss_weights": {"pde": 0.5}}, "name": "x"}


# ---- format -------------------------------------------------------------------------------------------------
def test_round_trip_is_a_plain_torch_file_with_a_checksum(tmp_path):
    path = tmp_path / "a.ckpt"
    save_checkpoint(sample_checkpoint(), path)
    loaded = load_checkpoint(path)
    assert loaded["format_version"] == fmt.FORMAT_VERSION
    assert loaded["global_step"] == 7 and loaded["hyper_parameters"] == {"width": 8, "loss_weights": {"pde": 0.5}}
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(6.0).reshape(2, 3))
    # any torch/zip reader still opens it; the comment is the SHA-256 of everything before it
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["b"], torch.zeros(2))
    data = path.read_bytes()
    comment = zipfile.ZipFile(path).comment
    assert comment == b"PINN-SHA256:" + hashlib.sha256(data[: -len(comment)]).hexdigest().encode()
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]  # no temporary file left
    save_checkpoint(sample_checkpoint(), tmp_path / "b.ckpt")
    assert (tmp_path / "b.ckpt").read_bytes() == data  # the bytes are a function of the state alone
    save_checkpoint(sample_checkpoint(), tmp_path / "c.ckpt", compress=False)
    assert load_checkpoint(tmp_path / "c.ckpt")["name"] == "x" and (tmp_path / "c.ckpt").stat().st_size > len(data)


def test_every_flipped_bit_is_caught(tmp_path):
    path = tmp_path / "a.ckpt"
    save_checkpoint(sample_checkpoint(), path)
    data = path.read_bytes()
    rng = random.Random(0)
    positions = sorted({*rng.sample(range(len(data)), 60), *range(len(data) - 80, len(data)), 0, len(data) // 2})
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match=r"a\.ckpt: (checksum mismatch|truncated or damaged)"):
            load_checkpoint(path)


@pytest.mark.parametrize("cut", [1, 76, 100, 0.5, 0.99])
def test_truncated_file_is_refused(tmp_path, cut):
    path = tmp_path / "a.ckpt"
    save_checkpoint(sample_checkpoint(), path)
    data = path.read_bytes()
    keep = int(len(data) * cut) if isinstance(cut, float) else len(data) - cut
    path.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match=r"a\.ckpt: (truncated or damaged|checksum mismatch)"):
        load_checkpoint(path)


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such checkpoint file"),
    (b"", "not a checkpoint: the file is empty"),
    (b"epoch: 3\nweights: [1, 2]\n", "not a checkpoint: it is not a torch.save archive"),
    ("unsealed", "not a pinn checkpoint: it carries no checksum"),
])
def test_missing_empty_foreign_files_are_refused(tmp_path, content, message):
    path = tmp_path / "x.ckpt"
    if content == "unsealed":
        torch.save(sample_checkpoint(), path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"x.ckpt: {message}"):
        load_checkpoint(path)


def test_seal_adds_a_checksum_to_a_trusted_unsealed_checkpoint(tmp_path, capsys):
    path = tmp_path / "old.ckpt"
    torch.save(sample_checkpoint(), path)
    ckpt._seal_file(str(path))
    assert load_checkpoint(path)["global_step"] == 7 and "sealed" in capsys.readouterr().out


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_checkpoint_with_valid_checksum_is_refused_without_running_code(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.ckpt"
    buffer = io.BytesIO()
    torch.save({**sample_checkpoint(), "format_version": 1, "hyper_parameters": Payload(marker)}, buffer)
    path.write_bytes(fmt.seal(buffer.getvalue()))  # the checksum is right: only weights_only stands in the way
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused: it holds a pickled object that is not plain"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what an unsafe loader would do
    assert marker.exists()


def test_saving_non_plain_data_fails_early_and_names_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot save checkpoint\['hyper_parameters'\]\['net'\]: a Linear"):
        save_checkpoint({"hyper_parameters": {"net": torch.nn.Linear(2, 2)}}, tmp_path / "a.ckpt")
    assert not any(tmp_path.iterdir())


def test_plain_converts_config_objects_and_keeps_plain_ones():
    @dataclasses.dataclass
    class Weights:
        pde: float = 1.0
        path: Path = Path("/a/b")

    state = OrderedDict(w=torch.ones(1))
    state._metadata = {"": {"version": 1}}  # module versions that load_state_dict reads
    assert plain(state) is state
    converted = plain({"w": Weights(), "ns": Namespace(a=(1, np.float64(2.5))), "arr": np.arange(3)})
    assert converted["w"] == {"pde": 1.0, "path": "/a/b"}
    assert converted["ns"] == {"a": (1, 2.5)} and type(converted["ns"]["a"][1]) is float
    assert torch.equal(converted["arr"], torch.arange(3))


def test_migrations_upgrade_old_formats_and_newer_ones_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "a.ckpt"
    save_checkpoint(sample_checkpoint(), path)  # format 1
    monkeypatch.setattr(fmt, "FORMAT_VERSION", 3)
    with pytest.raises(CheckpointError, match="no migration from format version 1"):
        load_checkpoint(path)
    monkeypatch.setattr(fmt, "MIGRATIONS", {1: lambda c: {**c, "name": c["name"] + "2"},
                                            2: lambda c: {**c, "name": c["name"] + "3"}})
    loaded = load_checkpoint(path)
    assert loaded["name"] == "x23" and loaded["format_version"] == 3
    monkeypatch.setattr(fmt, "FORMAT_VERSION", 1)
    save_checkpoint({**sample_checkpoint(), "format_version": 0}, path)  # save stamps the current version
    assert load_checkpoint(path)["format_version"] == 1
    buffer = io.BytesIO()
    torch.save({**sample_checkpoint(), "format_version": 2}, buffer)
    path.write_bytes(fmt.seal(buffer.getvalue()))
    with pytest.raises(CheckpointError, match="format version 2 is newer than this pinn reads"):
        load_checkpoint(path)


# ---- atomic writes ------------------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint(sample_checkpoint(), path)
    before = path.read_bytes()

    def power_cut(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", power_cut)  # dies after the bytes are written, before the rename
    with pytest.raises(OSError, match="disk gone"):
        save_checkpoint({**sample_checkpoint(), "global_step": 8}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_killed_writers_temporary_file_is_cleared_and_never_read(tmp_path):
    path = tmp_path / "last.ckpt"
    stale = tmp_path / ".last.ckpt.999999.deadbeef.tmp"  # what SIGKILL mid-write leaves
    stale.write_bytes(b"half a checkpo")
    save_checkpoint(sample_checkpoint(), path)
    assert not stale.exists() and load_checkpoint(path)["global_step"] == 7


@pytest.mark.skipif(os.name != "posix", reason="looks processes up by pid, which is POSIX")
def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    """Two runs computing the same reference write the same file at once: neither may delete the other's
    temporary file (the second's rename would fail), while a dead writer's is cleared."""
    import subprocess

    from pinn.problems import files

    path = tmp_path / "ref.npz"
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".ref.npz.{writer.pid}.cafe0001.{files._HOST}.tmp"
        live.write_bytes(b"being written")
        files.atomic_write(path, b"one")
        assert live.exists() and path.read_bytes() == b"one"
    finally:
        writer.kill()
        writer.wait()
    files.atomic_write(path, b"two")
    assert not live.exists() and path.read_bytes() == b"two"


def test_another_machines_temporary_file_is_cleared_only_once_old(tmp_path):
    from pinn.problems import files

    path = tmp_path / "ref.npz"
    other = tmp_path / ".ref.npz.4242.cafe0002.node17_cluster.tmp"  # a writer on a shared filesystem
    other.write_bytes(b"being written")
    files.atomic_write(path, b"one")
    assert other.exists()
    old = time.time() - files.ABANDONED_AFTER_S - 60
    os.utime(other, (old, old))
    files.atomic_write(path, b"two")
    assert not other.exists() and path.read_bytes() == b"two"


# ---- fit to the model ---------------------------------------------------------------------------------------
def test_wrong_architecture_names_the_parameter_and_both_shapes():
    saved = {"net.hidden.0.weight": torch.zeros(8, 3), "net.out.bias": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"run\.ckpt: parameter net\.hidden\.0\.weight has shape \[8, 3\] in the "
                                              r"checkpoint, the config says \[16, 3\]"):
        check_state_dict(saved, {"net.hidden.0.weight": torch.zeros(16, 3), "net.out.bias": torch.zeros(2)}, "run.ckpt")
    with pytest.raises(CheckpointError, match=r"parameter material\.lam is in the config's model but not in the chec"):
        check_state_dict(saved, {**saved, "material.lam": torch.zeros(())}, "run.ckpt")
    with pytest.raises(CheckpointError, match=r"parameter net\.out\.bias is in the checkpoint but not in the config"):
        check_state_dict(saved, {"net.hidden.0.weight": torch.zeros(8, 3)}, "run.ckpt")
    check_state_dict(saved, dict(saved), "run.ckpt")


def test_global_random_states_round_trip():
    states = rng_states()
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_states(plain(states))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


# ---- through the command line -------------------------------------------------------------------------------
TINY_SECTIONS = {
    "data": {"problem": {"class_path": "pinn.problems.closed_form.PlaneWaves",
                         "init_args": {"waves": [{"kind": "S", "angle": 0.5, "wavenumber": 5.0}]}},
             "n_interior": 32, "n_boundary": 8, "n_initial": 8, "steps_per_epoch": 3, "val_grid": [4, 4, 3]},
    "checkpoint": {"every_n_train_steps": 2, "save_top_k": 1},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_run_config):
    """A finished tiny ``pinn fit`` run: its config file and checkpoint folder."""
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    config.write_text(tiny_run_config(root, "tiny", {"max_steps": 6, "check_val_every_n_epoch": 1}, **TINY_SECTIONS))
    cli = cli_main(["fit", "-c", str(config)])
    return config, root / "logs" / "tiny" / "version_0" / "checkpoints", cli.trainer.callback_metrics["val/rel_l2"]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def run_main(monkeypatch, capsys, *args) -> str:
    monkeypatch.setattr(sys, "argv", ["pinn", *args])
    monkeypatch.delenv("PINN_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pinn: error: "), err
    return err[0]


def test_retention_keeps_best_by_validation_and_a_stable_last(run):
    _, folder, _ = run
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and names[0] == "last.ckpt", names
    # the top-1 file comes from a validation (steps 3 and 6), never from the step saves at 2 and 4
    step, score = re.fullmatch(r"step=(\d+)-rel_l2=(.+)\.ckpt", names[1]).groups()
    assert step in ("3", "6")
    best = load_checkpoint(folder / names[1])
    ranking = next(v for k, v in best["callbacks"].items() if k.startswith("RunCheckpoint"))
    assert best["global_step"] == int(step) and f"{ranking['current_score'].item():.3e}" == score
    last = load_checkpoint(folder / "last.ckpt")
    assert last["global_step"] == 6 and "tiny" in last["config"]
    assert last["ElasticDataModule"]["pools"]["interior"].shape == (32, 3)
    ranking = next(v for k, v in last["callbacks"].items() if k.startswith("RunCheckpoint"))
    assert list(ranking["best_k_models"]) == [str(folder / names[1])]


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "missing", "crafted", "wrong architecture"])
def test_cli_refuses_bad_checkpoints_in_one_line_and_writes_nothing(run, tmp_path, monkeypatch, capsys, damage):
    config, folder, _ = run
    logs = folder.parents[2]
    target = folder / "last.ckpt"
    data = target.read_bytes()
    bad = tmp_path / "bad.ckpt"
    extra: list[str] = []
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "bit-flipped":
        bad.write_bytes(data[:1000] + bytes([data[1000] ^ 4]) + data[1001:])
    elif damage == "crafted":
        buffer = io.BytesIO()
        torch.save({**torch.load(target, weights_only=True), "config": Payload(tmp_path / "pwned")}, buffer)
        bad.write_bytes(fmt.seal(buffer.getvalue()))
    elif damage == "wrong architecture":
        bad, extra = target, ["--model.width", "16"]
    before = snapshot(logs)
    ckpt_arg = "last" if damage == "wrong architecture" else str(bad)
    line = run_main(monkeypatch, capsys, "fit", "-c", str(config), *extra, "--trainer.max_steps", "9",
                    "--ckpt_path", ckpt_arg)
    expected = {"truncated": "truncated or damaged", "bit-flipped": "checksum mismatch",
                "missing": "no such checkpoint file", "crafted": "refused: it holds a pickled object",
                "wrong architecture": "parameter net.hidden.0.weight has shape [8, 3] in the checkpoint, the "
                                      "config says [16, 3]"}[damage]
    assert f"{bad}: {expected}" in line
    assert snapshot(logs) == before  # nothing written, nothing overwritten
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_checkpoint_alone_runs_validate_test_predict(run, subcommand, monkeypatch):
    _, folder, val_rel_l2 = run
    monkeypatch.chdir(folder.parents[3])
    cli = cli_main([subcommand, "--ckpt_path", str(folder / "last.ckpt"), "--trainer.logger", "false"])
    assert cli.model.net.hidden[0].weight.shape == (8, 3)  # the stored config's model, not the default width 64
    assert cli.datamodule.val_grid == (4, 4, 3) and cli.datamodule.problem.waves[0].kind == "S"
    if subcommand == "validate":
        # last.ckpt was written after the final validation at step 6: the same weights give the same error
        assert cli.trainer.callback_metrics["val/rel_l2"].item() == val_rel_l2.item()


def test_config_given_with_the_checkpoint_wins_over_the_stored_one(run, monkeypatch):
    config, folder, _ = run
    monkeypatch.chdir(folder.parents[3])
    cli = cli_main(["validate", "-c", str(config), "--data.val_grid", "[5, 5, 2]", "--trainer.logger", "false",
                    "--ckpt_path", str(folder / "last.ckpt")])
    assert cli.datamodule.val_grid == (5, 5, 2)
