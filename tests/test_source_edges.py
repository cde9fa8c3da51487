"""A source whose Gaussian crosses an absorbing or fixed edge by more than 1 % of its weight warns, in one line."""

from __future__ import annotations

import math
import warnings

import pytest

from pinn.physics.media import Homogeneous
from pinn.physics.sources import Explosion, PointForce
from pinn.problems import Boundaries, Domain, WaveProblem

DOMAIN = Domain((0.0, 400.0), (0.0, 200.0), (0.0, 0.5))
EDGES = Boundaries("absorbing", "fixed", "free", "absorbing")


def problem(*sources) -> WaveProblem:
    return WaveProblem(DOMAIN, Homogeneous(2000.0, 1000.0, 2000.0), list(sources), EDGES, displacement_scale=1e-5)


def test_weight_beyond_each_edge_is_the_gaussian_tail():
    shares = PointForce((200.0, 50.0), width=40.0).weight_beyond(DOMAIN)
    assert shares["bottom"] == pytest.approx(0.10565, abs=1e-5)  # Phi(-1.25): the old inverse_layers source
    assert shares["top"] == pytest.approx(0.5 * math.erfc(150 / (40 * math.sqrt(2))), rel=1e-12)
    assert shares["left"] == shares["right"] < 1e-6
    assert PointForce((-10.0, 100.0), width=10.0).weight_beyond(DOMAIN)["left"] == pytest.approx(0.8413, abs=1e-4)


def test_a_source_crossing_an_absorbing_or_fixed_edge_warns_once_naming_it():
    with pytest.warns(UserWarning) as record:
        problem(PointForce((200.0, 50.0), width=40.0), Explosion((390.0, 100.0), width=5.0))
    messages = [str(w.message) for w in record]
    assert len(messages) == 2 and all("\n" not in m for m in messages)
    assert "sources[0]" in messages[0] and "10.6%" in messages[0] and "absorbing bottom edge" in messages[0]
    assert "sources[1]" in messages[1] and "2.3%" in messages[1] and "fixed right edge" in messages[1]  # Phi(-2)


def test_a_source_well_inside_or_near_a_free_edge_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        problem(PointForce((200.0, 100.0), width=20.0))  # 4.65 widths from the nearest absorbing edge
        problem(PointForce((200.0, 190.0), width=20.0))  # the free top edge: the force there is a real surface load
        problem(PointForce((200.0, 47.0), width=20.0))  # 0.93 %: just under the threshold
