"""User errors on the command line: one line on stderr that names the key or file, exit code 2, nothing written."""

import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from pinn.cli import UserError, find_last_checkpoint, main
from pinn.cli_errors import usage_error

ROOT = Path(__file__).resolve().parents[1]
PLANE = str(ROOT / "configs" / "plane_wave.yaml")
INVERSE = str(ROOT / "configs" / "inverse_plane_wave.yaml")
TINY = ["--trainer.max_steps", "2", "--data.steps_per_epoch", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--data.n_interior", "64", "--data.n_boundary", "32",
        "--data.n_initial", "32", "--data.val_grid", "[5, 5, 3]", "--model.width", "8", "--model.depth", "2"]


def _files(tmp: Path) -> None:
    (tmp / "empty.yaml").write_text("# nothing but a comment\n")
    (tmp / "obs.csv").write_text("x,y,t,u,v\n0.1,0.2,0.3,0.0,0.0\n,,,,\n0.2,0.2,0.3,0.0,0.0\n")
    (tmp / "file_obs.yaml").write_text(
        "data:\n  observations:\n    class_path: pinn.training.observations.FileObservations\n"
        "    init_args:\n      path: obs.csv\n")


FIT, INV = ["fit", "-c", PLANE], ["fit", "-c", INVERSE, "-c", "file_obs.yaml"]
# name: (configs, options, texts the error line must hold); TINY goes between configs and options, so both win
CASES = {
    "misspelled model key": (FIT, ["--model.n_interiour", "5"], ["--model.n_interiour", "--data.n_interior"]),
    "misspelled data key": (FIT, ["--data.n_interiour", "5"], ["--data.n_interiour", "--data.n_interior"]),
    "string for a number": (FIT, ["--data.n_interior", "many"], ["--data.n_interior", "many"]),
    "empty config": (["fit", "-c", "empty.yaml"], [], ["empty.yaml", "empty"]),
    "missing config": (["fit", "-c", "missing.yaml"], [], ["missing.yaml", "not exist"]),
    "unknown class_path": (FIT, ["--data.problem", "pinn.problems.PlaneWave"],
                           ["--data.problem", "pinn.problems.PlaneWaves"]),
    "unknown sampler": (FIT, ["--data.sampler", "foo"], ["--data.sampler", "'foo'", "sobol"]),
    "unknown activation": (FIT, ["--model.activation", "relu"], ["--model.activation", "tanh"]),
    "negative max_steps": (FIT, ["--trainer.max_steps", "-5"], ["trainer.max_steps", "-5"]),
    "negative lr": (FIT, ["--model.optimizer.lr", "-1"], ["model.optimizer", "lr"]),
    "top-level optimizer": (FIT, ["--optimizer", "torch.optim.SGD"], ["--optimizer", "--model.optimizer"]),
    "top-level lr_scheduler": (FIT, ["--lr_scheduler", "torch.optim.lr_scheduler.StepLR"], ["--lr_scheduler"]),
    "csv row of bare commas": (INV, [], ["obs.csv", "line 3"]),
}


@pytest.fixture
def console(tmp_path, monkeypatch, capsys):
    """``console(*args)`` runs ``pinn ARGS`` through ``main()`` in ``tmp_path`` and returns its exit code and the
    non-empty lines of stderr, Lightning's log lines included, as on a console (under pytest they would go to the
    log capture instead)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PINN_DEBUG", raising=False)
    handler = logging.StreamHandler(sys.stderr)
    for name in ("lightning.pytorch", "lightning.fabric"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [handler])
        monkeypatch.setattr(logging.getLogger(name), "propagate", False)

    def run(*args: str) -> tuple[int, list[str]]:
        monkeypatch.setattr(sys, "argv", ["pinn", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
            sys.exit(0)
        return exit_info.value.code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]

    return run


@pytest.mark.parametrize("case", CASES)
def test_user_error_is_one_line_exit_2_and_writes_nothing(case, console, tmp_path):
    _files(tmp_path)
    configs, options, named = CASES[case]
    code, err = console(*configs, *TINY, *options)
    assert code == 2, err
    assert 1 <= len(err) <= 2 and err[-1].startswith("pinn: error: "), err
    for text in named:
        assert text in err[-1], (text, err)
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow
def test_console_shows_only_the_error_line(tmp_path):
    """Through a real ``python -m pinn``: no usage text, traceback, warning or log line around the error, even for
    one found only once the classes are built (the optimizer's arguments)."""
    cwd = tmp_path / "run"
    cwd.mkdir()
    out = subprocess.run([sys.executable, "-m", "pinn", "fit", "-c", PLANE, *TINY, "--model.optimizer.lr", "-1"],
                         cwd=cwd, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 2
    assert [line for line in out.stderr.splitlines() if line.strip()] == [
        "pinn: error: model.optimizer: invalid lr=-1.0: must be >= 0."]
    assert not any(cwd.iterdir())


def test_usage_error_condenses_nested_reports():
    nested = ('Parser key "data.problem":\n  Does not validate against any of the Union subtypes\n  Subtypes: [<class '
              "'pinn.problems.problem.Problem'>, <class 'NoneType'>]\n  Errors:\n    - Problem with given class_path "
              "'pinn.problems.PlaneWaves':\n        Option 'wave' is not accepted\n    - Expected a <class 'NoneType'>"
              "\n  Given value type: <class 'dict'>\n  Given value: {}")
    assert usage_error(nested, []) == ("--data.problem: pinn.problems.PlaneWaves has no argument 'wave'; "
                                       "did you mean waves?")
    assert usage_error("unrecognized arguments: --trainer.max_step 5", ["--trainer.max_steps", "--model.width"]) == (
        "unknown option --trainer.max_step; did you mean --trainer.max_steps?")


# ---- --ckpt_path last, and evaluating without a checkpoint -------------------------------------------------
def test_last_is_the_newest_run_never_an_older_one_without_a_word(tmp_path):
    runs = tmp_path / "plane_wave"
    for version in (0, 1):
        (runs / f"version_{version}" / "checkpoints").mkdir(parents=True)
        (runs / f"version_{version}" / "checkpoints" / "last.ckpt").touch()
    (runs / "version_2").mkdir()
    (runs / "version_2" / "config.yaml").touch()  # a fit killed before its first save
    (runs / "version_3").mkdir()  # a validate run: events only, not a run to continue
    with pytest.raises(UserError) as err:
        find_last_checkpoint(tmp_path, "plane_wave")
    assert "version_2, has no last.ckpt" in str(err.value)
    assert f"--ckpt_path {runs / 'version_1' / 'checkpoints' / 'last.ckpt'}" in str(err.value)
    (runs / "version_2" / "checkpoints").mkdir()
    (runs / "version_2" / "checkpoints" / "last.ckpt").touch()
    assert find_last_checkpoint(tmp_path, "plane_wave") == (runs / "version_2" / "checkpoints" / "last.ckpt", 2)
    (runs / "version_10" / "checkpoints").mkdir(parents=True)
    (runs / "version_10" / "checkpoints" / "last.ckpt").touch()
    assert find_last_checkpoint(tmp_path, "plane_wave")[1] == 10  # by number, not by name


def test_last_without_a_checkpoint_in_the_newest_run_is_one_line(console, tmp_path):
    old = tmp_path / "lightning_logs" / "plane_wave" / "version_0" / "checkpoints"
    old.mkdir(parents=True)
    (old / "last.ckpt").touch()
    (old.parent.parent / "version_1").mkdir()
    (old.parent.parent / "version_1" / "config.yaml").touch()
    code, err = console("fit", "-c", PLANE, *TINY, "--ckpt_path", "last")
    assert code == 2 and len(err) == 1, err
    assert "version_1, has no last.ckpt" in err[0]
    assert err[0].endswith(f"--ckpt_path {Path('lightning_logs/plane_wave/version_0/checkpoints/last.ckpt')}")


def test_drop_c_advice_works_with_last(console, tmp_path):
    assert console("fit", "-c", PLANE, *TINY)[0] == 0
    # a config that does not fit the checkpoint: the advice is to drop -c, which `last` needs to find the run
    code, err = console("validate", "-c", PLANE, *TINY, "--model.width", "16", "--ckpt_path", "last")
    assert code == 2 and len(err) == 1 and "drop -c" in err[0], err
    path = re.search(r"--ckpt_path (\S+)$", err[0]).group(1)
    assert Path(path).resolve() == (tmp_path / "lightning_logs/plane_wave/version_0/checkpoints/last.ckpt").resolve()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert console("validate", "--ckpt_path", path)[0] == 0  # the advice, followed
    assert not [w for w in caught if "untrained" in str(w.message)]


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_without_a_checkpoint_warns(subcommand, console):
    with pytest.warns(UserWarning, match=f"pinn {subcommand} without --ckpt_path scores an untrained network") as rec:
        code, _ = console(subcommand, "-c", PLANE, *TINY, "--trainer.logger", "false", "--data.predict_times", "2",
                          "--data.predict_resolution", "[5, 5]", "--prediction_writer.snapshots", "0")
    assert code == 0
    shown = next(w for w in rec if "untrained" in str(w.message))
    printed = warnings.formatwarning(shown.message, shown.category, shown.filename, shown.lineno)
    assert len(printed.strip().splitlines()) == 1, printed
