r"""Sources: body forces :math:`\mathbf{f}(x, y, t) = \mathbf{p}(x, y)\, w(t)` of a spatial pattern and a wavelet.

A point source is spread in space by a normalised Gaussian of standard deviation :math:`\sigma` (a PINN cannot
represent a Dirac delta):

.. math::
    g(\mathbf{x}) = \frac{1}{2\pi\sigma^2} \exp\left(-\frac{|\mathbf{x} - \mathbf{x}_s|^2}{2\sigma^2}\right)

- :class:`PointForce`: :math:`\mathbf{f} = F\, \mathbf{d}\, g(\mathbf{x})\, w(t)`, ``F`` in N/m (a line force in
  plane strain), ``d`` a unit direction.
- :class:`Explosion`: an isotropic moment tensor :math:`M = M_0 I`, whose equivalent body force is
  :math:`f_i = -M_{ij}\partial_j \delta` (Aki & Richards 2002, eq. 3.23), here
  :math:`\mathbf{f} = -M_0 \nabla g(\mathbf{x})\, w(t)`, ``M0`` in N·m/m.

Wavelets are dimensionless functions of time: :class:`Ricker`, or :class:`FileWavelet` read from a file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pinn.physics.device_cache import device_cache


class Wavelet:
    """Base class: a dimensionless source time function ``w(t)``."""

    def __call__(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def max_frequency(self) -> float:
        """The highest frequency (Hz) the wavelet carries with significant energy."""
        raise NotImplementedError

    def peak_frequency(self) -> float:
        """The frequency (Hz) where the amplitude spectrum peaks: what sets the problem's time scale."""
        raise NotImplementedError


class Ricker(Wavelet):
    r"""Ricker wavelet :math:`w(t) = (1 - 2\pi^2 f_0^2 \tau^2)\, e^{-\pi^2 f_0^2 \tau^2}`, :math:`\tau = t - t_0`.

    Its amplitude spectrum peaks at f0 and falls to 3 % of the peak at 2.5 f0, taken as its highest frequency.

    Args:
        f0: Peak frequency (Hz), > 0.
        t0: Delay (s) of the peak; ``None`` takes 1.2 / f0, where the wavelet starts at 2e-5 of its peak.
    """

    def __init__(self, f0: float = 10.0, t0: float | None = None) -> None:
        if not (math.isfinite(f0) and f0 > 0):
            raise ValueError(f"wavelet f0={f0} must be a finite frequency > 0 (Hz).")
        self.f0 = float(f0)
        self.t0 = 1.2 / self.f0 if t0 is None else float(t0)
        if not math.isfinite(self.t0):
            raise ValueError(f"wavelet t0={t0} must be a finite delay (s).")

    def __call__(self, t: Tensor) -> Tensor:
        a = (math.pi * self.f0 * (t - self.t0)) ** 2
        return (1 - 2 * a) * torch.exp(-a)

    def max_frequency(self) -> float:
        return 2.5 * self.f0

    def peak_frequency(self) -> float:
        return self.f0


class FileWavelet(Wavelet):
    """A wavelet sampled in a file and interpolated linearly; zero before its first and after its last sample.

    The file is ``.npz`` with arrays ``t`` and ``w``, or text/CSV with two columns ``t, w`` (a header line is
    allowed). Times (s) must increase.

    Args:
        path: The file.
    """

    def __init__(self, path: str = "wavelet.csv") -> None:
        self.path = str(path)
        self.t, self.w = _read_wavelet(Path(path))  # (S,) float64 each

    def __call__(self, t: Tensor) -> Tensor:
        cache = device_cache(self)
        ts, ws = cache.like("t", lambda: self.t, t), cache.like("w", lambda: self.w, t)
        i = torch.searchsorted(ts, t.detach().contiguous()).clamp(1, len(ts) - 1)
        t0, t1, w0, w1 = ts[i - 1], ts[i], ws[i - 1], ws[i]
        out = w0 + (w1 - w0) * (t - t0) / (t1 - t0)
        return torch.where((t < ts[0]) | (t > ts[-1]), torch.zeros_like(out), out)

    def max_frequency(self) -> float:
        """Highest frequency where the amplitude spectrum exceeds 3 % of its peak."""
        freqs, spectrum = self._spectrum()
        return float(freqs[np.nonzero(spectrum >= 0.03 * spectrum.max())[0][-1]])

    def peak_frequency(self) -> float:
        """Frequency of the largest amplitude in the spectrum (the zero frequency left out)."""
        freqs, spectrum = self._spectrum()
        return float(freqs[1:][np.argmax(spectrum[1:])])

    def _spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        dt = float(np.min(np.diff(self.t)))
        grid = np.arange(self.t[0], self.t[-1] + dt, dt)
        spectrum = np.abs(np.fft.rfft(np.interp(grid, self.t, self.w), n=4 * len(grid)))
        return np.fft.rfftfreq(4 * len(grid), dt), spectrum


def _read_wavelet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        if path.suffix == ".npz":
            with np.load(path) as f:
                if "t" not in f or "w" not in f:
                    raise ValueError(f"wavelet path={path}: needs arrays 't' and 'w' (has {sorted(f.keys())}).")
                t, w = np.asarray(f["t"], np.float64), np.asarray(f["w"], np.float64)
        else:
            rows = [line.replace(",", " ").split() for line in path.read_text().splitlines() if line.strip()]
            if rows and not _is_number(rows[0][0]):
                rows = rows[1:]  # a header
            bad = next((i for i, r in enumerate(rows) if len(r) != 2 or not all(map(_is_number, r))), None)
            if bad is not None or not rows:
                raise ValueError(f"wavelet path={path}: line {bad} is not two numbers 't, w'." if rows
                                 else f"wavelet path={path}: holds no samples.")
            t, w = np.ascontiguousarray(np.array(rows, dtype=np.float64).T)
    except FileNotFoundError:
        raise FileNotFoundError(f"wavelet path={path}: no such file; give a .npz (t, w) or a two-column text "
                                "file.") from None
    except (OSError, EOFError, KeyError) as err:
        raise ValueError(f"wavelet path={path}: not readable ({err}).") from None
    if t.ndim != 1 or t.shape != w.shape or len(t) < 2:
        raise ValueError(f"wavelet path={path}: t and w must be 1-D with the same length >= 2.")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(w))):
        raise ValueError(f"wavelet path={path}: holds values that are not finite.")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"wavelet path={path}: times must increase.")
    return t, w


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Source:
    """Base class of a source spread by a Gaussian of standard deviation ``width`` around ``position``.

    Args:
        position: ``(x, y)`` of the source (m).
        width: Standard deviation sigma of the Gaussian (m), > 0.
        wavelet: Source time function; a Ricker wavelet of 10 Hz by default.
    """

    def __init__(self, position: tuple[float, float] = (0.0, 0.0), width: float = 1.0,
                 wavelet: Wavelet | None = None) -> None:
        self.position = tuple(float(p) for p in position)
        if len(self.position) != 2 or not all(map(math.isfinite, self.position)):
            raise ValueError(f"source position={list(position)} must be two finite coordinates (x, y) in m.")
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"source width={width} must be a standard deviation > 0 (m).")
        self.width = float(width)
        self.wavelet = wavelet if wavelet is not None else Ricker()

    def gaussian(self, xy: Tensor) -> tuple[Tensor, Tensor]:
        """``g`` ``(N,)`` (1/m^2) and the offsets ``xy - position`` ``(N, 2)``."""
        offset = xy - device_cache(self).like("position", lambda: self.position, xy)
        r2 = (offset**2).sum(-1)
        return torch.exp(-0.5 * r2 / self.width**2) / (2 * math.pi * self.width**2), offset

    def spatial(self, xy: Tensor) -> Tensor:
        """Force density per unit wavelet ``(N, 2)`` (N/m^3) at ``xy`` ``(N, 2)``."""
        raise NotImplementedError

    def force(self, xyt: Tensor) -> Tensor:
        """Body force ``(N, 2)`` (N/m^3) at points ``(N, 3)``."""
        return self.spatial(xyt[:, :2]) * self.wavelet(xyt[:, 2])[:, None]

    def check(self, domain, key: str) -> None:
        """Raise if the source lies outside the domain (``key`` names it in the message)."""
        (x, y), dx, dy = self.position, domain.x, domain.y
        if not (dx[0] <= x <= dx[1] and dy[0] <= y <= dy[1]):
            raise ValueError(f"{key}.position={[x, y]} lies outside the domain x={list(dx)}, y={list(dy)}; "
                             "move the source inside.")


    def weight_beyond(self, domain) -> dict[str, float]:
        r"""Fraction of the Gaussian's weight beyond each edge of ``domain``, by edge name: :math:`\Phi(-d/\sigma) =
        \tfrac12 \operatorname{erfc}(d / (\sigma\sqrt2))`, ``d`` the distance from the source in to the edge."""
        (x, y), dx, dy = self.position, domain.x, domain.y
        inside = {"bottom": y - dy[0], "right": dx[1] - x, "top": dy[1] - y, "left": x - dx[0]}
        return {edge: 0.5 * math.erfc(d / (self.width * math.sqrt(2))) for edge, d in inside.items()}


class PointForce(Source):
    """A point force ``F d`` (N/m) spread by a Gaussian (see the module docstring).

    Args:
        position: ``(x, y)`` of the source (m).
        amplitude: F, the force per unit length out of the plane (N/m).
        direction: Direction ``(dx, dy)`` of the force, normalised here; ``(0, -1)`` pushes down.
        width: Standard deviation of the Gaussian (m).
        wavelet: Source time function.
    """

    def __init__(self, position: tuple[float, float] = (0.0, 0.0), amplitude: float = 1.0,
                 direction: tuple[float, float] = (0.0, -1.0), width: float = 1.0,
                 wavelet: Wavelet | None = None) -> None:
        super().__init__(position, width, wavelet)
        norm = math.hypot(*direction) if len(direction) == 2 else 0.0
        if not (math.isfinite(norm) and norm > 0):
            raise ValueError(f"source direction={list(direction)} must be a non-zero vector (dx, dy).")
        if not math.isfinite(amplitude):
            raise ValueError(f"source amplitude={amplitude} must be finite (N/m).")
        self.amplitude, self.direction = float(amplitude), (direction[0] / norm, direction[1] / norm)

    def spatial(self, xy: Tensor) -> Tensor:
        g, _ = self.gaussian(xy)
        d = device_cache(self).like("direction", lambda: self.direction, xy)
        return self.amplitude * g[:, None] * d  # (N, 2)


class Explosion(Source):
    """An explosive (isotropic moment tensor ``M0 I``) source spread by a Gaussian (see the module docstring).

    Args:
        position: ``(x, y)`` of the source (m).
        moment: M0, the moment per unit length out of the plane (N·m/m); > 0 expands.
        width: Standard deviation of the Gaussian (m).
        wavelet: Source time function.
    """

    def __init__(self, position: tuple[float, float] = (0.0, 0.0), moment: float = 1.0, width: float = 1.0,
                 wavelet: Wavelet | None = None) -> None:
        super().__init__(position, width, wavelet)
        if not math.isfinite(moment):
            raise ValueError(f"source moment={moment} must be finite (N m/m).")
        self.moment = float(moment)

    def spatial(self, xy: Tensor) -> Tensor:
        g, offset = self.gaussian(xy)
        return self.moment * (g / self.width**2)[:, None] * offset  # -M0 grad g = M0 g (x - xs) / sigma^2
