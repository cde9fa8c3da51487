"""``pinn.load`` of a realistic run: the scales it trained with come from its checkpoint, so it loads and predicts
where Devito cannot be imported and the cached reference is gone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pinn.cli import cli_main
from pinn.io.checkpointing import load_checkpoint
from pinn.problems.reference import Reference, reference_path
from pinn.training.module import ElasticPINN
from pinn.training.restore import model_from_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
U = 3.7e-9  # the displacement scale of the stand-in reference: not 1, not what any other reference gives

LOAD_WITHOUT_DEVITO = """
import sys, torch
sys.modules["devito"] = None  # `import devito` now raises ImportError
import pinn
model = pinn.load(sys.argv[1])
torch.save({"scales": model.scales, "u": model(torch.load(sys.argv[2]))}, sys.argv[3])
assert not any(name.startswith("devito") for name in sys.modules if sys.modules[name] is not None)
"""


def tiny_inclusion(tmp_path: Path) -> Path:
    """configs/inclusion.yaml (a WaveProblem in SI units, snapshot start) shrunk to two steps, caching under tmp."""
    config = yaml.safe_load((ROOT / "configs" / "inclusion.yaml").read_text())
    config["trainer"].update(max_steps=2, check_val_every_n_epoch=1, enable_progress_bar=False,
                             enable_model_summary=False)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "logs")
    config["model"].update(width=8, depth=2)
    config["model"]["scheduler"]["init_args"]["T_max"] = 2
    config["data"].update(n_interior=32, n_boundary=16, n_initial=16, steps_per_epoch=2, val_grid=[3, 3, 2])
    config["data"]["problem"]["init_args"]["reference"].update(cache_dir=str(tmp_path / "references"),
                                                              output_times=3)
    for key in ("val_figures", "residual_histogram", "material_maps", "prediction_writer"):
        config.pop(key, None)
    path = tmp_path / "inclusion.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def stand_in_reference(problem) -> None:
    """A cached reference on the problem's grid with largest displacement U (Devito is not what is tested here)."""
    (x0, x1), (y0, y1), (t0, t1) = problem.domain.x, problem.domain.y, problem.domain.t
    x, y, t = np.linspace(x0, x1, 4), np.linspace(y0, y1, 4), np.linspace(t0, t1, 3)
    disp = np.random.default_rng(0).uniform(-U, U, (3, 4, 4, 2))
    disp.flat[5] = U
    Reference(x, y, t, disp, disp * 1e3, {"spacing": [0.01, 0.01]}).save(reference_path(problem))


def test_a_realistic_run_loads_and_predicts_without_devito_or_its_reference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tiny_inclusion(tmp_path)
    stand_in_reference(cli_main(["-c", str(config)], run=False).datamodule.problem)
    cli = cli_main(["fit", "-c", str(config)])
    assert cli.model.scales.displacement == U and cli.model.net.output_scale == U  # read from the reference
    ckpt = next(tmp_path.glob("logs/inclusion/version_0/checkpoints/last.ckpt"))
    assert load_checkpoint(ckpt)["scales"]["displacement"] == U
    shutil.rmtree(tmp_path / "references")

    xyt = torch.tensor([[0.01, 0.02, 13e-6], [0.025, 0.005, 15.5e-6]])
    torch.save(xyt, tmp_path / "xyt.pt")
    done = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_DEVITO, str(ckpt), "xyt.pt", "out.pt"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt", weights_only=False)
    assert out["scales"] == cli.model.scales
    with torch.no_grad():
        torch.testing.assert_close(out["u"], cli.model.eval()(xyt), rtol=0, atol=0)
    assert not (tmp_path / "references").exists()  # nothing recomputed


def test_building_a_model_leaves_the_scales_to_first_use(tmp_path):
    """A WaveProblem without displacement_scale gets U from its reference: not when the model is built."""
    config = yaml.safe_load((ROOT / "configs" / "inclusion.yaml").read_text())
    config["data"]["problem"]["init_args"]["reference"]["cache_dir"] = str(tmp_path / "references")
    model = model_from_config(json.loads(json.dumps(config)), ElasticPINN)
    assert model._scales is None and model.net.output_scale == 1.0
    assert not (tmp_path / "references").exists()
