"""PersistentAdam and StatelessAdam against torch.optim.Adam/AdamW and closed forms."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pinn.optim.persistent_adam import PersistentAdam, StatelessAdam

SHAPES = [(6, 5), (5,)]


def make_params(dtype=torch.float64, device="cpu", shapes=SHAPES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).to(device).requires_grad_() for s in shapes]


def set_grads(params, t):
    """Gradients that depend on the parameters, so both runs must follow the same trajectory to agree."""
    with torch.no_grad():
        for k, p in enumerate(params):
            p.grad = torch.sin(3 * p + 0.01 * t + k) + 0.1 * math.cos(t)


def run(make, steps, dtype=torch.float64, device="cpu", shapes=SHAPES):
    params = make_params(dtype, device, shapes)
    opt = make(params)
    for t in range(steps):
        set_grads(params, t)
        opt.step()
    return params, opt


# weight decay: none, L2, decoupled (AdamW)
DECAYS = [(0.0, False), (0.1, False), (0.1, True)]
COMBOS = list(itertools.product(DECAYS, [False, True], [False, True], [False, True]))


def combo_id(combo):
    (weight_decay, decoupled), amsgrad, maximize, foreach = combo
    decay = "adamw" if decoupled else "l2" if weight_decay else "nodecay"
    flags = [name for name, on in (("amsgrad", amsgrad), ("maximize", maximize)) if on]
    return "-".join([decay, *flags, "foreach" if foreach else "single"])


@pytest.mark.parametrize(("decay", "amsgrad", "maximize", "foreach"), COMBOS, ids=[combo_id(c) for c in COMBOS])
def test_matches_torch_adam_1000_steps(decay, amsgrad, maximize, foreach):
    weight_decay, decoupled = decay
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay, amsgrad=amsgrad,
              maximize=maximize, foreach=foreach)
    ours, _ = run(lambda p: PersistentAdam(p, decoupled_weight_decay=decoupled, **kw), 1000)
    if decoupled:
        ref, _ = run(lambda p: torch.optim.AdamW(p, **kw), 1000)
    else:
        ref, _ = run(lambda p: torch.optim.Adam(p, **kw), 1000)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
        assert torch.equal(a, b)  # the same operations in the same order: identical, not just close


@pytest.mark.parametrize("amsgrad", [False, True])
def test_float32_matches_torch_and_foreach_matches_single_tensor(amsgrad):
    # float32 and float64 parameters in one group exercise the split into (device, dtype) parts
    def make_mixed(dtype, device, shapes):
        return make_params(torch.float32, device, shapes) + make_params(torch.float64, device, shapes, seed=1)

    results = []
    for cls, foreach in [(PersistentAdam, True), (PersistentAdam, False), (torch.optim.Adam, True)]:
        params = make_mixed(None, "cpu", SHAPES)
        opt = cls(params, lr=0.01, amsgrad=amsgrad, foreach=foreach)
        for t in range(300):
            set_grads(params, t)
            opt.step()
        results.append(params)
    for ours_foreach, ours_single, ref in zip(*results):
        assert ours_foreach.dtype == ref.dtype
        assert torch.equal(ours_foreach, ours_single)
        assert torch.equal(ours_foreach, ref)


def test_three_step_moments_closed_form():
    """m_1 = 0.1 g_1, m_2 = 0.9 * 0.1 g_1 + 0.1 g_2, m_3 = 0.81 * 0.1 g_1 + 0.9 * 0.1 g_2 + 0.1 g_3; v alike with
    g^2 and (0.999, 0.001); theta_3 = theta_0 - sum_t lr m_hat_t / (sqrt(v_hat_t) + eps)."""
    theta0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    g = torch.tensor([[1.0, -2.0, 0.5], [0.3, 4.0, -1.0], [-2.0, 1.0, 0.25]], dtype=torch.float64)
    for foreach in (False, True):
        p = theta0.clone().requires_grad_()
        opt = PersistentAdam([p], lr=0.1, foreach=foreach)
        ms, vs = [], []
        for t in range(3):
            p.grad = g[t].clone()
            opt.step()
            ms.append(opt.state[p]["exp_avg"].clone())
            vs.append(opt.state[p]["exp_avg_sq"].clone())
        exact = dict(rtol=1e-14, atol=0)
        torch.testing.assert_close(ms[0], 0.1 * g[0], **exact)
        torch.testing.assert_close(ms[1], 0.9 * 0.1 * g[0] + 0.1 * g[1], **exact)
        torch.testing.assert_close(ms[2], 0.81 * 0.1 * g[0] + 0.9 * 0.1 * g[1] + 0.1 * g[2], **exact)
        torch.testing.assert_close(vs[0], 0.001 * g[0] ** 2, **exact)
        torch.testing.assert_close(vs[1], 0.999 * 0.001 * g[0] ** 2 + 0.001 * g[1] ** 2, **exact)
        torch.testing.assert_close(vs[2], 0.999**2 * 0.001 * g[0] ** 2 + 0.999 * 0.001 * g[1] ** 2
                                   + 0.001 * g[2] ** 2, **exact)
        theta = theta0.clone()
        for t in range(1, 4):
            m_hat, v_hat = ms[t - 1] / (1 - 0.9**t), vs[t - 1] / (1 - 0.999**t)
            theta -= 0.1 * m_hat / (v_hat.sqrt() + 1e-8)
        torch.testing.assert_close(p.detach(), theta, rtol=1e-13, atol=0)
        assert opt.state[p]["step"].item() == 3.0


def test_three_step_moments_exact_in_binary():
    # betas 1/2 and 3/4 and small integer gradients: every product is exact in float64, so equality is bitwise
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = PersistentAdam([p], lr=0.25, betas=(0.5, 0.75))
    g = torch.tensor([[2.0, -4.0], [6.0, 8.0], [-2.0, 2.0]], dtype=torch.float64)
    m, v = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for t in range(3):
        p.grad = g[t].clone()
        opt.step()
        m, v = 0.5 * m + 0.5 * g[t], 0.75 * v + 0.25 * g[t] ** 2
        assert torch.equal(opt.state[p]["exp_avg"], m)
        assert torch.equal(opt.state[p]["exp_avg_sq"], v)


def test_per_group_hyperparameters_and_lr_changes_match_torch():
    def make(cls):
        def build(params):
            return cls([
                {"params": params[:1]},
                {"params": params[1:], "lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-4, "weight_decay": 0.2,
                 "amsgrad": True},
            ], lr=0.01, weight_decay=0.01, foreach=False)
        return build

    runs = []
    for cls in (PersistentAdam, torch.optim.Adam):
        params = make_params()
        opt = make(cls)(params)
        for t in range(200):
            if t == 100:  # as a scheduler would: every step must read the group's current lr
                opt.param_groups[1]["lr"] = 0.001
            set_grads(params, t)
            opt.step()
        runs.append((params, opt))
    (ours, opt), (ref, _) = runs
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)
    assert "max_exp_avg_sq" not in opt.state[ours[0]] and "max_exp_avg_sq" in opt.state[ours[1]]


def test_closure_is_called_with_grad_enabled_and_its_loss_returned():
    p = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = PersistentAdam([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()  # fails under no_grad: step must run the closure with gradients on
        return loss

    assert opt.step(closure).item() == 5.0
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9]))  # first Adam step moves each by lr


def test_parameters_without_grad_are_skipped():
    params = make_params()
    opt = PersistentAdam(params)
    params[0].grad = torch.ones_like(params[0])
    before = params[1].detach().clone()
    opt.step()
    assert torch.equal(params[1].detach(), before)
    assert params[1] not in opt.state and opt.state[params[0]]["step"].item() == 1


BAD = [(dict(lr=-1e-3), "lr"), (dict(lr=float("nan")), "lr"), (dict(eps=-1.0), "eps"),
       (dict(betas=(1.0, 0.999)), "beta1"), (dict(betas=(0.9, -0.1)), "beta2")]


@pytest.mark.parametrize(("cls", "kwargs", "name"), [(PersistentAdam, kw, n) for kw, n in BAD]
                         + [(StatelessAdam, kw, n) for kw, n in BAD]
                         + [(PersistentAdam, dict(weight_decay=-0.1), "weight_decay")])
def test_invalid_hyperparameters_raise(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"invalid {name}="):
        cls(make_params(), **kwargs)


def test_stateless_adam_closed_form():
    """step_size = lr sqrt(1 - b2^t) / ((1 - b1^t)(sqrt(mean(g^2)) + eps)), theta -= step_size g, per tensor."""
    params = make_params()
    theta = [p.detach().clone() for p in params]
    lr, (b1, b2), eps = 0.02, (0.8, 0.95), 1e-3
    opt = StatelessAdam(params, lr=lr, betas=(b1, b2), eps=eps)
    for t in range(1, 4):
        set_grads(params, t)
        for th, p in zip(theta, params):
            step_size = lr * math.sqrt(1 - b2**t) / ((1 - b1**t) * (math.sqrt(p.grad.pow(2).mean().item()) + eps))
            th -= step_size * p.grad
        opt.step()
    for p, th in zip(params, theta):
        torch.testing.assert_close(p.detach(), th, rtol=1e-13, atol=1e-15)
    assert set(opt.state[params[0]]) == {"step"} and opt.state[params[0]]["step"].item() == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_cuda_matches_torch_adam(foreach, amsgrad):
    kw = dict(lr=0.01, weight_decay=0.1, amsgrad=amsgrad, foreach=foreach)
    ours, opt = run(lambda p: PersistentAdam(p, **kw), 200, torch.float32, "cuda")
    ref, _ = run(lambda p: torch.optim.Adam(p, **kw), 200, torch.float32, "cuda")
    for a, b in zip(ours, ref):
        assert a.is_cuda
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert opt.state[ours[0]]["step"].device.type == "cpu"
    assert opt.state[ours[0]]["exp_avg"].is_cuda
