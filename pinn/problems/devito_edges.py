r"""Edge conditions of the staggered-grid reference (:mod:`pinn.problems.devito_solver`) as Devito equations.

Each edge has an axis (its normal: 0 for left/right, 1 for bottom/top) and a side (-1 low, +1 high). Rows are
addressed by index along the normal axis: the edge's nodes at ``j`` (a number on the low side, ``dim_M - pad`` on
the high side, so that one compiled operator serves every grid size); a field staggered along the normal has its
points at ``(j + 1/2 + side (k + 1/2)) h`` outside the edge, k = 0, 1, ... The rows outside an edge are written
by one equation per field, looping over a layer dimension k (few equations keep Devito's compilation short).

- ``fixed`` (v = 0): the velocity component along the edge is 0 on it; both components are mirrored
  antisymmetrically outside (exact for waves at normal incidence, whose reflection is odd about the edge).
- ``free`` (sigma . n = 0): stress imaging (Levander 1988, "Fourth-order finite-difference P-SV seismograms"): the
  normal stress is 0 on the edge, the normal and shear stresses are antisymmetric about it. The tangential normal
  stress on the edge uses sigma_nn = 0 to replace d v_n/dn by -lam/(lam + 2 mu) d v_t/dt. Velocities outside are
  not used: stresses within space_order/2 points of the edge take d v/dn at the highest order that stays inside
  (Graves 1996, "Simulating seismic wave propagation in 3D elastic media using staggered-grid finite differences"),
  which keeps the scheme stable (the high-order stencils fed by velocities outside grew without bound).
- ``exact``: v and sigma from the closed form on ``space_order/2 + 1`` rows at and outside the edge, every step.
- ``absorbing`` with ``reference.absorbing: pml``: a C-PML layer outside the edge (:func:`pml`), which enters the
  interior equations, not these.
- ``absorbing`` with ``reference.absorbing: first_order``: the PINN's dashpot
  sigma . n = -rho (c_p v_n n + c_s v_t t) (Lysmer & Kuhlemeyer 1969), by stress imaging about the dashpot's
  traction instead of 0 (:meth:`EdgeEquations.dashpot`).

Which edge gets which is decided by the edge objects of :mod:`pinn.problems.boundaries`, not here.
"""

from __future__ import annotations

import math

import numpy as np

PML_R = 1e-4  # theoretical reflection of an absorbing layer at normal incidence
AXIS = {"bottom": (1, -1), "right": (0, 1), "top": (1, 1), "left": (0, -1)}  # edge -> (normal axis, side)


class EdgeEquations:
    """Builds the boundary equations of one operator.

    Args:
        grid: The Devito grid.
        v, tau: Velocity (vector) and stress (tensor) time functions.
        coef: Devito functions ``lam``, ``mu`` (nodes), ``mu_xy`` (cell centres), ``psi``, the C-PML memory
            variables at n + 1 by (points, axis) of the derivatives across absorbing layers, and for dashpot edges
            ``zp``, ``zs``, ``cp``, ``cs``: rho c_p, rho c_s, c_p and c_s at the points of v_x and of v_y (two
            functions each).
        low: Index of the edge node on the low side per axis ``[x, y]``.
        pads: Cells outside each edge.
        space_order: Order of the spatial stencils.
        exact: ``(values, steps)`` for :meth:`exact`: the closed-form data ``values(stagger, axis, rows)`` and the
            number of steps; ``None`` for a problem without a closed form.
    """

    def __init__(self, grid, v, tau, coef: dict, low: list[int], pads: dict, space_order: int,
                 exact: tuple | None = None) -> None:
        from devito.types import CustomDimension

        self.grid, self.v, self.tau, self.coef, self.low, self.pads = grid, v, tau, coef, low, pads
        self.so, self.exact_data = space_order, exact
        self.tn = grid.stepping_dim
        self.dt = grid.stepping_dim.spacing
        mirrored = mirror_rows(space_order)
        self.k = CustomDimension(name="k_mirror", symbolic_min=0, symbolic_max=mirrored - 1, symbolic_size=mirrored)

    def at(self, f, axis: int, index):
        """``f`` at time n + 1 on one row (``axis`` 1) or column (``axis`` 0)."""
        x, y = self.grid.dimensions
        return f[self.tn + 1, index, y] if axis == 0 else f[self.tn + 1, x, index]

    def index(self, edge: str):
        """Index of the edge's nodes along its normal (symbolic on the high side)."""
        axis, side = AXIS[edge]
        return self.low[axis] if side < 0 else self.grid.dimensions[axis].symbolic_max - self.pads[edge]

    def outside(self, edge: str, staggered: bool, k: int) -> tuple:
        """(index of the k-th point outside the edge, index of its mirror image inside)."""
        _, side = AXIS[edge]
        j = self.index(edge)
        if not staggered:  # at j + side k, mirrored about j
            return j + side * k, j - side * k
        return (j - 1 - k, j + k) if side < 0 else (j + k, j - 1 - k)

    def mirror(self, f, edge: str, staggered: bool, about=0) -> list:
        """``f - about`` antisymmetric about the edge on the mirrored rows outside it (``about`` an expression on the
        edge's row, constant across it)."""
        from devito import Eq

        axis, _ = AXIS[edge]
        a, m = self.outside(edge, staggered, self.k if staggered else self.k + 1)
        image = -self.at(f, axis, m)
        return [Eq(self.at(f, axis, a), image if about == 0 else 2 * about + image)]

    def fixed(self, edge: str) -> list:
        """Equations on v^{n+1}: v = 0 on the edge, odd outside."""
        from devito import Eq

        axis, _ = AXIS[edge]
        tangential, normal = self.v[1 - axis], self.v[axis]
        return [Eq(self.at(tangential, axis, self.index(edge)), 0), *self.mirror(tangential, edge, False),
                *self.mirror(normal, edge, True)]

    def free(self, edge: str) -> list:
        """Equations on sigma^{n+1} (after the interior update): imaging and the reduced-order rows."""
        return self.surface(edge)

    def dashpot(self, edge: str) -> list:
        r"""Equations on sigma^{n+1} of the first-order absorbing edge (Lysmer & Kuhlemeyer 1969):

        .. math::
            \sigma_{nn} = -s\,\rho c_p v_n, \qquad \sigma_{tn} = -s\,\rho c_s v_t \qquad \text{on the edge}

        with s = +-1 the side (the outward normal is s e_n). The free surface's stress imaging (Levander 1988) about
        these tractions instead of 0: sigma_nn and sigma_tn less their edge values are antisymmetric about the edge,
        and sigma_nn's change gives d v_n/dn on the edge: sigma_tt^{n+1} = sigma_tt^n + dt 4 mu (lam + mu) /
        (lam + 2 mu) d v_t/dt + lam / (lam + 2 mu) (sigma_nn^{n+1} - sigma_nn^n).

        The velocities at the edge and at t^{n+1} come from v^{n+1/2} inside (nothing outside is kept) by
        characteristic (upwind) interpolation: a wave leaving along the normal at speed c has at (edge, t^{n+1}) the
        value it had at (edge - c dt / 2, t^{n+1/2}), so v_n (half a cell and 3/2 inside) and v_t (on the edge and
        one cell inside) are interpolated linearly to c dt / 2 inside the edge, c = c_p and c_s at each point. That
        makes the edge second-order accurate at normal incidence (measured: 0.84 % and 0.23 % error for a P wave at
        10 and 20 points per S wavelength, against 5.5 % and 2.7 % taking the nearest points as they are), and
        stable: the weights are (1.5 - C/2, C/2 - 0.5) and (1 - C/2, C/2) with C = c dt / h < 1, between the
        nearest point and a linear extrapolation (both measured stable; extrapolating in time instead grew without
        bound). Oblique waves are reflected as the continuous dashpot reflects them (tests/test_boundaries.py).
        """
        axis, side = AXIS[edge]
        j, t, h = self.index(edge), 1 - axis, self.grid.spacing_symbols[axis]
        inside = self.outside(edge, True, 0)[1]  # v_n's point half a cell inside the edge
        w_p = self.dt * self.still(self.coef["cp"][axis], axis, inside) / (2 * h)  # (c_p dt / 2) / h
        v_n = (1.5 - w_p) * self.at(self.v[axis], axis, inside) - (0.5 - w_p) * self.at(self.v[axis], axis,
                                                                                         inside - side)
        w_s = self.dt * self.still(self.coef["cs"][t], axis, j) / (2 * h)
        v_t = (1 - w_s) * self.at(self.v[t], axis, j) + w_s * self.at(self.v[t], axis, j - side)
        g_n = -side * self.still(self.coef["zp"][axis], axis, inside) * v_n
        g_t = -side * self.still(self.coef["zs"][t], axis, j) * v_t
        return self.surface(edge, g_n, g_t)

    def still(self, f, axis: int, index):
        """A time-independent ``f`` on one row (``axis`` 1) or column (``axis`` 0)."""
        x, y = self.grid.dimensions
        return f[index, y] if axis == 0 else f[x, index]

    def surface(self, edge: str, g_n=0, g_t=0) -> list:
        """Stress imaging about the normal and shear tractions ``g_n``, ``g_t`` on the edge (0: a free surface),
        expressions on the edge's row; the reduced-order rows inside (Graves 1996)."""
        from devito import Eq

        axis, side = AXIS[edge]
        t = 1 - axis
        dims = self.grid.dimensions
        lam, mu, mu_xy, psi = self.coef["lam"], self.coef["mu"], self.coef["mu_xy"], self.coef["psi"]
        normal, tangential, shear = self.tau[axis, axis], self.tau[t, t], self.tau[0, 1]
        v_n, v_t = self.v[axis].forward, self.v[t].forward
        j = self.index(edge)

        def d(f, dim: int, at, order: int | None = None):  # d f / d x_dim evaluated at the points of `at`
            deriv = getattr(f, "d" + "xy"[dim])
            return (deriv(fd_order=order) if order else deriv)._eval_at(at).evaluate

        def row(expr, index):  # the expression on one row or column
            return expr.subs(dims[axis], index)

        dvt = d(v_t, t, tangential) + psi.get(("n", t), 0)  # along the edge, where an absorbing layer may cross it
        dvn_t = d(v_n, t, shear) + psi.get(("xy", t), 0)
        eqs = [Eq(self.at(normal, axis, j), g_n)]
        # On the edge: sigma_tt^{n+1} = sigma_tt + dt 4 mu (lam + mu) / (lam + 2 mu) d v_t / dt (+ lam / (lam + 2 mu)
        # times the change of sigma_nn, which is 0 on a free surface)
        rhs = tangential + self.dt * 4 * mu * (lam + mu) / (lam + 2 * mu) * dvt
        if g_n != 0:
            rhs = rhs + lam / (lam + 2 * mu) * (g_n - normal)
        eqs.append(Eq(self.at(tangential, axis, j), row(rhs, j)))
        m_max = self.so // 2
        for m in range(1, m_max):  # node rows m cells inside: d v_n / dn of order 2m
            div = dvt + d(v_n, axis, normal, 2 * m)
            for target, dv in ((normal, d(v_n, axis, normal, 2 * m)), (tangential, dvt)):
                rhs = target + self.dt * (lam * div + 2 * mu * dv)
                eqs.append(Eq(self.at(target, axis, j - side * m), row(rhs, j - side * m)))
        for m in range(m_max - 1):  # shear rows (m + 1/2) cells inside: d v_t / dn of order 2(m + 1)
            inside = j + m if side < 0 else j - 1 - m
            rhs = shear + self.dt * mu_xy * (d(v_t, axis, shear, 2 * (m + 1)) + dvn_t)
            eqs.append(Eq(self.at(shear, axis, inside), row(rhs, inside)))
        return eqs + self.mirror(normal, edge, False, g_n) + self.mirror(shear, edge, True, g_t)

    def exact(self, edge: str, width: int) -> tuple[list, list]:
        """Equations setting v^{n+1} and sigma^{n+1} on ``width`` rows at and outside the edge, from ``exact``'s
        ``values(stagger, axis, rows) -> (steps + 2, N_along, width, C)``: closed-form data of the fields at
        ``stagger`` on the given numeric rows (velocity at t_s + (m - 1/2) dt, stress at t_s + m dt)."""
        from devito import Dimension, Eq, Function

        if self.exact_data is None:
            raise ValueError(f"boundaries.{edge}: 'exact' needs a closed-form solution; this problem has none.")
        values, steps = self.exact_data

        axis, _ = AXIS[edge]
        dims = self.grid.dimensions
        time_dim, along = self.grid.time_dim, dims[1 - axis]
        layer = Dimension(name="layer")
        targets = {(1, 0): [self.v[0]], (0, 1): [self.v[1]], (0, 0): [self.tau[0, 0], self.tau[1, 1]],
                   (1, 1): [self.tau[0, 1]]}
        bc_v, bc_tau = [], []
        for stagger, fields in targets.items():
            staggered = bool(stagger[axis])
            numeric = [self.outside(edge, staggered, k)[0] for k in range(width)]
            numeric = [int(r.subs(dims[axis].symbolic_max, self.grid.shape[axis] - 1)) if hasattr(r, "subs")
                       else int(r) for r in numeric]
            data = values(stagger, axis, numeric)  # (steps + 2, N_along, width, C)
            # the layer takes the place of the normal axis, so that the loops nest as the fields' do
            order = (layer, along) if axis == 0 else (along, layer)
            shape = (width, self.grid.shape[1]) if axis == 0 else (self.grid.shape[0], width)
            for c, target in enumerate(fields):
                g = Function(name=f"e_{edge}_{stagger[0]}{stagger[1]}_{c}", dimensions=(time_dim, *order),
                             shape=(steps + 2, *shape), dtype=np.float32)
                g.data[:] = data[..., c] if axis == 1 else data[..., c].transpose(0, 2, 1)
                eq = Eq(self.at(target, axis, self.outside(edge, staggered, layer)[0]), g[(time_dim + 1, *order)])
                (bc_v if stagger in ((1, 0), (0, 1)) else bc_tau).append(eq)
        return bc_v, bc_tau


def mirror_rows(space_order: int) -> int:
    """Rows mirrored outside a fixed or free edge: as far as the stencils reach, and 2 for the output's cubics."""
    return max(space_order // 2, 2)


def keep_mask(problem, lay, settings, stagger: tuple[int, int]) -> np.ndarray:
    """1 at a field's points (``lay`` a ``devito_solver._Layout``), 0 strictly outside edges whose outside is not
    used (free surfaces, first-order absorbing edges), so it is kept at rest."""
    pts, keep = lay.points(stagger), np.ones(lay.shape)
    bounds = (problem.domain.x, problem.domain.y)
    for edge, (axis, side) in AXIS.items():
        if getattr(problem.boundaries, edge).outside_at_rest(settings):
            keep[side * (pts[..., axis] - bounds[axis][0 if side < 0 else 1]) > 1e-6 * lay.h[axis]] = 0.0
    return keep


def pml(problem, lay, settings, stagger: tuple[int, int], axis: int, dt: float) -> tuple[np.ndarray, np.ndarray] | None:
    """C-PML coefficients ``a, b`` ``(NX, NY)`` of derivatives along ``axis`` at a field's points, or ``None``
    without a C-PML layer across that axis (Komatitsch & Martin 2007, kappa = 1): d = d0 r^2 with r the depth
    into the layer over its width L and d0 = 3 vp_max ln(1/R) / (2 L); alpha = pi f_peak (1 - r) inside the layer;
    b = exp(-(d + alpha) dt), a = d (b - 1) / (d + alpha)."""
    pts, depth = lay.points(stagger)[..., axis], np.zeros(lay.shape)
    width = settings.absorbing_cells * lay.h[axis]
    sides = [side for e, (ax, side) in AXIS.items()
             if ax == axis and getattr(problem.boundaries, e).pml_layer(settings)]
    if not sides:
        return None
    for side in sides:
        edge_at = (problem.domain.x, problem.domain.y)[axis][0 if side < 0 else 1]
        depth = np.maximum(depth, np.clip(side * (pts - edge_at) / width, 0.0, 1.0))
    d = 3 * lay.vp_max * math.log(1 / PML_R) / (2 * width) * depth**2
    f_peak = float(problem.max_frequency()) / 2.5 if problem.sources else 0.0  # a Ricker's peak is f_max / 2.5
    alpha = np.where(depth > 0, math.pi * max(f_peak, 0.0) * (1 - depth), 0.0)
    b = np.exp(-(d + alpha) * dt)
    return np.where(d > 0, d * (b - 1) / np.maximum(d + alpha, 1e-30), 0.0), b
