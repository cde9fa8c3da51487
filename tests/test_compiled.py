"""Opt-in torch.compile of the training loss: same numbers as eager, and a fallback that says why."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

import pinn.training.compiled
from pinn.training.compiled import CompiledLoss
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN


def tiny_model(**kwargs) -> ElasticPINN:
    torch.manual_seed(0)
    return ElasticPINN(width=8, depth=2, **kwargs).double()


def tiny_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.rand(24, 3, generator=g, dtype=torch.float64) for k in ("interior", "boundary", "initial")}


def test_compiled_taylor_loss_matches_eager():
    """Dynamo and AOTAutograd trace the Taylor engine and the loss terms to the same loss and parameter gradients."""
    model, batch = tiny_model(engine="taylor"), tiny_batch()
    compiled = CompiledLoss(model._weighted_loss, model.parameters, backend="aot_eager")
    results = []
    for fn in (model._weighted_loss, compiled, compiled):  # the second compiled call runs the cached graph
        loss, terms = fn(batch)
        results.append((loss, terms, torch.autograd.grad(loss, list(model.parameters()))))
    assert compiled.state == "compiled"
    for loss, terms, grads in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-12, atol=0)
        assert terms.keys() == results[0][1].keys()
        for g, ref in zip(grads, results[0][2]):
            torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-14)


def failing_compile(message: str):
    def compile_(fn, backend="inductor"):
        def run(*args):
            run.calls += 1
            raise RuntimeError(message)

        run.calls = 0
        compile_.last = run
        return run

    return compile_


def test_falls_back_with_the_reason_when_compiling_fails(monkeypatch):
    compile_ = failing_compile("InvalidCxxCompiler: No working C++ compiler found\nlong details")
    monkeypatch.setattr(pinn.training.compiled.torch, "compile", compile_)
    model, batch = tiny_model(), tiny_batch()
    loss_fn = CompiledLoss(model._weighted_loss, model.parameters, "the training loss")
    with pytest.warns(RuntimeWarning, match=r"could not compile the training loss \(RuntimeError: InvalidCxxCompiler: "
                                            r"No working C\+\+ compiler found\); running it without compiling"):
        loss, _ = loss_fn(batch)
    assert loss_fn.state == "eager" and "long details" not in loss_fn.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, then quietly eager
        again, _ = loss_fn(batch)
    assert compile_.last.calls == 1
    assert torch.equal(loss, again) and torch.equal(loss, model._weighted_loss(batch)[0])


class _BrokenBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward lowering failed")


def test_falls_back_when_only_the_backward_fails(monkeypatch):
    """torch compiles the backward lazily; the first call differentiates once so that failure surfaces too."""
    monkeypatch.setattr(pinn.training.compiled.torch, "compile", lambda fn, backend: lambda *a: _BrokenBackward.apply(fn(*a)))
    w = torch.tensor(2.0, requires_grad=True)
    loss_fn = CompiledLoss(lambda x: (w * x) ** 2, lambda: [w])
    with pytest.warns(RuntimeWarning, match="backward lowering failed"):
        loss = loss_fn(torch.tensor(3.0))
    loss.backward()
    assert w.grad.item() == 36.0


def test_errors_of_the_loss_itself_are_raised_unchanged(monkeypatch):
    monkeypatch.setattr(pinn.training.compiled.torch, "compile", lambda fn, backend: fn)

    def bad(batch):
        raise KeyError("interior")

    loss_fn = CompiledLoss(bad, lambda: [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KeyError, match="interior"):
            loss_fn({})
    assert loss_fn.state == "untried"


def test_unsupported_torch_compile_warns_at_construction(monkeypatch):
    def unsupported(fn, backend):
        raise RuntimeError("torch.compile is not supported on this Python version")

    monkeypatch.setattr(pinn.training.compiled.torch, "compile", unsupported)
    with pytest.warns(RuntimeWarning, match="not supported on this Python version"):
        loss_fn = CompiledLoss(lambda x: x * 2, lambda: [])
    assert loss_fn(torch.tensor(1.5)).item() == 3.0


def test_module_compile_option_trains_through_lightning(monkeypatch, tmp_path):
    """model.compile=true routes the Lightning training step through the compiled loss."""
    calls = []

    def recording_compile(fn, backend):
        def run(*args):
            calls.append(backend)
            return fn(*args)

        return run

    monkeypatch.setattr(pinn.training.compiled.torch, "compile", recording_compile)
    L.seed_everything(0, verbose=False)
    model = ElasticPINN(width=8, depth=2, compile=True)
    data = ElasticDataModule(n_interior=32, n_boundary=16, n_initial=16, steps_per_epoch=2, val_grid=(3, 3, 2))
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, inference_mode=False, accelerator="cpu",
                        devices=1, default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert model._compiled_loss.state == "compiled"
    assert calls == ["inductor"] * 3  # the probe, then one call per training step
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_turns_off_the_autograd_cache():
    # a loss restored from AOTAutograd's cache ran 40 % slower than a fresh compile, and saving to it crashed once
    import torch._functorch.config as functorch_config

    functorch_config.enable_autograd_cache = True
    CompiledLoss(lambda x: x.sum(), lambda: [])
    assert functorch_config.enable_autograd_cache is False
