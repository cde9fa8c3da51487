"""The Levenberg-Marquardt stage: the optimizer against closed-form least squares, the loss rows against autograd,
and the stage in a run against its own checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from pinn.io.checkpointing import RunCheckpoint, VerifiedCheckpointIO, load_checkpoint
from pinn.optim.levenberg_marquardt import LevenbergMarquardt
from pinn.physics.unknowns import Unknowns
from pinn.problems.closed_form import PlaneWaves, Wave
from pinn.training.causal import Causal
from pinn.training.data import ElasticDataModule
from pinn.training.gauss_newton import LossRows
from pinn.training.module import ElasticPINN
from pinn.training.stages import LBFGSStage

pytestmark = pytest.mark.usefixtures("one_thread")
LM = dict(method="levenberg_marquardt", max_iter=1, float64=True)


def test_one_undamped_step_solves_linear_least_squares():
    """For r = A x - b the Gauss-Newton step is exact: one step with tiny damping lands on lstsq's solution."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 5, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    x = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))

    def rows():
        return a @ x - b

    opt = LevenbergMarquardt([x], SimpleNamespace(rows=rows, rows_and_jacobian=lambda: (rows(), a)), damping=1e-12,
                             min_damping=1e-14)
    opt.step()
    torch.testing.assert_close(x.detach(), torch.linalg.lstsq(a, b[:, None]).solution[:, 0], rtol=1e-9, atol=1e-9)
    assert opt.param_groups[0]["accepted"] == 1


def test_damped_steps_reach_the_minimum_of_rosenbrock():
    """r = (10 (y - x^2), 1 - x), the Rosenbrock valley: from (-1.2, 1) the damped iteration reaches (1, 1), the
    only zero of r, where plain Gauss-Newton's first step overshoots and is rejected."""
    xy = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))

    def rows():
        return torch.stack([10 * (xy[1] - xy[0] ** 2), 1 - xy[0]])

    def rows_and_jacobian():
        jac = torch.stack([torch.stack([-20 * xy[0], xy.new_tensor(10.0)]), xy.new_tensor([-1.0, 0.0])])
        return rows(), jac.detach()

    opt = LevenbergMarquardt([xy], SimpleNamespace(rows=rows, rows_and_jacobian=rows_and_jacobian), damping=1.0)
    for _ in range(100):
        opt.step()
    torch.testing.assert_close(xy.detach(), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-10)


def _data(problem=None):
    L.seed_everything(0, verbose=False)
    problem = problem or PlaneWaves([Wave(kind="P", angle=0.3, wavenumber=6.0)])
    return problem, ElasticDataModule(problem, n_interior=48, n_boundary=12, n_initial=12, steps_per_epoch=4,
                                      val_grid=(4, 4, 3))


def _setup(unknowns=None, **model):
    problem, dm = _data()
    dm.setup("fit")
    return ElasticPINN(problem, width=8, depth=2, unknowns=unknowns, **model).double(), dm


def _assert_rows_give_the_loss_and_its_gradient(model, batch):
    """|r|^2 is the weighted training loss of ``batch`` and 2 J^T r its gradient by autograd."""
    params = model.trained_parameters()
    rows = LossRows(model, params)
    rows.batch = batch
    loss = model.training_loss(batch)[0]
    gradient = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    r, jac = rows.rows_and_jacobian()
    assert jac.shape == (len(r), gradient.numel())
    torch.testing.assert_close(r.square().sum(), loss.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(2 * jac.T @ r, gradient, rtol=1e-10, atol=1e-10 * float(gradient.abs().max()))
    torch.testing.assert_close(rows.rows(), r, rtol=1e-12, atol=0)


@pytest.mark.parametrize("unknowns", [None, Unknowns(lam=2.0, mu=2.0, lr=0.05)], ids=["forward", "inverse"])
def test_rows_square_to_the_training_loss_and_their_jacobian_gives_its_gradient(unknowns):
    """|r|^2 is the weighted training loss and 2 J^T r its gradient by autograd, the material's entries included."""
    model, dm = _setup(unknowns)
    _assert_rows_give_the_loss_and_its_gradient(model, dm.batch(0))


def _run(tmp_path, max_steps, stage, ckpt_path=None):
    problem, dm = _data()
    module = ElasticPINN(problem, width=8, depth=2, lbfgs=stage)
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            losses.append((trainer.global_step, float(outputs["loss"])))

    trainer = L.Trainer(max_steps=max_steps, inference_mode=False, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
                        callbacks=[RunCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1), Record()],
                        plugins=[VerifiedCheckpointIO()])
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    return module, trainer, losses


def test_the_stage_lowers_the_loss_and_resumes_bit_for_bit(tmp_path):
    """After Adam's steps 0-2 every accepted step lowers the loss (on fixed points); the damping is in the
    checkpoint, and a run resumed inside the stage repeats the uninterrupted run's losses and weights exactly."""
    stage = LBFGSStage(start_step=3, **LM)
    full, trainer, losses = _run(tmp_path / "a", 10, stage)
    assert isinstance(trainer.optimizers[0], LevenbergMarquardt) and full.stage == "lbfgs"
    stage_losses = [v for s, v in losses if s > 3]
    assert all(b < a for a, b in zip(stage_losses, stage_losses[1:]))
    assert stage_losses[-1] < 0.8 * stage_losses[0]
    group = load_checkpoint(tmp_path / "a" / "last.ckpt")["optimizer_states"][0]["param_groups"][0]
    assert group["damping"] == trainer.optimizers[0].param_groups[0]["damping"] and group["accepted"] >= 5

    _run(tmp_path / "b", 6, stage)
    resumed, _, tail = _run(tmp_path / "b", 10, stage, ckpt_path=tmp_path / "b" / "last.ckpt")
    assert tail == [(s, v) for s, v in losses if s > 6]
    for (name, a), b in zip(full.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_a_damaged_levenberg_marquardt_state_is_refused():
    x = torch.nn.Parameter(torch.zeros(2))
    opt = LevenbergMarquardt([x], SimpleNamespace(rows=lambda: x, rows_and_jacobian=lambda: (x, torch.eye(2))))
    state = opt.state_dict()
    state["param_groups"][0]["damping"] = float("nan")
    with pytest.raises(ValueError, match=r"checkpoint's LevenbergMarquardt state.*damping=nan"):
        opt.load_state_dict(state)
    with pytest.raises(ValueError, match="not a LevenbergMarquardt state"):
        opt.load_state_dict(torch.optim.LBFGS([x]).state_dict())


@pytest.mark.parametrize("bad, message", [({"method": "newton"}, r"model.lbfgs.method='newton'"),
                                          ({"damping": 0.0}, r"damping=0.0")])
def test_bad_settings_name_the_value(bad, message):
    with pytest.raises(ValueError, match=message):
        LBFGSStage(**bad)


def test_causal_weighting_is_refused_with_the_reason():
    model, _ = _setup(causal=Causal(epsilon=1.0, slices=4))
    with pytest.raises(ValueError, match="drop model.causal"):
        LossRows(model, model.trained_parameters())


def test_a_large_network_warns_of_the_normal_matrix():
    model = ElasticPINN(PlaneWaves([Wave()]), width=80, depth=2)  # 6962 weights
    with pytest.warns(UserWarning, match=r"Levenberg-Marquardt on 6962 trained weights: .* \(0\.4 GB in float64\)"):
        LBFGSStage(**LM).optimizer(model.trained_parameters(), model)


def test_rows_of_a_layered_problem_with_windows_and_a_sponge_give_the_gradient(tmp_path):
    """A medium that varies in space (its gradients found by autograd, outside the vectorised Jacobian), a source, a
    damped padding, free, fixed and absorbing edges and two time windows with the initial state built in: |r|^2 is
    the loss and 2 J^T r its gradient."""
    from test_resume import _wave_problem

    from pinn.training.windows import TimeWindows, initial_state_values, state_nodes

    problem, dm = _data(_wave_problem(tmp_path, padding=20.0))
    dm.setup("fit")
    model = ElasticPINN(problem, width=8, depth=2, windows=TimeWindows(count=2, steps=5, exact_initial=True)).double()
    x, y = state_nodes(problem)
    model.marching.set_state(0, x, y, initial_state_values(problem, x, y))
    _assert_rows_give_the_loss_and_its_gradient(model, dm.batch(0))
    assert "material_at" not in model.__dict__ and "residual_of" not in model.__dict__  # the overrides are undone
