"""Problems: the domain, the composition of a problem, closed-form problems and the finite-difference reference."""

from pinn.problems.closed_form import HeterogeneousManufactured, Manufactured, PlaneWaves, Wave
from pinn.problems.domain import Domain
from pinn.problems.problem import Boundaries, Problem, WaveProblem
from pinn.problems.receivers import ReceiverLine, Receivers

__all__ = ["Boundaries", "Domain", "HeterogeneousManufactured", "Manufactured", "PlaneWaves", "Problem", "ReceiverLine",
           "Receivers", "Wave", "WaveProblem"]
