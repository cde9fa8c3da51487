"""Domains and problems: validation, boundary/initial maps, and the plane-wave closed form."""

import math
import re

import pytest
import torch

from pinn.physics.elasticity import Material
from pinn.problems.closed_form import Domain, Manufactured, PlaneWaves, Wave


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(x=(1.0, 0.0)), "x=[1.0, 0.0]"),
        (dict(y=(0.0, 0.0)), "y=[0.0, 0.0]"),
        (dict(t=(0.0, float("inf"))), "t=[0.0, inf]"),
        (dict(x=(0.0,)), "x=[0.0]"),
    ],
)
def test_bad_domain_raises(kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        Domain(**kwargs)


def test_bad_wave_and_empty_problem_raise():
    with pytest.raises(ValueError, match="wavenumber=0"):
        Wave("P", 0.0, 0.0)
    with pytest.raises(ValueError, match="kind='Q'"):
        Wave("Q")
    with pytest.raises(ValueError, match="at least one wave"):
        PlaneWaves([])


def test_plane_wave_values_by_hand():
    """P wave along x and S wave along y, evaluated by hand."""
    mat = Material(1.0, 0.5, 1.0)
    p = PlaneWaves([Wave("P", 0.0, 2.0, 0.5, 0.1), Wave("S", math.pi / 2, 3.0, 2.0)], Domain(), mat)
    xyt = torch.tensor([[0.2, 0.7, 0.4], [0.9, 0.1, 0.0]], dtype=torch.float64)
    x, y, t = xyt.T
    arg_p = 2.0 * x - mat.c_p * 2.0 * t + 0.1
    arg_s = 3.0 * y - mat.c_s * 3.0 * t
    # the S wave travels along +y, so it shakes along -x (d = (-sin, cos) of the angle)
    u = 0.5 * torch.sin(arg_p) - 2.0 * torch.sin(arg_s)
    torch.testing.assert_close(p.displacement(xyt), torch.stack([u, 0 * u], -1), atol=1e-12, rtol=0)
    vel_u = -0.5 * mat.c_p * 2.0 * torch.cos(arg_p) + 2.0 * mat.c_s * 3.0 * torch.cos(arg_s)
    torch.testing.assert_close(p.velocity(xyt)[:, 0], vel_u, atol=1e-12, rtol=0)


def test_boundary_points_lie_on_edges_with_outward_normals():
    dom = Domain((-1.0, 2.0), (0.5, 1.5), (0.0, 3.0))
    g = torch.Generator().manual_seed(0)
    pts = dom.boundary_from_unit(torch.rand(4000, 2, generator=g))
    x, y, t = pts.T
    assert bool(((x == -1.0) | (x == 2.0) | (y == 0.5) | (y == 1.5)).all())
    assert bool(((x >= -1) & (x <= 2) & (y >= 0.5) & (y <= 1.5) & (t >= 0) & (t <= 3)).all())
    n = dom.outward_normal(pts)
    right, bottom = x == 2.0, y == 0.5
    assert bool((n[right & ~bottom] == torch.tensor([1.0, 0.0])).all())
    assert bool((n[bottom & ~right] == torch.tensor([0.0, -1.0])).all())
    for edge in (x == -1.0, x == 2.0, y == 0.5, y == 1.5):  # a quarter of the points on each edge
        assert abs(edge.float().mean().item() - 0.25) < 0.03


def test_initial_points_and_grid():
    dom = Domain((0.0, 2.0), (0.0, 1.0), (0.5, 1.0))
    pts = dom.initial_from_unit(torch.rand(100, 2))
    assert bool((pts[:, 2] == 0.5).all())
    grid = dom.grid(41, 41, 11)
    assert grid.shape == (41 * 41 * 11, 3)
    assert grid.min(0).values.tolist() == [0.0, 0.0, 0.5] and grid.max(0).values.tolist() == [2.0, 1.0, 1.0]
    assert len(torch.unique(grid, dim=0)) == grid.shape[0]


def test_manufactured_initial_data():
    m = Manufactured(1.0, math.pi, math.pi, 2 * math.pi)
    xy0 = m.domain.initial_from_unit(torch.rand(50, 2, dtype=torch.float64))
    x, y = xy0[:, 0], xy0[:, 1]
    torch.testing.assert_close(m.initial_displacement(xy0)[:, 0], torch.sin(math.pi * x) * torch.sin(math.pi * y))
    torch.testing.assert_close(m.initial_displacement(xy0)[:, 1], torch.zeros_like(x))
    expected_v_t = 2 * math.pi * torch.cos(math.pi * x) * torch.cos(math.pi * y)
    torch.testing.assert_close(m.initial_velocity(xy0)[:, 1], expected_v_t)


def test_scale_settings_are_read_only_and_stay_out_of_the_reference_key():
    from pinn.physics.sources import PointForce
    from pinn.problems import WaveProblem

    def problem(**scales) -> WaveProblem:
        return WaveProblem(Domain((0.0, 100.0), (0.0, 100.0), (0.0, 0.1)), sources=[PointForce((50.0, 50.0))],
                           **scales)

    given, default = problem(displacement_scale=1e-6, time_scale="crossing"), problem()
    assert (given.displacement_scale, given.time_scale) == (1e-6, "crossing")
    assert (default.displacement_scale, default.time_scale) == (None, "period")
    assert given.content_key() == default.content_key()  # the scales do not change the solution
    with pytest.raises(AttributeError):
        given.displacement_scale = 1.0
