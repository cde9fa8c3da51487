r"""Displacement observations for inverse problems: sensor samples ``(M, 5)``, columns ``(x, y, t, u, v)``.

Two sources, chosen in YAML by class:

- :class:`SyntheticObservations`: sensors placed in the domain, sampled at evenly spaced times, read from the
  problem's exact solution, plus Gaussian noise whose standard deviation is ``noise`` times the RMS of the
  clean displacement (``noise: 0.01`` is "1 % noise"). Reproducible: all randomness comes from its own seed.
- :class:`FileObservations`: measurements from a ``.npz`` (arrays ``x, y, t, u, v`` of equal length) or a
  ``.csv`` (a header naming the columns ``x, y, t, u, v`` in any order, extra columns ignored, one sample per
  row), read by :mod:`pinn.io.observation_files`.

The data term of the loss is the mean squared misfit :math:`\frac1M\sum_m |\hat{\mathbf u}(x_m, y_m, t_m) -
\mathbf u_m|^2`, summed over the shots of a problem of several (:mod:`pinn.problems.shots`): :meth:`Observations.
load_shots` gives each shot's samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinn.io.observation_files import read_observations
from pinn.physics.inversion import plane_points
from pinn.problems.closed_form import Problem
from pinn.training.sampling import SAMPLERS, Sampler, sample


def at_times(xy: Tensor, domain, n_times: int) -> Tensor:
    """Positions ``xy`` ``(S, 2)`` at ``n_times`` times evenly spaced over the domain's window, ends included:
    ``(S*T, 3)``, time slowest."""
    t = torch.linspace(domain.t[0], domain.t[1], n_times, dtype=torch.float64)
    return torch.cat([xy.repeat(n_times, 1), t.repeat_interleave(len(xy))[:, None]], dim=-1)


class Observations:
    """Base class of an observation source; :meth:`load` returns the samples ``(M, 5)`` in float64 (a float32
    model reads them rounded, a float64 one exactly), NaN where a component is not recorded.

    ``quantity`` says what ``u, v`` are: ``displacement`` (m) or particle ``velocity`` (m/s, what geophones record).
    ``knows_truth`` says whether the problem's own material is the truth behind the data (synthetic data), so that
    an inverse run can report its error against it.
    """

    quantity: str = "displacement"
    knows_truth: bool = False

    def load(self, problem: Problem) -> Tensor:
        raise NotImplementedError

    def load_shots(self, problem: Problem) -> list[Tensor]:
        """The samples of each shot of ``problem``, ``[(M_k, 5)]``: one for a problem of one shot."""
        if problem.n_shots > 1:
            raise ValueError(f"data.observations: {type(self).__name__} holds the recordings of one shot, and "
                             f"data.problem has {problem.n_shots} shots; use ReferenceObservations, or one shot.")
        return [self.load(problem)]

    def init_args(self) -> dict:
        """The constructor arguments, as plain data."""
        raise NotImplementedError

    def config(self) -> dict:
        """``{"class_path", "init_args"}`` as in YAML: how hyper-parameters and checkpoints record the source."""
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": self.init_args()}


class SyntheticObservations(Observations):
    """Sensors reading the problem's exact displacement, with optional Gaussian noise.

    Args:
        n_sensors: Number of sensor positions in the spatial domain.
        layout: How the sensors are placed on the (x, y) rectangle: ``uniform``, ``lhs``, ``sobol`` or
            ``grid`` (see ``pinn.training.sampling``).
        n_times: Samples per sensor, evenly spaced over [t0, t1] (both ends included).
        noise: Relative noise level: Gaussian noise of standard deviation ``noise * RMS(clean u, v)`` is added.
        seed: Seed of the sensor layout and the noise (independent of the data module's seed).
    """

    def __init__(
        self, n_sensors: int = 200, layout: Sampler = "lhs", n_times: int = 21, noise: float = 0.0, seed: int = 0
    ) -> None:
        if n_sensors < 1:
            raise ValueError(f"data.observations.n_sensors={n_sensors} must be >= 1.")
        if n_times < 1:
            raise ValueError(f"data.observations.n_times={n_times} must be >= 1.")
        if layout not in SAMPLERS:
            raise ValueError(f"data.observations.layout={layout!r} must be one of {SAMPLERS}.")
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"data.observations.noise={noise} must be a finite number >= 0.")
        self.n_sensors, self.layout, self.n_times, self.noise, self.seed = n_sensors, layout, n_times, noise, seed

    knows_truth = True

    def init_args(self) -> dict:
        return {"n_sensors": self.n_sensors, "layout": self.layout, "n_times": self.n_times, "noise": self.noise,
                "seed": self.seed}

    def load(self, problem: Problem) -> Tensor:
        if not problem.has_exact:
            raise ValueError(
                f"SyntheticObservations needs an exact solution, and {type(problem).__name__} has none; "
                "use FileObservations with measured data instead."
            )
        g = torch.Generator().manual_seed(self.seed)
        d = problem.domain
        unit = sample(self.layout, self.n_sensors, 2, g).double()  # (S, 2)
        xy = d.initial_from_unit(unit)[:, :2]  # sensor positions in the x-y rectangle
        xyt = at_times(xy, d, self.n_times)  # (S*T, 3)
        uv = problem.displacement(xyt)  # (S*T, 2), float64
        if self.noise > 0:
            sigma = self.noise * uv.pow(2).mean().sqrt()
            uv = uv + sigma * torch.randn(uv.shape, generator=g, dtype=torch.float64)
        return torch.cat([xyt, uv], dim=-1)  # (S*T, 5)


QUANTITIES = ("displacement", "velocity")
COMPONENTS = ("uv", "u", "v")
LAYOUTS = ("receivers", "snapshots")


class ReferenceObservations(Observations):
    """Observations simulated by the finite-difference reference on the problem's (true) medium, with noise.

    The data of a synthetic inverse test without an "inverse crime": they come from Devito
    (:mod:`pinn.problems.reference`), never from the PINN or a closed form, and the inverse run sees nothing of the
    true medium but them.

    Args:
        layout: ``receivers``: time series at the problem's receivers (a line of geophones); ``snapshots``:
            full-field snapshots on a ``grid`` of points spanning the domain (ultrasound displacement tracking).
        grid: Points ``[nx, ny]`` of a snapshot, edges included (``snapshots`` only).
        n_times: Samples per receiver, or snapshots, evenly spaced over the domain's time window, ends included.
        components: ``uv`` both, ``u`` horizontal only, ``v`` vertical only (the other is NaN, not recorded).
        quantity: ``displacement`` or particle ``velocity``.
        noise: Relative noise level: Gaussian noise of standard deviation ``noise * RMS(recorded values)``.
        seed: Seed of the noise.
    """

    knows_truth = True

    def __init__(self, layout: str = "receivers", grid: tuple[int, int] = (21, 21), n_times: int = 51,
                 components: str = "uv", quantity: str = "displacement", noise: float = 0.0, seed: int = 0) -> None:
        key = "data.observations"
        for name, value, choices in (("layout", layout, LAYOUTS), ("components", components, COMPONENTS),
                                     ("quantity", quantity, QUANTITIES)):
            if value not in choices:
                raise ValueError(f"{key}.{name}={value!r} must be one of {choices}.")
        grid = [int(n) for n in grid]
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"{key}.grid={grid} must be two point counts [nx, ny], each >= 1.")
        if n_times < 1:
            raise ValueError(f"{key}.n_times={n_times} must be >= 1.")
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"{key}.noise={noise} must be a finite number >= 0.")
        self.layout, self.grid, self.n_times, self.components = layout, grid, int(n_times), components
        self.quantity, self.noise, self.seed = quantity, float(noise), int(seed)

    def init_args(self) -> dict:
        return {"layout": self.layout, "grid": list(self.grid), "n_times": self.n_times, "components": self.components,
                "quantity": self.quantity, "noise": self.noise, "seed": self.seed}

    def positions(self, problem: Problem) -> Tensor:
        """The recording positions ``(S, 2)`` (m)."""
        if self.layout == "receivers":
            if problem.receivers is None:
                raise ValueError("data.observations.layout=receivers, but data.problem has no receivers: add a "
                                 "receivers section (e.g. line: {start, end, count}) or use layout: snapshots.")
            return problem.receivers.positions_array().double()
        return plane_points(problem.domain, *self.grid)

    def load_shots(self, problem: Problem) -> list[Tensor]:
        """Each shot's recordings, simulated by its own reference; shot k's noise is drawn from seed + k, so the
        shots' noise is independent and shot 0's is that of a problem of one shot."""
        return [self.load(problem.shot(k), k) for k in range(problem.n_shots)]

    def load(self, problem: Problem, shot: int = 0) -> Tensor:
        """The recordings ``(S*T, 5)`` of a problem of one shot; ``shot`` offsets the noise's seed."""
        if problem.has_exact:
            raise ValueError(f"ReferenceObservations simulates the data with the finite-difference reference, and "
                             f"{type(problem).__name__} has a closed form: use SyntheticObservations for it.")
        xyt = at_times(self.positions(problem), problem.domain, self.n_times)  # (S*T, 3)
        reference = problem.solution()
        uv = (reference.displacement_at if self.quantity == "displacement" else reference.velocity_at)(xyt).double()
        if self.components != "uv":
            uv[:, 1 if self.components == "u" else 0] = math.nan
        if self.noise > 0:
            g = torch.Generator().manual_seed(self.seed + shot)
            seen = torch.isfinite(uv)
            sigma = self.noise * uv[seen].pow(2).mean().sqrt()
            uv = uv + sigma * torch.randn(uv.shape, generator=g, dtype=torch.float64)
        return torch.cat([xyt, uv], dim=-1)  # (S*T, 5)


class FileObservations(Observations):
    """Measurements read from a ``.npz`` or ``.csv`` file with columns ``x, y, t, u, v``.

    The file is read and checked when the object is built, so a malformed file stops a run before anything
    is written.

    Args:
        path: The file; every sample must lie inside the problem's domain.
        quantity: What ``u, v`` are: ``displacement`` (m) or particle ``velocity`` (m/s).
    """

    def __init__(self, path: str = "observations.csv", quantity: str = "displacement") -> None:
        if quantity not in QUANTITIES:
            raise ValueError(f"data.observations.quantity={quantity!r} must be one of {QUANTITIES}.")
        self.path, self.quantity = str(path), quantity
        self.samples = read_observations(self.path)  # (M, 5)

    def init_args(self) -> dict:
        return {"path": self.path, "quantity": self.quantity}

    def load(self, problem: Problem) -> Tensor:
        obs, d = self.samples, problem.domain
        lo = torch.tensor(d.lower, dtype=obs.dtype)
        hi = torch.tensor(d.upper, dtype=obs.dtype)
        outside = ((obs[:, :3] < lo) | (obs[:, :3] > hi)).any(-1).nonzero()
        if len(outside):
            i = int(outside[0])
            raise ValueError(
                f"{self.path}: sample {i} (x, y, t) = {obs[i, :3].tolist()} lies outside the problem's domain "
                f"x={list(d.x)}, y={list(d.y)}, t={list(d.t)}; fix the sample or the domain."
            )
        return obs.clone()
