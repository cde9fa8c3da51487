"""SI units in, O(1) variables inside: one problem in metres and seconds and in kilometres and milliseconds trains
the same non-dimensional network."""

import copy

import pytest
import torch

from pinn.physics.media import Layered, Properties
from pinn.physics.sources import Explosion, PointForce, Ricker
from pinn.problems import Boundaries, Domain, WaveProblem
from pinn.problems.reference import ReferenceSettings
from pinn.training.module import ElasticPINN

# metres, seconds, kilograms -> kilometres, milliseconds, kilograms
KM, MS = 1e-3, 1e3
SPEED, DENSITY, PRESSURE, LINE_FORCE, MOMENT = KM / MS, KM**-3, 1 / (KM * MS**2), 1 / MS**2, KM / MS**2


def _problem(cache: str, length: float = 1.0, time: float = 1.0, speed: float = 1.0, density: float = 1.0,
             pressure: float = 1.0, line_force: float = 1.0, moment: float = 1.0) -> WaveProblem:
    """A two-layer problem with a force and an explosion, free top and absorbing sides, in the given units."""
    top = Properties(vp=1800.0 * speed, vs=900.0 * speed, rho=1900.0 * density)
    bottom = Properties(lam=8e9 * pressure, mu=5e9 * pressure, rho=2300.0 * density)
    return WaveProblem(
        domain=Domain((0.0, 300.0 * length), (0.0, 200.0 * length), (0.0, 0.12 * time)),
        medium=Layered([top, bottom], [90.0 * length], smoothing=8.0 * length),
        sources=[PointForce((120.0 * length, 150.0 * length), 1e6 * line_force, (0.3, -1.0), 6.0 * length,
                            Ricker(25.0 / time, 0.04 * time)),
                 Explosion((200.0 * length, 60.0 * length), 3e6 * moment, 8.0 * length, Ricker(20.0 / time))],
        boundaries=Boundaries(bottom="absorbing", right="absorbing", top="free", left="fixed"),
        # a coarse reference: it only sets the displacement scale U here (its largest displacement)
        reference=ReferenceSettings(spacing=10.0 * length, space_order=4, absorbing_cells=8, output_times=5,
                                    cache_dir=cache),
    )


def _train(problem: WaveProblem, unit: dict[str, torch.Tensor], steps: int = 5) -> tuple[ElasticPINN, list[float]]:
    torch.manual_seed(0)
    model = ElasticPINN(problem, width=16, depth=2)
    d = problem.domain
    batch = {"interior": d.from_unit(unit["interior"]), "boundary": d.boundary_from_unit(unit["boundary"]),
             "initial": d.initial_from_unit(unit["initial"])}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss, _ = model.training_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return model, losses


def test_metres_and_kilometres_train_the_same_network(float64, tmp_path, one_thread):
    g = torch.Generator().manual_seed(3)
    unit = {"interior": torch.rand(256, 3, generator=g), "boundary": torch.rand(128, 2, generator=g),
            "initial": torch.rand(64, 2, generator=g)}
    si = _problem(str(tmp_path))
    km = _problem(str(tmp_path), KM, MS, SPEED, DENSITY, PRESSURE, LINE_FORCE, MOMENT)
    assert km.scales.length == pytest.approx(si.scales.length * KM)
    assert km.scales.time == pytest.approx(si.scales.time * MS)
    # U is the reference's largest displacement: the two Devito runs (float32) agree to rounding
    assert km.scales.displacement == pytest.approx(si.scales.displacement * KM, rel=1e-5)
    model_si, losses_si = _train(si, copy.deepcopy(unit))
    model_km, losses_km = _train(km, copy.deepcopy(unit))
    assert losses_si[0] > 1e-3 and losses_si[-1] != losses_si[0]  # the loss is O(1) and moves
    assert losses_km == pytest.approx(losses_si, rel=1e-4)  # as close as the two U
    for (name, a), b in zip(model_si.net.named_parameters(), model_km.net.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)
    # the outputs are the same field in the two unit systems
    xyt = si.domain.from_unit(unit["interior"][:16])
    km_xyt = xyt * torch.tensor([KM, KM, MS])
    expected = model_si(xyt) * KM
    torch.testing.assert_close(model_km(km_xyt), expected, rtol=0, atol=1e-4 * float(expected.abs().max()))

