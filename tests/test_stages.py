"""The L-BFGS stage, gradient-norm loss balancing and float64 training, each against an independent computation."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from pinn.io.checkpointing import RunCheckpoint, VerifiedCheckpointIO, load_checkpoint
from pinn.physics.unknowns import Unknowns
from pinn.problems.closed_form import PlaneWaves, Wave
from pinn.training.balancing import Balancer, GradNormBalancing
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN
from pinn.training.resampling import ResidualResampling
from pinn.training.stages import LBFGSStage, clear_history

pytestmark = pytest.mark.usefixtures("one_thread")


def _problem():
    return PlaneWaves([Wave(kind="P", angle=0.3, wavenumber=6.0)])


def _run(tmp_path, max_steps, model=None, data=None, callbacks=(), precision="32-true", ckpt_path=None):
    L.seed_everything(0, verbose=False)
    problem = _problem()
    dm = ElasticDataModule(problem, **{"n_interior": 48, "n_boundary": 12, "n_initial": 12, "steps_per_epoch": 4,
                                       "val_grid": (4, 4, 3), **(data or {})})
    module = ElasticPINN(problem, width=8, depth=2, **(model or {}))
    trainer = L.Trainer(max_steps=max_steps, inference_mode=False, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", precision=precision,
                        callbacks=[RunCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1),
                                   *callbacks], plugins=[VerifiedCheckpointIO()])
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    return module, dm, trainer


def test_lbfgs_stage_is_torch_lbfgs_on_the_training_loss(tmp_path):
    """Steps 4..7 of a run with ``lbfgs.start_step=4`` equal plain ``torch.optim.LBFGS`` on the same loss, started
    from the Adam iterate of step 4; the network and the trainable material are both in it."""
    stage = LBFGSStage(start_step=4, max_iter=3, history_size=5)
    unknowns = Unknowns(lam=2.0, mu=2.0, lr=0.05)
    adam_part, dm, _ = _run(tmp_path / "a", 4, model={"unknowns": unknowns})
    full, _, trainer = _run(tmp_path / "b", 8, model={"unknowns": unknowns, "lbfgs": stage})
    assert isinstance(trainer.optimizers[0], torch.optim.LBFGS) and full.stage == "lbfgs"

    oracle = copy.deepcopy(adam_part)
    params = list(oracle.parameters())
    assert any(p is oracle.trainable_material.raw_lam for p in params)
    lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=3, history_size=5, line_search_fn="strong_wolfe",
                              tolerance_grad=1e-9, tolerance_change=1e-12)
    batch = dm.batch(4)

    def closure():
        lbfgs.zero_grad()
        loss = oracle.training_loss(batch)[0]
        loss.backward()
        return loss

    for _ in range(4):
        lbfgs.step(closure)
    for (name, a), b in zip(full.named_parameters(), oracle.parameters()):
        assert torch.equal(a, b), name
    assert not torch.equal(adam_part.trainable_material.raw_lam, full.trainable_material.raw_lam)

    saved = load_checkpoint(tmp_path / "b" / "last.ckpt")
    assert saved["optimizer_stage"]["name"] == "lbfgs"
    state = saved["optimizer_states"][0]["state"][0]
    assert {"old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss", "d", "t", "n_iter"} <= set(state)
    assert len(state["old_dirs"]) == min(stage.history_size, state["n_iter"] - 1) > 0


class History(Callback):
    """After each step: the number of L-BFGS curvature pairs (-1 under Adam) and the data module's pool version."""

    def __init__(self) -> None:
        self.pairs: dict[int, int] = {}
        self.versions: dict[int, int] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        opt = trainer.optimizers[0]
        lbfgs = isinstance(opt, torch.optim.LBFGS) and opt.state
        self.pairs[trainer.global_step] = len(next(iter(opt.state.values()))["old_dirs"]) if lbfgs else -1
        self.versions[trainer.global_step] = trainer.datamodule.pool_version


def test_lbfgs_history_starts_afresh_when_the_points_change(tmp_path):
    """RAR-D adds points after one step: the curvature pairs of the old loss are dropped before the next."""
    history = History()
    rar = ResidualResampling("rar-d", every_n_steps=6, n_candidates=64, n_add=8, chunk_size=40, log_images=False)
    _run(tmp_path, 9, model={"lbfgs": LBFGSStage(start_step=2, max_iter=2)}, callbacks=[rar, history])
    assert history.pairs[1] == history.pairs[2] == -1  # Adam
    changed = [s for s in range(2, 10) if history.versions[s] != history.versions[s - 1]]
    assert len(changed) == 1
    k = changed[0]  # the points changed at the end of step k
    assert history.pairs[k] >= 3 and history.pairs[k] > history.pairs[3]  # pairs accumulate (2 iterations a step)
    assert history.pairs[k + 1] <= 1  # a fresh start: one step of 2 iterations makes at most one pair


def test_kept_pairs_survive_a_change_of_loss_without_a_mixed_pair():
    """``keep_history``: on quadratics 0.5 x'Ax - b'x sharing A, a change of b (new points, the same curvature) keeps
    the pairs, every stored pair stays a true one (y = A s; a pair spanning the change would be off by b1 - b2), and
    the kept curvature reaches the new minimum far sooner than a fresh start."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, 2, 12, dtype=torch.float64)) @ q.T
    b1, b2 = torch.randn(12, generator=g, dtype=torch.float64), torch.randn(12, generator=g, dtype=torch.float64)
    errors = {}
    for keep in (True, False):
        x = torch.zeros(12, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([x], max_iter=1, history_size=30, line_search_fn="strong_wolfe")

        def run(b, n):
            def closure():
                opt.zero_grad()
                f = 0.5 * x @ a @ x - b @ x
                f.backward()
                return f
            for _ in range(n):
                opt.step(closure)

        run(b1, 25)
        pairs = len(opt.state[x]["old_dirs"])
        clear_history(opt, keep_pairs=keep)
        run(b2, 1)
        state = opt.state[x]
        if keep:
            assert len(state["old_dirs"]) == pairs >= 12  # kept, and the step across the change stored none
        run(b2, 3)
        for y, s in zip(state["old_dirs"], state["old_stps"]):
            torch.testing.assert_close(y, a @ s, rtol=1e-8, atol=1e-10)
        errors[keep] = float(torch.linalg.norm(x.detach() - torch.linalg.solve(a, b2)))
    assert errors[True] < 1e-3 * errors[False]


def test_lbfgs_needs_full_batches(tmp_path):
    with pytest.raises(ValueError, match=r"model.lbfgs needs full batches, but data.batch_size=16"):
        _run(tmp_path, 3, model={"lbfgs": LBFGSStage(start_step=1)}, data={"batch_size": 16})


@pytest.mark.parametrize("bad", [{"start_step": -1}, {"max_iter": 0}, {"lr": 0.0}, {"line_search": "armijo"},
                                 {"history_size": 2.5}, {"tolerance_grad": float("nan")}])
def test_lbfgs_settings_are_checked(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=rf"model.lbfgs.{name}="):
        LBFGSStage(**bad)


def test_gradient_norm_factors_equal_the_formula():
    """lambda_k = sum_j |grad L_j| / |grad L_k|, first estimate taken as is, then the moving average."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    balancer = Balancer(["a", "b", "c"], GradNormBalancing(every=10, alpha=0.75))

    def terms(scale):
        return {"a": (w**2).sum() * scale, "b": (3 * w).sum(), "c": torch.sin(w).sum() * 0.01}

    def norms(t):
        return {k: torch.autograd.grad(v, [w], retain_graph=True)[0].norm().double() for k, v in t.items()}

    first = norms(terms(1.0))
    balancer.update(terms(1.0), [w])
    total = sum(first.values())
    for k in first:
        torch.testing.assert_close(balancer.factor(k), total / first[k])
    second = norms(terms(5.0))
    balancer.update(terms(5.0), [w])
    total2 = sum(second.values())
    for k in first:
        torch.testing.assert_close(balancer.factor(k), 0.75 * total / first[k] + 0.25 * total2 / second[k])
    assert balancer.due(20) and not balancer.due(21)


def test_balanced_run_weights_terms_and_resumes_with_its_factors(tmp_path):
    """The factors enter the loss, are logged, and come back from the checkpoint (a buffer of the module)."""
    model, dm, trainer = _run(tmp_path, 5, model={"balancing": {"every": 2, "alpha": 0.5}})
    factors = model.balancer.factors.clone()
    assert not torch.equal(factors, torch.ones_like(factors)) and int(model.balancer.updates) == 3
    assert "balance/pde" in trainer.callback_metrics
    loss, terms = model.training_loss(dm.batch(5))
    expected = sum(getattr(model.weights, k) * float(model.balancer.factor(k)) * v for k, v in terms.items())
    torch.testing.assert_close(loss, expected)
    saved = load_checkpoint(tmp_path / "last.ckpt")["state_dict"]
    assert torch.equal(saved["balancer.factors"], factors)


def test_float64_training_keeps_every_tensor_in_float64(tmp_path):
    """With ``precision="64-true"`` the points are drawn and read in float64 (not float32 values cast up), and the
    loss, the validation and the L-BFGS stage all compute in float64."""
    seen = {}

    class Probe(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen["batch"] = {k: v.dtype for k, v in batch.items()}
            interior = batch["interior"]
            seen["exact"] = bool(torch.equal(interior.float().double(), interior))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            seen["loss"] = outputs["loss"].dtype

    model, dm, trainer = _run(tmp_path, 4, model={"lbfgs": LBFGSStage(start_step=2, max_iter=2)}, callbacks=[Probe()],
                              precision="64-true")
    assert set(seen["batch"].values()) == {torch.float64} and not seen["exact"]
    assert seen["loss"] == torch.float64
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert trainer.callback_metrics["val/rel_l2"].isfinite()
    state = trainer.optimizers[0].state_dict()["state"][0]
    assert state["prev_flat_grad"].dtype == torch.float64


def test_lbfgs_stage_in_float64_converts_the_network_at_the_switch(tmp_path):
    """Adam in float32, L-BFGS in float64: the loss and the stored weights follow, and a resumed run is float64."""
    dtypes = {}

    class Probe(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            dtypes[trainer.global_step] = (outputs["loss"].dtype, pl_module.net.out.weight.dtype)

    stage = LBFGSStage(start_step=2, max_iter=2, float64=True)
    _run(tmp_path, 4, model={"lbfgs": stage}, callbacks=[Probe()])
    assert dtypes[2] == (torch.float32, torch.float32) and dtypes[3] == (torch.float64, torch.float64)
    assert load_checkpoint(tmp_path / "last.ckpt")["state_dict"]["net.out.weight"].dtype == torch.float64
    resumed, _, _ = _run(tmp_path, 5, model={"lbfgs": stage}, ckpt_path=tmp_path / "last.ckpt")
    assert resumed.dtype == torch.float64 and resumed.stage == "lbfgs"



def test_the_pool_version_of_the_lbfgs_history_loads_under_its_old_name():
    model = ElasticPINN(PlaneWaves([Wave()]), width=8, depth=1)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["optimizer_stage"]["pool_version"] == 0
    for key in ("pool_version", "points_version"):  # points_version: checkpoints written before the rename
        model.on_load_checkpoint({"state_dict": model.state_dict(), "optimizer_stage": {"name": "adam", key: 7}})
        assert model.pool_version == 7
