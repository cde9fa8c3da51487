"""PersistentAdam state dicts: layout, round trips, interop with torch.optim.Adam, and validation on load."""

from __future__ import annotations

import copy

import pytest
import torch

from pinn.optim.persistent_adam import FORMAT_VERSION, OPTIONS, PersistentAdam


def make_params(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in [(6, 5), (5,)]]


def set_grads(params, t):
    with torch.no_grad():
        for k, p in enumerate(params):
            p.grad = torch.sin(3 * p + 0.01 * t + k)


def stepped(cls, steps, params=None, **kw):
    params = make_params() if params is None else params
    opt = cls(params, lr=0.01, **kw)
    for t in range(steps):
        set_grads(params, t)
        opt.step()
    return params, opt


def continue_run(params, opt, start, steps):
    for t in range(start, start + steps):
        set_grads(params, t)
        opt.step()
    return params


def test_state_dict_layout_is_torchs_plus_format_version():
    params, opt = stepped(PersistentAdam, 3, amsgrad=True)
    sd = opt.state_dict()
    _, ref = stepped(torch.optim.Adam, 3, amsgrad=True)
    ref_sd = ref.state_dict()
    assert sd["format_version"] == FORMAT_VERSION
    assert sd.keys() - {"format_version"} == ref_sd.keys()
    assert sd["state"].keys() == ref_sd["state"].keys() == {0, 1}
    for i in (0, 1):
        assert sd["state"][i].keys() == ref_sd["state"][i].keys() == {"step", "exp_avg", "exp_avg_sq",
                                                                       "max_exp_avg_sq"}
        step = sd["state"][i]["step"]
        assert step.shape == () and step.dtype == torch.float32 and step.device.type == "cpu" and step.item() == 3
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert torch.equal(sd["state"][i][key], ref_sd["state"][i][key])
    assert sd["param_groups"][0]["params"] == [0, 1]


def test_round_trip_resumes_identically_without_sharing_tensors():
    params, opt = stepped(PersistentAdam, 5)
    saved = opt.state_dict()
    twin_params = [p.detach().clone().requires_grad_() for p in params]
    twin = PersistentAdam(twin_params, lr=0.5)  # the loaded group's lr replaces this one
    twin.load_state_dict(saved)
    assert twin.param_groups[0]["lr"] == 0.01
    assert twin.state[twin_params[0]]["exp_avg"].data_ptr() != opt.state[params[0]]["exp_avg"].data_ptr()
    continue_run(params, opt, 5, 5)
    continue_run(twin_params, twin, 5, 5)
    for a, b in zip(params, twin_params):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kw", [dict(), dict(amsgrad=True), dict(weight_decay=0.1, decoupled_weight_decay=True)])
@pytest.mark.parametrize("direction", ["torch_to_ours", "ours_to_torch"])
def test_interop_with_torch_adam(direction, kw):
    source_cls, target_cls = (torch.optim.Adam, PersistentAdam)
    if direction == "ours_to_torch":
        source_cls, target_cls = target_cls, source_cls
    params, source = stepped(source_cls, 5, **kw)
    target_params = [p.detach().clone().requires_grad_() for p in params]
    target = target_cls(target_params, lr=0.01, **kw)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    continue_run(params, source, 5, 20)
    continue_run(target_params, target, 5, 20)
    for a, b in zip(params, target_params):
        assert torch.equal(a, b)
    if target_cls is PersistentAdam:  # torch's implementation switches are dropped, ours are all present
        assert not {"fused", "differentiable"} & target.param_groups[0].keys()
        assert target.param_groups[0]["capturable"] is False
        assert set(OPTIONS) <= target.param_groups[0].keys()


def test_load_moves_state_to_parameter_dtype_and_step_to_cpu_float32():
    params64, opt64 = stepped(PersistentAdam, 4)
    params32 = [p.detach().float().requires_grad_() for p in params64]
    opt32 = PersistentAdam(params32)
    sd = opt64.state_dict()
    sd["state"][0]["step"] = torch.tensor(4.0, dtype=torch.float64)  # as torch writes it under float64 defaults
    opt32.load_state_dict(sd)
    state = opt32.state[params32[0]]
    assert state["exp_avg"].dtype == torch.float32 and state["exp_avg_sq"].dtype == torch.float32
    assert state["step"].dtype == torch.float32 and state["step"].device.type == "cpu" and state["step"].item() == 4
    torch.testing.assert_close(state["exp_avg"], opt64.state[params64[0]]["exp_avg"].float())


def test_empty_state_loads():
    params = make_params()
    opt = PersistentAdam(params)
    PersistentAdam(make_params()).load_state_dict(opt.state_dict())  # no step taken yet: no per-parameter state


def _mutate(sd, what):
    """A copy of the state dict ``sd`` of a two-parameter, one-group optimizer, damaged as ``what`` says."""
    sd = copy.deepcopy(sd)
    s0 = sd["state"][1]
    if what == "group_count":
        sd["param_groups"].append(dict(sd["param_groups"][0], params=[7]))
    elif what == "params_per_group":
        sd["param_groups"][0]["params"] = [0]
    elif what == "missing_key":
        del s0["exp_avg_sq"]
    elif what == "unexpected_key":
        s0["momentum_buffer"] = s0["exp_avg"]
    elif what == "shape":
        s0["exp_avg"] = torch.zeros(5, 6, dtype=torch.float64)
    elif what == "dtype":
        s0["exp_avg"] = s0["exp_avg"].long()
    elif what == "negative_step":
        s0["step"] = torch.tensor(-1.0)
    elif what == "nan_step":
        s0["step"] = torch.tensor(float("nan"))
    elif what == "vector_step":
        s0["step"] = torch.tensor([1.0, 2.0])
    elif what == "amsgrad_without_max":
        sd["param_groups"][0]["amsgrad"] = True
    elif what == "stray_state":
        sd["state"][9] = sd["state"][0]
    elif what == "bad_lr":
        sd["param_groups"][0]["lr"] = -1.0
    elif what == "newer_version":
        sd["format_version"] = FORMAT_VERSION + 1
    elif what == "not_a_state_dict":
        sd = {"model": sd}
    return sd


MESSAGES = {
    "group_count": r"2 parameter group\(s\), the optimizer has 1",
    "params_per_group": r"group 0 has 1 parameter\(s\), the optimizer's group 0 has 2",
    "missing_key": r"group 0, parameter 1 \(shape \(5,\)\): missing key\(s\) \['exp_avg_sq'\]",
    "unexpected_key": r"group 0, parameter 1 \(shape \(5,\)\): unexpected key\(s\) \['momentum_buffer'\]",
    "shape": r"group 0, parameter 1 \(shape \(5,\)\): exp_avg has shape \(5, 6\)",
    "dtype": r"group 0, parameter 1 \(shape \(5,\)\): exp_avg has dtype torch.int64",
    "negative_step": r"parameter 1 \(shape \(5,\)\): step=-1.0 must be finite and >= 0",
    "nan_step": r"parameter 1 \(shape \(5,\)\): step=nan must be finite and >= 0",
    "vector_step": r"parameter 1 \(shape \(5,\)\): step has shape \(2,\), expected a scalar",
    "amsgrad_without_max": r"parameter 0 \(shape \(6, 5\)\): missing key\(s\) \['max_exp_avg_sq'\]",
    "stray_state": r"state for parameter indices \[9\] that no group lists",
    "bad_lr": r"group 0: invalid lr=-1.0",
    "newer_version": rf"format_version={FORMAT_VERSION + 1} is not supported",
    "not_a_state_dict": r"expected a dict with keys 'state' and 'param_groups'",
}


@pytest.mark.parametrize("what", list(MESSAGES))
def test_mismatched_state_dict_raises_before_touching_anything(what):
    _, source = stepped(PersistentAdam, 3)
    params, opt = stepped(PersistentAdam, 2)
    opt.param_groups[0]["lr"] = 0.123
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=MESSAGES[what]) as err:
        opt.load_state_dict(_mutate(source.state_dict(), what))
    assert "Load a checkpoint written for the same model" in str(err.value)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i, entry in before["state"].items():
        for key, value in entry.items():
            assert torch.equal(after["state"][i][key], value)
    assert after["state"][0]["exp_avg"].data_ptr() == opt.state[params[0]]["exp_avg"].data_ptr()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_load_moves_cpu_state_to_the_parameters_device():
    cpu_params, cpu_opt = stepped(PersistentAdam, 5)
    cuda_params = [p.detach().cuda().requires_grad_() for p in cpu_params]
    cuda_opt = PersistentAdam(cuda_params, lr=0.01)
    cuda_opt.load_state_dict(cpu_opt.state_dict())
    state = cuda_opt.state[cuda_params[0]]
    assert state["exp_avg"].is_cuda and state["exp_avg_sq"].is_cuda and state["step"].device.type == "cpu"
    continue_run(cpu_params, cpu_opt, 5, 10)
    continue_run(cuda_params, cuda_opt, 5, 10)
    for a, b in zip(cpu_params, cuda_params):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-10, atol=1e-12)
