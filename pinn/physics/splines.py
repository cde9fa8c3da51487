r"""A twice continuously differentiable interpolant of gridded fields: tensor-product cubic B-splines.

An exact initial condition :math:`\mathbf{u} = \mathbf{u}_0(\mathbf{x}) + \tau\,\mathbf{v}_0(\mathbf{x}) + \dots`
puts :math:`\nabla\nabla\mathbf{u}_0` and :math:`\nabla\nabla\mathbf{v}_0` into the PDE residual, so the state at
the start of a window must have second derivatives in space: bilinear interpolation of a snapshot has none. A cubic
B-spline has continuous second derivatives and reproduces cubic polynomials exactly (de Boor 1978, "A Practical
Guide to Splines", ch. IX), so its derivatives converge like h^2 on a smooth field.

On nodes :math:`x_i = x_0 + i h`, i = 0..n-1, the interpolant is
:math:`s(x) = \sum_{j=-1}^{n} c_j B\big((x - x_0)/h - j\big)` with the uniform cubic B-spline B. The n + 2
coefficients solve the n interpolation conditions :math:`(c_{i-1} + 4 c_i + c_{i+1}) / 6 = f_i` and the two
not-a-knot conditions (the third derivative is continuous at x_1 and x_{n-2}), which, unlike natural end conditions,
do not force the curvature to zero at the edges of the domain. In 2D the same solve runs along each axis.
Points ``(N, 2)`` columns ``(x, y)``; fields ``(ny, nx, C)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

VALUE_AND_DERIVATIVES = ("f", "f_x", "f_y", "f_xx", "f_yy", "f_xy")


def _system(n: int) -> Tensor:
    """The (n + 2, n + 2) matrix of the not-a-knot interpolation conditions on n >= 4 nodes."""
    a = torch.zeros(n + 2, n + 2, dtype=torch.float64)
    jump = torch.tensor([1.0, -4.0, 6.0, -4.0, 1.0], dtype=torch.float64)  # of the third derivative across a node
    a[0, :5] = jump  # zero at node 1
    a[-1, -5:] = jump  # and at node n - 2
    for i in range(n):
        a[i + 1, i:i + 3] = torch.tensor([1.0, 4.0, 1.0], dtype=torch.float64) / 6
    return a


def spline_coefficients(values: Tensor) -> Tensor:
    """Coefficients ``(ny + 2, nx + 2, C)`` of the interpolant of ``values`` ``(ny, nx, C)`` (float64)."""
    ny, nx, _ = values.shape
    if min(ny, nx) < 4:
        raise ValueError(f"a cubic spline needs at least 4 nodes along each axis, got {nx} x {ny}.")
    f = values.to(torch.float64)
    ay, ax = _system(ny), _system(nx)
    pad_y = torch.zeros(1, nx, f.shape[2], dtype=torch.float64)
    cy = torch.linalg.solve(ay, torch.cat([pad_y, f, pad_y]).reshape(ny + 2, -1)).reshape(ny + 2, nx, -1)
    pad_x = torch.zeros(ny + 2, 1, f.shape[2], dtype=torch.float64)
    rhs = torch.cat([pad_x, cy, pad_x], dim=1).transpose(0, 1).reshape(nx + 2, -1)  # x first
    return torch.linalg.solve(ax, rhs).reshape(nx + 2, ny + 2, -1).transpose(0, 1).contiguous()


def _basis(frac: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Weights ``(N, 4)`` of the four B-splines that cover a cell, and their first and second derivatives."""
    f, g = frac, 1 - frac
    w = torch.stack([g**3, 3 * f**3 - 6 * f**2 + 4, -3 * f**3 + 3 * f**2 + 3 * f + 1, f**3], -1) / 6
    d1 = torch.stack([-(g**2), 3 * f**2 - 4 * f, -3 * f**2 + 2 * f + 1, f**2], -1) / 2
    d2 = torch.stack([g, 3 * f - 2, 1 - 3 * f, f], -1)
    return w, d1, d2


def nodes_of(x: Tensor, y: Tensor) -> tuple[float, float, int, float, float, int]:
    """``(x0, hx, nx, y0, hy, ny)`` of evenly spaced nodes ``x``, ``y``."""
    return float(x[0]), float(x[1] - x[0]), len(x), float(y[0]), float(y[1] - y[0]), len(y)


class GridSpline:
    """The C2 interpolant of fields given on an evenly spaced grid (see the module docstring).

    Args:
        x: ``(nx,)`` evenly spaced node abscissae, increasing.
        y: ``(ny,)`` evenly spaced node ordinates, increasing.
        coefficients: ``(ny + 2, nx + 2, C)`` from :func:`spline_coefficients`.
    """

    def __init__(self, x: Tensor, y: Tensor, coefficients: Tensor) -> None:
        self.nodes = nodes_of(x, y)
        self.c = coefficients

    @classmethod
    def on(cls, nodes: tuple[float, float, int, float, float, int], coefficients: Tensor) -> GridSpline:
        """The interpolant with ``coefficients`` on nodes given as :func:`nodes_of` (no device sync)."""
        spline = cls.__new__(cls)
        spline.nodes, spline.c = nodes, coefficients
        return spline

    @classmethod
    def fit(cls, x: Tensor, y: Tensor, values: Tensor) -> GridSpline:
        """The interpolant of ``values`` ``(ny, nx, C)`` on the nodes ``x``, ``y``."""
        return cls(x, y, spline_coefficients(values))

    def _cell(self, q: Tensor, q0: float, h: float, n: int) -> tuple[Tensor, Tensor]:
        s = (q - q0) / h  # fractional node index; points outside extrapolate the end cells' cubics
        i = s.detach().floor().clamp(0, n - 2)
        return i.long(), s - i  # differentiable in q: autograd through the spline gives its derivatives

    def __call__(self, xy: Tensor) -> dict[str, Tensor]:
        """Values and derivatives at points ``xy`` ``(N, 2)``: a dict of ``(N, C)`` tensors named
        ``f, f_x, f_y, f_xx, f_yy, f_xy``, in the dtype and on the device of ``xy``."""
        c = self.c.to(dtype=xy.dtype, device=xy.device)
        x0, hx, nx, y0, hy, ny = self.nodes
        ix, fx = self._cell(xy[:, 0], x0, hx, nx)
        iy, fy = self._cell(xy[:, 1], y0, hy, ny)
        wx, dx1, dx2 = _basis(fx)  # (N, 4)
        wy, dy1, dy2 = _basis(fy)
        offsets = torch.arange(4, device=xy.device)
        patch = c[(iy[:, None] + offsets)[:, :, None], (ix[:, None] + offsets)[:, None, :]]  # (N, 4, 4, C)

        def combine(a: Tensor, b: Tensor) -> Tensor:  # sum over the patch of a(y) b(x) c
            return torch.einsum("na,nb,nabc->nc", a, b, patch)

        return {"f": combine(wy, wx), "f_x": combine(wy, dx1) / hx, "f_y": combine(dy1, wx) / hy,
                "f_xx": combine(wy, dx2) / hx**2, "f_yy": combine(dy2, wx) / hy**2,
                "f_xy": combine(dy1, dx1) / (hx * hy)}
