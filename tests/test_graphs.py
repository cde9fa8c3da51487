"""CUDA-graph training steps: what rules capture out, the fallback, and (on CUDA) the same training as eager."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from pinn.optim.persistent_adam import PersistentAdam
from pinn.training.balancing import GradNormBalancing
from pinn.training.data import ElasticDataModule
from pinn.training.graphs import GraphedStep, graph_blockers
from pinn.training.module import ElasticPINN

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class Losses(Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values.append(trainer.callback_metrics["train/loss"].item())


def fit(device: str, steps: int, tmp_path, **model_kwargs):
    L.seed_everything(0, verbose=False)
    model = ElasticPINN(width=16, depth=3, compile=False, **model_kwargs)
    data = ElasticDataModule(n_interior=64, n_boundary=32, n_initial=32, steps_per_epoch=5, val_grid=(3, 3, 2))
    losses = Losses()
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, inference_mode=False, accelerator=device,
                        devices=1, default_root_dir=tmp_path, callbacks=[losses])
    trainer.fit(model, data)
    return model, losses.values


def test_blockers_name_each_reason():
    model = ElasticPINN(width=8, depth=2, balancing=GradNormBalancing())
    reasons = graph_blockers(model, torch.optim.Adam(model.parameters()), 2, True, True)
    assert reasons == ["the model is on cpu, not CUDA", "more than one process (DDP)",
                       "the optimizer is Adam, not PersistentAdam", "a learning-rate scheduler", "gradient clipping",
                       "loss balancing"]
    plain = ElasticPINN(width=8, depth=2)
    assert graph_blockers(plain, PersistentAdam(plain.parameters()), 1, False, False) == [
        "the model is on cpu, not CUDA"]


def test_each_batch_shape_warms_up_on_its_own():
    """A full and a shorter last mini-batch alternate: each shape counts its own eager warm-up steps, so neither
    resets the other's (and, once captured, neither replaces the other's graph)."""
    model = ElasticPINN(width=8, depth=2)
    graphs = GraphedStep(model, PersistentAdam(model.parameters()), warmup=3)
    full = {"interior": torch.zeros(16, 3)}
    short = {"interior": torch.zeros(8, 3)}
    assert [graphs.ready(b) for b in [full, short] * 3] == [False] * 6
    assert graphs.ready(full) and graphs.ready(short)  # the fourth of each: captured now
    assert graphs.optimizer.param_groups[0]["capturable"] is True


def test_invalid_setting_is_refused():
    with pytest.raises(ValueError, match="model.cuda_graphs must be true, false or auto, got 'yes'"):
        ElasticPINN(cuda_graphs="yes")


def test_asked_for_on_cpu_warns_and_trains_eagerly(tmp_path):
    with pytest.warns(UserWarning, match="model.cuda_graphs is true, but the model is on cpu, not CUDA"):
        model, graphed = fit("cpu", 4, tmp_path, cuda_graphs=True)
    assert model._graphs is None
    _, eager = fit("cpu", 4, tmp_path, cuda_graphs=False)
    assert graphed == eager


@cuda
def test_cuda_graph_training_matches_eager(tmp_path):
    """Forward, backward and the PersistentAdam step replayed from a graph train as the eager steps do, to float
    rounding (the capturable update computes its bias corrections in float32 on the device)."""
    graphed_model, graphed = fit("gpu", 30, tmp_path, cuda_graphs=True)
    assert graphed_model._graphs is not None and graphed_model._graphs.graph is not None
    eager_model, eager = fit("gpu", 30, tmp_path, cuda_graphs=False)
    torch.testing.assert_close(torch.tensor(graphed), torch.tensor(eager), rtol=1e-4, atol=1e-6)
    for a, b in zip(graphed_model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
