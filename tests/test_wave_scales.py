"""Scales from the waves, the padded box with its damping layer, the per-slice validation metric and the stall
watch, against their closed forms."""

import math

import pytest
import torch

from pinn.physics.elasticity import Material, residual
from pinn.physics.fields import Fields
from pinn.physics.media import Homogeneous, Layered, Properties
from pinn.physics.sources import PointForce, Ricker
from pinn.problems import Boundaries, Domain, WaveProblem
from pinn.training.metrics import RelativeL2
from pinn.training.stages import LBFGSStage, StallWatch


def _problem(time_scale: str = "period", padding: float = 0.0, reflection: float | None = 0.01) -> WaveProblem:
    layers = [Properties(vp=1500.0, vs=800.0, rho=1800.0), Properties(vp=2500.0, vs=1400.0, rho=2100.0)]
    source = PointForce((150.0, 220.0), 1e6, (0.0, -1.0), 10.0, Ricker(12.0, 0.08))
    return WaveProblem(Domain((0.0, 300.0), (0.0, 300.0), (0.0, 0.2)), Layered(layers, [150.0], 8.0), [source],
                       Boundaries("absorbing", "absorbing", "free", "absorbing"), displacement_scale=1e-5,
                       time_scale=time_scale, padding=padding, padding_reflection=reflection)


def test_scales_come_from_the_sources_period():
    s = _problem().scales
    assert s.time == pytest.approx(1 / (2 * math.pi * 12.0))
    assert s.length == pytest.approx(2500.0 * s.time, rel=1e-3)  # vp_max of the (smoothed) lower layer
    assert s.density == pytest.approx(2100.0, rel=1e-3) and s.displacement == 1e-5
    # a wave of amplitude U at the peak frequency has residual ~ rho omega^2 U: O(1) over R U / T^2
    omega = 2 * math.pi * 12.0
    assert 2100.0 * omega**2 * 1e-5 / s.force_density == pytest.approx(1.0, rel=1e-3)


def test_crossing_time_keeps_the_old_scales():
    s = _problem("crossing").scales
    assert s.length == 300.0 and s.time == pytest.approx(300.0 / 2500.0, rel=1e-3)
    with pytest.raises(ValueError, match="time_scale='hours'"):
        _problem("hours")


def test_padding_widens_absorbing_edges_only_and_scores_the_given_box():
    p = _problem(padding=50.0)
    assert (p.domain.x, p.domain.y) == ((-50.0, 350.0), (-50.0, 300.0))  # the free top edge stays
    assert (p.scored_domain.x, p.scored_domain.y) == ((0.0, 300.0), (0.0, 300.0))
    assert _problem().damping(torch.zeros(1, 2)) is None
    assert _problem(padding=50.0, reflection=None).damping(torch.zeros(1, 2)) is None


def test_the_damping_layer_follows_the_pml_profile():
    p = _problem(padding=50.0, reflection=0.01)
    d0 = 3 * p.medium.extremes(p.domain, 41)["vp_max"] * math.log(100) / (2 * 50.0)
    xy = torch.tensor([[150.0, 150.0], [0.0, 10.0], [-25.0, 150.0], [-50.0, 150.0], [375.0, -50.0], [150.0, 300.0]])
    expected = torch.tensor([0.0, 0.0, d0 / 4, d0, d0, 0.0])
    torch.testing.assert_close(p.damping(xy), expected)
    # the residual gains rho d u_t
    f = Fields(*(torch.ones(1) for _ in range(16)))
    m = Material(lam=2.0, mu=1.0, rho=3.0)
    extra = residual(f, m, None, torch.tensor([0.5])) - residual(f, m)
    torch.testing.assert_close(extra, torch.tensor([[1.5, 1.5]]))


def test_the_metric_leaves_out_the_first_slice_and_reports_the_end():
    metric = RelativeL2((0.0, 1.0), 3)
    t = torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.0])
    target = torch.ones(6, 2)
    pred = target + torch.tensor([10.0, 10.0, 0.1, 0.1, 0.3, 0.3])[:, None]  # slice 0 wildly off: not counted
    metric.update(pred, target, t)
    out = metric.compute()
    assert float(out["rel_l2"]) == pytest.approx(math.sqrt((0.01 + 0.09) / 2))
    assert float(out["rel_l2_end"]) == pytest.approx(0.3)
    torch.testing.assert_close(out["slices"].float(), torch.tensor([10.0, 0.1, 0.3]))


def test_the_metric_reports_each_time_window():
    metric = RelativeL2((0.0, 1.0), 5, starts=[0.0, 0.5])
    t = torch.linspace(0, 1, 5)
    target = torch.ones(5, 2)
    metric.update(target + torch.tensor([9.0, 0.1, 0.1, 0.2, 0.2])[:, None], target, t)
    out = metric.compute()
    assert float(out["rel_l2_window/0"]) == pytest.approx(0.1)  # slice 1 (slice 0 left out)
    assert float(out["rel_l2_window/1"]) == pytest.approx(math.sqrt((0.01 + 0.04 + 0.04) / 3))  # 0.5, 0.75, 1.0


def test_the_stall_watch_redraws_then_stops():
    settings = LBFGSStage(patience=2, min_improvement=0.1, refreshes=1)
    watch = StallWatch()
    actions = [watch.update(loss, settings) for loss in (1.0, 0.5, 0.48, 0.47, 0.9, 0.85, 0.84)]
    # 0.48 and 0.47 are within 10 % of 0.5: a stall after two steps, fresh points; then 0.85 and 0.84 of 0.9
    assert actions == [None, None, None, "redraw", None, None, "stop"]
    restored = StallWatch()
    restored.load_state_dict(watch.state_dict())
    assert restored == watch
    assert StallWatch().update(1.0, LBFGSStage()) is None  # no patience: never stalls
    with pytest.raises(ValueError, match="patience=0"):
        LBFGSStage(patience=0)


def test_homogeneous_scales_use_its_speed():
    p = WaveProblem(Domain((0.0, 100.0), (0.0, 50.0), (0.0, 0.1)), Homogeneous(vp=2000.0, vs=1000.0, rho=2000.0),
                    [PointForce((50.0, 25.0), 1.0, (0.0, 1.0), 5.0, Ricker(20.0))], displacement_scale=1.0)
    assert p.scales.length == pytest.approx(2000.0 / (2 * math.pi * 20.0))
