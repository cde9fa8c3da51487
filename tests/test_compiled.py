"""torch.compile of the Taylor streams: the same numbers as eager, when it is chosen, and a fallback that says why."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

import pinn.training.compiled
from pinn.networks.taylor import hidden_layer, taylor_streams
from pinn.training.compiled import CompiledKernel, configure_compiler, loss_evaluations
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN
from pinn.training.stages import LBFGSStage


def tiny_model(**kwargs) -> ElasticPINN:
    torch.manual_seed(0)
    return ElasticPINN(width=8, depth=3, **kwargs).double()


def tiny_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.rand(24, 3, generator=g, dtype=torch.float64) for k in ("interior", "boundary", "initial")}


def loss_and_grads(model: ElasticPINN, batch: dict[str, torch.Tensor]):
    loss, terms = model.training_loss(batch)
    return loss, terms, torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize("activation", ["tanh", "sin"])
def test_compiled_loss_matches_eager(activation):
    """Inductor's kernels give the eager loss and parameter gradients to rounding (float64)."""
    batch = tiny_batch()
    eager, compiled = tiny_model(activation=activation, compile=False), tiny_model(activation=activation, compile=True)
    reference = loss_and_grads(eager, batch)
    for _ in range(2):  # the second call runs the cached kernels
        loss, terms, grads = loss_and_grads(compiled, batch)
        torch.testing.assert_close(loss, reference[0], rtol=1e-12, atol=0)
        assert terms.keys() == reference[1].keys()
        for g, ref in zip(grads, reference[2]):
            torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-14)
    assert compiled._kernel.state == "compiled"


def counting_compile(calls: list, fail: str | None = None):
    def compile_(fn, backend="inductor"):
        def run(*args):
            calls.append(args[1].shape if fn is taylor_streams else args[0].shape)
            if fail:
                raise RuntimeError(fail)
            return fn(*args)

        return run

    return compile_


def layer_args(n: int = 5, grad: bool = True):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(n, 4, generator=g, requires_grad=grad), torch.randn(3, n, 4, generator=g, requires_grad=grad),
            torch.randn(4, n, 4, generator=g, requires_grad=grad), "tanh")


def test_falls_back_with_the_reason_when_compiling_fails(monkeypatch):
    calls = []
    monkeypatch.setattr(pinn.training.compiled.torch, "compile",
                        counting_compile(calls, "InvalidCxxCompiler: No working C++ compiler found\nlong details"))
    kernel = CompiledKernel(hidden_layer, "the Taylor layer update")
    with pytest.warns(RuntimeWarning, match=r"could not compile the Taylor layer update \(RuntimeError: "
                                            r"InvalidCxxCompiler: No working C\+\+ compiler found\); running it "
                                            r"without compiling"):
        out = kernel(*layer_args())
    assert kernel.state == "eager" and "long details" not in kernel.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, then quietly eager
        again = kernel(*layer_args())
    assert len(calls) == 1
    for a, b, c in zip(out, again, hidden_layer(*layer_args())):
        assert torch.equal(a, b) and torch.equal(a, c)


class _BrokenBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward lowering failed")


def test_falls_back_when_only_the_backward_fails(monkeypatch):
    """torch compiles the backward lazily; a new signature is differentiated once so that failure surfaces too."""
    def compile_(fn, backend):
        return lambda *a: tuple(_BrokenBackward.apply(o) if o is not None else o for o in fn(*a))

    monkeypatch.setattr(pinn.training.compiled.torch, "compile", compile_)
    kernel = CompiledKernel(hidden_layer, "the Taylor layer update")
    args = layer_args()
    with pytest.warns(RuntimeWarning, match="backward lowering failed"):
        h, g, hh = kernel(*args)
    (h.sum() + g.sum() + hh.sum()).backward()  # the eager result differentiates
    assert kernel.state == "eager" and args[0].grad is not None


def test_errors_of_the_function_itself_are_raised_unchanged(monkeypatch):
    monkeypatch.setattr(pinn.training.compiled.torch, "compile", lambda fn, backend: fn)
    kernel = CompiledKernel(hidden_layer, "the Taylor layer update")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="size"):
            kernel(torch.ones(2, 3), torch.ones(3, 2, 4), None, "tanh")  # shapes that do not broadcast
    assert kernel.state == "untried"


def test_unsupported_torch_compile_warns_at_construction(monkeypatch):
    def unsupported(fn, backend):
        raise RuntimeError("torch.compile is not supported on this Python version")

    monkeypatch.setattr(pinn.training.compiled.torch, "compile", unsupported)
    with pytest.warns(RuntimeWarning, match="not supported on this Python version"):
        kernel = CompiledKernel(hidden_layer, "the Taylor layer update")
    assert torch.equal(kernel(*layer_args())[0], hidden_layer(*layer_args())[0])


def test_probes_each_new_signature_once_and_runs_eagerly_without_gradients(monkeypatch):
    calls = []
    monkeypatch.setattr(pinn.training.compiled.torch, "compile", counting_compile(calls))
    kernel = CompiledKernel(hidden_layer, "the Taylor layer update")
    kernel(*layer_args(5)), kernel(*layer_args(5))
    assert len(calls) == 3  # probe + call, then the known signature once
    kernel(*layer_args(7))
    assert len(calls) == 5  # a new shape: probed again
    with torch.no_grad():
        kernel(*layer_args(9, grad=False))
    assert len(calls) == 5  # no gradients (ranking residuals, predicting): eager, nothing compiled


def test_loss_evaluations_count_lbfgs_iterations():
    assert loss_evaluations(1500, 500, 10) == 500 + 1000 * 10
    assert loss_evaluations(1500, None, 1) == 1500
    assert loss_evaluations(300, 500, 10) == 300  # the stage never starts
    assert loss_evaluations(-1, None, 1) == float("inf")


@pytest.mark.parametrize(("kwargs", "max_steps", "compiles"), [
    ({}, 1999, False),
    ({}, 2000, True),
    ({}, -1, True),
    ({"lbfgs": LBFGSStage(start_step=100, max_iter=10)}, 300, True),  # 100 + 200 x 10 evaluations
    ({"engine": "autograd"}, 10**6, False),
    ({"compile": False}, 10**6, False),
    ({"compile": True}, 10, True),
])
def test_auto_compiles_long_taylor_runs(kwargs, max_steps, compiles, monkeypatch):
    monkeypatch.setattr(pinn.training.compiled.torch, "compile", lambda fn, backend: fn)
    model = ElasticPINN(width=8, depth=2, **kwargs)
    assert model.decide_compile(max_steps) is compiles
    assert (model._kernel is not None) is compiles


def test_auto_does_not_compile_without_a_compiler(monkeypatch):
    monkeypatch.setattr(pinn.training.compiled.shutil, "which", lambda name: None)
    model = ElasticPINN(width=8, depth=2)
    assert model.decide_compile(10**6) is False and model._kernel is None


def test_kernels_are_cached_outside_tmp(monkeypatch, tmp_path):
    """Inductor's cache ends up under $XDG_CACHE_HOME/pinn, although torch (on importing Lightning) has already
    written its /tmp default into TORCHINDUCTOR_CACHE_DIR; a directory the user chose is kept."""
    from torch._inductor.runtime import cache_dir_utils

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", cache_dir_utils.default_cache_dir())  # as torch leaves it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    configure_compiler()
    assert cache_dir_utils.cache_dir() == str(tmp_path / "pinn" / "torchinductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    configure_compiler()
    assert cache_dir_utils.cache_dir() == str(tmp_path / "mine")


def test_fit_compiles_where_auto_decides(monkeypatch, tmp_path):
    """In a fit the choice is made at the start, from the whole run's length, and training steps use the kernel."""
    calls = []
    monkeypatch.setattr(pinn.training.compiled.torch, "compile", counting_compile(calls))
    monkeypatch.setattr(pinn.training.compiled, "MIN_EVALUATIONS", 2)
    L.seed_everything(0, verbose=False)
    model = ElasticPINN(width=8, depth=3)
    data = ElasticDataModule(n_interior=32, n_boundary=16, n_initial=16, steps_per_epoch=2, val_grid=(3, 3, 2))
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, inference_mode=False, accelerator="cpu",
                        devices=1, default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert model._kernel.state == "compiled"
    # the interior points' streams only: the probe, then one call per step
    assert len(calls) == 1 + 2 and all(shape == (32, 3) for shape in calls)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
