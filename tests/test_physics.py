"""Physics against closed-form truth: exact solutions have zero residual, plane-wave traction matches."""

import math

import pytest
import torch

from pinn.networks.derivatives import autograd_fields
from pinn.physics.elasticity import Material, residual, strain, stress, traction
from pinn.problems.closed_form import Domain, PlaneWaves, Wave


def _points(problem, n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return problem.domain.from_unit(torch.rand(n, 3, generator=g, dtype=torch.float64))


def test_exact_problems_have_zero_residual(exact_problems, float64):
    for problem in exact_problems:
        xyt = _points(problem)
        fields = autograd_fields(problem.displacement, xyt, "pde")
        r = residual(fields, problem.material, problem.body_force(xyt))
        scale = fields.u_tt.abs().max() + fields.v_tt.abs().max()
        assert scale > 1.0  # the field really oscillates, so a zero residual means something
        assert r.abs().max() < 1e-11 * scale, type(problem).__name__


def test_residual_detects_a_wrong_material(plane_waves, float64):
    xyt = _points(plane_waves)
    fields = autograd_fields(plane_waves.displacement, xyt, "pde")
    r = residual(fields, Material(1.0, 0.6, 1.0))
    assert r.abs().max() > 1.0


def test_velocity_and_gradient_match_autograd(exact_problems, float64):
    for problem in exact_problems:
        xyt = _points(problem)
        f = autograd_fields(problem.displacement, xyt, "gradient")
        torch.testing.assert_close(f.velocity, problem.velocity(xyt), rtol=1e-12, atol=1e-12)
        grad = torch.stack([torch.stack([f.u_x, f.u_y], -1), torch.stack([f.v_x, f.v_y], -1)], -2)
        torch.testing.assert_close(grad, problem.gradient(xyt), rtol=1e-12, atol=1e-12)


def test_plane_wave_traction_closed_form(float64):
    """A single P wave along x: sigma_xx = (lam + 2 mu) u_x, sigma_yy = lam u_x, sigma_xy = 0."""
    mat = Material(1.0, 0.5, 1.0)
    k = 2 * math.pi
    p = PlaneWaves([Wave("P", 0.0, k, 0.3)], Domain(), mat)
    xyt = _points(p)
    u_x = 0.3 * k * torch.cos(k * xyt[:, 0] - mat.c_p * k * xyt[:, 2])
    for normal, expected in (
        ((1.0, 0.0), torch.stack([(mat.lam + 2 * mat.mu) * u_x, 0 * u_x], -1)),
        ((0.0, -1.0), torch.stack([0 * u_x, -mat.lam * u_x], -1)),
    ):
        n = torch.tensor(normal).expand(xyt.shape[0], 2)
        torch.testing.assert_close(p.traction(xyt, n), expected, rtol=1e-12, atol=1e-12)
        f = autograd_fields(p.displacement, xyt, "gradient")
        torch.testing.assert_close(traction(f, mat, n), expected, rtol=1e-12, atol=1e-12)


def test_traction_of_general_waves_matches_autograd(exact_problems, float64):
    for problem in exact_problems:
        g = torch.Generator().manual_seed(1)
        xyt = problem.domain.boundary_from_unit(torch.rand(300, 2, generator=g, dtype=torch.float64))
        n = problem.domain.outward_normal(xyt)
        f = autograd_fields(problem.displacement, xyt, "gradient")
        torch.testing.assert_close(traction(f, problem.material, n), problem.traction(xyt, n), rtol=1e-11, atol=1e-11)


def test_strain_and_stress_of_a_linear_field(float64):
    """u = (a x + b y, c x + d y): constant strain, stress by Hooke's law by hand."""
    a, b, c, d = 0.1, -0.2, 0.3, 0.05
    mat = Material(2.0, 0.5, 1.0)
    xyt = torch.rand(5, 3)

    def linear(p):
        return torch.stack([a * p[:, 0] + b * p[:, 1], c * p[:, 0] + d * p[:, 1]], -1)

    f = autograd_fields(linear, xyt, "gradient")
    eps = torch.tensor([[a, (b + c) / 2], [(b + c) / 2, d]])
    torch.testing.assert_close(strain(f), eps.expand(5, 2, 2))
    sigma = mat.lam * (a + d) * torch.eye(2) + 2 * mat.mu * eps
    torch.testing.assert_close(stress(f, mat), sigma.expand(5, 2, 2))


def test_wave_speeds():
    mat = Material(1.0, 0.5, 2.0)
    assert mat.c_p == pytest.approx(1.0)
    assert mat.c_s == pytest.approx(0.5)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(rho=0.0), "rho=0.0"),
        (dict(rho=-1.0), "rho=-1.0"),
        (dict(mu=0.0), "mu=0.0"),
        (dict(lam=-0.6, mu=0.5), r"lam \+ mu"),
        (dict(lam=float("nan")), "lam=nan"),
        (dict(mu=float("inf")), "mu=inf"),
    ],
)
def test_bad_material_raises(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        Material(**kwargs)


def test_negative_lambda_is_admissible():
    assert Material(lam=-0.4, mu=0.5).lam == -0.4
