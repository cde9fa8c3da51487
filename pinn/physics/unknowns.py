r"""Trainable material parameters for inverse problems.

Any subset of :math:`\lambda, \mu, \rho` can be unknown. An unknown is stored as an unconstrained raw
parameter :math:`s` and mapped to an admissible value (plane strain: :math:`\rho > 0`, :math:`\mu > 0`,
:math:`\lambda + \mu > 0`) by an exponential:

.. math::
    \rho = e^{s_\rho}, \qquad \mu = \mu_{\min} + e^{s_\mu}, \qquad \lambda = e^{s_\lambda} - \mu

with :math:`\mu_{\min} = \max(0, -\lambda)` when :math:`\lambda` is known (so that :math:`\lambda + \mu > 0`
holds) and 0 otherwise. Whatever the optimizer does to :math:`s`, the material stays admissible, so a
negative or zero density, shear modulus or bulk modulus :math:`\lambda + \mu` can never occur. The
exponential makes an Adam step a *relative* change of the value (about ``lr`` per step), whatever the units
of the material (1 or 1e10 Pa), which is why it is preferred over softplus here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pinn.physics.elasticity import Material
from pinn.physics.inversion import FieldUnknowns, LayerUnknowns
from pinn.physics.media import MediumValues

NAMES = ("lam", "mu", "rho")


@dataclass
class Unknowns:
    """Which material parameters an inverse run recovers, from which initial guess, at which learning rate.

    A parameter left ``null`` is known: its value is taken from the problem's material.

    Args:
        lam: Initial guess of lambda, or ``None`` if known.
        mu: Initial guess of mu (> 0), or ``None`` if known.
        rho: Initial guess of rho (> 0), or ``None`` if known.
        lr: Learning rate of the material parameter group (the network keeps the optimizer's own lr). With the
            exponential parametrisation it is roughly the relative change of a parameter per Adam step.
        layers: Instead of one constant material: per-layer unknowns under known interfaces
            (:class:`~pinn.physics.inversion.LayerUnknowns`).
        field: Instead of one constant material: a material map on a coarse grid
            (:class:`~pinn.physics.inversion.FieldUnknowns`).
        start_step: The material stays at its initial guess until this training step, while the network first
            fits the observations and the equations with it; an estimate driven by a network that does not yet
            fit the data wanders far off (to several times the truth) and takes long to come back.
    """

    lam: float | None = None
    mu: float | None = None
    rho: float | None = None
    lr: float = 0.01
    layers: LayerUnknowns | None = None
    field: FieldUnknowns | None = None
    start_step: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.start_step, bool) or int(self.start_step) != self.start_step or self.start_step < 0:
            raise ValueError(f"model.unknowns.start_step={self.start_step} must be an integer >= 0.")
        if isinstance(self.layers, dict):
            self.layers = LayerUnknowns(**self.layers)
        if isinstance(self.field, dict):
            self.field = FieldUnknowns(**self.field)
        spatial = [k for k in ("layers", "field") if getattr(self, k) is not None]
        constant = [k for k in NAMES if getattr(self, k) is not None]
        if len(spatial) > 1 or (spatial and constant):
            raise ValueError(f"model.unknowns sets {' and '.join(constant + spatial)}: give either constant unknowns "
                             "(lam, mu, rho), or layers, or field.")
        for name in NAMES:
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"model.unknowns.{name}={value} must be a finite initial guess or null (known).")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"model.unknowns.lr={self.lr} must be a finite number > 0.")

    @property
    def trainable(self) -> tuple[str, ...]:
        """Names of the unknown parameters: lam, mu, rho of a constant material, else those of the layers or field."""
        if self.layers is not None:
            return tuple(self.layers.train)
        if self.field is not None:
            return tuple(self.field.train)
        return tuple(name for name in NAMES if getattr(self, name) is not None)

    @property
    def spatial(self) -> bool:
        """Whether the unknown material varies in space (layers or a field)."""
        return self.layers is not None or self.field is not None


class TrainableMaterial(nn.Module):
    """A :class:`~pinn.physics.elasticity.Material` whose unknown entries are ``nn.Parameter`` s (see the module
    docstring).

    Known entries are float buffers, so a checkpoint carries the whole material. ``lam``, ``mu`` and ``rho``
    are 0-d tensors that ``pinn.physics.elasticity.residual`` reads like the fields of a ``Material``.

    Args:
        known: The material that supplies the known entries (the problem's material).
        unknowns: The unknown entries and their initial guesses.
    """

    def __init__(self, known: Material, unknowns: Unknowns) -> None:
        super().__init__()
        guess = {name: getattr(unknowns, name) for name in NAMES}
        start = {name: getattr(known, name) if guess[name] is None else guess[name] for name in NAMES}
        try:
            Material(**start)  # the starting material must itself be admissible
        except ValueError as err:
            raise ValueError(f"model.unknowns: the initial guess is not admissible: {err}") from None
        self.trained = unknowns.trainable
        for name in NAMES:
            if name not in self.trained:
                self.register_buffer(name + "_known", torch.tensor(float(start[name])))
        # Raw values that map back exactly onto the initial guess (inverse of the maps in the module docstring).
        mu_floor = 0.0 if "lam" in self.trained else max(0.0, -start["lam"])
        raw = {"rho": start["rho"], "mu": start["mu"] - mu_floor, "lam": start["lam"] + start["mu"]}
        for name in self.trained:  # every raw value is > 0 here: the starting material was admissible
            setattr(self, "raw_" + name, nn.Parameter(torch.tensor(math.log(raw[name]))))
        # derived from the known entries, so not saved: checkpoints hold only the raw parameters and known values
        self.register_buffer("mu_floor", torch.tensor(float(mu_floor)), persistent=False)

    def _known(self, name: str) -> Tensor:
        return getattr(self, name + "_known")

    @property
    def rho(self) -> Tensor:
        """Density, 0-d tensor > 0."""
        return self.raw_rho.exp() if "rho" in self.trained else self._known("rho")

    @property
    def mu(self) -> Tensor:
        """Shear modulus, 0-d tensor > max(0, -lam)."""
        return self.mu_floor + self.raw_mu.exp() if "mu" in self.trained else self._known("mu")

    @property
    def lam(self) -> Tensor:
        """First Lamé parameter, 0-d tensor with lam + mu > 0."""
        return self.raw_lam.exp() - self.mu if "lam" in self.trained else self._known("lam")

    def at(self, xy: Tensor) -> MediumValues:
        """The material at ``xy``: the same constant everywhere (0-d tensors the residual broadcasts)."""
        return MediumValues(self.lam, self.mu, self.rho)

    def scalars(self) -> dict[str, Tensor]:
        """``{lam, mu, rho}`` detached, for logging."""
        return {name: getattr(self, name).detach() for name in NAMES}

    def values(self) -> dict[str, float]:
        """The current ``{lam, mu, rho}`` as floats (for logging and reports)."""
        with torch.no_grad():
            return {name: float(getattr(self, name)) for name in NAMES}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:.6g}" + ("*" if k in self.trained else "") for k, v in self.values().items())


def has_body_force(problem) -> bool:
    """Whether ``problem`` has a body force (its ``body_force`` returns a tensor at a sample of domain points)."""
    return problem.body_force(problem.domain.grid(2, 2, 2)) is not None


def check_identifiable(problem, unknowns: Unknowns) -> None:
    r"""Refuse an inverse setup that the data cannot resolve.

    Without a body force the Navier-Cauchy equations are invariant under
    :math:`(\lambda, \mu, \rho) \to c\,(\lambda, \mu, \rho)`: any positive multiple of the true material
    explains the displacement equally well, so only two ratios (the wave speeds squared) are identifiable.

    Raises:
        ValueError: lam, mu and rho are all unknown and the problem has no body force.
    """
    if len(unknowns.trainable) < 3 or has_body_force(problem):
        return
    raise ValueError(
        f"model.unknowns trains lam, mu and rho together, but {type(problem).__name__} has no body force: the "
        "equations are then unchanged by scaling (lam, mu, rho) -> c (lam, mu, rho), so displacement data fix "
        "only the wave speeds, not the scale. Fix one of them: set model.unknowns.rho: null to use the known "
        "density of the problem's material (or fix lam or mu instead), or use a problem with a known body force."
    )


def check_inverse_setup(problem, unknowns: Unknowns) -> None:
    """Refuse an inverse run on a problem that would hand it the answer, or that its unknowns do not fit.

    A problem without a closed form takes its initial state from the reference solution with ``initial:
    snapshot``, and its displacement scale from that solution when ``displacement_scale`` is unset: both are
    computed on the true medium, so an inverse run must start from rest and be given the scale.

    Raises:
        ValueError: naming the setting to change.
    """
    check_identifiable(problem, unknowns)
    if problem.has_exact:
        if unknowns.spatial:
            raise ValueError(f"model.unknowns.{'layers' if unknowns.layers else 'field'} needs a problem in SI units "
                             f"(pinn.problems.WaveProblem); {type(problem).__name__} has one constant material.")
        return
    if problem.initial == "snapshot":
        raise ValueError("data.problem.initial: snapshot takes the state at t0 from the reference solution on the true "
                         "medium, which an inverse run must not see: use initial: rest (the medium at rest at t0, "
                         "moved by the known sources).")
    if getattr(problem, "displacement_scale", None) is None:
        raise ValueError("data.problem.displacement_scale is unset, so it would come from the reference solution on "
                         "the true medium: set it to the size of the recorded displacement (m), e.g. the largest "
                         "observed amplitude.")
    if unknowns.layers is not None:
        unknowns.layers.check(problem.domain)
