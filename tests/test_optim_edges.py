"""PersistentAdam on the edges where torch.optim.Adam has options it lacks: tensor hyper-parameters and torch-only
kernels are refused up front (in parameter groups too), load_state_dict runs torch's pre-hooks before it validates,
and a step that fails changes nothing."""

from __future__ import annotations

import copy

import pytest
import torch

from pinn.optim.persistent_adam import PersistentAdam


def make_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in [(6, 5), (5,), (3,)]]


def set_grads(params, t):
    with torch.no_grad():
        for k, p in enumerate(params):
            p.grad = torch.sin(3 * p + 0.01 * t + k)


def run(opt, params, start, steps):
    for t in range(start, start + steps):
        set_grads(params, t)
        opt.step()


@pytest.mark.parametrize("kwargs", [dict(lr=torch.tensor(0.01)), dict(betas=(torch.tensor(0.9), 0.999)),
                                    dict(betas=(0.9, torch.tensor(0.999))), dict(eps=torch.tensor(1e-8))],
                         ids=["lr", "beta1", "beta2", "eps"])
def test_tensor_hyperparameters_are_refused_at_construction(kwargs):
    with pytest.raises(ValueError, match=r"must be a real number \(a tensor: pass float\(value\)"):
        PersistentAdam(make_params(), **kwargs)
    with pytest.raises(ValueError, match=r"parameter group 1: invalid"):
        params = make_params()
        PersistentAdam([{"params": params[:1]}, {"params": params[1:], **kwargs}])


@pytest.mark.parametrize("key", ["fused", "differentiable"])
def test_torch_only_kernels_are_refused_in_groups(key):
    params = make_params()
    with pytest.raises(ValueError, match=rf"parameter group 1: {key}=True selects a torch.optim.Adam kernel"):
        PersistentAdam([{"params": params[:1]}, {"params": params[1:], key: True}])
    opt = PersistentAdam([{"params": params[:1]}])
    with pytest.raises(ValueError, match=rf"parameter group 1: {key}=True"):
        opt.add_param_group({"params": params[1:], key: True})
    assert len(opt.param_groups) == 1
    # torch's own defaults (False, None) ask for no kernel: a group copied from torch.optim.Adam is fine
    PersistentAdam([{"params": params, key: None if key == "fused" else False}])


def _snapshot(opt, params):
    return copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in params]


def _break(opt, params, what):
    group = opt.param_groups[1]  # the second group fails; the first must not have been updated either
    if what == "tensor_lr":
        group["lr"] = torch.tensor(0.01)
    elif what == "negative_lr":
        group["lr"] = -0.01
    elif what == "tensor_betas":
        group["betas"] = (torch.tensor(0.9), torch.tensor(0.999))
    elif what == "fused":
        group["fused"] = True
    elif what == "sparse_grad":
        params[2].grad = params[2].grad.to_sparse()


@pytest.mark.parametrize("foreach", [None, False], ids=["default", "single-tensor"])
@pytest.mark.parametrize("what", ["tensor_lr", "negative_lr", "tensor_betas", "fused", "sparse_grad"])
def test_a_failing_step_changes_nothing(what, foreach):
    params = make_params()
    opt = PersistentAdam([{"params": params[:1]}, {"params": params[1:]}], lr=0.01, foreach=foreach)
    run(opt, params, 0, 3)
    set_grads(params, 3)
    _break(opt, params, what)
    state, values = _snapshot(opt, params)
    with pytest.raises((ValueError, RuntimeError), match="parameter group 1|sparse gradients"):
        opt.step()
    after, now = _snapshot(opt, params)
    assert all(torch.equal(a, b) for a, b in zip(values, now))
    for i, entry in state["state"].items():
        for key, value in entry.items():
            assert torch.equal(after["state"][i][key], value), (i, key)


def _drop_first_parameter(opt, state_dict):
    """A pre-hook that maps a state dict saved with one more parameter in front (index 0) onto this optimizer."""
    state_dict["state"] = {i - 1: s for i, s in state_dict["state"].items() if i > 0}
    state_dict["param_groups"] = [dict(g, params=[i - 1 for i in g["params"] if i > 0])
                                  for g in state_dict["param_groups"]]
    return state_dict


def test_load_state_dict_runs_pre_hooks_before_validating():
    params = make_params()
    source = PersistentAdam(params, lr=0.01)
    run(source, params, 0, 5)
    saved = source.state_dict()

    theirs = [p.detach().clone().requires_grad_() for p in params[1:]]
    opt = PersistentAdam(theirs, lr=0.01)
    with pytest.raises(ValueError, match="group 0 has 3 parameter"):  # without the hook it does not fit
        opt.load_state_dict(copy.deepcopy(saved))
    calls = []
    opt.register_load_state_dict_pre_hook(_drop_first_parameter)
    opt.register_load_state_dict_post_hook(lambda o: calls.append(len(o.state)))
    opt.load_state_dict(copy.deepcopy(saved))
    assert calls == [2]

    # the remapped state continues exactly as the source does on the same parameters
    for t in range(5, 9):
        set_grads(params, t)
        with torch.no_grad():
            for mine, p in zip(theirs, params[1:]):
                mine.grad = p.grad.clone()
        source.step()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(theirs, params[1:]))
