r"""The finite-difference reference: the truth of a problem without a closed form, computed once and cached.

The solver (:mod:`pinn.problems.devito_solver`) integrates 2D isotropic elastodynamics (plane strain) in
velocity-stress form on a staggered grid (Virieux 1986, "P-SV wave propagation in heterogeneous media:
velocity-stress finite-difference method"), with Devito:

.. math::
    \rho\,\mathbf{v}_t = \nabla\cdot\sigma + \mathbf{f}, \qquad
    \sigma_t = \lambda\,\mathrm{tr}(\nabla\mathbf{v})\,I + \mu\,(\nabla\mathbf{v} + \nabla\mathbf{v}^T), \qquad
    \mathbf{u}_t = \mathbf{v}

with the problem's medium, sources, edges and initial state. The result is a :class:`Reference`: displacement and
velocity on the grid nodes of the physical domain at ``output_times`` evenly spaced times, saved as ``.npz`` under
``cache_dir`` by a key of the problem's content and the settings, and interpolated trilinearly in (t, y, x).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pinn.physics.device_cache import device_cache
from pinn.problems.files import atomic_write
from pinn.problems.reference_settings import ReferenceSettings, key_fields

SOLVER_VERSION = 2  # bump when the scheme changes, so that cached references are recomputed
_RECOMPUTE = "delete it and recompute it with `pinn reference -c CONFIG`"


class Reference:
    """A finite-difference solution on the nodes of the physical domain, SI units.

    Args:
        x: ``(nx,)`` node abscissae (m), increasing, evenly spaced.
        y: ``(ny,)`` node ordinates (m), increasing, evenly spaced.
        t: ``(nt,)`` snapshot times (s), increasing, evenly spaced.
        displacement: ``(nt, ny, nx, 2)`` displacement (u, v) (m).
        velocity: ``(nt, ny, nx, 2)`` velocity (m/s).
        meta: How it was computed (spacing, dt, steps, wall time, key, Devito version, ...).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, t: np.ndarray, displacement: np.ndarray, velocity: np.ndarray,
                 meta: dict | None = None) -> None:
        self.x, self.y, self.t = (np.asarray(a, np.float64) for a in (x, y, t))
        self.displacement = np.asarray(displacement, np.float64)
        self.velocity = np.asarray(velocity, np.float64)
        self.meta = dict(meta or {})
        self._check()

    def _check(self) -> None:
        shape = (len(self.t), len(self.y), len(self.x), 2)
        for name in ("x", "y", "t"):
            a = getattr(self, name)
            if a.ndim != 1 or len(a) < 2 or not np.all(np.isfinite(a)) or not np.all(np.diff(a) > 0):
                raise ValueError(f"axis {name} must be at least two finite increasing values (has shape {a.shape}).")
        for name in ("displacement", "velocity"):
            a = getattr(self, name)
            if a.shape != shape:
                raise ValueError(f"{name} has shape {a.shape}, expected (nt, ny, nx, 2) = {shape}.")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} has non-finite values.")

    def displacement_at(self, xyt: Tensor) -> Tensor:
        """Displacement ``(N, 2)`` at points ``(N, 3)`` (x, y, t), trilinear in (t, y, x), dtype/device of ``xyt``."""
        return self._interpolate("displacement", xyt)

    def velocity_at(self, xyt: Tensor) -> Tensor:
        """Velocity ``(N, 2)`` at points ``(N, 3)``, trilinear like :meth:`displacement_at`."""
        return self._interpolate("velocity", xyt)

    def _interpolate(self, name: str, xyt: Tensor) -> Tensor:
        data = device_cache(self).like(name, lambda: getattr(self, name), xyt)  # (nt, ny, nx, 2), copied once
        # The range check reads a value on the host: not while a CUDA graph captures the step (the same points' range
        # was checked in the eager warm-up steps before, and the pools' points lie in the domain)
        check = not (xyt.is_cuda and torch.cuda.is_current_stream_capturing())
        index, frac = [], []
        for col, axis in ((2, self.t), (1, self.y), (0, self.x)):  # t, y, x: the order of the data's axes
            q = xyt[:, col].detach()
            lo, hi, n = float(axis[0]), float(axis[-1]), len(axis)
            tol = 1e-9 * (hi - lo)
            if check and bool(((q < lo - tol) | (q > hi + tol)).any()):
                bad = ((q < lo - tol) | (q > hi + tol)).nonzero()[0, 0]
                raise ValueError(f"point {xyt[bad].tolist()} lies outside the reference's {'xyt'[col]} range "
                                 f"[{lo}, {hi}].")
            s = ((q - lo) / (hi - lo) * (n - 1)).clamp(0, n - 1)  # (N,) fractional node index
            i = s.floor().long().clamp(max=n - 2)
            index.append(i)
            frac.append((s - i).to(xyt.dtype))
        (it, iy, ix), (ft, fy, fx) = index, frac
        out = torch.zeros(xyt.shape[0], 2, dtype=xyt.dtype, device=xyt.device)
        for dt_, wt in ((0, 1 - ft), (1, ft)):
            for dy_, wy in ((0, 1 - fy), (1, fy)):
                for dx_, wx in ((0, 1 - fx), (1, fx)):
                    out = out + (wt * wy * wx)[:, None] * data[it + dt_, iy + dy_, ix + dx_]
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write ``.npz`` atomically (:func:`~pinn.problems.files.atomic_write`: a temporary file, fsync, rename)."""
        buffer = io.BytesIO()
        np.savez(buffer, x=self.x, y=self.y, t=self.t, displacement=self.displacement, velocity=self.velocity,
                 meta=np.array(json.dumps(self.meta, sort_keys=True)))
        atomic_write(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Reference:
        """Read a file written by :meth:`save`; a missing key, bad shape or non-finite value raises ``ValueError``."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = {"x", "y", "t", "displacement", "velocity", "meta"} - set(f.files)
                if missing:
                    raise ValueError(f"missing arrays {sorted(missing)}")
                arrays = {k: f[k] for k in ("x", "y", "t", "displacement", "velocity")}
                meta = json.loads(str(f["meta"]))
            return cls(**arrays, meta=meta)
        except FileNotFoundError:
            raise
        except Exception as err:  # a truncated zip, bad JSON, wrong shapes: all mean the file cannot be trusted
            raise ValueError(f"reference file {path} is corrupt or incomplete ({type(err).__name__}: {err}); "
                             f"{_RECOMPUTE}.") from None


def cache_key(problem, settings: ReferenceSettings | None = None) -> str:
    """Hex key of the problem's content, the settings that change the solution and the solver version."""
    s = settings or problem.reference
    settings = {k: v for k, v in key_fields(s).items() if k != "cache_dir"}
    described = {"problem": problem.content_key(), "settings": settings, "solver": SOLVER_VERSION}
    sponge = getattr(problem, "sponge", lambda: None)()
    if s.absorbing == "first_order" and sponge is not None:  # the PINN's own problem holds its sponge too
        described["sponge"] = sponge
    text = json.dumps(described, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def reference_path(problem) -> Path:
    """Where the problem's reference is cached: ``cache_dir / f"{key}.npz"``."""
    return Path(problem.reference.cache_dir) / f"{cache_key(problem)}.npz"


def solve(problem, settings: ReferenceSettings | None = None) -> Reference:
    """Run the finite-difference solver with ``settings`` (default ``problem.reference``)."""
    from pinn.problems.devito_solver import simulate  # Devito is imported only when a reference is computed

    settings = settings or problem.reference
    start = time.perf_counter()
    out = simulate(problem, settings)
    out["meta"].update(wall_time_s=round(time.perf_counter() - start, 3), key=cache_key(problem, settings))
    return Reference(**out)


def load_or_solve(problem, log=print, force: bool = False) -> Reference:
    """The cached reference of ``problem``; on a miss (or with ``force``) solve it, save it and log one line."""
    path = reference_path(problem)
    if path.exists() and not force:
        return Reference.load(path)
    ref = solve(problem)
    ref.save(path)
    m = ref.meta
    log(f"reference: computed {path} in {m['wall_time_s']:.1f} s ({len(ref.x)} x {len(ref.y)} nodes, "
        f"h = {m['spacing'][0]:.4g} m, {m['steps']} steps of {m['dt']:.3g} s)")
    return ref
