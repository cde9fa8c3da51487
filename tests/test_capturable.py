"""PersistentAdam(capturable=True) against torch.optim.Adam(capturable=True), bit for bit, and inside a CUDA graph.

torch refuses ``capturable`` for CPU tensors, though its capturable arithmetic runs there unchanged; the CPU tests lift
that device check so that the two implementations are compared on any machine, and the CUDA tests (skipped without
CUDA) compare them where they are meant to run.
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from test_optim import COMBOS, combo_id, make_params, run, set_grads

from pinn.optim.persistent_adam import PersistentAdam

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def capturable_on_cpu(monkeypatch):
    adam = sys.modules[torch.optim.Adam.__module__]  # torch.optim hides its adam submodule's name
    monkeypatch.setattr(adam, "_get_capturable_supported_devices",
                        lambda supports_xla=True: ["cpu", "cuda"])


@pytest.mark.usefixtures("capturable_on_cpu")
@pytest.mark.parametrize(("decay", "amsgrad", "maximize", "foreach"), COMBOS, ids=[combo_id(c) for c in COMBOS])
def test_capturable_matches_torch_capturable_adam(decay, amsgrad, maximize, foreach):
    weight_decay, decoupled = decay
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
              foreach=foreach, capturable=True)
    ours, opt = run(lambda p: PersistentAdam(p, decoupled_weight_decay=decoupled, **kw), 300)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    ref, _ = run(lambda p: cls(p, **kw), 300)
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)  # the same operations in the same order
    assert opt.state[ours[0]]["step"].item() == 300


def test_capturable_keeps_step_with_the_parameter_and_loads_either_state():
    """``capturable`` is how a process steps, not part of the run: states move between the two settings with their
    step count, and a capturable run resumed from its state dict continues bit for bit."""
    _, plain = run(lambda p: PersistentAdam(p, lr=0.01), 5)
    twin = make_params()
    capturable = PersistentAdam(twin, lr=0.01, capturable=True)
    capturable.load_state_dict(copy.deepcopy(plain.state_dict()))
    assert capturable.param_groups[0]["capturable"] is True  # not overwritten by the loaded groups
    assert capturable.state[twin[0]]["step"].item() == 5
    again = PersistentAdam(make_params(), lr=0.01)
    again.load_state_dict(capturable.state_dict())
    first = again.param_groups[0]["params"][0]
    assert again.param_groups[0]["capturable"] is False and again.state[first]["step"].is_cpu

    straight, _ = run(lambda p: PersistentAdam(p, lr=0.01, capturable=True), 25)
    params, stopped = run(lambda p: PersistentAdam(p, lr=0.01, capturable=True), 5)
    resumed = PersistentAdam(params, lr=0.01, capturable=True)
    resumed.load_state_dict(copy.deepcopy(stopped.state_dict()))
    for t in range(5, 25):
        set_grads(params, t)
        resumed.step()
    for a, b in zip(straight, params):
        assert torch.equal(a, b)


@cuda
@pytest.mark.parametrize("amsgrad", [False, True])
def test_cuda_capturable_matches_torch_and_keeps_step_on_the_device(amsgrad):
    kw = dict(lr=0.01, weight_decay=0.1, amsgrad=amsgrad, capturable=True)
    ours, opt = run(lambda p: PersistentAdam(p, **kw), 200, torch.float32, "cuda")
    ref, _ = run(lambda p: torch.optim.Adam(p, **kw), 200, torch.float32, "cuda")
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)
    assert opt.state[ours[0]]["step"].is_cuda


@cuda
@pytest.mark.parametrize("foreach", [False, True])
def test_cuda_graph_replay_matches_eager_capturable_steps(foreach):
    """A step captured once in a CUDA graph and replayed gives the eager steps' parameters exactly."""
    def grads_for(params, t):
        with torch.no_grad():
            return [torch.sin(3 * p + 0.01 * t + k) + 0.1 * torch.cos(torch.tensor(float(t))) for k, p in
                    enumerate(params)]

    kw = dict(lr=0.01, foreach=foreach, capturable=True)
    eager = make_params(torch.float32, "cuda")
    opt_e = PersistentAdam(eager, **kw)
    graph_params = make_params(torch.float32, "cuda")
    opt_g = PersistentAdam(graph_params, **kw)
    for p in graph_params:
        p.grad = torch.zeros_like(p)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: the state is created outside the capture, as torch requires
        for t in range(3):
            for p, g in zip(graph_params, grads_for(graph_params, t)):
                p.grad.copy_(g)
            opt_g.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt_g.step()
    for t in range(3):
        for p, g in zip(eager, grads_for(eager, t)):
            p.grad = g
        opt_e.step()
    for t in range(3, 50):
        for p, g in zip(graph_params, grads_for(graph_params, t)):
            p.grad.copy_(g)
        graph.replay()
        for p, g in zip(eager, grads_for(eager, t)):
            p.grad = g
        opt_e.step()
    torch.cuda.synchronize()
    for a, b in zip(eager, graph_params):
        assert torch.equal(a, b)
    assert opt_g.state[graph_params[0]]["step"].item() == 50
