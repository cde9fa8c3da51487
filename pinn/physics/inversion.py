r"""Unknown media for inverse problems: material per layer, or a material map on a coarse grid.

Both are trainable media: ``at(xy)`` gives :class:`~pinn.physics.media.MediumValues` (lam, mu, rho and the
gradients of lam and mu the conservative residual needs) as differentiable functions of their parameters, so the
residual, the free-surface and the absorbing conditions all see the current estimate.

Layers (:class:`LayerUnknowns`), for a line of surface receivers over horizontal layers with known interfaces:
each layer has vp, vs, rho, each either known or trained, kept physical by construction:

.. math::
    v_s = e^{a}, \qquad v_p = v_s\,(1 + e^{b}), \qquad \rho = e^{c}

(with vp known and vs trained, :math:`v_s = v_p\,\sigma(a)`), so :math:`\rho > 0` and :math:`v_p > v_s > 0`
whatever the optimizer does, and an Adam step changes a speed by about ``lr`` relative to its value. Across an
interface the Lamé parameters and the density blend with the smooth step of :mod:`pinn.physics.media`.

A field (:class:`FieldUnknowns`), for elastography and non-destructive testing from full-field displacement:
unconstrained values :math:`a, b, c` on an ``nx x ny`` grid of nodes spanning the domain, interpolated bilinearly,
and mapped as in :mod:`pinn.physics.unknowns`:

.. math::
    \mu = \mu_{\min} + e^{a(x, y)}, \qquad \lambda = e^{b(x, y)} - \mu, \qquad \rho = e^{c(x, y)}

so that :math:`\mu > 0`, :math:`\lambda + \mu > 0` (that is :math:`v_p > v_s` in 2D) and :math:`\rho > 0`
everywhere (:math:`\mu_{\min} = \max(0, -\lambda)` when lam is known). A coarse grid is itself the regulariser: it
cannot represent detail finer than its cells, which the data could not resolve anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pinn.physics.media import MediumValues, Properties, smooth_step
from pinn.physics.starting_model import grid_start, read_layer_table

SPEEDS = ("vp", "vs", "rho")
MODULI = ("mu", "lam", "rho")
LAME = ("lam", "mu", "rho")


def _positive_list(values, key: str, count: int) -> list[float]:
    values = [float(v) for v in values or []]
    if len(values) != count:
        raise ValueError(f"model.unknowns.layers.{key} has {len(values)} values for {count} layers; give one per "
                         "layer, top first.")
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"model.unknowns.layers.{key}={values}: {bad[0]} must be a finite number > 0.")
    return values


@dataclass
class LayerUnknowns:
    """Horizontal layers with known interfaces and per-layer unknowns (``model.unknowns.layers``).

    Args:
        interfaces: Heights y (m) of the interfaces, top down; one fewer than the layers.
        vp: Per layer, top first: the initial guess of vp (m/s) if trained, else its known value.
        vs: Likewise for vs (m/s), each below its layer's vp.
        rho: Likewise for the density (kg/m^3).
        train: Which of ``vp``, ``vs``, ``rho`` are unknown.
        smoothing: Width (m) over which each interface is smoothed (as in :class:`~pinn.physics.media.Layered`).
        names: Layer names for logging (``material/<name>/vp``); default ``layer1``, ``layer2``, ... from the top.
        path: Instead of ``vp``, ``vs``, ``rho``: a text table of them, one row per layer, top first, columns
            ``vp, vs, rho`` (m/s, m/s, kg/m^3), commas or spaces, an optional header naming the columns in any
            order (:mod:`pinn.physics.starting_model`).
    """

    interfaces: list[float]
    vp: list[float] | None = None
    vs: list[float] | None = None
    rho: list[float] | None = None
    train: list[str] = ("vp", "vs")
    smoothing: float = 0.0
    names: list[str] | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        self.interfaces = [float(y) for y in self.interfaces]
        n = len(self.interfaces) + 1
        if self.path is not None:
            self._read(n)
        self.vp, self.vs, self.rho = (_positive_list(getattr(self, k), k, n) for k in SPEEDS)
        self.train = list(self.train)
        if not self.train or any(k not in SPEEDS for k in self.train):
            raise ValueError(f"model.unknowns.layers.train={self.train} must list some of {list(SPEEDS)}.")
        slow = [i for i in range(n) if not self.vs[i] < self.vp[i]]
        if slow:
            i = slow[0]
            raise ValueError(f"model.unknowns.layers: layer {i + 1} has vs={self.vs[i]} >= vp={self.vp[i]}; "
                             "vs must be below vp.")
        if any(b >= a for a, b in zip(self.interfaces, self.interfaces[1:])):
            raise ValueError(f"model.unknowns.layers.interfaces={self.interfaces} must decrease (top down).")
        if not (math.isfinite(self.smoothing) and self.smoothing >= 0):
            raise ValueError(f"model.unknowns.layers.smoothing={self.smoothing} must be a width >= 0 (m).")
        self.names = list(self.names) if self.names else [f"layer{i + 1}" for i in range(n)]
        if len(self.names) != n or len(set(self.names)) != n:
            raise ValueError(f"model.unknowns.layers.names={self.names} must be {n} distinct names, top first.")

    def _read(self, n: int) -> None:
        """vp, vs, rho from ``path``; values also given here must be the file's (a config written back by a run)."""
        table = read_layer_table(self.path, n)
        given = [k for k in SPEEDS if getattr(self, k) is not None]
        if any([float(v) for v in getattr(self, k)] != table[k] for k in given):
            raise ValueError(f"model.unknowns.layers sets {', '.join(given)} and path={self.path}, with other values: "
                             "give the starting model one way, either the lists or the file.")
        self.vp, self.vs, self.rho = (table[k] for k in SPEEDS)

    def check(self, domain) -> None:
        """Raise if an interface lies outside the domain's y range."""
        outside = [y for y in self.interfaces if not domain.y[0] < y < domain.y[1]]
        if outside:
            raise ValueError(f"model.unknowns.layers.interfaces: y={outside[0]} lies outside the domain's "
                             f"y={list(domain.y)}.")


@dataclass
class FieldUnknowns:
    """A material map on a coarse grid of nodes spanning the domain (``model.unknowns.field``).

    Args:
        shape: Nodes ``[nx, ny]`` along x and y (at least 2 each), ends on the domain's edges.
        start: The uniform starting material (``{vp, vs, rho}`` or ``{lam, mu, rho}``); the entries not trained
            keep these values everywhere.
        train: Which of ``mu``, ``lam``, ``rho`` are unknown fields.
        path: Instead of ``start``: a gridded model ``.npz`` (``x (nx,)``, ``y (ny,)``, ``vp``, ``vs``, ``rho``
            ``(ny, nx)``, as :class:`~pinn.physics.grid.GridMedium` reads) covering the domain, sampled at the nodes
            by cubic convolution; the entries not trained keep the file's map.
    """

    shape: list[int] = (12, 12)
    start: Properties | dict | None = None
    train: list[str] = ("mu",)
    path: str | None = None

    def __post_init__(self) -> None:
        self.shape = [int(n) for n in self.shape]
        if len(self.shape) != 2 or min(self.shape) < 2:
            raise ValueError(f"model.unknowns.field.shape={self.shape} must be two node counts [nx, ny], each >= 2.")
        if (self.start is None) == (self.path is None):
            raise ValueError(f"model.unknowns.field: give the starting model one way: start (the uniform material "
                             f"{{vp, vs, rho}} or {{lam, mu, rho}}) or path (a gridded .npz), not "
                             f"{'both' if self.path else 'neither'}.")
        if isinstance(self.start, dict):
            self.start = Properties(**self.start)
        self.train = list(self.train)
        if not self.train or any(k not in MODULI for k in self.train):
            raise ValueError(f"model.unknowns.field.train={self.train} must list some of {list(MODULI)}.")


class TrainableLayers(nn.Module):
    """The layered medium of :class:`LayerUnknowns` with its unknowns as parameters (see the module docstring)."""

    def __init__(self, spec: LayerUnknowns) -> None:
        super().__init__()
        self.spec = spec
        self.trained = tuple(spec.train)
        vp, vs, rho = (torch.tensor(getattr(spec, k), dtype=torch.float64) for k in SPEEDS)
        for name, value in (("vp", vp), ("vs", vs), ("rho", rho)):
            self.register_buffer(name + "_known", value.float())
        if "vs" in self.trained:  # inverse of the maps in the module docstring
            raw = torch.logit(vs / vp) if "vp" not in self.trained else vs.log()
            self.raw_vs = nn.Parameter(raw.float())
        if "vp" in self.trained:
            self.raw_vp = nn.Parameter((vp / vs - 1).log().float())
        if "rho" in self.trained:
            self.raw_rho = nn.Parameter(rho.log().float())

    def speeds(self) -> dict[str, Tensor]:
        """Per layer ``{vp, vs, rho}``, each ``(L,)``, top first."""
        vs = self.vs_known
        if "vs" in self.trained:
            vs = self.raw_vs.exp() if "vp" in self.trained else self.vp_known * torch.sigmoid(self.raw_vs)
        vp = vs * (1 + self.raw_vp.exp()) if "vp" in self.trained else self.vp_known
        rho = self.raw_rho.exp() if "rho" in self.trained else self.rho_known
        return {"vp": vp, "vs": vs, "rho": rho}

    def at(self, xy: Tensor) -> MediumValues:
        """The medium at ``xy`` ``(N, 2)``, differentiable in the parameters; gradients in closed form."""
        s = self.speeds()
        mu = s["rho"] * s["vs"] ** 2
        layer = {"lam": s["rho"] * s["vp"] ** 2 - 2 * mu, "mu": mu, "rho": s["rho"]}  # each (L,)
        y = xy[:, 1]
        out = {k: v[0].expand_as(y) for k, v in layer.items()}
        d_out = {k: torch.zeros_like(y) for k in ("lam", "mu")}
        w = self.spec.smoothing
        for i, y_i in enumerate(self.spec.interfaces):
            below = smooth_step(y_i - y, w)  # 1 below the interface
            # d below / dy = -(1 - tanh^2) / (2 w), zero off a sharp interface
            d_below = -(1 - (2 * below - 1) ** 2) / (2 * w) if w > 0 else torch.zeros_like(y)
            for k in out:
                jump = layer[k][i + 1] - layer[k][i]
                out[k] = out[k] + jump * below
                if k in d_out:
                    d_out[k] = d_out[k] + jump * d_below
        zero = torch.zeros_like(y)
        return MediumValues(out["lam"], out["mu"], out["rho"], zero, d_out["lam"], zero, d_out["mu"])

    def scalars(self) -> dict[str, Tensor]:
        """``{"<layer>/<name>": value}`` of every layer's vp, vs and rho, detached, for logging."""
        s = {k: v.detach() for k, v in self.speeds().items()}
        return {f"{layer}/{k}": s[k][i] for i, layer in enumerate(self.spec.names) for k in SPEEDS}

    def extra_repr(self) -> str:
        s = self.scalars()
        return "; ".join(f"{layer}: " + ", ".join(f"{k}={float(s[f'{layer}/{k}']):.6g}" + ("*" if k in self.trained
                         else "") for k in SPEEDS) for layer in self.spec.names)


class TrainableField(nn.Module):
    """The material map of :class:`FieldUnknowns` on the grid of nodes over ``domain`` (module docstring): the box the
    problem is scored on, so that a padded box trains the same map, extended beyond its outer nodes by their values
    (the medium goes on)."""

    def __init__(self, spec: FieldUnknowns, domain) -> None:
        super().__init__()
        self.spec = spec
        self.trained = tuple(spec.train)
        self.lower = (float(domain.x[0]), float(domain.y[0]))
        self.cell = ((domain.x[1] - domain.x[0]) / (spec.shape[0] - 1),
                     (domain.y[1] - domain.y[0]) / (spec.shape[1] - 1))
        ny, nx = spec.shape[1], spec.shape[0]
        if spec.path is None:  # uniform: the known entries are constants
            start = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in zip(LAME, spec.start.lame)}
        else:  # from a file: the known entries are maps of the nodes too, (ny, nx)
            start = grid_start(spec.path, spec.shape, domain)
        dtype = torch.get_default_dtype()
        for name in LAME:
            self.register_buffer(name + "_known", start[name].to(dtype))
        lam, mu = start["lam"], start["mu"]
        self.mu_floor = 0.0 if "lam" in self.trained else max(0.0, -float(lam.min()))
        raw = {"mu": mu - self.mu_floor, "lam": lam + mu, "rho": start["rho"]}
        if float(raw["mu"].min()) <= 0:  # only a map: a known lam < 0 somewhere raises the floor of mu everywhere
            raise ValueError(f"model.unknowns.field.path={spec.path}: mu must exceed -lam_min = {self.mu_floor:g} Pa "
                             "at every node when lam is known; train lam too, or raise vp where lam < 0.")
        for name in self.trained:  # one value per node, rows along y: (ny, nx)
            setattr(self, "raw_" + name, nn.Parameter(raw[name].log().expand(ny, nx).to(dtype).contiguous()))

    def _interpolate(self, nodes: Tensor, xy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Bilinear interpolation of ``nodes`` ``(ny, nx)`` at ``xy`` ``(N, 2)``: value, d/dx, d/dy, each ``(N,)``."""
        ny, nx = nodes.shape
        ux = (xy[:, 0] - self.lower[0]) / self.cell[0]
        uy = (xy[:, 1] - self.lower[1]) / self.cell[1]
        sx, sy = ux.clamp(0, nx - 1), uy.clamp(0, ny - 1)
        i = sx.detach().floor().clamp(max=nx - 2).long()
        j = sy.detach().floor().clamp(max=ny - 2).long()
        fx, fy = (sx - i).to(nodes.dtype), (sy - j).to(nodes.dtype)
        a00, a10, a01, a11 = nodes[j, i], nodes[j, i + 1], nodes[j + 1, i], nodes[j + 1, i + 1]
        value = (1 - fx) * (1 - fy) * a00 + fx * (1 - fy) * a10 + (1 - fx) * fy * a01 + fx * fy * a11
        d_x = ((1 - fy) * (a10 - a00) + fy * (a11 - a01)) / self.cell[0]
        d_y = ((1 - fx) * (a01 - a00) + fx * (a11 - a10)) / self.cell[1]
        # Beyond the outer nodes (a padded box) the map goes on as its edge value: constant across the edge.
        d_x = d_x * ((ux >= 0) & (ux <= nx - 1)).to(d_x.dtype)
        d_y = d_y * ((uy >= 0) & (uy <= ny - 1)).to(d_y.dtype)
        return value, d_x, d_y

    def _known(self, name: str, xy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """A known entry at ``xy``: value, d/dx, d/dy, each ``(N,)``; a constant, or bilinear in a map of the nodes."""
        known = getattr(self, name + "_known")
        if known.dim() == 2:
            return self._interpolate(known, xy)
        zero = torch.zeros_like(xy[:, 0])
        return known + zero, zero, zero

    def at(self, xy: Tensor) -> MediumValues:
        """The medium at ``xy`` ``(N, 2)``, differentiable in the node values; gradients in closed form."""
        if "mu" in self.trained:
            e, e_x, e_y = self._interpolate(self.raw_mu, xy)
            e = e.exp()
            mu, mu_x, mu_y = self.mu_floor + e, e * e_x, e * e_y
        else:
            mu, mu_x, mu_y = self._known("mu", xy)
        if "lam" in self.trained:
            e, e_x, e_y = self._interpolate(self.raw_lam, xy)
            e = e.exp()
            lam, lam_x, lam_y = e - mu, e * e_x - mu_x, e * e_y - mu_y
        else:
            lam, lam_x, lam_y = self._known("lam", xy)
        rho = self._interpolate(self.raw_rho, xy)[0].exp() if "rho" in self.trained else self._known("rho", xy)[0]
        return MediumValues(lam, mu, rho, lam_x, lam_y, mu_x, mu_y)

    def scalars(self) -> dict[str, Tensor]:
        """Range of each trained field, ``{"<name>_min", "<name>_max"}``, detached, for logging. Bilinear
        interpolation of a monotone map of the nodes takes its extremes at the nodes, so they are read there."""
        with torch.no_grad():
            mu = self.mu_floor + self.raw_mu.exp() if "mu" in self.trained else self.mu_known
            nodes = {"mu": mu, "lam": self.raw_lam.exp() - mu if "lam" in self.trained else None,
                     "rho": self.raw_rho.exp() if "rho" in self.trained else None}
        return {f"{name}_{end}": getattr(nodes[name], end)() for name in self.trained for end in ("min", "max")}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={float(v):.6g}" for k, v in self.scalars().items())


def trained_quantities(material) -> tuple[str, ...]:
    """The material quantities an unknown medium estimates, by the names :class:`MediumValues` gives them
    (``lam``, ``mu``, ``rho``, ``c_p``, ``c_s``)."""
    if isinstance(material, TrainableLayers):
        return tuple({"vp": "c_p", "vs": "c_s", "rho": "rho"}[k] for k in material.trained)
    return tuple(material.trained)  # a field or one constant material: lam, mu, rho by name


def plane_points(domain, nx: int, ny: int) -> Tensor:
    """An ``nx x ny`` grid of the domain's x-y rectangle, edges included, ``(ny*nx, 2)`` float64, x fastest."""
    return domain.grid(nx, ny, 1, torch.float64)[:, :2]


def material_errors(material, medium, domain, n: int = 101) -> dict[str, float]:
    r"""Relative L2 error :math:`\|q - q^*\| / \|q^*\|` of each estimated quantity over an ``n x n`` grid of the
    domain, against the true ``medium``; ``"all"`` is their mean."""
    xy = plane_points(domain, n, n)
    with torch.no_grad():
        truth = medium.values(xy)
        estimate = material.at(xy.to(_dtype(material)))
    errors = {}
    for q in trained_quantities(material):
        t, e = getattr(truth, q).double(), getattr(estimate, q).double().expand(len(xy))
        errors[q] = float((e - t).norm() / t.norm())
    errors["all"] = sum(errors.values()) / len(errors)
    return errors


def _dtype(module: nn.Module) -> torch.dtype:
    return next(iter(module.buffers())).dtype
