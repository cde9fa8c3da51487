r"""A gridded medium read from ``.npz``, interpolated by cubic convolution (Keys 1981) so that its gradients, which
the conservative residual needs, are continuous."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pinn.physics.device_cache import device_cache
from pinn.physics.media import Medium


def _cubic_weights(s: Tensor) -> Tensor:
    """Cubic-convolution weights (Keys 1981, a = -1/2) of the 4 neighbours at offsets -1, 0, 1, 2; ``(N, 4)``.

    The interpolant is C1 and exact for quadratics, so the medium's gradient is continuous across grid cells."""
    s2, s3 = s * s, s * s * s
    return torch.stack([-0.5 * s3 + s2 - 0.5 * s, 1.5 * s3 - 2.5 * s2 + 1, -1.5 * s3 + 2 * s2 + 0.5 * s,
                        0.5 * s3 - 0.5 * s2], dim=-1)


class GridMedium(Medium):
    """A gridded model read from ``.npz``: ``x (nx,)``, ``y (ny,)`` evenly spaced and increasing (m), and ``vp``,
    ``vs``, ``rho`` of shape ``(ny, nx)`` (m/s, m/s, kg/m^3), interpolated by cubic convolution (C1, Keys 1981) of
    ``lam``, ``mu`` and ``rho``.

    Args:
        path: The ``.npz`` file.
        smoothing: Standard deviation (m) of a Gaussian filter applied to the grid before interpolation, so that
            sharp contrasts become widths a network can follow; 0 leaves the grid as it is.
    """

    def __init__(self, path: str = "model.npz", smoothing: float = 0.0) -> None:
        self.path = str(path)
        if not (math.isfinite(smoothing) and smoothing >= 0):
            raise ValueError(f"medium.smoothing={smoothing} must be a width >= 0 (m).")
        self.smoothing = float(smoothing)
        x, y, vp, vs, rho = read_grid(Path(path))
        lam_mu_rho = np.stack([rho * (vp**2 - 2 * vs**2), rho * vs**2, rho])  # (3, ny, nx)
        if smoothing > 0:
            lam_mu_rho = _gaussian_filter(lam_mu_rho, smoothing / (x[1] - x[0]), smoothing / (y[1] - y[0]))
        self.x0, self.dx, self.y0, self.dy = float(x[0]), float(x[1] - x[0]), float(y[0]), float(y[1] - y[0])
        self.xmax, self.ymax = float(x[-1]), float(y[-1])
        self.grid = torch.from_numpy(lam_mu_rho)  # (3, ny, nx) float64

    def check(self, domain) -> None:
        if domain.x[0] < self.x0 or domain.x[1] > self.xmax or domain.y[0] < self.y0 or domain.y[1] > self.ymax:
            raise ValueError(f"medium.path={self.path}: the grid covers x in [{self.x0}, {self.xmax}], y in "
                             f"[{self.y0}, {self.ymax}], not the domain x={list(domain.x)}, y={list(domain.y)}; "
                             "extend the grid or shrink the domain.")

    def properties(self, xy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        grid = device_cache(self).like("grid", lambda: self.grid, xy)
        out = cubic_sample(grid, self.x0, self.dx, self.y0, self.dy, xy)  # (3, N)
        return out[0], out[1], out[2]


def cubic_sample(grid: Tensor, x0: float, dx: float, y0: float, dy: float, xy: Tensor) -> Tensor:
    """Cubic convolution of ``grid`` ``(C, ny, nx)`` (nodes at ``x0 + i dx``, ``y0 + j dy``) at ``xy`` ``(N, 2)``;
    ``(C, N)``. Outside the grid the edge values extend."""
    ny, nx = grid.shape[1:]
    fx, fy = (xy[:, 0] - x0) / dx, (xy[:, 1] - y0) / dy
    ix, iy = fx.detach().floor(), fy.detach().floor()
    wx, wy = _cubic_weights(fx - ix), _cubic_weights(fy - iy)  # (N, 4) each
    offsets = torch.arange(-1, 3, device=xy.device)
    cols = (ix.long()[:, None] + offsets).clamp(0, nx - 1)  # (N, 4)
    rows = (iy.long()[:, None] + offsets).clamp(0, ny - 1)
    patch = grid[:, rows[:, :, None], cols[:, None, :]]  # (C, N, 4, 4)
    return torch.einsum("qnij,ni,nj->qn", patch, wy, wx)


def read_grid(path: Path, key: str = "medium.path") -> tuple[np.ndarray, ...]:
    """Read and check a gridded model ``x, y, vp, vs, rho``; every problem is named with the setting ``key``, the file
    and what to do."""
    try:
        with np.load(path) as f:
            arrays = {k: np.asarray(f[k], dtype=np.float64) for k in ("x", "y", "vp", "vs", "rho") if k in f}
    except FileNotFoundError:
        raise FileNotFoundError(f"{key}={path}: no such file; give the .npz gridded model.") from None
    except Exception as err:  # a corrupt or non-npz file
        raise ValueError(f"{key}={path}: not a readable .npz file ({err}).") from None
    missing = [k for k in ("x", "y", "vp", "vs", "rho") if k not in arrays]
    if missing:
        raise ValueError(f"{key}={path}: missing arrays {missing}; it needs x (nx,), y (ny,), "
                         "vp, vs, rho (ny, nx).")
    x, y = arrays["x"], arrays["y"]
    if x.ndim != 1 or y.ndim != 1 or len(x) < 2 or len(y) < 2:
        raise ValueError(f"{key}={path}: x and y must be 1-D axes with at least 2 values.")
    for name, axis in (("x", x), ("y", y)):
        steps = np.diff(axis)
        if not np.all(np.isfinite(axis)) or steps.min() <= 0 or not np.allclose(steps, steps[0], rtol=1e-6):
            raise ValueError(f"{key}={path}: {name} must be finite, increasing and evenly spaced.")
    for name in ("vp", "vs", "rho"):
        a = arrays[name]
        if a.shape != (len(y), len(x)):
            raise ValueError(f"{key}={path}: {name} has shape {a.shape}, expected (ny, nx) = {(len(y), len(x))}.")
        bad = np.argwhere(~np.isfinite(a))
        if len(bad):
            raise ValueError(f"{key}={path}: {name} is not finite at (row, column) {tuple(map(int, bad[0]))} "
                             f"({len(bad)} values); fill the grid.")
    vp, vs, rho = arrays["vp"], arrays["vs"], arrays["rho"]
    if rho.min() <= 0:
        raise ValueError(f"{key}={path}: rho must be > 0 everywhere (min {rho.min()}).")
    if vs.min() <= 0 or np.any(vs >= vp):
        where = tuple(map(int, np.argwhere((vs <= 0) | (vs >= vp))[0]))
        raise ValueError(f"{key}={path}: vs must satisfy 0 < vs < vp everywhere; fails at (row, column) {where}.")
    return x, y, vp, vs, rho


def _gaussian_filter(a: np.ndarray, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Separable Gaussian filter of ``(C, ny, nx)`` along the last two axes, edges extended."""
    for axis, sigma in ((2, sigma_x), (1, sigma_y)):
        radius = max(1, int(math.ceil(3 * sigma)))
        k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        k /= k.sum()
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(a, pad, mode="edge")
        a = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), axis, padded)
    return a
