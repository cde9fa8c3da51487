"""The derivative engines: Taylor mode agrees with nested autograd, and both with closed-form derivatives."""

import math

import pytest
import torch
from torch import nn

from pinn.networks.derivatives import FIRST, ORDERS, SECOND, autograd_fields, compute_fields, taylor_fields
from pinn.networks.mlp import MLP, Factorization, FourierFeatures
from pinn.networks.taylor import taylor_applies
from pinn.physics.elasticity import Material, residual
from pinn.physics.fields import Fields
from pinn.problems.closed_form import Domain, PlaneWaves, Wave
from pinn.training.module import ElasticPINN

NAMES = ("u", "v") + FIRST + SECOND
LOWER, UPPER = (-1.0, 0.5, 0.0), (2.0, 1.5, 0.7)  # a non-unit box, so the input normalisation matters


def random_net(seed: int, activation: str, dtype: torch.dtype) -> MLP:
    """An MLP of random width (1..24) and depth (1..4), with weights and biases drawn at a trainable-net scale."""
    g = torch.Generator().manual_seed(seed)
    width, depth = int(torch.randint(1, 25, (1,), generator=g)), int(torch.randint(1, 5, (1,), generator=g))
    net = MLP(LOWER, UPPER, width, depth, activation).to(dtype)
    with torch.no_grad():
        for p in net.parameters():  # nonzero biases too, so no derivative vanishes by symmetry
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * (1.5 / math.sqrt(max(p.shape[-1], 2))))
    return net


def points(n: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(LOWER, dtype=dtype), torch.tensor(UPPER, dtype=dtype)
    return lo + (hi - lo) * torch.rand(n, 3, generator=g, dtype=dtype)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: relative to the field's scale, so values near zero do not blow it up."""
    return float((a - b).abs().max().detach() / b.abs().max().detach().clamp_min(1e-30))


def assert_same_fields(a: Fields, b: Fields, tol: float) -> None:
    for name in NAMES:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), f"{name} computed by one engine only"
        if y is not None:
            assert x.shape == y.shape and x.dtype == y.dtype
            assert rel_err(x, y) <= tol, f"{name}: relative error {rel_err(x, y):.2e} > {tol:.0e}"


@pytest.mark.parametrize("activation", ["tanh", "sin"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("seed", range(4))
def test_taylor_matches_autograd(seed, dtype, tol, activation):
    net = random_net(seed, activation, dtype)
    xyt = points(64, dtype)
    for order in ORDERS:
        assert_same_fields(taylor_fields(net, xyt, order), autograd_fields(net, xyt, order), tol)


@pytest.mark.parametrize("activation", ["tanh", "sin"])
def test_taylor_matches_autograd_with_input_and_output_scales(activation):
    """The first-layer input scale and the SI output scale U (pinn.physics.units) pass through the Taylor engine."""
    torch.manual_seed(0)
    net = MLP(LOWER, UPPER, 16, 3, activation, input_scale=3.0, output_scale=2.5e-5).double()
    xyt = points(64, torch.float64)
    for order in ORDERS:
        assert_same_fields(taylor_fields(net, xyt, order), autograd_fields(net, xyt, order), 1e-10)
    unscaled = MLP(LOWER, UPPER, 16, 3, activation, input_scale=3.0).double()
    unscaled.load_state_dict(net.state_dict())
    torch.testing.assert_close(net(xyt), 2.5e-5 * unscaled(xyt))


def test_orders_compute_only_what_they_need():
    net, xyt = random_net(0, "tanh", torch.float64), points(8, torch.float64)
    computed = {order: {n for n in NAMES if getattr(taylor_fields(net, xyt, order), n) is not None} for order in ORDERS}
    assert computed["value"] == {"u", "v"}
    assert computed["velocity"] == {"u", "v", "u_t", "v_t"}
    assert computed["gradient"] == {"u", "v"} | set(FIRST)
    assert computed["pde"] == set(NAMES)


@pytest.mark.parametrize("activation", ["tanh", "sin"])
def test_weight_gradients_match(activation):
    """The backward pass through the Taylor streams gives the same parameter gradients as nested autograd."""
    net, xyt = random_net(5, activation, torch.float64), points(48, torch.float64)
    params = list(net.parameters())
    for order in ORDERS[1:]:
        grads = []
        for engine in (taylor_fields, autograd_fields):
            f = engine(net, xyt, order)
            loss = sum((getattr(f, n) ** 2).mean() * (i + 1) for i, n in enumerate(NAMES) if getattr(f, n) is not None)
            grads.append(torch.autograd.grad(loss, params))
        for gt, ga in zip(*grads):
            assert rel_err(gt, ga) <= 1e-10


def test_module_loss_gradients_match(plane_waves):
    """A full ElasticPINN loss (all terms) has the same value and parameter gradients under both engines."""
    grads, losses = [], []
    for engine in ("taylor", "autograd"):
        torch.manual_seed(0)
        model = ElasticPINN(plane_waves, width=12, depth=3, engine=engine).double()
        batch = {k: points(40, torch.float64, seed=i) for i, k in enumerate(("interior", "boundary", "initial"))}
        loss = sum(model.loss_terms(batch).values())
        losses.append(loss)
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    assert rel_err(losses[0], losses[1]) <= 1e-12
    for gt, ga in zip(*grads):
        assert rel_err(gt, ga) <= 1e-10


def plane_wave_net(wave: Wave, material: Material, domain: Domain) -> MLP:
    """A one-unit sin MLP that is exactly the plane wave ``A d sin(k . x - omega t + phi)``."""
    net = MLP(domain.lower, domain.upper, width=1, depth=1, activation="sin").double()
    k = wave.wavenumber * torch.tensor([math.cos(wave.angle), math.sin(wave.angle)], dtype=torch.float64)
    speed = material.c_p if wave.kind == "P" else material.c_s
    arg = torch.cat([k, torch.tensor([-speed * wave.wavenumber], dtype=torch.float64)])  # (k_x, k_y, -omega)
    d = k / wave.wavenumber if wave.kind == "P" else torch.stack([-k[1], k[0]]) / wave.wavenumber
    with torch.no_grad():  # arg . xyt = arg . (z / s + c), z the normalised input
        net.hidden[0].weight.copy_((arg / net.scale)[None])
        net.hidden[0].bias.copy_((arg * net.center).sum()[None] + wave.phase)
        net.out.weight.copy_(wave.amplitude * d[:, None])
        net.out.bias.zero_()
    return net


@pytest.mark.parametrize("kind", ["P", "S"])
def test_taylor_matches_closed_form_plane_wave(kind):
    """Every derivative of an exact plane wave, and its Navier-Cauchy residual (zero), in closed form."""
    material, domain = Material(2.0, 0.7, 1.3), Domain((-1.0, 2.0), (0.5, 1.5), (0.0, 0.7))
    wave = Wave(kind, angle=0.4, wavenumber=3.0, amplitude=1.5, phase=-0.3)
    problem = PlaneWaves([wave], domain, material)
    net, xyt = plane_wave_net(wave, material, domain), points(100, torch.float64)
    f = taylor_fields(net, xyt, "pde")
    torch.testing.assert_close(f.displacement, problem.displacement(xyt), rtol=0, atol=1e-12)
    torch.testing.assert_close(f.velocity, problem.velocity(xyt), rtol=0, atol=1e-11)
    grad = torch.stack([torch.stack([f.u_x, f.u_y], -1), torch.stack([f.v_x, f.v_y], -1)], -2)
    torch.testing.assert_close(grad, problem.gradient(xyt), rtol=0, atol=1e-11)
    # second derivatives of A d sin(arg): -A d k_i k_j sin(arg)
    omega = (material.c_p if kind == "P" else material.c_s) * wave.wavenumber
    kx, ky = wave.wavenumber * math.cos(wave.angle), wave.wavenumber * math.sin(wave.angle)
    uv = problem.displacement(xyt)
    for name, factor in (("xx", kx * kx), ("yy", ky * ky), ("xy", kx * ky), ("tt", omega * omega)):
        torch.testing.assert_close(getattr(f, "u_" + name), -factor * uv[:, 0], rtol=0, atol=1e-10)
        torch.testing.assert_close(getattr(f, "v_" + name), -factor * uv[:, 1], rtol=0, atol=1e-10)
    assert residual(f, material).abs().max() < 1e-10 * omega**2


def test_auto_picks_taylor_for_mlp_and_autograd_otherwise():
    net, xyt = random_net(3, "sin", torch.float64), points(16, torch.float64)
    auto, taylor = compute_fields(net, xyt, "pde", "auto"), taylor_fields(net, xyt, "pde")
    assert all(torch.equal(getattr(auto, n), getattr(taylor, n)) for n in NAMES)

    class Shifted(MLP):  # a subclass that changes the forward: Taylor mode would be wrong for it
        def forward(self, xyt):
            return super().forward(xyt) + xyt[:, :2] ** 3

    other = Shifted(LOWER, UPPER, 8, 2).double()
    seq = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    for model in (other, seq):
        assert not taylor_applies(model)
        assert_same_fields(compute_fields(model, xyt, "pde", "auto"), autograd_fields(model, xyt, "pde"), 0.0)
        with pytest.raises(ValueError, match="taylor derivative engine needs a pinn.networks.mlp.MLP"):
            compute_fields(model, xyt, "pde", "taylor")
    with pytest.raises(ValueError, match="'jax'"):
        compute_fields(net, xyt, "pde", "jax")
    with pytest.raises(ValueError, match="'hessian'"):
        taylor_fields(net, xyt, "hessian")


def test_taylor_without_grad_mode():
    """Under no_grad (resampling, evaluation) the Taylor engine builds no graph and gives the same numbers."""
    net, xyt = random_net(1, "tanh", torch.float64), points(16, torch.float64)
    with torch.no_grad():
        f = taylor_fields(net, xyt, "pde")
    assert f.u_xx.grad_fn is None
    assert_same_fields(f, autograd_fields(net, xyt, "pde"), 1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_taylor_matches_autograd_cuda(dtype, tol):
    net, xyt = random_net(0, "tanh", dtype).cuda(), points(256, dtype).cuda()
    for order in ORDERS:
        assert_same_fields(taylor_fields(net, xyt, order), autograd_fields(net, xyt, order), tol)


@pytest.mark.parametrize("fourier, factorization", [
    (FourierFeatures(features=12, sigma_space=2.0, sigma_time=5.0), None),
    (None, Factorization(mean=1.0, std=0.1)),
    (FourierFeatures(features=7, sigma_space=1.0, sigma_time=1.0), Factorization(mean=0.5, std=0.3)),
])
@pytest.mark.parametrize("activation", ["tanh", "sin"])
def test_taylor_matches_autograd_with_fourier_features_and_factorization(fourier, factorization, activation):
    """Fourier features (a first layer with a linear phase) and factorised weights keep the single Taylor pass and
    agree with nested autograd to float64 rounding, for every order."""
    torch.manual_seed(3)
    net = MLP(LOWER, UPPER, 16, 3, activation, input_scale=1.5, output_scale=0.3, fourier=fourier,
              factorization=factorization).double()
    assert taylor_applies(net)
    xyt = points(64, torch.float64)
    for order in ORDERS:
        assert_same_fields(taylor_fields(net, xyt, order), autograd_fields(net, xyt, order), 1e-10)


def test_factorized_network_starts_as_the_plain_one():
    """W = diag(exp(s)) V with V = W0 / exp(s): the same function at initialisation, other parameters."""
    torch.manual_seed(5)
    plain = MLP(LOWER, UPPER, 8, 2, "tanh").double()
    torch.manual_seed(5)
    factored = MLP(LOWER, UPPER, 8, 2, "tanh", factorization=Factorization(1.0, 0.1)).double()
    xyt = points(32, torch.float64)
    torch.testing.assert_close(factored(xyt), plain(xyt), rtol=1e-6, atol=1e-6)  # V = W0 / exp(s) in float32
    assert {n.split(".")[-1] for n, _ in factored.named_parameters()} == {"log_scale", "direction", "bias"}


def test_fourier_features_are_the_cosines_and_sines_of_the_frequencies():
    """gamma(z) = [cos(Bz), sin(Bz)]: a network whose first layer reads exactly one feature reproduces it."""
    torch.manual_seed(0)
    net = MLP((0, 0, 0), (2, 2, 2), 4, 1, "sin", fourier=FourierFeatures(3, 2.0, 7.0)).double()
    b = net.frequencies
    assert b.shape == (3, 3)
    assert float(b[:, 2].std()) > float(b[:, :2].std())  # time frequencies drawn with the larger sigma here
    with torch.no_grad():
        net.hidden[0].weight.zero_(); net.hidden[0].weight[0, 4] = 1.0  # noqa: E702  reads sin(B z)_1
        net.out.weight.zero_(); net.out.weight[0, 0] = 1.0  # noqa: E702
    xyt = points(16, torch.float64)
    z = xyt - 1.0  # the box [0, 2]^3 normalised to [-1, 1]^3
    torch.testing.assert_close(net(xyt)[:, 0], torch.sin(torch.sin(z @ b[1])))
