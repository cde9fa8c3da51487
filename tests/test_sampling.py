"""Samplers, per-pool sampler choice and the RAD / RAR-D rules, against closed-form truth."""

import math

import pytest
import torch

from pinn.problems.closed_form import Domain, PlaneWaves, Wave
from pinn.training.data import POOLS, ElasticDataModule
from pinn.training.sampling import (
    SAMPLERS,
    ResampleRule,
    grid,
    lhs,
    rad,
    rar_d,
    residual_density,
    sample,
    sobol,
    weighted_choice,
)

DOMAIN = Domain(x=(-1.0, 2.0), y=(0.5, 1.5), t=(0.2, 0.7))  # not the unit cube, so mapping errors show
SIZES = {"interior": 300, "boundary": 96, "initial": 80}


def make_dm(sampler="uniform", seed=0) -> ElasticDataModule:
    dm = ElasticDataModule(PlaneWaves([Wave()], domain=DOMAIN), n_interior=SIZES["interior"],
                           n_boundary=SIZES["boundary"], n_initial=SIZES["initial"], sampler=sampler, seed=seed)
    dm.setup("fit")
    return dm


def in_region(pool: str, p: torch.Tensor) -> bool:
    (x0, x1), (y0, y1), (t0, t1) = DOMAIN.x, DOMAIN.y, DOMAIN.t
    x, y, t = p[:, 0], p[:, 1], p[:, 2]
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & (t >= t0) & (t <= t1)
    if pool == "boundary":
        on_edge = (x == x0) | (x == x1) | (y == y0) | (y == y1)
        inside &= on_edge
    if pool == "initial":
        inside &= t == t0
    return bool(inside.all())


@pytest.mark.parametrize("kind", SAMPLERS)
def test_every_sampler_fills_every_pool_in_its_region_reproducibly(kind):
    a, b, other = make_dm(kind, seed=3), make_dm(kind, seed=3), make_dm(kind, seed=4)
    for pool in POOLS:
        p = a.pools[pool]
        assert p.shape == (SIZES[pool], 3) and p.dtype == torch.float64  # exact; the model reads them in its dtype
        assert in_region(pool, p), (kind, pool)
        assert torch.equal(p, b.pools[pool])  # same seed, same points
        assert torch.equal(a.draw(pool, 17), b.draw(pool, 17))  # and the generators stay in step
        if kind != "grid":  # the grid is deterministic by design
            assert not torch.equal(p, other.pools[pool])


def test_boundary_covers_all_four_edges_evenly():
    p = make_dm("lhs").pools["boundary"]  # 96 points, LHS along the perimeter: 24 per edge
    (x0, x1), (y0, y1) = DOMAIN.x, DOMAIN.y
    counts = [int((p[:, 1] == y0).sum()), int((p[:, 0] == x1).sum()), int((p[:, 1] == y1).sum()),
              int((p[:, 0] == x0).sum())]
    assert counts == [24, 24, 24, 24]


def test_lhs_has_one_point_per_stratum_on_every_axis():
    p = lhs(50, 3, torch.Generator().manual_seed(0))
    for j in range(3):
        assert torch.equal((p[:, j] * 50).floor().long().sort().values, torch.arange(50))


def test_sobol_is_a_scrambled_net():
    """2^m scrambled Sobol points: every elementary box 2^-a x 2^-(m-a) of the first two axes holds one point."""
    n, m = 256, 8
    p = sobol(n, 3, torch.Generator().manual_seed(0))
    for a in range(m + 1):
        cell = (p[:, 0] * 2**a).floor().long() * 2 ** (m - a) + (p[:, 1] * 2 ** (m - a)).floor().long()
        assert torch.equal(cell.sort().values, torch.arange(n))
    assert not torch.equal(p, sobol(n, 3, torch.Generator().manual_seed(1)))  # the scramble follows the seed


def test_grid_is_cell_centred_and_thinned_to_n():
    full = grid(27, 3)  # 3 x 3 x 3 cells of width 1/3, one point at each centre
    assert full.unique(dim=0).shape == (27, 3)
    for j in range(3):
        torch.testing.assert_close(full[:, j].unique(), torch.tensor([1 / 6, 1 / 2, 5 / 6], dtype=torch.float64))
    thinned = grid(20, 3)  # 27 centres thinned evenly to 20 distinct ones
    assert thinned.shape == (20, 3) and thinned.unique(dim=0).shape == (20, 3)
    assert bool(torch.isin(thinned[:, 0], full[:, 0]).all())


def test_sample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'halton' is not one of"):
        sample("halton", 4, 2, torch.Generator())
    with pytest.raises(ValueError, match="n=-1"):
        sample("uniform", -1, 2, torch.Generator())


def test_per_pool_sampler_choice():
    dm = make_dm({"boundary": "grid", "initial": "sobol"})
    assert dm.samplers == {"interior": "uniform", "boundary": "grid", "initial": "sobol"}
    g = torch.Generator().manual_seed(0)  # the pools are drawn interior, boundary, initial from one generator
    assert torch.equal(dm.pools["interior"], DOMAIN.from_unit(torch.rand(SIZES["interior"], 3, generator=g,
                                                                                dtype=torch.float64)))
    assert torch.equal(dm.pools["boundary"], DOMAIN.boundary_from_unit(grid(SIZES["boundary"], 2)))
    assert torch.equal(dm.pools["initial"], DOMAIN.initial_from_unit(sobol(SIZES["initial"], 2, g)))


@pytest.mark.parametrize("sampler, match", [("halton", "'halton' for pool 'interior'"),
                                            ({"edges": "grid"}, "pool 'edges'"),
                                            ({"boundary": "random"}, "'random' for pool 'boundary'")])
def test_bad_sampler_config_names_the_value(sampler, match):
    with pytest.raises(ValueError, match=match):
        ElasticDataModule(sampler=sampler)


# ---- RAD / RAR-D -------------------------------------------------------------------------------------------
def test_residual_density_closed_form():
    r = torch.tensor([0.0, 1.0, 3.0])
    # k = 1, c = 1: mean r = 4/3, weights r / mean + 1 = (1, 1.75, 3.25), total 6
    torch.testing.assert_close(residual_density(r), torch.tensor([1, 1.75, 3.25], dtype=torch.float64) / 6)
    # k = 2, c = 0: proportional to r^2
    torch.testing.assert_close(residual_density(r, k=2, c=0), torch.tensor([0, 1, 9], dtype=torch.float64) / 10)
    torch.testing.assert_close(residual_density(r, k=0, c=0), torch.full((3,), 1 / 3, dtype=torch.float64))
    torch.testing.assert_close(residual_density(torch.zeros(4), c=0), torch.full((4,), 0.25, dtype=torch.float64))


@pytest.mark.parametrize("kwargs, match", [({"k": -1}, "k=-1"), ({"c": math.inf}, "c=inf")])
def test_residual_density_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        residual_density(torch.ones(3), **kwargs)


def test_residual_density_reports_a_diverged_residual():
    with pytest.raises(ValueError, match="2 of 4 candidate residuals are NaN or infinite"):
        residual_density(torch.tensor([1.0, math.nan, math.inf, 0.0]))


def test_weighted_choice_has_the_law_of_successive_draws_without_replacement():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    trials = 20000
    hits = torch.zeros(4)
    for _ in range(trials):
        idx = weighted_choice(p, 2, g)
        assert idx.shape == (2,) and idx[0] < idx[1]  # distinct and sorted
        hits[idx] += 1
    # inclusion probability of i in two successive draws: p_i + sum_{j != i} p_j p_i / (1 - p_j)
    expected = torch.tensor([float(p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(4) if j != i))
                             for i in range(4)])
    torch.testing.assert_close(hits / trials, expected.float(), atol=0.012, rtol=0)  # 4 sigma at 20000 trials


def test_rad_concentrates_where_the_residual_is_large():
    """Synthetic residual h on a slab of volume a, 0 elsewhere: with k = 1, c = 1 the slab's probability is
    a (1/a + 1) / (a (1/a + 1) + (1 - a)) = (1 + a) / 2, whatever h; uniform sampling would give a."""
    g = torch.Generator().manual_seed(0)
    candidates = torch.rand(200_000, 3, generator=g)
    slab = candidates[:, 0] < 0.2
    r = 7.0 * slab.double()
    a = float(slab.double().mean())
    fractions = [float((rad(1000, candidates, r, g)[:, 0] < 0.2).double().mean()) for _ in range(5)]
    mean = sum(fractions) / 5
    assert abs(mean - (1 + a) / 2) < 0.025  # expected 0.6; 5000 draws give a standard error of 0.007
    uniform = rad(5000, candidates, r, g, k=0.0)
    assert abs(float((uniform[:, 0] < 0.2).double().mean()) - a) < 0.025
    assert bool((rad(1000, candidates, r, g, k=2.0, c=0.0)[:, 0] < 0.2).all())  # c = 0: only where r > 0


def test_rar_d_appends_up_to_the_cap_and_keeps_old_points():
    g = torch.Generator().manual_seed(0)
    pool, candidates = torch.rand(100, 3, generator=g), torch.rand(5000, 3, generator=g)
    r = (candidates[:, 2] > 0.5).double()
    grown = rar_d(pool, candidates, r, g, n_add=40, max_points=170)
    assert grown.shape == (140, 3) and torch.equal(grown[:100], pool)
    assert bool((grown[100:, 2] > 0.5).float().mean() > 0.55)
    full = rar_d(grown, candidates, r, g, n_add=40, max_points=170)
    assert full.shape == (170, 3) and torch.equal(full[:140], grown)
    state = g.get_state()
    assert rar_d(full, candidates, r, g, n_add=40, max_points=170) is full
    assert torch.equal(g.get_state(), state)  # a full pool draws nothing


@pytest.mark.parametrize("kwargs, match", [({"method": "r3"}, "method='r3'"), ({"n_candidates": 0}, "n_candidates=0"),
                                           ({"k": math.nan}, "k=nan"), ({"n_add": 0}, "n_add=0"),
                                           ({"max_points": 0}, "max_points=0")])
def test_resample_rule_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResampleRule(**kwargs)
