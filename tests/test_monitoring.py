"""TensorBoard monitoring: the event file of a tiny CLI run holds the scalars, the field image, the residual
histograms and the HParams summary, each checked against a recomputation from the run's checkpoint."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from pinn import load
from pinn.io.checkpointing import load_checkpoint
from pinn.io.figures import field_figure, relative_l2
from pinn.io.monitoring import HParamsSummary, ResidualHistogram, StepProgressBar, ValidationFigures, flatten_hparams
from pinn.physics.elasticity import residual
from pinn.problems.closed_form import PlaneWaves, Wave
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--trainer.max_steps", "6", "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1",
    "--data.steps_per_epoch", "3", "--data.n_interior", "64", "--data.n_boundary", "32", "--data.n_initial", "32",
    "--data.val_grid", "[9, 9, 3]", "--model.width", "8", "--model.depth", "2", "--val_figures.resolution", "[16, 12]",
    "--trainer.accelerator", "cpu", "--val_figures.every_n_validations", "1",
    "--residual_histogram.every_n_validations", "1",
]


def fit_tiny(save_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """``pinn fit`` of the reference config shrunk to seconds, logging into ``save_dir/plane_wave/version_0``."""
    cmd = [sys.executable, "-m", "pinn", "fit", "-c", "configs/plane_wave.yaml", *TINY,
           "--trainer.logger.init_args.save_dir", str(save_dir), *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def load_model(ckpt: Path) -> tuple[ElasticPINN, dict]:
    state = load_checkpoint(ckpt)
    return load(ckpt), state  # the run's own network (the config's Fourier features included) and problem


def reference_problem() -> PlaneWaves:
    """The problem of configs/plane_wave.yaml."""
    from pinn.physics.elasticity import Material
    from pinn.problems.closed_form import Domain
    k = 2 * np.pi
    return PlaneWaves([Wave("P", 0.3, k), Wave("S", 1.2, k)], Domain(), Material(lam=1.0, mu=0.5, rho=1.0))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("logs")
    done = fit_tiny(save_dir)
    folder = save_dir / "plane_wave" / "version_0"
    sizes = {"images": 0, "scalars": 0, "histograms": 0, "tensors": 0}  # 0: keep every entry
    return folder, EventAccumulator(str(folder), size_guidance=sizes).Reload(), done.stdout


@pytest.mark.slow
def test_event_file_has_every_scalar(run):
    _, acc, _ = run
    tags = set(acc.Tags()["scalars"])
    expected = {"train/loss", "lr", "val/rel_l2", "val/rel_l2_u", "val/rel_l2_v"}
    expected |= {f"train/loss_{k}" for k in ("pde", "bc", "ic_disp", "ic_vel")}
    assert expected <= tags
    assert len(acc.Scalars("train/loss")) == 6
    assert len(acc.Scalars("val/rel_l2")) == 2  # after steps 3 and 6


@pytest.mark.slow
def test_field_image_is_the_checkpointed_models_figure(run):
    folder, acc, _ = run
    images = acc.Images("val/fields")
    assert [im.step for im in images] == [3, 6]
    logged = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"))
    model, _ = load_model(folder / "checkpoints" / "last.ckpt")
    tags = ("val/rel_l2", "val/rel_l2_u", "val/rel_l2_v", "val/rel_l2_end")
    metrics = {tag: acc.Scalars(tag)[-1].value for tag in tags}
    redrawn = ValidationFigures(resolution=(16, 12)).render(model, 6, metrics)
    assert logged.shape == redrawn.shape
    # the same figure up to a few pixels (float differences across thread counts can flip a colour level)
    assert np.mean(np.any(logged != redrawn, axis=-1)) < 1e-3


@pytest.mark.slow
def test_hparams_tab_lists_config_and_final_metrics(run):
    folder, acc, _ = run
    content = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = session.session_start_info.hparams
    assert hp["model/width"].number_value == 8 and hp["model/depth"].number_value == 2
    assert hp["model/loss_weights/pde"].number_value == pytest.approx(1e-3)
    assert hp["data/n_interior"].number_value == 64
    assert hp["optimizer/class"].string_value == "PersistentAdam"
    assert hp["optimizer/lr"].number_value == pytest.approx(1e-3)
    assert hp["problem"].string_value == "PlaneWaves"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["val/rel_l2", "val/rel_l2_u", "val/rel_l2_v",
                                                              "val/rel_l2_end", "train/loss"]
    # the tab shows each metric's last scalar: the final validation error, recomputed here from the checkpoint
    model, _ = load_model(folder / "checkpoints" / "last.ckpt")
    xyt = model.problem.domain.grid(9, 9, 3)[81:]  # without the first slice, the initial state it is trained on
    with torch.no_grad():
        truth = relative_l2(model(xyt).numpy(), model.problem.displacement(xyt).numpy())
    assert acc.Scalars("val/rel_l2")[-1].value == pytest.approx(truth["rel_l2"], rel=1e-5)
    assert acc.Scalars("val/rel_l2_v")[-1].value == pytest.approx(truth["rel_l2_v"], rel=1e-5)


@pytest.mark.slow
def test_residual_histogram_matches_the_residual(run):
    folder, acc, _ = run
    model, state = load_model(folder / "checkpoints" / "last.ckpt")
    interior = state["ElasticDataModule"]["pools"]["interior"]
    xyt = interior.clone().requires_grad_(True)
    r = residual(model.fields(xyt, "pde"), model.material, None).detach().double()  # (64, 2)
    expected = {"residual/x": r[:, 0], "residual/y": r[:, 1], "residual/log10_norm": r.norm(dim=-1).log10()}
    for tag, values in expected.items():
        hist = acc.Histograms(tag)[-1]
        assert hist.step == 6
        h = hist.histogram_value
        assert h.num == 64
        assert h.min == pytest.approx(values.min().item(), rel=1e-4, abs=1e-6)
        assert h.max == pytest.approx(values.max().item(), rel=1e-4, abs=1e-6)
        assert h.sum == pytest.approx(values.sum().item(), rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_progress_bar_shows_step_loss_and_val_error(run):
    _, acc, stdout = run
    final = stdout.replace("\r", "\n").strip().splitlines()[-1]
    match = re.search(r"step: 6/6 \|.*loss=([0-9.e+-]+).*val/rel_l2=([0-9.e+-]+)", final)
    assert match, final
    assert float(match.group(1)) == pytest.approx(acc.Scalars("train/loss")[-1].value, rel=1e-2)
    assert float(match.group(2)) == pytest.approx(acc.Scalars("val/rel_l2")[-1].value, rel=1e-2)


def _fit_with_bar(max_steps: int, ckpt_path: Path | None = None) -> tuple[L.Trainer, ElasticPINN, StepProgressBar]:
    bar, model = StepProgressBar(), ElasticPINN(width=8, depth=2)
    data = ElasticDataModule(n_interior=32, n_boundary=16, n_initial=16, steps_per_epoch=2, val_grid=(5, 5, 2))
    trainer = L.Trainer(max_steps=max_steps, callbacks=[bar], logger=False, enable_checkpointing=False,
                        inference_mode=False, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return trainer, model, bar


def test_progress_bar_counts_steps_and_continues_a_resumed_run(tmp_path):
    trainer, model, bar = _fit_with_bar(2)
    assert (bar.train_progress_bar.n, bar.train_progress_bar.total) == (2, 2)
    shown = bar.get_metrics(trainer, model)
    assert shown["loss"] == pytest.approx(trainer.callback_metrics["train/loss"].item())
    assert shown["val/rel_l2"] == pytest.approx(trainer.callback_metrics["val/rel_l2"].item())
    trainer.save_checkpoint(tmp_path / "step2.ckpt")
    _, _, bar = _fit_with_bar(4, tmp_path / "step2.ckpt")
    bar = bar.train_progress_bar
    assert (bar.initial, bar.n, bar.total) == (2, 4, 4)


def test_field_figure_shares_colour_scales_and_titles_step_and_error():
    rng = np.random.default_rng(0)
    exact = rng.standard_normal((3, 6, 5, 2))
    pred = exact + 0.1 * rng.standard_normal(exact.shape)
    x, y, t = np.linspace(0, 1, 5), np.linspace(0, 2, 6), np.array([0.0, 0.5, 1.0])
    fig = field_figure(x, y, t, pred, exact, step=1200)
    errors = relative_l2(pred, exact)
    assert fig.get_suptitle() == (f"step 1200:  relative L2 error {errors['rel_l2']:.3e} "
                                  f"(u {errors['rel_l2_u']:.3e}, v {errors['rel_l2_v']:.3e})")
    panels = fig.axes[:18]  # 3 rows x 6 columns, then the 4 colour bars
    assert len(fig.axes) == 22
    for c in range(2):
        scale = np.abs(np.concatenate([pred[..., c], exact[..., c]])).max()
        err = np.percentile(np.abs(pred[..., c] - exact[..., c]), 99)  # the top 1 % saturates
        for row in range(3):
            p, e, d = (panels[6 * row + 3 * c + k].images[0] for k in range(3))
            assert p.get_clim() == e.get_clim() == pytest.approx((-scale, scale))
            assert d.get_clim() == pytest.approx((-err, err))
            np.testing.assert_array_equal(d.get_array(), pred[row, ..., c] - exact[row, ..., c])
    assert [ax.get_title() for ax in panels[:6]] == ["u predicted", "u exact", "u error",
                                                      "v predicted", "v exact", "v error"]
    assert panels[0].get_ylabel().startswith("t = 0") and panels[-1].get_xlabel() == "x"


def test_flatten_hparams_nests_and_stringifies():
    flat = flatten_hparams({"a": {"b": 1, "c": (2, 3)}, "d": None, "_instantiator": "x", "e": torch.tensor(0.5)})
    assert flat == {"a/b": 1, "a/c": "(2, 3)", "d": "None", "e": 0.5}


def test_callbacks_reject_bad_settings():
    with pytest.raises(ValueError, match="every_n_validations=-1"):
        ValidationFigures(every_n_validations=-1)
    with pytest.raises(ValueError, match="resolution"):
        ValidationFigures(resolution=(1, 5))
    with pytest.raises(ValueError, match="max_points=0"):
        ResidualHistogram(max_points=0)
    assert HParamsSummary().metrics[0] == "val/rel_l2"
