r"""The condition on each edge of the rectangle: one small class per kind, and :class:`Boundaries`, one per edge.

An edge object gives the two things that read it the same condition:

- the PINN's boundary loss: :meth:`Edge.residual`, non-dimensional (a displacement divided by the scale U, a
  traction by S U / L, :mod:`pinn.physics.units`), from a :class:`~pinn.networks.derivatives.Fields` of the
  derivative order :attr:`Edge.order`;
- the finite-difference reference (:mod:`pinn.problems.devito_solver`): the cells it needs outside the edge
  (:meth:`Edge.pad`), whether a C-PML layer fills them (:meth:`Edge.pml_layer`), whether the fields outside stay at
  rest (:meth:`Edge.outside_at_rest`), and its equations (:meth:`Edge.equations`, built by
  :class:`~pinn.problems.devito_edges.EdgeEquations`).

In YAML an edge is its short name (``top: free``), mapped to its class in :class:`Boundaries` only, or an object
(``top: {class_path: pinn.problems.boundaries.Free}``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from torch import Tensor

from pinn.physics.elasticity import absorbing_residual, traction
from pinn.physics.fields import Fields
from pinn.physics.units import Scales
from pinn.problems.devito_edges import mirror_rows
from pinn.problems.domain import EDGES


class Edge:
    """The condition on one edge. Subclasses set :attr:`kind` and :attr:`order` and implement :meth:`residual`
    and :meth:`equations`."""

    kind: ClassVar[str]
    order: ClassVar[str] = "value"  # the derivatives the residual reads (pinn.networks.derivatives)

    def residual(self, fields: Fields, material, normal: Tensor | None, xyt: Tensor, problem, scales: Scales) -> Tensor:
        """Non-dimensional residual ``(N, 2)`` of the condition at boundary points ``xyt`` ``(N, 3)``.

        Args:
            fields: The network's displacement and derivatives at ``xyt`` (at least :attr:`order`).
            material: Lamé parameters and density at the points (scalars or ``(N,)``).
            normal: Outward unit normals ``(N, 2)`` (``None`` when every edge's order is ``"value"``).
            xyt: The points.
            problem: The problem (its closed form, for :class:`Exact`).
            scales: Characteristic scales of the model.
        """
        raise NotImplementedError

    def content(self) -> object:
        """What identifies the condition in a cache key: the short name, and the arguments if it has any."""
        args = {f.name: getattr(self, f.name) for f in fields(self)} if hasattr(self, "__dataclass_fields__") else {}
        return {self.kind: args} if args else self.kind

    # ---- the finite-difference reference ---------------------------------------------------------------
    def pad(self, settings) -> int:
        """Cells outside the edge on the reference grid (``settings`` a ``ReferenceSettings``)."""
        return mirror_rows(settings.space_order) + 1

    def pml_layer(self, settings) -> bool:
        """Whether the cells outside the edge are a C-PML layer."""
        return False

    def outside_at_rest(self, settings) -> bool:
        """Whether nothing outside the edge is used, so the fields there are kept at rest (and the output is
        interpolated one-sided next to the edge)."""
        return False

    def equations(self, eqs, edge: str, settings) -> tuple[list, list]:
        """Devito equations ``(on v^{n+1/2}, on sigma^{n+1})`` of the edge named ``edge`` (``eqs`` an
        :class:`~pinn.problems.devito_edges.EdgeEquations`)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Fixed(Edge):
    """Zero displacement u = 0 (a clamped edge). Reference: v = 0 on the edge, mirrored antisymmetrically."""

    kind: ClassVar[str] = "fixed"

    def residual(self, fields, material, normal, xyt, problem, scales) -> Tensor:
        return fields.displacement / scales.displacement

    def equations(self, eqs, edge, settings):
        return eqs.fixed(edge), []


@dataclass(frozen=True)
class Free(Edge):
    r"""Zero traction :math:`\sigma n = 0` (a free surface). Reference: stress imaging (Levander 1988)."""

    kind: ClassVar[str] = "free"
    order: ClassVar[str] = "gradient"

    def residual(self, fields, material, normal, xyt, problem, scales) -> Tensor:
        return traction(fields, material, normal) / scales.traction

    def outside_at_rest(self, settings) -> bool:
        return True

    def equations(self, eqs, edge, settings):
        return [], eqs.free(edge)


@dataclass(frozen=True)
class Absorbing(Edge):
    r"""The medium goes on past the edge. The PINN enforces the first-order dashpot of Lysmer & Kuhlemeyer (1969),
    "Finite dynamic model for infinite media" (:func:`~pinn.physics.elasticity.absorbing_residual`):

    .. math::
        \sigma n = -\rho\left(c_p (\dot{\mathbf u}\cdot n)\, n + c_s (\dot{\mathbf u} - (\dot{\mathbf u}\cdot n)\,n)
        \right)

    exact for P and S waves leaving along the normal, reflecting part of oblique ones. The reference, as
    ``reference.absorbing`` says: ``pml``, a C-PML layer outside the edge (an unbounded medium); ``first_order``,
    the same dashpot on the edge (:meth:`~pinn.problems.devito_edges.EdgeEquations.dashpot`), so that the
    reference solves the PINN's own problem.
    """

    kind: ClassVar[str] = "absorbing"
    order: ClassVar[str] = "gradient"

    def residual(self, fields, material, normal, xyt, problem, scales) -> Tensor:
        return absorbing_residual(fields, material, normal) / scales.traction

    def pad(self, settings) -> int:
        return settings.absorbing_cells if self.pml_layer(settings) else super().pad(settings)

    def pml_layer(self, settings) -> bool:
        return settings.absorbing == "pml"

    def outside_at_rest(self, settings) -> bool:
        return not self.pml_layer(settings)

    def equations(self, eqs, edge, settings):
        return [], ([] if self.pml_layer(settings) else eqs.dashpot(edge))  # a C-PML enters the interior equations


@dataclass(frozen=True)
class Exact(Edge):
    """The displacement of the closed-form solution (closed-form problems only). Reference: v and sigma from the
    closed form on the edge and the rows outside it."""

    kind: ClassVar[str] = "exact"

    def residual(self, fields, material, normal, xyt, problem, scales) -> Tensor:
        return (fields.displacement - problem.boundary_displacement(xyt)) / scales.displacement

    def equations(self, eqs, edge, settings):
        return eqs.exact(edge, settings.space_order // 2 + 1)


KINDS: dict[str, type[Edge]] = {cls.kind: cls for cls in (Fixed, Free, Absorbing, Exact)}


@dataclass(frozen=True)
class Boundaries:
    """The condition on each edge (x to the right, y up; ``top`` is y = y1), a short name or an object:

    - ``fixed`` (:class:`Fixed`): zero displacement (a clamped edge);
    - ``free`` (:class:`Free`): zero traction sigma . n = 0 (a free surface);
    - ``absorbing`` (:class:`Absorbing`): first-order absorbing (Lysmer-Kuhlemeyer / Clayton-Engquist),
      sigma . n = -rho (c_p (u_t . n) n + c_s (u_t - (u_t . n) n));
    - ``exact`` (:class:`Exact`): the displacement of a closed-form solution (closed-form problems only).

    Args:
        bottom: Condition on y = y0.
        right: Condition on x = x1.
        top: Condition on y = y1.
        left: Condition on x = x0.
    """

    bottom: str | Edge = "fixed"
    right: str | Edge = "fixed"
    top: str | Edge = "fixed"
    left: str | Edge = "fixed"

    def __post_init__(self) -> None:
        for edge in EDGES:  # the one place a short name becomes its class
            value = getattr(self, edge)
            if isinstance(value, str):
                if value not in KINDS:
                    raise ValueError(f"boundaries.{edge}={value!r} is not a boundary kind; use one of "
                                     f"{tuple(KINDS)}.")
                object.__setattr__(self, edge, KINDS[value]())
            elif not isinstance(value, Edge):
                raise ValueError(f"boundaries.{edge}={value!r} is not a boundary condition; use one of "
                                 f"{tuple(KINDS)}.")

    def edges(self) -> tuple[Edge, ...]:
        """The edge objects in the order of :data:`~pinn.problems.domain.EDGES`."""
        return tuple(getattr(self, edge) for edge in EDGES)

    def kinds(self) -> tuple[str, ...]:
        """The kinds' short names in the order of :data:`~pinn.problems.domain.EDGES`."""
        return tuple(e.kind for e in self.edges())
