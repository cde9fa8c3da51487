"""Media and sources against closed forms and finite differences; the conservative residual against a manufactured
solution in a heterogeneous medium."""

import math

import numpy as np
import pytest
import torch

from pinn.networks.derivatives import autograd_fields
from pinn.physics.elasticity import residual
from pinn.physics.grid import GridMedium
from pinn.physics.media import Homogeneous, Inclusion, Layered, MediumValues, Properties
from pinn.physics.sources import Explosion, FileWavelet, PointForce, Ricker
from pinn.problems import Domain, HeterogeneousManufactured

DOMAIN = Domain((0.0, 1.0), (0.0, 1.0), (0.0, 0.5))


def _grid_file(path, fn=lambda x, y: 2.0 + 0.3 * np.sin(2 * x + y), n=41):
    x = np.linspace(-0.1, 1.1, n)
    y = np.linspace(-0.1, 1.1, n + 5)
    gy, gx = np.meshgrid(y, x, indexing="ij")
    vp = fn(gx, gy)
    np.savez(path, x=x, y=y, vp=vp, vs=vp / 2, rho=1.0 + 0.1 * gx)
    return path


def _media(tmp_path):
    soft, stiff = Properties(lam=1.0, mu=0.5, rho=1.0), Properties(lam=2.0, mu=1.5, rho=1.4)
    return {
        "layered": Layered([soft, stiff, Properties(vp=3.0, vs=1.2, rho=1.1)], [0.7, 0.3], smoothing=0.08),
        "inclusion": Inclusion(soft, stiff, center=(0.5, 0.45), radii=(0.25, 0.15), angle=0.4, smoothing=0.06),
        "grid": GridMedium(str(_grid_file(tmp_path / "m.npz")), smoothing=0.05),
    }


@pytest.mark.parametrize("name", ["layered", "inclusion", "grid"])
def test_medium_gradients_match_finite_differences(name, tmp_path, float64):
    medium = _media(tmp_path)[name]
    xy = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    v, h = medium.values(xy), 1e-6
    for axis, (d_lam, d_mu) in enumerate([(v.lam_x, v.mu_x), (v.lam_y, v.mu_y)]):
        step = torch.zeros(2)
        step[axis] = h
        lam_p, mu_p, _ = medium.properties(xy + step)
        lam_m, mu_m, _ = medium.properties(xy - step)
        torch.testing.assert_close(d_lam, (lam_p - lam_m) / (2 * h), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d_mu, (mu_p - mu_m) / (2 * h), rtol=1e-5, atol=1e-5)
    assert float(v.lam_x.abs().max() + v.lam_y.abs().max()) > 0.1  # the medium does vary


def test_layers_and_inclusion_take_their_properties_away_from_interfaces(float64):
    top, bottom = Properties(vp=2000.0, vs=1000.0, rho=1800.0), Properties(vp=3000.0, vs=1700.0, rho=2200.0)
    v = Layered([top, bottom], [100.0], smoothing=2.0).values(torch.tensor([[5.0, 150.0], [5.0, 50.0]]))
    torch.testing.assert_close(v.c_p, torch.tensor([2000.0, 3000.0]))
    torch.testing.assert_close(v.c_s, torch.tensor([1000.0, 1700.0]))
    torch.testing.assert_close(v.rho, torch.tensor([1800.0, 2200.0]))
    inc = Inclusion(top, bottom, center=(0.0, 0.0), radii=(2.0, 1.0), angle=math.pi / 2, smoothing=0.01)
    v = inc.values(torch.tensor([[0.0, 1.9], [1.5, 0.0], [0.0, 0.0]]))  # rotated: the long axis is along y
    torch.testing.assert_close(v.c_p, torch.tensor([3000.0, 2000.0, 3000.0]))


def test_grid_medium_interpolates_nodes_exactly_and_smooth_fields_to_third_order(tmp_path, float64):
    fn = lambda x, y: 2.0 + 0.3 * np.sin(3 * x) * np.cos(2 * y)  # noqa: E731
    xy = torch.rand(500, 2, generator=torch.Generator().manual_seed(1))
    errors = []
    for n in (21, 41):
        medium = GridMedium(str(_grid_file(tmp_path / f"g{n}.npz", fn, n)))
        with np.load(tmp_path / f"g{n}.npz") as f:
            node = torch.tensor([[f["x"][7], f["y"][9]]])
            lam_node = f["rho"][9, 7] * (f["vp"][9, 7] ** 2 - 2 * f["vs"][9, 7] ** 2)
        assert float(medium.values(node).lam) == pytest.approx(lam_node, rel=1e-12)
        vp = medium.values(xy).c_p
        errors.append(float((vp - torch.from_numpy(fn(xy[:, 0].numpy(), xy[:, 1].numpy()))).abs().max()))
    print(f"grid medium max error in vp: {errors[0]:.2e} (41 nodes) -> {errors[1]:.2e} (81 nodes)")
    assert errors[1] < errors[0] / 6  # third order: 8x per halving


@pytest.mark.parametrize("name", ["layered", "inclusion", "grid"])
def test_manufactured_solution_in_a_heterogeneous_medium_makes_the_residual_vanish(name, tmp_path, float64):
    problem = HeterogeneousManufactured(_media(tmp_path)[name], 0.3, 2.0, 1.3, 4.0, DOMAIN)
    xyt = DOMAIN.from_unit(torch.rand(300, 3, generator=torch.Generator().manual_seed(2)))
    fields = autograd_fields(problem.displacement, xyt, "pde")
    force = problem.body_force(xyt)
    material = problem.material_at(xyt[:, :2])
    r = residual(fields, material, force).detach()
    assert float(r.abs().max()) < 1e-10 * float(force.abs().max())
    # without the gradient terms of the conservative form the same field is not a solution: the check can fail
    constant = MediumValues(material.lam, material.mu, material.rho)
    assert float(residual(fields, constant, force).detach().abs().max()) > 1e-2 * float(force.abs().max())


def test_homogeneous_medium_by_speeds_or_moduli():
    a, b = Homogeneous(vp=3000.0, vs=1500.0, rho=2000.0), Homogeneous(lam=9e9, mu=4.5e9, rho=2000.0)
    assert (a.lam, a.mu, a.rho) == pytest.approx((b.lam, b.mu, b.rho))
    assert Homogeneous(vp=3000.0, vs=1500.0, rho=2000.0).values(torch.zeros(1, 2)).lam_x is None


@pytest.mark.parametrize("kwargs, key", [
    ({"vp": 1000.0, "vs": 1000.0, "rho": 1.0}, "vs=1000.0"), ({"vp": 1000.0, "vs": 500.0, "rho": 0.0}, "rho=0.0"),
    ({"vp": 1000.0, "rho": 1.0}, "give either"), ({"lam": 1.0, "mu": -1.0, "rho": 1.0}, "mu=-1.0"),
])
def test_bad_properties_name_the_value(kwargs, key):
    with pytest.raises(ValueError, match=key):
        Properties(**kwargs)


@pytest.mark.parametrize("edit, message", [
    (lambda a: a["vp"].__setitem__((3, 4), np.nan), "vp is not finite"),
    (lambda a: a["vs"].__setitem__((3, 4), 1e9), "vs must satisfy"),
    (lambda a: a["rho"].__setitem__((0, 0), -1.0), "rho must be > 0"),
    (lambda a: a.pop("vs"), "missing arrays"),
    (lambda a: a.__setitem__("rho", a["rho"][:-1]), "rho has shape"),
])
def test_bad_grid_files_name_the_file(edit, message, tmp_path):
    with np.load(_grid_file(tmp_path / "good.npz")) as f:
        arrays = {k: f[k].copy() for k in f}
    edit(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=f"bad.npz.*{message}"):
        GridMedium(str(tmp_path / "bad.npz"))


def test_grid_that_does_not_cover_the_domain(tmp_path):
    medium = GridMedium(str(_grid_file(tmp_path / "m.npz")))
    with pytest.raises(ValueError, match="not the domain"):
        medium.check(Domain((0.0, 2.0), (0.0, 1.0), (0.0, 1.0)))


def test_ricker_and_gaussian_sources(float64):
    w = Ricker(f0=25.0, t0=0.05)
    t = torch.tensor([0.05, 0.05 + 1 / (math.pi * 25.0 * math.sqrt(2))])
    torch.testing.assert_close(w(t), torch.tensor([1.0, 0.0]), atol=1e-12, rtol=0)
    # the spatial patterns integrate to the force (point force) and to zero with a positive divergence (explosion)
    h = 0.01
    g = torch.arange(-1.0, 1.0 + h / 2, h)
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    xy = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    force = PointForce((0.1, -0.2), amplitude=3.0, direction=(3.0, 4.0), width=0.08).spatial(xy).sum(0) * h * h
    torch.testing.assert_close(force, torch.tensor([1.8, 2.4]), atol=1e-6, rtol=0)
    explosion = Explosion((0.0, 0.0), moment=2.0, width=0.1).spatial(xy)
    assert float(explosion.sum(0).abs().max()) * h * h < 1e-9
    first_moment = (explosion * xy).sum() * h * h  # int x . f = M0 (trace of the moment tensor / 1) * 2 / 2
    torch.testing.assert_close(first_moment, torch.tensor(4.0), atol=1e-6, rtol=0)


def test_file_wavelet_reads_csv_and_npz_and_names_malformed_files(tmp_path, float64):
    (tmp_path / "w.csv").write_text("t,w\n0.0,0.0\n0.1,1.0\n0.2,0.0\n")
    np.savez(tmp_path / "w.npz", t=np.array([0.0, 0.1, 0.2]), w=np.array([0.0, 1.0, 0.0]))
    for name in ("w.csv", "w.npz"):
        w = FileWavelet(str(tmp_path / name))
        torch.testing.assert_close(w(torch.tensor([-0.1, 0.05, 0.15, 0.3])), torch.tensor([0.0, 0.5, 0.5, 0.0]))
    (tmp_path / "bad.csv").write_text("t,w\n0.0,0.0\n0.1,oops\n")
    with pytest.raises(ValueError, match="bad.csv: line 1"):
        FileWavelet(str(tmp_path / "bad.csv"))
    (tmp_path / "back.csv").write_text("0.0,0.0\n0.2,1.0\n0.1,0.0\n")
    with pytest.raises(ValueError, match="back.csv: times must increase"):
        FileWavelet(str(tmp_path / "back.csv"))
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        FileWavelet(str(tmp_path / "missing.csv"))
