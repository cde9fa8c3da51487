r"""A problem is composed: Domain + Medium + Sources + Boundaries (per edge) + initial state + truth.

:class:`Problem` is the base every problem shares: the model and the data module read it and nothing else defines
the physics. Closed-form problems (:mod:`pinn.problems.closed_form`) are posed in non-dimensional units with their
exact solution as truth, exact Dirichlet edges and an exact initial state. :class:`WaveProblem` is the composition
for problems without a closed form, in SI units: a medium, sources, a boundary condition per edge, an initial state
at rest (or a reference snapshot at t0 > 0), and a Devito finite-difference reference as truth
(:mod:`pinn.problems.reference`). Points are ``(N, 3)`` columns ``(x, y, t)``; displacements ``(N, 2)`` columns
``(u, v)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import is_dataclass

import numpy as np
import torch
from torch import Tensor

from pinn.physics.elasticity import Material, traction
from pinn.physics.fields import Fields
from pinn.physics.media import Homogeneous, Medium, MediumValues
from pinn.physics.sources import Source
from pinn.physics.units import Scales, wave_scales
from pinn.problems.boundaries import Absorbing, Boundaries, Edge, Fixed
from pinn.problems.domain import EDGES, Domain
from pinn.problems.receivers import Receivers
from pinn.problems.reference_settings import ReferenceSettings, key_fields
from pinn.problems.shots import Shot, group_sources, shot_view, source_key


def _fingerprint(obj) -> object:
    """A JSON-able description of ``obj``'s content (arrays by their SHA-256), for cache keys."""
    if isinstance(obj, Edge):  # its short name, as when edges were strings, so cached references keep their key
        return _fingerprint(obj.content())
    if isinstance(obj, (Tensor, np.ndarray)):
        a = np.ascontiguousarray(obj.detach().cpu().numpy() if isinstance(obj, Tensor) else obj)
        return {"sha256": hashlib.sha256(a.tobytes()).hexdigest(), "shape": list(a.shape), "dtype": str(a.dtype)}
    if isinstance(obj, (list, tuple)):
        return [_fingerprint(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _fingerprint(v) for k, v in sorted(obj.items())}
    if is_dataclass(obj):
        return {type(obj).__name__: {k: _fingerprint(v) for k, v in key_fields(obj).items()}}
    if hasattr(obj, "__dict__"):
        return {type(obj).__name__: {k: _fingerprint(v) for k, v in sorted(vars(obj).items()) if not k.startswith("_")}}
    return repr(obj) if isinstance(obj, float) else obj


class Problem:
    """Base class of an elastic-wave problem on a :class:`Domain` with a :class:`Material`.

    Subclasses with a closed-form solution implement :meth:`displacement`, :meth:`velocity` and
    :meth:`gradient`; the boundary and initial data default to that solution.
    """

    def __init__(self, domain: Domain | None = None, material: Material | None = None) -> None:
        self.domain = domain or Domain()
        self.material = material or Material()
        m = self.material
        self.medium: Medium = Homogeneous(lam=m.lam, mu=m.mu, rho=m.rho)  # what the reference solver reads
        self.rest_time = self.domain.t[0]  # a reference simulation starts from the exact state here

    has_exact: bool = True
    sources: tuple[Source, ...] = ()
    boundaries: Boundaries = Boundaries("exact", "exact", "exact", "exact")
    initial: str = "exact"
    receivers: Receivers | None = None
    reference: ReferenceSettings = ReferenceSettings()

    @property
    def scales(self) -> Scales:
        """Characteristic scales (:mod:`pinn.physics.units`); 1 for problems posed without units."""
        return Scales()

    @property
    def scored_domain(self) -> Domain:
        """The box that validation, predictions and receivers cover: the training domain, unless it is padded."""
        return self.domain

    def material_at(self, xy: Tensor) -> Material | MediumValues:
        """The material at points ``xy`` ``(N, 2)`` for the residual and tractions."""
        return self.material

    def damping(self, xy: Tensor) -> Tensor | None:
        """A damping rate (1/s) in the PDE at points ``xy`` ``(N, 2)``, or ``None`` (none): see
        :meth:`WaveProblem.damping`."""
        return None

    def truth(self, xyt: Tensor) -> Tensor:
        """The displacement ``(N, 2)`` that validation compares with: the closed form here."""
        return self.displacement(xyt)

    @property
    def n_shots(self) -> int:
        """How many shots (wavefields in one medium, :mod:`pinn.problems.shots`) the problem has."""
        return 1

    def shot(self, k: int) -> Problem:
        """Shot ``k`` as a problem of one shot: the problem itself when it has one."""
        if k != 0:
            raise IndexError(f"shot {k} of a problem of one shot")
        return self

    def content_key(self) -> str:
        """SHA-256 (hex, 16 characters) of everything that defines the solution (not receivers, not scales)."""
        skip = {"receivers"}
        description = {type(self).__name__: {k: _fingerprint(v) for k, v in sorted(vars(self).items())
                                             if k not in skip and not k.startswith("_")}}
        return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]

    def max_frequency(self) -> float:
        """Highest frequency (Hz) of the solution, which sets a finite-difference grid."""
        raise NotImplementedError(f"{type(self).__name__} gives no maximum frequency")

    def displacement(self, xyt: Tensor) -> Tensor:
        """Exact displacement ``(N, 2)``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form displacement")

    def velocity(self, xyt: Tensor) -> Tensor:
        """Exact velocity ``(N, 2)`` = d(u, v)/dt."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form velocity")

    def gradient(self, xyt: Tensor) -> Tensor:
        """Exact spatial displacement gradient ``(N, 2, 2)``, entry ``[i, j] = d u_i / d x_j``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form gradient")

    def body_force(self, xyt: Tensor) -> Tensor | None:
        """Body force ``(N, 2)``, or ``None`` when there is none."""
        return None

    def boundary_displacement(self, xyt: Tensor) -> Tensor:
        """Dirichlet data on the boundary ``(N, 2)``."""
        return self.displacement(xyt)

    def initial_displacement(self, xyt: Tensor) -> Tensor:
        """Displacement at t = t0, ``(N, 2)``."""
        return self.displacement(xyt)

    def initial_velocity(self, xyt: Tensor) -> Tensor:
        """Velocity at t = t0, ``(N, 2)``."""
        return self.velocity(xyt)

    def traction(self, xyt: Tensor, normal: Tensor) -> Tensor:
        """Exact traction ``sigma . n`` ``(N, 2)`` from the closed-form gradient."""
        g = self.gradient(xyt)  # (N, 2, 2)
        f = Fields(u=xyt[:, 0] * 0, v=xyt[:, 0] * 0, u_x=g[:, 0, 0], u_y=g[:, 0, 1], v_x=g[:, 1, 0], v_y=g[:, 1, 1])
        return traction(f, self.material_at(xyt[:, :2]), normal)


def padded(domain: Domain, boundaries: Boundaries, width: float) -> Domain:
    """``domain`` widened by ``width`` beyond each absorbing edge."""
    grow = {name: width if isinstance(edge, Absorbing) else 0.0 for name, edge in zip(EDGES, boundaries.edges())}
    return Domain(x=(domain.x[0] - grow["left"], domain.x[1] + grow["right"]),
                  y=(domain.y[0] - grow["bottom"], domain.y[1] + grow["top"]), t=domain.t)


class WaveProblem(Problem):
    """An elastic-wave problem in SI units without a closed form: a medium, sources, a condition per edge, an
    initial state, receivers, and a Devito finite-difference solution as truth (computed once and cached, see
    :mod:`pinn.problems.reference`).

    Args:
        domain: The space-time box (m, m, s).
        medium: Lamé parameters and density in space (:mod:`pinn.physics.media`); homogeneous by default.
        sources: Body-force sources (:mod:`pinn.physics.sources`), any number, fired together: one shot.
        boundaries: Condition on each edge: ``fixed``, ``free`` or ``absorbing``.
        initial: ``rest`` (zero displacement and velocity at t0) or ``snapshot``: the medium is at rest at
            ``rest_time`` < t0, and the displacement and velocity at t0 come from the reference solution, which
            avoids the singular early source (Moseley et al. 2020, "Solving the wave equation with physics-informed
            deep learning"; the seismic example of NVIDIA PhysicsNeMo).
        rest_time: With ``snapshot``: the time (s) at which the medium is at rest and the sources' clock starts.
        receivers: Where seismograms are recorded (``pinn predict`` writes them).
        reference: Grid and cache of the finite-difference reference.
        displacement_scale: Characteristic displacement U (m) of the network's output; ``None`` takes the largest
            displacement of the reference solution (computed first if it is not cached), so that the network's
            output is O(1).
        time_scale: How the time scale T is chosen: ``period`` (T = 1 / (2 pi f), f the highest peak frequency of
            the sources' wavelets, so that every loss term of a wave is O(1)) or ``crossing`` (T = L / vp_max with L
            the larger side of the domain: the scales before version 0.2, for configs whose loss weights were tuned
            to them).
        padding: Width (m) added outside each absorbing edge. An absorbing edge means that the medium goes on
            beyond it, as the reference's perfectly matched layer models; the PINN's first-order condition reflects
            part of an oblique wave. With padding the PINN trains on the widened box, whose own edges absorb, and is
            scored (validation, predictions, receivers) on ``domain``: what its edges reflect must cross the padding
            twice before it reaches ``domain``. The reference is computed on the widened box too.
        padding_reflection: ``None`` (the default): no damping, the padding only delays what the outer edges
            reflect. A number R: the PDE gets a damping term rho d u_t in the padding (a sponge), d rising as the
            square of the depth into it to d0 = 3 vp_max ln(1/R) / (2 padding), the profile of a perfectly matched
            layer of normal-incidence reflection R (Collino & Tsogka 2001). Within the shipped windows the undamped
            padding was the better model at every width measured, since a damping term reflects where it rises
            (``benchmarks/absorbing.py``, docs/windows.md); a sponge pays off only once the outer edges' reflections
            would come back within the window.
        shots: Several shots instead of ``sources``: ``[{sources: [...]}, ...]``, one wavefield each in the same
            medium, recorded by the same receivers (:mod:`pinn.problems.shots`).
    """

    has_exact = False

    def __init__(self, domain: Domain | None = None, medium: Medium | None = None, sources: list[Source] | None = None,
                 boundaries: Boundaries | None = None, initial: str = "rest", rest_time: float = 0.0,
                 receivers: Receivers | None = None, reference: ReferenceSettings | None = None,
                 displacement_scale: float | None = None, time_scale: str = "period", padding: float = 0.0,
                 padding_reflection: float | None = None, shots: list[Shot] | None = None) -> None:
        boundaries = boundaries or Boundaries()
        if not (math.isfinite(padding) and padding >= 0):
            raise ValueError(f"padding={padding} must be a width >= 0 (m).")
        # private: the reference is the solution on the (padded) domain, so the scored box stays out of its key
        self._physical = domain or Domain()
        self.domain = padded(self._physical, boundaries, float(padding))
        self.medium = medium or Homogeneous(vp=2000.0, vs=1000.0, rho=2000.0)
        # private: a problem of one shot keeps the cache key it had before shots; each shot's view has its own
        self._shots = group_sources(sources, shots)
        self._views: dict = {}  # shot index -> its problem, once asked for
        self.sources = list(self._shots[0])  # the first shot's: what a problem of one shot reads
        self.boundaries = boundaries
        self.initial = initial
        self.receivers = receivers
        self.reference = reference or ReferenceSettings()
        self._reference = None  # the solution, once loaded
        self._check(rest_time)
        self.rest_time = float(rest_time) if initial == "snapshot" else self.domain.t[0]
        if displacement_scale is not None and not (math.isfinite(displacement_scale) and displacement_scale > 0):
            raise ValueError(f"displacement_scale={displacement_scale} must be a displacement > 0 (m) or null.")
        self._displacement_scale = displacement_scale
        if time_scale not in ("period", "crossing"):
            raise ValueError(f"time_scale={time_scale!r} must be 'period' or 'crossing'.")
        self._time_scale = time_scale  # private: the scales do not change the solution, nor the reference's key
        if padding_reflection is not None and not 0 < padding_reflection < 1:
            raise ValueError(f"padding_reflection={padding_reflection} must be in (0, 1) or null.")
        self._padding = (float(padding), padding_reflection)
        self._damping_peak: float | None = None  # d0, once computed
        self._scales: Scales | None = None

    def _check(self, rest_time: float) -> None:
        self.medium.check(self.domain)
        for k, sources in enumerate(self._shots):
            for i, source in enumerate(sources):
                source.check(self.domain, source_key(self._shots, k, i))
                self._check_source_edges(source_key(self._shots, k, i), source)
        if self.receivers is not None:
            self.receivers.check(self._physical)
        if "exact" in self.boundaries.kinds():
            raise ValueError("boundaries: 'exact' needs a closed-form solution; use fixed, free or absorbing.")
        if self.initial not in ("rest", "snapshot"):
            raise ValueError(f"initial={self.initial!r} must be 'rest' or 'snapshot'.")
        if self.initial == "snapshot" and not rest_time < self.domain.t[0]:
            raise ValueError(f"rest_time={rest_time} must be earlier than the domain's t0={self.domain.t[0]} for "
                             "initial: snapshot (the reference runs from rest_time and hands over at t0).")
        if not self.sources and self.initial == "rest":
            raise ValueError("sources is empty and the initial state is rest: nothing would move; add a source.")

    def _check_source_edges(self, key: str, source: Source) -> None:
        """Warn (one line) where more than 1 % of a source's Gaussian lies beyond an absorbing or fixed edge: the
        force there is lost, and an edge condition applied inside the source's near field misleads the PINN."""
        edges = dict(zip(EDGES, self.boundaries.edges()))
        for name, share in source.weight_beyond(self.domain).items():
            if isinstance(edges[name], (Absorbing, Fixed)) and share > 0.01:
                warnings.warn(f"{key} at {list(source.position)}: {share:.1%} of its Gaussian (width "
                              f"{source.width:g} m) lies beyond the {edges[name].kind} {name} edge; move it at least "
                              f"{2.33 * source.width:.3g} m inside that edge or narrow it.", stacklevel=3)

    @property
    def displacement_scale(self) -> float | None:
        """The displacement scale U (m) the config gives, or None: then :attr:`scales` takes it from the reference."""
        return self._displacement_scale

    @property
    def time_scale(self) -> str:
        """How :attr:`scales` picks the time scale: ``period`` (of the sources) or ``crossing`` (of the domain)."""
        return self._time_scale

    @property
    def scales(self) -> Scales:
        r"""Scales from the waves (see :mod:`pinn.physics.units`): T = 1 / omega with omega = 2 pi f_peak, the
        highest peak frequency of the sources' wavelets, and L = vp_max T (a wavelength over 2 pi), so that a wave's
        displacement, velocity, traction and PDE residual all divide to O(1): the residual of a wave of amplitude U
        is about rho omega^2 U = R U / T^2, its traction rho vp omega U = S U / L. R = rho_max, U =
        ``displacement_scale`` or the largest displacement of the reference. With ``time_scale: crossing`` (or no
        source), L is the larger side of the domain and T = L / vp_max, the crossing time."""
        if self._scales is None:
            ext = self.medium.extremes(self.domain, 41)
            u = self._displacement_scale
            if u is None:  # the largest of every shot's
                u = max(float(abs(self.shot(k).solution().displacement).max()) for k in range(self.n_shots)) or 1.0
            self._scales = wave_scales(ext["vp_max"], ext["rho_max"], float(u), self.peak_frequency(), self.side(),
                                       self._time_scale)
        return self._scales

    @property
    def material(self) -> Material:
        """The constant material of a homogeneous medium (what an inverse run starts from)."""
        if not isinstance(self.medium, Homogeneous):
            raise ValueError(f"this problem's medium is {type(self.medium).__name__}; a constant material (e.g. "
                             "model.unknowns) needs a Homogeneous medium.")
        return Material(self.medium.lam, self.medium.mu, self.medium.rho)

    def material_at(self, xy: Tensor) -> MediumValues:
        return self.medium.values(xy)

    def max_frequency(self) -> float:
        return max((s.wavelet.max_frequency() for shot in self._shots for s in shot), default=0.0)

    def peak_frequency(self) -> float:
        """The highest peak frequency (Hz) of the sources' wavelets, 0 without sources: it sets the time scale."""
        return max((s.wavelet.peak_frequency() for shot in self._shots for s in shot), default=0.0)

    @property
    def n_shots(self) -> int:
        return len(self._shots)

    def shot(self, k: int) -> WaveProblem:
        """Shot ``k`` as a problem of one shot (:func:`~pinn.problems.shots.shot_view`); the problem itself when
        it has one shot."""
        if not 0 <= k < self.n_shots:
            raise IndexError(f"shot {k} of a problem of {self.n_shots} shots")
        if self.n_shots == 1:
            return self
        if k not in self._views:
            self._views[k] = shot_view(self, k)
        return self._views[k]

    def side(self) -> float:
        """The larger side of the domain (m)."""
        return max(self._physical.x[1] - self._physical.x[0], self._physical.y[1] - self._physical.y[0])

    @property
    def scored_domain(self) -> Domain:
        return self._physical

    def sponge(self) -> dict | None:
        """The padding's damping layer as it enters the PDE (width, normal-incidence reflection), or ``None``."""
        width, reflection = self._padding
        return None if width == 0 or reflection is None else {"width": width, "reflection": reflection}

    def damping(self, xy: Tensor) -> Tensor | None:
        """The sponge's damping rate d ``(N,)`` (1/s) at points ``xy`` ``(N, 2)``: 0 in the scored domain, d0 r^2 at
        depth r (a fraction of ``padding``) beyond an absorbing edge; ``None`` without a damped padding."""
        width, reflection = self._padding
        if width == 0 or reflection is None:
            return None
        p, d = self._physical, self.domain
        depth = torch.zeros_like(xy[:, 0])
        for axis, (lo, hi), (outer_lo, outer_hi) in ((0, p.x, d.x), (1, p.y, d.y)):
            q = xy[:, axis]
            if outer_lo < lo:
                depth = torch.maximum(depth, ((lo - q) / width).clamp(0, 1))
            if outer_hi > hi:
                depth = torch.maximum(depth, ((q - hi) / width).clamp(0, 1))
        if self._damping_peak is None:
            vp_max = self.medium.extremes(self.domain, 41)["vp_max"]
            self._damping_peak = 3 * vp_max * math.log(1 / reflection) / (2 * width)
        return self._damping_peak * depth**2

    def body_force(self, xyt: Tensor) -> Tensor | None:
        if not self.sources:
            return None
        return sum(s.force(xyt) for s in self.sources)

    # ---- the reference solution ----------------------------------------------------------------------------
    def solution(self, log=print):
        """The finite-difference reference (:class:`pinn.problems.reference.Reference`): loaded from the cache,
        computed first if it is missing."""
        if self._reference is None:
            from pinn.problems.reference import load_or_solve  # Devito is imported only when a reference is needed

            self._reference = load_or_solve(self, log=log)
        return self._reference

    def truth(self, xyt: Tensor) -> Tensor:
        return self.solution().displacement_at(xyt)

    def displacement(self, xyt: Tensor) -> Tensor:
        raise NotImplementedError("WaveProblem has no closed-form displacement; its truth is the reference solution")

    def initial_displacement(self, xyt: Tensor) -> Tensor:
        return torch.zeros_like(xyt[:, :2]) if self.initial == "rest" else self.solution().displacement_at(xyt)

    def initial_velocity(self, xyt: Tensor) -> Tensor:
        return torch.zeros_like(xyt[:, :2]) if self.initial == "rest" else self.solution().velocity_at(xyt)
