"""CUDA-graph training steps: what rules capture out, and on CUDA the same training as eager, a failed capture that
leaves the device usable, and the graphs released at the L-BFGS switch. The logic runs on the CPU with a stand-in
for ``torch.cuda`` in ``test_graph_logic.py``."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from pinn.optim.persistent_adam import PersistentAdam
from pinn.training.balancing import GradNormBalancing
from pinn.training.data import ElasticDataModule
from pinn.training.graphs import graph_blockers
from pinn.training.module import ElasticPINN
from pinn.training.stages import LBFGSStage

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
    reasons = graph_blockers(model, torch.optim.Adam(model.parameters()), scheduler=True)
    assert reasons == ["the model is on cpu, not CUDA", "the optimizer is Adam, not PersistentAdam",
                       "a learning-rate scheduler", "loss balancing"]
    plain = ElasticPINN(width=8, depth=2)
    assert graph_blockers(plain, PersistentAdam(plain.parameters())) == ["the model is on cpu, not CUDA"]


def test_invalid_setting_is_refused():
    with pytest.raises(ValueError, match="model.cuda_graphs must be true, false or auto, got 'yes'"):
        ElasticPINN(cuda_graphs="yes")


def test_asked_for_on_cpu_warns_and_trains_eagerly(tmp_path):
    """The warning and the eager run; that graphed training equals eager training is checked where graphs do run:
    with the stand-in for torch.cuda (test_graph_logic.py) and on CUDA below."""
    with pytest.warns(UserWarning, match="model.cuda_graphs is true, but the model is on cpu, not CUDA"):
        model, losses = fit("cpu", 4, tmp_path, cuda_graphs=True)
    assert model._graphs is None and model.graph_now is False and len(losses) == 4


@cuda
def test_cuda_graph_training_matches_eager(tmp_path):
    """Forward, backward and the PersistentAdam step replayed from a graph train as the eager steps do, to float
    rounding (the capturable update computes its bias corrections in float32 on the device), with one Adam update per
    global step."""
    graphed_model, graphed = fit("gpu", 30, tmp_path, cuda_graphs=True)
    assert graphed_model._graphs is not None and graphed_model._graphs.failed is None
    assert len(graphed_model._graphs.captures) == 1
    steps = {int(s["step"]) for s in graphed_model.trainer.optimizers[0].state.values()}
    assert steps == {30}
    eager_model, eager = fit("gpu", 30, tmp_path, cuda_graphs=False)
    torch.testing.assert_close(torch.tensor(graphed), torch.tensor(eager), rtol=1e-4, atol=1e-6)
    for a, b in zip(graphed_model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@cuda
def test_a_failed_cuda_capture_leaves_the_device_usable(tmp_path, monkeypatch):
    """A loss that reads a value on the host fails to capture: one warning, the run finishes eagerly, the caller's
    stream is current again, and the allocator takes a cache flush (which fails an internal assert when a failed
    capture is left open)."""
    loss = ElasticPINN.training_loss

    def reads_on_host(self, batch):
        out = loss(self, batch)
        if float(out[0]) < 0:
            raise AssertionError
        return out

    monkeypatch.setattr(ElasticPINN, "training_loss", reads_on_host)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture of the training step failed"):
        model, losses = fit("gpu", 8, tmp_path, cuda_graphs=True)
    assert model._graphs.failed is not None and len(losses) == 8
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    torch.cuda.empty_cache()
    assert torch.cuda.is_current_stream_capturing() is False
    (torch.ones(4, device="cuda") * 2).sum().item()


@cuda
def test_graphs_release_their_memory_at_the_lbfgs_switch(tmp_path):
    model, losses = fit("gpu", 8, tmp_path, cuda_graphs=True, lbfgs=LBFGSStage(start_step=5, max_iter=2))
    assert model._graphs is None and len(losses) == 8
