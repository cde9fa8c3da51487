r"""A classical elastic full-waveform inversion (FWI): the baseline beside every inverse PINN result.

It takes what the PINN's inverse run takes: the unknowns in the same parametrisation (per layer under known
interfaces, or a coarse material map: :mod:`pinn.physics.inversion`, from the same starting model), the problem's
sources with their wavelets, and the same recordings ``(M, 5)`` columns ``(x, y, t, u, v)`` (NaN where a component
is not recorded). The forward model is deepwave's elastic velocity-stress staggered-grid propagator (Virieux 1986;
A. Richardson, deepwave, https://github.com/ar4/deepwave), differentiable in the model, and the misfit

.. math::
    J(m) = \frac{\sum_{r, t, c} (d^{pred}_{rtc}(m) - d^{obs}_{rtc})^2}{\sum_{r, t, c} (d^{obs}_{rtc})^2}

(recorded components only) is minimised with L-BFGS and a strong-Wolfe line search (Tarantola 1984; Virieux &
Operto 2009, "An overview of full-waveform inversion in exploration geophysics").

The grid: nodes ``h`` apart on the domain's edges (x to the right; rows run down from the top edge), ``h`` =
the slowest starting S speed / the highest source frequency / ``points_per_wavelength``. Deepwave puts normal
stresses on the nodes, v_x half a cell to the right, v_y half a cell down. Each Gaussian source is its force
density at the velocity points inside the domain (as the Devito reference does); each recording is read from the
velocity points around it with bilinear weights (extrapolated at the free surface, never from above it) and
linear in time. Edges: ``absorbing`` is a C-PML outside the edge, ``free`` on top is a layer of vacuum cells
above the top row of nodes with deepwave's parameter-modified surface (Cao & Chen 2018), which puts the free
surface on that row; other combinations raise. Against the Devito reference (:mod:`pinn.problems.reference`) the
recordings agree to 0.4 % with all edges absorbing, and to 4-5 % with a free top edge at 8 to 24 points per S
wavelength (6-11 % with the improved vacuum method): the two free-surface schemes differ by that much, and the
difference is what the FWI's estimates carry on the reference's recordings (tests/test_fwi.py).

The true medium of the problem is read only to score the estimate, never to fit it. Needs ``pip install -e
".[fwi]"``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from pinn.physics.inversion import FieldUnknowns, LayerUnknowns, TrainableField, TrainableLayers, material_errors
from pinn.physics.media import Layered

COURANT = 0.4  # dt = COURANT h / max_vel, below deepwave's 0.6 / sqrt(2) so that it never sub-steps and resamples


@dataclass
class FWIResult:
    """What one inversion returns.

    Args:
        estimates: The estimated values by name (``"<layer>/vp"``, ...; ``"mu_min"``, ... for a map).
        errors: Relative error per unknown against the true medium (``|estimate - truth| / truth`` per layer
            speed; the relative L2 error over the domain per quantity of a map).
        wall_s: Wall time of the inversion (s), the forward model's set-up included.
        evaluations: Misfit evaluations (forward and adjoint runs).
        misfit: ``J`` at each evaluation, the starting model's first (the line search's trials included).
        spacing: Grid spacing (m); ``steps``: time steps of each forward run.
        material: The estimated medium (:class:`~pinn.physics.inversion.TrainableLayers` or ``TrainableField``).
    """

    estimates: dict[str, float]
    errors: dict[str, float]
    wall_s: float
    evaluations: int
    misfit: list[float] = field(default_factory=list)
    spacing: float = 0.0
    steps: int = 0
    material: nn.Module | None = None


def require_deepwave():
    """deepwave, or an ImportError that says how to install it."""
    try:
        import deepwave
    except ImportError:
        raise ImportError('the FWI baseline needs deepwave: pip install -e ".[fwi]".') from None
    return deepwave


class Survey:
    """The finite-difference grid, sources and receiver weights of one problem and one set of recordings.

    Args:
        problem: A :class:`~pinn.problems.WaveProblem` (domain, sources, boundaries; its medium is not read here).
        positions: Recording positions ``(P, 2)`` (m).
        times: Recording times ``(T,)`` (s), increasing.
        vs_min: The slowest S speed the grid must carry (m/s).
        max_vel: The fastest P speed the model may reach (m/s): it sets the time step and caps the model.
        points_per_wavelength: Grid points per S wavelength at the highest source frequency.
        accuracy: Order of deepwave's spatial stencils (2, 4, 6, 8).
        pml_width: Cells of C-PML outside each absorbing edge.
    """

    def __init__(self, problem, positions: Tensor, times: Tensor, vs_min: float, max_vel: float,
                 points_per_wavelength: float = 8.0, accuracy: int = 4, pml_width: int = 20) -> None:
        d = problem.scored_domain  # its own C-PML stands for the medium beyond; a PINN's padding is not needed
        kinds = dict(zip(("bottom", "right", "top", "left"), problem.boundaries.kinds()))
        wrong = {e: kinds[e] for e in ("bottom", "right", "left") if kinds[e] != "absorbing"}
        if kinds["top"] not in ("absorbing", "free") or wrong:
            raise ValueError("the FWI baseline supports absorbing edges and a free top edge; this problem has "
                             f"{kinds}.")
        f_max = float(problem.max_frequency())
        h = vs_min / f_max / points_per_wavelength
        self.nx, self.ny = (max(2, math.ceil((hi - lo) / h - 1e-9)) for lo, hi in (d.x, d.y))  # cells per side
        self.h = min((d.x[1] - d.x[0]) / self.nx, (d.y[1] - d.y[0]) / self.ny)
        self.nx, self.ny = round((d.x[1] - d.x[0]) / self.h), round((d.y[1] - d.y[0]) / self.h)
        self.hx, self.hy = (d.x[1] - d.x[0]) / self.nx, (d.y[1] - d.y[0]) / self.ny
        self.x0, self.y1 = d.x[0], d.y[1]
        self.vacuum = accuracy // 2 + 1 if kinds["top"] == "free" else 0  # rows of vacuum above a free surface
        self.max_vel, self.accuracy = float(max_vel), int(accuracy)
        self.pml = [0 if self.vacuum else pml_width, pml_width, pml_width, pml_width]  # top, bottom, left, right
        self.dt = COURANT * min(self.hx, self.hy) / self.max_vel
        self.steps = math.ceil((d.t[1] - d.t[0]) / self.dt) + 2
        self.t0 = d.t[0]
        self.pml_freq = f_max / 2.5  # a Ricker's peak frequency: where the PML absorbs best
        self._sources(problem)
        self._receivers(positions.double(), times.double())

    def node_points(self) -> Tensor:
        """``(ny + 1, nx + 1, 2)`` positions (x, y) of the physical nodes, top row first."""
        x = self.x0 + self.hx * torch.arange(self.nx + 1, dtype=torch.float64)
        y = self.y1 - self.hy * torch.arange(self.ny + 1, dtype=torch.float64)
        return torch.stack(torch.meshgrid(x, y, indexing="xy"), -1)

    def _sources(self, problem) -> None:
        """Force density ``f(x) w(t)`` at the v_x and v_y points inside the domain where it is not negligible."""
        nodes = self.node_points()
        t = self.t0 + self.dt * torch.arange(self.steps, dtype=torch.float64)  # a velocity source acts at n dt
        self.source = {}
        for c, (name, shift) in enumerate((("x", (self.hx / 2, 0.0)), ("y", (0.0, -self.hy / 2)))):
            pts = (nodes + torch.tensor(shift, dtype=torch.float64))[: self.ny + (c == 0), : self.nx + (c == 1)]
            with torch.no_grad():
                amp = sum(s.spatial(pts.reshape(-1, 2))[:, c, None] * s.wavelet(t)[None] for s in problem.sources)
            amp = amp.reshape(*pts.shape[:2], -1)  # (rows, cols, steps)
            keep = amp.abs().amax(-1) > 1e-6 * amp.abs().max()
            index = keep.nonzero() + torch.tensor([self.vacuum, 0])  # (S, 2): model row, column
            sign = -1.0 if name == "y" else 1.0  # deepwave's y runs down the rows; ours runs up
            self.source[name] = (sign * amp[keep].float()[None], index[None])

    def _receivers(self, positions: Tensor, times: Tensor) -> None:
        """Bilinear weights from the velocity points to the recording positions, linear weights in time."""
        self.receiver, self.weights = {}, {}
        for name, shift in (("x", (0.5, 0.0)), ("y", (0.0, 0.5))):
            col = (positions[:, 0] - self.x0) / self.hx - shift[0]  # fractional index of the component's points
            row = (self.y1 - positions[:, 1]) / self.hy - shift[1]
            last = (self.nx - (name == "x"), self.ny - (name == "y"))  # the last point of each inside the domain
            j = col.floor().clamp(0, last[0] - 1).long()
            i = row.floor().clamp(0, last[1] - 1).long()  # row 0 at most: extrapolate to the surface from below
            fx, fy = col - j, row - i
            corners = [(i, j, (1 - fy) * (1 - fx)), (i, j + 1, (1 - fy) * fx), (i + 1, j, fy * (1 - fx)),
                       (i + 1, j + 1, fy * fx)]
            nodes = torch.stack([torch.stack([a, b], -1) for a, b, _ in corners], 1).reshape(-1, 2)  # (4P, 2)
            unique, inverse = torch.unique(nodes, dim=0, return_inverse=True)
            w = torch.zeros(len(positions), len(unique), dtype=torch.float64)
            w.index_put_((torch.arange(len(positions)).repeat_interleave(4), inverse),
                         torch.stack([c[2] for c in corners], 1).reshape(-1), accumulate=True)
            self.receiver[name] = (unique + torch.tensor([self.vacuum, 0]))[None]
            self.weights[name] = w.float()
        self.time = {}  # linear interpolation in time: index and fraction per recording time
        for quantity, lag in (("velocity", 0.5), ("displacement", 0.0)):  # sample n at t0 + (n - lag) dt
            s = (times - self.t0) / self.dt + lag
            index = s.floor().long().clamp(0, self.steps - 2)
            self.time[quantity] = (index, (s - index).float())

    def model(self, values) -> tuple[Tensor, Tensor, Tensor]:
        """deepwave's ``lamb, mu, buoyancy`` ``(rows, cols)`` from :class:`MediumValues` at :meth:`node_points`,
        capped at ``max_vel`` (both speeds scaled down together where vp exceeds it), with the vacuum rows."""
        shape = (self.ny + 1, self.nx + 1)
        lam, mu, rho = (q.expand(shape[0] * shape[1]).reshape(shape).float() for q in (values.lam, values.mu,
                                                                                         values.rho))
        vp = ((lam + 2 * mu) / rho).sqrt()
        cap = (0.95 * self.max_vel / vp).clamp(max=1.0) ** 2
        lam, mu, b = lam * cap, mu * cap, 1 / rho
        if self.vacuum:
            pad = torch.zeros(self.vacuum, shape[1], dtype=lam.dtype)
            lam, mu, b = (torch.cat([pad, q]) for q in (lam, mu, b))
        return lam, mu, b

    def record(self, lam: Tensor, mu: Tensor, b: Tensor, quantity: str = "velocity") -> Tensor:
        """Run deepwave and return the recordings ``(P, T, 2)`` (u, v) at the positions and times."""
        import deepwave

        with warnings.catch_warnings():  # the zero-width top face lies beyond the vacuum rows: no wave reaches it
            warnings.simplefilter("ignore", deepwave.ZeroWidthFaceWarning)
            out = deepwave.elastic(
                lam, mu, b, (self.hy, self.hx), self.dt,
                source_amplitudes_y=self.source["y"][0], source_locations_y=self.source["y"][1],
                source_amplitudes_x=self.source["x"][0], source_locations_x=self.source["x"][1],
                receiver_locations_y=self.receiver["y"], receiver_locations_x=self.receiver["x"],
                accuracy=self.accuracy, pml_width=self.pml, pml_freq=self.pml_freq, max_vel=self.max_vel,
                nt=self.steps, surface_method="pm" if self.vacuum else "ivm")
        traces = {"x": out.receiver_amplitudes_x[0], "y": -out.receiver_amplitudes_y[0]}  # (R, steps), our signs
        comps = []
        for name in ("x", "y"):
            a = traces[name]
            if quantity == "displacement":  # u(t0 + n dt) = dt sum_{k <= n} v(t0 + (k - 1/2) dt)
                a = torch.cumsum(a, -1) * self.dt
            index, frac = self.time[quantity]
            at = a[:, index] * (1 - frac) + a[:, index + 1] * frac
            comps.append(self.weights[name] @ at)  # (P, T)
        return torch.stack(comps, -1)


def _samples(observations: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Unique positions ``(P, 2)``, unique times ``(T,)``, and each sample's (position, time) index ``(M,)`` x 2."""
    positions, p_index = torch.unique(observations[:, :2], dim=0, return_inverse=True)
    times, t_index = torch.unique(observations[:, 2], return_inverse=True)
    return positions, times, p_index, t_index


def _truth_errors(material, medium, domain) -> dict[str, float]:
    """Per layer ``|estimate - truth| / truth`` of each trained speed when the truth has the same layers; else the
    relative L2 error over the domain per quantity (:func:`~pinn.physics.inversion.material_errors`)."""
    if isinstance(material, TrainableLayers) and isinstance(medium, Layered) and \
            len(medium.layers) == len(material.spec.names):
        speeds = {k: v.detach().double() for k, v in material.speeds().items()}
        out = {}
        for i, (name, layer) in enumerate(zip(material.spec.names, medium.layers)):
            lam, mu, rho = layer.lame
            true = {"vp": ((lam + 2 * mu) / rho) ** 0.5, "vs": (mu / rho) ** 0.5, "rho": rho}
            for k in material.trained:
                out[f"{name}/{k}"] = abs(float(speeds[k][i]) - true[k]) / true[k]
        return out
    return {k: v for k, v in material_errors(material, medium, domain).items() if k != "all"}


def invert(problem, unknowns: LayerUnknowns | FieldUnknowns, observations: Tensor | list[Tensor],
           quantity: str = "velocity",
           points_per_wavelength: float = 8.0, accuracy: int = 4, max_iter: int = 40, history_size: int = 20,
           max_vel_factor: float = 2.0) -> FWIResult:
    r"""Elastic FWI of ``unknowns`` from ``observations``, by L-BFGS from the unknowns' starting model.

    Args:
        problem: The problem: domain, sources and wavelets, boundaries; its medium only scores the result.
        unknowns: ``model.unknowns.layers`` or ``model.unknowns.field`` of the inverse config (the start is theirs).
        observations: The recordings ``(M, 5)`` columns ``(x, y, t, u, v)``, NaN where not recorded; for a problem
            of several shots (:mod:`pinn.problems.shots`) a list of each shot's, and the misfit is over all of them.
        quantity: What ``u, v`` are: ``velocity`` (m/s) or ``displacement`` (m).
        points_per_wavelength: Grid points per S wavelength of the slowest starting S speed at the highest
            source frequency.
        accuracy: Order of the spatial stencils.
        max_iter: L-BFGS iterations at most (each one or more misfit evaluations).
        history_size: L-BFGS memory.
        max_vel_factor: The model's P speed is capped at this factor times the fastest starting P speed (it sets
            the time step).
    """
    require_deepwave()
    start = time.perf_counter()
    material = TrainableLayers(unknowns) if isinstance(unknowns, LayerUnknowns) else \
        TrainableField(unknowns, problem.scored_domain)
    params = list(material.parameters())
    with torch.no_grad():
        probe = material.at(problem.scored_domain.grid(41, 41, 1, torch.float32)[:, :2])
    vs_min, vp_max = float(probe.c_s.min()), float(probe.c_p.max())
    shots = []  # per shot: its survey, node positions, each sample's (position, time) index, data and mask
    for k, recorded in enumerate(observations if isinstance(observations, (list, tuple)) else [observations]):
        positions, times, p_index, t_index = _samples(recorded.double())
        survey = Survey(problem.shot(k), positions, times, vs_min, max_vel_factor * vp_max, points_per_wavelength,
                        accuracy)
        data = recorded[:, 3:].float()  # (M, 2)
        seen = torch.isfinite(data)
        shots.append((survey, survey.node_points().reshape(-1, 2).float(), p_index, t_index,
                      torch.where(seen, data, 0.0), seen))
    norm = sum(data.pow(2).sum() for *_, data, _ in shots)
    evaluations = 0

    def misfit() -> Tensor:
        nonlocal evaluations
        evaluations += 1
        loss = 0
        for survey, xy, p_index, t_index, data, seen in shots:
            pred = survey.record(*survey.model(material.at(xy)), quantity)[p_index, t_index]  # (M, 2)
            loss = loss + torch.where(seen, pred - data, 0.0).pow(2).sum() / norm
        history.append(float(loss.detach()))
        return loss

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = misfit()
        loss.backward()
        return loss

    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=history_size,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)
    history: list[float] = []
    optimizer.step(closure)
    estimates = {k: float(v) for k, v in material.scalars().items()}
    errors = _truth_errors(material, problem.medium, problem.scored_domain)
    return FWIResult(estimates, errors, time.perf_counter() - start, evaluations, history, shots[0][0].h,
                     shots[0][0].steps, material)
