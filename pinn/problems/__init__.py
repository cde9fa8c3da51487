"""Problems: the domain, closed-form problems and their composition."""

from pinn.problems.closed_form import Domain, Manufactured, PlaneWaves, Problem, Wave

__all__ = ["Domain", "Manufactured", "PlaneWaves", "Problem", "Wave"]
