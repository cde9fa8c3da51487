import math

import pytest
import torch

from pinn.physics import Material
from pinn.problems import Domain, Manufactured, PlaneWaves, Wave


def reference_waves() -> list[Wave]:
    """The reference problem's P wave at 0.3 rad and S wave at 1.2 rad, |k| = 2 pi."""
    return [Wave("P", 0.3, 2 * math.pi), Wave("S", 1.2, 2 * math.pi)]


@pytest.fixture
def plane_waves() -> PlaneWaves:
    return PlaneWaves(reference_waves(), Domain(), Material(1.0, 0.5, 1.0))


@pytest.fixture
def exact_problems() -> list:
    """Every problem with a closed-form solution, with non-trivial parameters."""
    mat = Material(lam=2.0, mu=0.7, rho=1.3)
    dom = Domain((-1.0, 2.0), (0.5, 1.5), (0.0, 0.7))
    return [
        PlaneWaves(reference_waves(), Domain(), Material(1.0, 0.5, 1.0)),
        PlaneWaves([Wave("P", -0.7, 3.0, 0.5, 0.4), Wave("S", 2.5, 5.0, 1.5, -1.0), Wave("S", 0.1, 1.0)], dom, mat),
        Manufactured(1.0, math.pi, math.pi, 2 * math.pi, Domain(), Material(1.0, 0.5, 1.0)),
        Manufactured(0.3, 2.0, 1.3, 4.0, dom, mat),
    ]


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
