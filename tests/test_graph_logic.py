"""The CUDA-graph step's logic on the CPU, with a stand-in for ``torch.cuda`` that records and replays operations
(``tests/graph_fakes.py``): one Adam update per global step, the warm-up per batch shape, zero_grad and backward left
to the graph, the fallback after a failed capture taken once, the graphs released at the L-BFGS switch, and each
setting that rules graphs out."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from graph_fakes import CaptureRefused, FakeCuda, FakeGraph
from lightning.pytorch.callbacks import Callback

import pinn.training.graphs as graphs_module
from pinn.optim.persistent_adam import PersistentAdam
from pinn.training.data import ElasticDataModule
from pinn.training.graphs import GraphedStep, graph_blockers
from pinn.training.module import ElasticPINN
from pinn.training.stages import LBFGSStage


class Record(Callback):
    """The loss of each step, and whether the step ran in the graphed path."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.graphed: list[bool] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        # the eager run uses the same capturable update, so that the two compare bit for bit
        for group in trainer.optimizers[0].param_groups:
            group["capturable"] = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(trainer.callback_metrics["train/loss"].item())
        self.graphed.append(pl_module.graph_now)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Graphs on the CPU: the stand-in for torch.cuda, and the blockers without the device rule."""
    fake = FakeCuda()
    monkeypatch.setattr(graphs_module, "CUDA", fake)
    blockers = graphs_module.graph_blockers
    monkeypatch.setattr(graphs_module, "graph_blockers", lambda *a, **k: [
        r for r in blockers(*a, **k) if not r.startswith("the model is on")])
    return fake


class Counts:
    """How often Lightning's own backward and zero_grad ran, and backward and zero_grad of any kind."""

    def __init__(self, monkeypatch) -> None:
        self.lightning_backward = self.lightning_zero_grad = self.backward = self.zero_grad = 0
        lm = L.LightningModule
        backward, zero_grad = lm.backward, lm.optimizer_zero_grad
        tensor_backward, optim_zero_grad = torch.Tensor.backward, torch.optim.Optimizer.zero_grad

        def count(name, fn):
            def wrapper(*a, **k):
                setattr(self, name, getattr(self, name) + 1)
                return fn(*a, **k)
            return wrapper

        monkeypatch.setattr(lm, "backward", count("lightning_backward", backward))
        monkeypatch.setattr(lm, "optimizer_zero_grad", count("lightning_zero_grad", zero_grad))
        monkeypatch.setattr(torch.Tensor, "backward", count("backward", tensor_backward))
        monkeypatch.setattr(torch.optim.Optimizer, "zero_grad", count("zero_grad", optim_zero_grad))


class HalveLearningRate(Callback):
    """Changes what a captured update holds fixed, from step 5 on, as a user's callback might."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 5:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = group["lr"] / 2


def fit(tmp_path, steps: int, cuda_graphs, batch_size=None, lbfgs=None, callbacks=(), **model_kwargs):
    L.seed_everything(0, verbose=False)
    model = ElasticPINN(width=16, depth=2, compile=False, cuda_graphs=cuda_graphs, lbfgs=lbfgs, **model_kwargs)
    data = ElasticDataModule(n_interior=64, n_boundary=32, n_initial=32, steps_per_epoch=5, val_grid=(3, 3, 2),
                             batch_size=batch_size)
    record = Record()
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, inference_mode=False, accelerator="cpu",
                        devices=1, default_root_dir=tmp_path, callbacks=[*callbacks, record])
    trainer.fit(model, data)
    return model, trainer, record


def adam_steps(optimizer) -> set[int]:
    return {int(s["step"]) for s in optimizer.state.values()}


def test_graphed_training_is_the_eager_training(fake_cuda, tmp_path, monkeypatch):
    """Three eager warm-up steps, one capture, then replays: the losses and weights are those of eager training bit
    for bit, Adam counts one update per global step, and neither Lightning's backward nor its zero_grad runs."""
    counts = Counts(monkeypatch)
    model, trainer, record = fit(tmp_path, 8, True)
    assert isinstance(model._graphs, GraphedStep) and model._graphs.failed is None
    assert record.graphed == [True] * 8
    assert fake_cuda.captures_begun == 1 and fake_cuda.graphs[0].replays == 5  # steps 4 to 8
    assert adam_steps(trainer.optimizers[0]) == {8}
    assert (counts.lightning_backward, counts.lightning_zero_grad) == (0, 0)
    assert (counts.backward, counts.zero_grad) == (4, 4)  # the 3 warm-ups and the capture, none in a replay
    assert fake_cuda.streams == ["default"]

    eager_model, eager_trainer, eager = fit(tmp_path, 8, False)
    assert eager.graphed == [False] * 8
    assert record.losses == eager.losses
    for a, b in zip(model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert adam_steps(eager_trainer.optimizers[0]) == {8}


def test_each_batch_shape_warms_up_and_is_captured_on_its_own(fake_cuda):
    """A full and a shorter last mini-batch alternate: each counts its own three warm-up steps, then each is
    captured once and replayed, and the updates match eager steps on the same batches."""
    torch.manual_seed(0)
    model = ElasticPINN(width=8, depth=2, compile=False)
    twin = ElasticPINN(width=8, depth=2, compile=False)
    twin.load_state_dict(model.state_dict())
    graphs = GraphedStep(model, PersistentAdam(model.parameters(), lr=1e-2), warmup=3)
    eager_opt = PersistentAdam(twin.parameters(), lr=1e-2, capturable=True)

    def batch(n):
        g = torch.Generator().manual_seed(n)
        return {k: torch.rand(n, 3, generator=g) for k in ("interior", "boundary", "initial")}

    full, short = batch(16), batch(8)
    for i, b in enumerate([full, short] * 6):
        loss, _ = graphs.step(b)
        eager_opt.zero_grad()
        eager_loss, _ = twin.training_loss(b)
        eager_loss.backward()
        eager_opt.step()
        assert loss.item() == eager_loss.item(), f"step {i}"
    assert fake_cuda.captures_begun == 2 and len(graphs.captures) == 2
    assert [g.replays for g in fake_cuda.graphs] == [3, 3]  # the 4th to 6th of each shape
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_failed_capture_falls_back_once_and_the_run_finishes(fake_cuda, tmp_path, monkeypatch):
    """A loss that reads a value on the host cannot be captured: the capture fails once (one warning naming the
    setting that avoids it), the stream is restored and the pool abandoned, that step and the rest run eagerly, and
    the run trains exactly as an eager one."""
    host_read = ElasticPINN.training_loss

    def reads_on_host(self, batch):
        loss, terms = host_read(self, batch)
        if float(loss) < 0:  # never: only the read matters
            raise AssertionError
        return loss, terms

    monkeypatch.setattr(ElasticPINN, "training_loss", reads_on_host)
    with pytest.warns(RuntimeWarning, match=r"CUDA graph capture of the training step failed \(CaptureRefused.*"
                                            r"model.cuda_graphs to false") as caught:
        model, _, record = fit(tmp_path, 8, True)
    assert sum("capture" in str(w.message) for w in caught) == 1
    assert fake_cuda.captures_begun == 1 and fake_cuda.ended == [True] and fake_cuda.streams == ["default"]
    assert record.graphed == [True, True, True] + [False] * 5  # three warm-ups; the failed capture's step on
    assert "CaptureRefused" in model._graphs.failed
    eager_model, _, eager = fit(tmp_path, 8, False)
    assert record.losses == eager.losses
    for a, b in zip(model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_capture_whose_end_fails_is_undone_and_training_goes_on(fake_cuda, tmp_path):
    """The CUDA runtime can also refuse at capture_end (an invalidated capture): the allocator and pool are then
    undone by hand, and the run trains on eagerly, as eager training."""
    end = FakeGraph.capture_end

    def failing_end(self):
        end(self)
        raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    FakeGraph.capture_end = failing_end
    try:
        with pytest.warns(RuntimeWarning, match="capture of the training step failed"):
            model, _, record = fit(tmp_path, 6, True)
    finally:
        FakeGraph.capture_end = end
    assert fake_cuda.ended == [False] and fake_cuda.streams == ["default"]
    assert record.graphed == [True, True, True, False, False, False]
    eager_model, _, eager = fit(tmp_path, 6, False)
    assert record.losses == eager.losses


def test_the_graphs_are_released_at_the_lbfgs_switch(fake_cuda, tmp_path):
    model, trainer, record = fit(tmp_path, 8, True, lbfgs=LBFGSStage(start_step=6, max_iter=2))
    assert fake_cuda.released == 1 and model._graphs is None
    assert record.graphed == [True] * 6 + [False] * 2
    assert type(trainer.optimizers[0]).__name__ == "LBFGS"


def test_a_setting_changed_mid_run_turns_the_graphs_off(fake_cuda, tmp_path):
    """A learning rate changed by a callback is not silently ignored by the replayed update: the graphs go, with a
    warning, and the run trains on eagerly with the new rate, as an eager run does."""
    with pytest.warns(UserWarning, match="CUDA graphs off from step 5: the optimizer's settings"):
        model, _, record = fit(tmp_path, 8, True, callbacks=[HalveLearningRate()])
    assert record.graphed == [True] * 5 + [False] * 3 and fake_cuda.released == 1 and model._graphs is None
    _, _, eager = fit(tmp_path, 8, False, callbacks=[HalveLearningRate()])
    assert record.losses == eager.losses


def trainer_with(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


@pytest.mark.parametrize(("settings", "reason"), [
    ({"strategy": "ddp", "devices": 1}, "the DDPStrategy (several devices or processes)"),
    ({"accumulate_grad_batches": 4}, "gradient accumulation (accumulate_grad_batches=4)"),
    ({"precision": "bf16-mixed"}, "precision bf16-mixed"),
    ({"precision": "bf16-true"}, "precision bf16-true"),
    ({"gradient_clip_val": 1.0}, "gradient clipping"),
])
def test_each_setting_the_graph_cannot_hold_rules_it_out(settings, reason):
    """By the setting, not by luck: DDP in a world of one process is ruled out by its type."""
    model = ElasticPINN(width=8, depth=2)
    optimizer = PersistentAdam(model.parameters())
    assert graph_blockers(model, optimizer, trainer_with(**settings))[1:] == [reason]
    assert graph_blockers(model, optimizer, trainer_with()) == ["the model is on cpu, not CUDA"]


def test_anomaly_detection_rules_it_out():
    model = ElasticPINN(width=8, depth=2)
    with torch.autograd.detect_anomaly(check_nan=False):
        assert "anomaly detection" in graph_blockers(model, PersistentAdam(model.parameters()))


def test_a_blocked_setting_trains_eagerly_with_its_reason_said(fake_cuda, tmp_path):
    L.seed_everything(0, verbose=False)
    model = ElasticPINN(width=8, depth=2, compile=False, cuda_graphs=True)
    data = ElasticDataModule(n_interior=32, n_boundary=16, n_initial=16, steps_per_epoch=5, val_grid=(3, 3, 2))
    trainer = trainer_with(max_steps=4, accumulate_grad_batches=2, limit_val_batches=0, default_root_dir=tmp_path)
    with pytest.warns(UserWarning, match=r"model.cuda_graphs is true, but gradient accumulation"):
        trainer.fit(model, data)
    assert model._graphs is None and fake_cuda.captures_begun == 0


def test_the_fake_refuses_what_a_capture_refuses():
    """The stand-in is only worth its tests if a host read inside a capture fails there."""
    fake = FakeCuda()
    graph = fake.graph()
    x = torch.ones(3)
    graph.capture_begin()
    with pytest.raises(CaptureRefused):
        bool((x > 0).all())
    fake.abandon(graph)
    y = x * 2  # recording is over
    assert y.sum().item() == 6.0
