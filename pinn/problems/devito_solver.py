r"""Devito operator of the reference: velocity-stress staggered-grid finite differences (Virieux 1986).

Plane strain, SI units, x to the right, y up:

.. math::
    \rho\,\mathbf{v}_t = \nabla\cdot\sigma + \mathbf{f}, \qquad
    \sigma_t = \lambda\,\mathrm{tr}(\nabla\mathbf{v})\,I + \mu\,(\nabla\mathbf{v} + \nabla\mathbf{v}^T), \qquad
    \mathbf{u}_t = \mathbf{v}

Grid (Devito's convention: a field staggered in x sits at x + h/2): sigma_xx, sigma_yy at the nodes, v_x at
(x + h/2, y), v_y at (x, y + h/2), sigma_xy at (x + h/2, y + h/2); the medium is sampled at each field's own points.
Leapfrog in time (second order): the velocity and the body force live at half steps, t_s + (n - 1/2) dt, the
stress and the displacement at whole steps t_s + n dt; spatial stencils of order ``space_order``. The grid nodes
lie on the domain's edges, and each edge has a strip of cells outside it:

- ``absorbing`` (``reference.absorbing: pml``, the default): ``absorbing_cells`` cells of convolutional PML
  (C-PML, Komatitsch & Martin 2007, "An unsplit convolutional perfectly matched layer improved at grazing incidence
  for the seismic wave equation"): each derivative across the layer gets a memory variable
  (:func:`pinn.problems.devito_edges.pml`), so the output shows an unbounded medium (a plain sponge, Cerjan et
  al. 1985, sent back a few per cent at oblique incidence; the C-PML under 0.3 % of the peak). With
  ``reference.absorbing: first_order`` instead: the PINN's own first-order dashpot on the edge (Lysmer & Kuhlemeyer
  1969), by stress imaging like a free surface, and no layer;
- ``free``: stress imaging (Levander 1988) with reduced-order normal derivatives next to the edge (Graves 1996);
- ``fixed``: v = 0 on the edge, both velocity components antisymmetric about it;
- ``exact``: v and sigma set from the closed form on the edge and space_order/2 + 1 rows outside it, every step;

see :mod:`pinn.problems.devito_edges`; each edge object (:mod:`pinn.problems.boundaries`) builds its own.
Outputs: u and the average of the velocities either side of each output time, interpolated from the staggered
points onto the nodes by cubic Lagrange polynomials (one-sided next to free edges and first-order absorbing ones,
where nothing outside is kept).

The body force sum_s p_s(x) w_s(t) is a distributed force in the velocity update (zero outside the domain and
before ``rest_time``), so the finite-difference problem is the PINN's problem. Initial states: ``rest`` and
``snapshot`` start at rest (``snapshot`` some whole number of output intervals before t0, at or before
``rest_time``); ``exact`` sets u and sigma at t0 and v at t0 - dt/2 from the closed form.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

from pinn.problems.devito_edges import AXIS, EdgeEquations, keep_mask, pml
from pinn.problems.reference_settings import ReferenceSettings

_MAX_POINTS = 50_000_000  # grid nodes times saved snapshots beyond which the reference would not fit in memory
# Cubic Lagrange weights onto a node from 4 staggered points: centred, and one-sided from inside for the node on a
# free edge and the next one (the points are at -3/2..3/2, or at 1/2..7/2 from the node on the edge).
_CENTRED = np.array([-1.0, 9.0, 9.0, -1.0]) / 16
_ONE_SIDED = (np.array([35.0, -35.0, 21.0, -5.0]) / 16, np.array([5.0, 15.0, -5.0, 1.0]) / 16)


@contextmanager
def _quiet():
    from devito import configuration

    level = configuration["log-level"]
    configuration["log-level"] = "WARNING"
    try:
        yield
    finally:
        configuration["log-level"] = level


def _torch(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)


class _Layout:
    """The grid: the domain's nodes plus ``pads`` cells outside each edge, Devito index order (x, y)."""

    def __init__(self, problem, settings: ReferenceSettings) -> None:
        d = problem.domain
        self.vp_max, self.vs_min = _speeds(problem, np.stack(np.meshgrid(np.linspace(*d.x, 101),
                                                                          np.linspace(*d.y, 101)), -1))
        h = settings.spacing
        if h is None:
            f_max = float(problem.max_frequency())
            if not (math.isfinite(f_max) and f_max > 0):
                raise ValueError(f"max_frequency()={f_max}: the reference grid needs a frequency > 0 or "
                                 "reference.spacing.")
            h = self.vs_min / f_max / settings.points_per_wavelength
        self.n = [max(2, math.ceil((hi - lo) / h - 1e-9)) for lo, hi in (d.x, d.y)]  # cells per side
        self.h = [(hi - lo) / n for (lo, hi), n in zip((d.x, d.y), self.n)]
        self.pads = {e: getattr(problem.boundaries, e).pad(settings) for e in AXIS}
        self.low = [self.pads["left"], self.pads["bottom"]]  # index of the edge node x0, y0
        self.shape = (self.n[0] + 1 + self.pads["left"] + self.pads["right"],
                      self.n[1] + 1 + self.pads["bottom"] + self.pads["top"])
        if self.shape[0] * self.shape[1] * settings.output_times > _MAX_POINTS:
            raise ValueError(f"reference grid {self.shape} x {settings.output_times} snapshots is too large; raise "
                             "reference.spacing or lower reference.points_per_wavelength / reference.output_times.")
        self.origin = (d.x[0] - self.low[0] * self.h[0], d.y[0] - self.low[1] * self.h[1])

    def axes(self, stagger: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates ``(NX,), (NY,)`` of a field staggered by ``stagger`` half cells."""
        return tuple(o + (np.arange(n) + s / 2) * h for o, n, s, h in zip(self.origin, self.shape, stagger, self.h))

    def points(self, stagger: tuple[int, int]) -> np.ndarray:
        """All points ``(NX, NY, 2)`` of a field staggered by ``stagger``."""
        ax, ay = self.axes(stagger)
        return np.stack(np.meshgrid(ax, ay, indexing="ij"), axis=-1)


def _damping(problem, settings: ReferenceSettings, pts: dict) -> dict | None:
    """The damping rate d (1/s) of the problem's sponge at the velocities' points, for the reference of the PINN's
    own problem (``reference.absorbing: first_order``), or ``None``. The unbounded-medium reference (C-PML) has none:
    the sponge is the PINN's model of the medium going on, not part of the truth."""
    if settings.absorbing != "first_order" or getattr(problem, "sponge", lambda: None)() is None:
        return None
    with torch.no_grad():
        return {k: problem.damping(_torch(pts[k].reshape(-1, 2))).numpy().reshape(pts[k].shape[:2])
                for k in ("vx", "vy")}


def _speeds(problem, xy: np.ndarray) -> tuple[float, float]:
    """``vp_max, vs_min`` (m/s) over points ``(..., 2)``."""
    lam, mu, rho = _medium(problem, xy)
    return float(np.sqrt((lam + 2 * mu) / rho).max()), float(np.sqrt(mu / rho).min())


def _clamp(problem, xy: np.ndarray) -> np.ndarray:
    """Points moved into the domain: the medium outside it continues the edge values."""
    d = problem.domain
    return np.stack([np.clip(xy[..., 0], *d.x), np.clip(xy[..., 1], *d.y)], axis=-1)


def _medium(problem, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``lam, mu, rho`` at points ``(..., 2)``, each of shape ``(...)``."""
    with torch.no_grad():
        v = problem.medium.values(_torch(_clamp(problem, xy).reshape(-1, 2)))
    return tuple(q.reshape(xy.shape[:-1]).cpu().numpy() for q in (v.lam, v.mu, v.rho))


def _exact(problem, xy: np.ndarray, times: np.ndarray, stagger: tuple[int, int]) -> np.ndarray:
    """Closed-form velocity (v_x or v_y, whichever lives at ``stagger``) or stresses at points ``(..., 2)`` and
    ``times`` ``(T,)``: ``(T, ..., 1)`` for a velocity, ``(T, ..., 2)`` (xx, yy) at nodes, ``(T, ..., 1)`` xy."""
    pts = np.broadcast_to(xy, (len(times),) + xy.shape)
    tt = np.broadcast_to(times.reshape((-1,) + (1,) * (xy.ndim - 1)), pts.shape[:-1])[..., None]
    xyt = _torch(np.concatenate([pts, tt], axis=-1).reshape(-1, 3))
    shape = pts.shape[:-1]
    with torch.no_grad():
        if stagger in ((1, 0), (0, 1)):
            return problem.velocity(xyt)[:, stagger[1]].reshape(shape + (1,)).cpu().numpy()
        g = problem.gradient(xyt).cpu().numpy()  # (N, 2, 2), g[:, i, j] = d u_i / d x_j
    lam, mu, _ = (np.broadcast_to(q, shape).reshape(-1) for q in _medium(problem, xy))
    if stagger == (1, 1):
        return (mu * (g[:, 0, 1] + g[:, 1, 0])).reshape(shape + (1,))
    div = g[:, 0, 0] + g[:, 1, 1]
    return np.stack([lam * div + 2 * mu * g[:, 0, 0], lam * div + 2 * mu * g[:, 1, 1]], -1).reshape(shape + (2,))


def _strip(problem, lay: _Layout, tm: dict, stagger: tuple[int, int], axis: int, rows: list[int]) -> np.ndarray:
    """Closed-form data ``(steps + 2, N_along, len(rows), C)`` of the fields at ``stagger`` on rows (axis 1) or
    columns (axis 0) ``rows``: velocity at t_s + (m - 1/2) dt, stresses at t_s + m dt, m = 0..steps+1."""
    p = lay.points(stagger)
    p = np.moveaxis(p[rows, :] if axis == 0 else p[:, rows], axis, 1)  # (N_along, width, 2)
    m = np.arange(tm["steps"] + 2) - (0.5 if stagger in ((1, 0), (0, 1)) else 0.0)
    return _exact(problem, p, tm["t_start"] + tm["dt"] * m, stagger)


def _times(problem, settings: ReferenceSettings, lay: _Layout) -> dict:
    """Time step, steps and the recording stride: outputs fall on whole steps, the first after ``lead`` steps."""
    t0, t1 = problem.domain.t
    interval = (t1 - t0) / (settings.output_times - 1)
    every = max(1, math.ceil(interval / (settings.courant * min(lay.h) / lay.vp_max) - 1e-9))
    dt = interval / every
    lead = 0
    if problem.initial == "snapshot":  # start at rest a whole number of output intervals before t0
        lead = every * math.ceil((t0 - float(problem.rest_time)) / interval - 1e-9)
    return {"dt": dt, "every": every, "lead": lead, "steps": lead + every * (settings.output_times - 1),
            "t_start": t0 - lead * dt}


def _to_nodes(a: np.ndarray, lay: _Layout, axis: int, free: list[bool]) -> np.ndarray:
    """Snapshots ``(nt, NX, NY)`` of a component staggered along ``axis`` on the physical nodes, ``(nt, ny, nx)``."""
    a = np.moveaxis(np.asarray(a, np.float64), axis + 1, 1)  # (nt, N_axis, N_other): the staggered axis first
    i0, n, other = lay.low[axis], lay.n[axis], lay.low[1 - axis]
    a = a[:, :, other: other + lay.n[1 - axis] + 1]
    out = sum(w * a[:, i0 - 2 + q: i0 - 1 + q + n] for q, w in enumerate(_CENTRED))  # (nt, n + 1, N_other)
    for p, w in enumerate(_ONE_SIDED):  # the node p cells inside a free edge, from the 4 points inside
        if free[0]:
            out[:, p] = np.tensordot(a[:, i0: i0 + 4], w, axes=([1], [0]))
        if free[1]:
            out[:, n - p] = np.tensordot(a[:, i0 + n - 1: i0 + n - 5: -1], w, axes=([1], [0]))
    out = np.moveaxis(out, 1, axis + 1)  # back to (nt, nx + 1, ny + 1)
    return out.transpose(0, 2, 1)


def simulate(problem, settings: ReferenceSettings) -> dict:
    """Run the scheme of the module docstring; returns the keyword arguments of a ``Reference``."""
    with _quiet():
        return _simulate(problem, settings)


def _simulate(problem, settings: ReferenceSettings) -> dict:
    import devito
    from devito import ConditionalDimension, Eq, Function, Grid, Operator, TimeFunction

    edge_of = {e: getattr(problem.boundaries, e) for e in AXIS}  # exact edges check for a closed form themselves
    if problem.initial not in ("rest", "snapshot", "exact"):
        raise ValueError(f"initial={problem.initial!r} must be 'rest', 'snapshot' or 'exact'.")
    if problem.initial == "exact" and not problem.has_exact:
        raise ValueError("initial 'exact' needs a closed-form solution; this problem has none.")
    lay = _Layout(problem, settings)
    stag = {"vx": (1, 0), "vy": (0, 1), "n": (0, 0), "xy": (1, 1)}  # where each kind of field lives
    pts = {k: lay.points(s) for k, s in stag.items()}  # (NX, NY, 2) each
    med = {k: _medium(problem, p) for k, p in pts.items()}  # lam, mu, rho at each field's points
    lay.vp_max = max(lay.vp_max, _speeds(problem, pts["n"])[0])
    tm = _times(problem, settings, lay)
    so, dt, steps = settings.space_order, tm["dt"], tm["steps"]

    grid = Grid(shape=lay.shape, extent=tuple((n - 1) * h for n, h in zip(lay.shape, lay.h)), origin=lay.origin,
                dtype=np.float32)
    x, y = grid.dimensions
    time_dim, dts = grid.time_dim, grid.stepping_dim.spacing
    dims = {(1, 0): x, (0, 1): y, (0, 0): None, (1, 1): (x, y)}
    v = devito.VectorTimeFunction(name="v", grid=grid, space_order=so, time_order=1)  # v[0] at (1, 0), v[1] at (0, 1)
    tau = devito.TensorTimeFunction(name="tau", grid=grid, space_order=so, time_order=1)  # xx, yy: nodes; xy: (1, 1)
    u = devito.VectorTimeFunction(name="u", grid=grid, space_order=so, time_order=1)

    def field(name: str, s: tuple[int, int], values: np.ndarray) -> Function:
        f = Function(name=name, grid=grid, staggered=dims[s], space_order=0)
        f.data[:] = values
        return f

    keep = {k: field(f"keep_{k}", s, keep_mask(problem, lay, settings, s)) for k, s in stag.items()}
    b = [field("b_x", stag["vx"], 1 / med["vx"][2]), field("b_y", stag["vy"], 1 / med["vy"][2])]
    lam, mu = field("lam", stag["n"], med["n"][0]), field("mu", stag["n"], med["n"][1])
    mu_xy = field("mu_xy", stag["xy"], med["xy"][1])
    # speeds and impedances rho c at the velocities' points, for dashpot edges
    zp = [field(f"zp_{k}", stag[k], np.sqrt((med[k][0] + 2 * med[k][1]) * med[k][2])) for k in ("vx", "vy")]
    zs = [field(f"zs_{k}", stag[k], np.sqrt(med[k][1] * med[k][2])) for k in ("vx", "vy")]
    cp = [field(f"cp_{k}", stag[k], np.sqrt((med[k][0] + 2 * med[k][1]) / med[k][2])) for k in ("vx", "vy")]
    cs = [field(f"cs_{k}", stag[k], np.sqrt(med[k][1] / med[k][2])) for k in ("vx", "vy")]

    # Body force sum_s p_s(x) w_s(t) at the velocity points inside the domain, at the midpoint t_s + n dt of the
    # velocity's step, zero before rest_time.
    force, dom = [0, 0], problem.domain
    t_force = tm["t_start"] + dt * np.arange(steps + 2)
    for i, s in enumerate(problem.sources):
        w = Function(name=f"w{i}", dimensions=(time_dim,), shape=(steps + 2,), dtype=np.float32)
        with torch.no_grad():
            w.data[:] = np.where(t_force >= problem.rest_time - 1e-9 * dt, s.wavelet(_torch(t_force)).numpy(), 0.0)
        for c, k in enumerate(("vx", "vy")):
            p = pts[k]
            inside = np.all((p >= (dom.x[0], dom.y[0])) & (p <= (dom.x[1], dom.y[1])), axis=-1)  # (NX, NY)
            with torch.no_grad():
                pattern = s.spatial(_torch(p.reshape(-1, 2)))[:, c].reshape(p.shape[:2]).numpy()
            force[c] = force[c] + field(f"p{i}_{c}", stag[k], np.where(inside, pattern, 0.0)) * w[time_dim]

    # Absorbing layers: C-PML memory variables psi^{n+1} = b psi^n + a dq/dx_axis, added to each derivative that
    # crosses a layer (a = 0 elsewhere). (points, axis) -> the field differentiated.
    derivs = {("vx", 0): tau[0, 0], ("vx", 1): tau[0, 1], ("vy", 0): tau[0, 1], ("vy", 1): tau[1, 1],
              ("n", 0): v[0].forward, ("n", 1): v[1].forward, ("xy", 0): v[1].forward, ("xy", 1): v[0].forward}
    psi, eq_psi = {}, []
    for (k, axis), f in derivs.items():
        coeff = pml(problem, lay, settings, stag[k], axis, dt)
        if coeff is not None:
            p = TimeFunction(name=f"psi_{k}{axis}", grid=grid, staggered=dims[stag[k]], space_order=0, time_order=1)
            a, bb = field(f"pml_a_{k}{axis}", stag[k], coeff[0]), field(f"pml_b_{k}{axis}", stag[k], coeff[1])
            eq_psi.append(Eq(p.forward, bb * p + a * getattr(f, "d" + "xy"[axis])))
            psi[k, axis] = p.forward

    def deriv(k: str, axis: int):  # the derivative of derivs[k, axis] along axis, with its psi in a layer
        term = getattr(derivs[k, axis], "d" + "xy"[axis])
        return term + psi[k, axis] if (k, axis) in psi else term

    # Virieux (1986): v^{n+1/2} from sigma^n, then sigma^{n+1} from v^{n+1/2}; u^{n+1} = u^n + dt v^{n+1/2}.
    # With the PINN's own first-order edges, its sponge in the padding too: rho v_t = div sigma + f - rho d v,
    # centred in time (v at n+1/2 taken as the mean of v^{n-1/2} and v^{n+1/2}), stable for any d.
    damp = _damping(problem, settings, pts)
    if damp is None:
        eq_v = [Eq(v[c].forward, keep[k] * (v[c] + dts * b[c] * (deriv(k, 0) + deriv(k, 1) + force[c])))
                for c, k in enumerate(("vx", "vy"))]
    else:
        dd = [field(f"damp_{k}", stag[k], damp[k]) for k in ("vx", "vy")]
        eq_v = [Eq(v[c].forward, keep[k] * ((1 - dd[c] * dts / 2) * v[c] + dts * b[c] * (
            deriv(k, 0) + deriv(k, 1) + force[c])) / (1 + dd[c] * dts / 2)) for c, k in enumerate(("vx", "vy"))]
    eq_u = [Eq(u[c].forward, u[c] + dts * v[c].forward) for c in (0, 1)]
    dvx, dvy = deriv("n", 0), deriv("n", 1)
    eq_tau = [Eq(tau[0, 0].forward, keep["n"] * (tau[0, 0] + dts * ((lam + 2 * mu) * dvx + lam * dvy))),
              Eq(tau[1, 1].forward, keep["n"] * (tau[1, 1] + dts * (lam * dvx + (lam + 2 * mu) * dvy))),
              Eq(tau[0, 1].forward, keep["xy"] * (tau[0, 1] + dts * mu_xy * (deriv("xy", 0) + deriv("xy", 1))))]
    closed_form = (lambda s, axis, rows: _strip(problem, lay, tm, s, axis, rows), steps) if problem.has_exact else None
    coef = {"lam": lam, "mu": mu, "mu_xy": mu_xy, "psi": psi, "zp": zp, "zs": zs, "cp": cp, "cs": cs}
    edges = EdgeEquations(grid, v, tau, coef, lay.low, lay.pads, so, closed_form)
    bc_v, bc_tau = [], []
    for name, edge in edge_of.items():
        more = edge.equations(edges, name, settings)
        bc_v, bc_tau = bc_v + more[0], bc_tau + more[1]

    # Snapshots every `every` steps: u^n and (v^{n-1/2} + v^{n+1/2}) / 2 at the staggered points.
    nsave = steps // tm["every"] + 1
    tsub = ConditionalDimension(name="tsub", parent=time_dim, factor=tm["every"])
    saved = {f"{q}{'xy'[c]}": TimeFunction(name=f"{q}{'xy'[c]}_s", grid=grid, staggered=dims[stag["v" + "xy"[c]]],
                                            time_dim=tsub, save=nsave, space_order=0) for q in "uv" for c in (0, 1)}
    record = [Eq(saved[f"u{'xy'[c]}"], u[c]) for c in (0, 1)]
    record += [Eq(saved[f"v{'xy'[c]}"], (v[c] + v[c].forward) / 2) for c in (0, 1)]

    if problem.initial == "exact":  # u, sigma at t_s and v at t_s - dt/2
        t0 = tm["t_start"]
        for c, k in enumerate(("vx", "vy")):
            v[c].data[0] = _exact(problem, pts[k], np.array([t0 - dt / 2]), stag[k])[0, ..., 0]
            xyt = np.concatenate([pts[k], np.full(pts[k].shape[:2] + (1,), t0)], -1).reshape(-1, 3)
            with torch.no_grad():
                u[c].data[0] = problem.displacement(_torch(xyt))[:, c].reshape(pts[k].shape[:2]).numpy()
        normal = _exact(problem, pts["n"], np.array([t0]), stag["n"])[0]
        tau[0, 0].data[0], tau[1, 1].data[0] = normal[..., 0], normal[..., 1]
        tau[0, 1].data[0] = _exact(problem, pts["xy"], np.array([t0]), stag["xy"])[0, ..., 0]

    psi_v = [e for e in eq_psi if e.lhs.function.name[4] == "v"]  # psi_vx*, psi_vy*: derivatives of sigma^n
    psi_tau = [e for e in eq_psi if e not in psi_v]
    op = Operator(psi_v + eq_v + bc_v + eq_u + record + psi_tau + eq_tau + bc_tau, name="ElasticReference")
    op.apply(time_m=0, time_M=steps, dt=dt)

    keep = slice(nsave - settings.output_times, nsave)
    free = [[edge_of[e].outside_at_rest(settings) for e in pair] for pair in (("left", "right"), ("bottom", "top"))]
    disp = np.stack([_to_nodes(saved[f"u{c}"].data[keep], lay, axis, free[axis]) for axis, c in enumerate("xy")], -1)
    vel = np.stack([_to_nodes(saved[f"v{c}"].data[keep], lay, axis, free[axis]) for axis, c in enumerate("xy")], -1)
    meta = {"spacing": list(lay.h), "dt": dt, "steps": steps, "record_every": tm["every"], "t_start": tm["t_start"],
            "space_order": so, "courant": dt * lay.vp_max / min(lay.h), "grid_shape": list(lay.shape),
            "pads": lay.pads, "vp_max": lay.vp_max, "vs_min": lay.vs_min,
            "boundaries": {e: edge.kind for e, edge in edge_of.items()}, "absorbing": settings.absorbing,
            "initial": problem.initial, "devito": devito.__version__, "dtype": "float32"}
    axes = [lo + h * np.arange(n + 1) for (lo, _), h, n in zip((dom.x, dom.y), lay.h, lay.n)]
    return {"x": axes[0], "y": axes[1], "t": np.linspace(*dom.t, settings.output_times), "displacement": disp,
            "velocity": vel, "meta": meta}
