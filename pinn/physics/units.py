r"""Characteristic scales: the network trains on O(1) variables while everything the user sees is SI.

With a length L, a time T, a displacement U and a density R, the variables :math:`x = L x'`, :math:`t = T t'`,
:math:`\mathbf{u} = U \mathbf{u}'`, :math:`\rho = R \rho'` and the stress scale :math:`S = R L^2 / T^2` turn
:math:`\rho\mathbf{u}_{tt} = \nabla\cdot\sigma + \mathbf{f}` into the same equation in primed variables with
:math:`\lambda' = \lambda / S`, :math:`\mu' = \mu / S` and :math:`\mathbf{f}' = \mathbf{f}\, T^2 / (R U)`. The code
keeps the physics in SI and divides each loss term by its scale instead (the residual by :math:`R U / T^2`, a
traction by :math:`S U / L`, a velocity by :math:`U / T`, a displacement by :math:`U`), which is the same
non-dimensional loss; the network maps its inputs from the domain box to [-1, 1] and multiplies its output by U.
A problem written in metres and seconds or in kilometres and milliseconds thus trains the same network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Scales:
    """Characteristic length L (m), time T (s), displacement U (m) and density R (kg/m^3) of a problem.

    All 1 for problems posed in non-dimensional units (the closed-form problems)."""

    length: float = 1.0
    time: float = 1.0
    displacement: float = 1.0
    density: float = 1.0

    def __post_init__(self) -> None:
        for name in ("length", "time", "displacement", "density"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"scales.{name}={value} must be a finite number > 0.")

    @property
    def stress(self) -> float:
        """S = R L^2 / T^2 (Pa)."""
        return self.density * (self.length / self.time) ** 2

    @property
    def force_density(self) -> float:
        """Scale of rho u_tt and of the PDE residual, R U / T^2 (N/m^3)."""
        return self.density * self.displacement / self.time**2

    @property
    def traction(self) -> float:
        """Scale of sigma . n, S U / L (Pa)."""
        return self.stress * self.displacement / self.length

    @property
    def velocity(self) -> float:
        """Scale of the particle velocity, U / T (m/s)."""
        return self.displacement / self.time


def wave_scales(vp_max: float, rho_max: float, displacement: float, peak_frequency: float, side: float,
                mode: str = "period") -> Scales:
    r"""Scales of waves of peak frequency f in a medium of largest P speed vp_max and density rho_max.

    ``period``: T = 1 / omega with omega = 2 pi f, L = vp_max T (a wavelength over 2 pi): the residual of a wave of
    amplitude U, about rho omega^2 U, divides by R U / T^2 to O(1), its traction rho vp omega U by S U / L, its
    velocity omega U by U / T. ``crossing`` (or f = 0): L = ``side``, T = L / vp_max, the time to cross the domain;
    the residual then divides to about (omega T)^2, which over-weights the edges against the interior physics.
    """
    if mode == "period" and peak_frequency > 0:
        time = 1.0 / (2 * math.pi * peak_frequency)
        return Scales(vp_max * time, time, displacement, rho_max)
    return Scales(side, side / vp_max, displacement, rho_max)
