r"""Time-marching over consecutive windows, and initial states built into the network's output.

**Windows** (Wight & Zhao 2020, "Solving Allen-Cahn and Cahn-Hilliard equations using the adaptive
physics-informed neural networks"; Mattey & Ghosh 2022, "A novel sequential method to train physics informed neural
networks"): the interval [t0, t1] is split into ``count`` windows of equal length Delta. Window k is trained for
``steps`` steps on [t_k, t_k + Delta] from the state the previous window reached at t_k (displacement and velocity),
and its network starts from the previous window's weights. A finished window's network is frozen and kept, so the
solution over the whole interval is the piecewise one and no single network carries the error of the whole
interval.

The data module keeps sampling the whole interval; the model maps each training point's time affinely into the
current window (t -> t_k + (t - t0) Delta / (t1 - t0)), so pools, resampling and their checkpoints are the same
with or without windows, and the initial pool at t0 lands on t_k.

**Exact initial state** (Lagaris, Likas & Fotiadis 1998; Sun et al. 2020 for wave problems): with
``exact_initial``, the displacement of window k is

.. math::
    \mathbf{u}(\mathbf{x}, t) = \mathbf{u}_k(\mathbf{x}) + \tau\,\mathbf{v}_k(\mathbf{x})
        + (\tau / \Delta)^2\,\mathbf{N}(\mathbf{x}, t), \qquad \tau = t - t_k,

so u = u_k and u_t = v_k hold at t_k whatever the network N is, and the initial-state loss terms vanish. The
residual needs the second space derivatives of u_k and v_k, so the state is a C2 cubic-spline interpolant
(:mod:`pinn.physics.splines`) of nodal values: the reference's snapshot (or the closed form, or rest) for the first
window, the previous window's solution sampled on the same nodes for the next ones.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pinn.networks.derivatives import Fields
from pinn.physics.splines import GridSpline, spline_coefficients

ComputeFields = Callable[[nn.Module, Tensor, str], Fields]  # (net, points, order) -> Fields


@dataclass
class TimeWindows:
    """Time-marching and the exact initial state (see the module docstring).

    Args:
        count: Consecutive windows of equal length the time interval is split into (1: one network for all of it).
        steps: Training steps of each window but the last, which trains until ``trainer.max_steps``. An L-BFGS stage
            (``model.lbfgs``) starts ``lbfgs.start_step`` steps into each window, and each window starts with a fresh
            optimizer (and scheduler).
        exact_initial: Build each window's initial displacement and velocity into the output, so they hold exactly
            (the ``ic_disp`` and ``ic_vel`` terms are then dropped).
    """

    count: int = 1
    steps: int = 2000
    exact_initial: bool = False

    def __post_init__(self) -> None:
        for name in ("count", "steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"model.windows.{name}={value} must be an integer >= 1.")


def exact_initial_fields(state: dict[str, Tensor], n: Fields, tau: Tensor, delta: float, order: str) -> Fields:
    r"""Fields of :math:`u = u_k + \tau v_k + g N` with :math:`g = (\tau/\Delta)^2`, by the product rule:
    :math:`u_t = v_k + g_t N + g N_t`, :math:`u_{tt} = g_{tt} N + 2 g_t N_t + g N_{tt}`, and in space
    :math:`u_{xx} = u_{k,xx} + \tau v_{k,xx} + g N_{xx}` (likewise x, y, yy, xy).

    Args:
        state: The spline of (u, v, u_t, v_t) at t_k: ``f, f_x, f_y, f_xx, f_yy, f_xy`` each ``(N, 4)``.
        n: Fields of the network N at the points, of ``order``.
        tau: ``(N,)`` time since t_k.
        delta: The window length.
        order: The derivative order of ``n`` (and of the result).
    """
    g, g_t, g_tt = (tau / delta) ** 2, 2 * tau / delta**2, 2 / delta**2
    out = Fields(u=state["f"][:, 0] + tau * state["f"][:, 2] + g * n.u,
                 v=state["f"][:, 1] + tau * state["f"][:, 3] + g * n.v)
    if order == "value":
        return out
    for c, name in enumerate("uv"):
        vel = state["f"][:, 2 + c]
        setattr(out, f"{name}_t", vel + g_t * getattr(n, name) + g * getattr(n, f"{name}_t"))
        if order == "velocity":
            continue
        for d in ("x", "y"):
            s = state[f"f_{d}"]
            setattr(out, f"{name}_{d}", s[:, c] + tau * s[:, 2 + c] + g * getattr(n, f"{name}_{d}"))
        if order != "pde":
            continue
        for d in ("xx", "yy", "xy"):
            s = state[f"f_{d}"]
            setattr(out, f"{name}_{d}", s[:, c] + tau * s[:, 2 + c] + g * getattr(n, f"{name}_{d}"))
        setattr(out, f"{name}_tt", g_tt * getattr(n, name) + 2 * g_t * getattr(n, f"{name}_t")
                + g * getattr(n, f"{name}_tt"))
    return out


class Marching(nn.Module):
    """The windows' state: the current window's index, the finished windows' frozen networks and the initial state
    of each window (spline coefficients). All of it is in the module's ``state_dict``, so a checkpoint holds it and a
    resumed run continues in the same window with the same frozen networks.

    Args:
        net: The network being trained (copied, frozen, once per finished window).
        t_range: The problem's time interval (t0, t1).
        windows: The settings.
    """

    def __init__(self, net: nn.Module, t_range: tuple[float, float], windows: TimeWindows) -> None:
        super().__init__()
        self.settings = windows
        self.t0, self.t1 = float(t_range[0]), float(t_range[1])
        self.delta = (self.t1 - self.t0) / windows.count
        self.finished = nn.ModuleList(copy.deepcopy(net) for _ in range(windows.count - 1))
        for p in self.finished.parameters():
            p.requires_grad_(False)
        self.register_buffer("index", torch.zeros((), dtype=torch.long))
        # nodes and coefficients of the splines; sized when the first state is set (or by a loaded checkpoint)
        self.register_buffer("state_x", torch.zeros(0))
        self.register_buffer("state_y", torch.zeros(0))
        self.register_buffer("state_coefficients", torch.zeros(0))
        self._register_load_state_dict_pre_hook(self._resize)

    def _resize(self, state_dict, prefix, *args) -> None:
        for name in ("state_x", "state_y", "state_coefficients"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], dtype=getattr(self, name).dtype))

    # ---- time ---------------------------------------------------------------------------------------------
    @property
    def current(self) -> int:
        return int(self.index)

    def start(self, k: int) -> float:
        """t_k, the start of window k."""
        return self.t0 + k * self.delta

    def to_current(self, xyt: Tensor) -> Tensor:
        """Training points ``(N, 3)`` over [t0, t1] mapped into the current window (see the module docstring)."""
        t = self.start(self.current) + (xyt[:, 2:] - self.t0) / self.settings.count
        return torch.cat([xyt[:, :2], t], dim=1)

    def window_of(self, t: Tensor) -> Tensor:
        """The window of each time ``(N,)``, clamped to the windows trained so far."""
        k = torch.floor((t.detach() - self.t0) / self.delta).long()
        return k.clamp(0, self.current)

    # ---- the solution of one window ---------------------------------------------------------------------------
    @property
    def has_state(self) -> bool:
        return self.state_coefficients.numel() > 0

    def state(self, k: int, xy: Tensor) -> dict[str, Tensor]:
        """Window k's initial state at points ``xy`` ``(N, 2)``: the spline's values and space derivatives."""
        return GridSpline(self.state_x, self.state_y, self.state_coefficients[k])(xy)

    def fields(self, net: nn.Module, k: int, xyt: Tensor, order: str, compute: ComputeFields) -> Fields:
        """Fields of window k's solution at ``xyt`` (``net`` is the network being trained, used for the current
        window; the finished windows use their frozen copies)."""
        net_k = net if k == self.current else self.finished[k]
        n = compute(net_k, xyt, order)
        if not self.settings.exact_initial:
            return n
        tau = xyt[:, 2] - self.start(k)
        return exact_initial_fields(self.state(k, xyt[:, :2]), n, tau, self.delta, order)

    def values(self, net: nn.Module, xyt: Tensor, compute: ComputeFields) -> Tensor:
        """The displacement ``(N, 2)`` over the whole interval, each point from the window its time falls in."""
        k = self.window_of(xyt[:, 2])
        out = xyt.new_empty(xyt.shape[0], 2)
        for j in torch.unique(k).tolist():
            rows = k == j
            out[rows] = self.fields(net, j, xyt[rows], "value", compute).displacement.to(out.dtype)
        return out

    # ---- window switches ------------------------------------------------------------------------------------
    def set_state(self, k: int, x: Tensor, y: Tensor, values: Tensor) -> None:
        """Window k's initial state from nodal ``values`` ``(ny, nx, 4)`` (u, v, u_t, v_t) on nodes ``x``, ``y``."""
        dtype = self.state_x.dtype  # the module's float dtype: module.double() converts even the empty buffers
        if not self.has_state:
            self.state_x, self.state_y = x.to(dtype), y.to(dtype)
            n = self.settings.count
            self.state_coefficients = torch.zeros(n, len(y) + 2, len(x) + 2, 4, dtype=dtype, device=self.index.device)
        self.state_coefficients[k] = spline_coefficients(values.cpu()).to(self.state_coefficients)

    def sample_end(self, net: nn.Module, compute: ComputeFields, chunk: int = 16384) -> Tensor:
        """The current window's solution at its end on the state nodes: ``(ny, nx, 4)`` (u, v, u_t, v_t)."""
        y, x = torch.meshgrid(self.state_y, self.state_x, indexing="ij")
        t = torch.full_like(x, self.start(self.current + 1))
        points = torch.stack([x, y, t], -1).reshape(-1, 3)
        out = []
        for part in points.split(chunk):
            f = self.fields(net, self.current, part, "velocity", compute)
            out.append(torch.cat([f.displacement, f.velocity], -1).detach())
        return torch.cat(out).reshape(*x.shape, 4)

    def advance(self, net: nn.Module, compute: ComputeFields) -> None:
        """Finish the current window: freeze a copy of ``net``, take its end state as the next window's initial
        state (with ``exact_initial``), and move on. ``net`` keeps its weights: the next window starts from them."""
        k = self.current
        if k + 1 >= self.settings.count:
            raise RuntimeError(f"window {k} is the last of {self.settings.count}")
        if self.settings.exact_initial:
            end = self.sample_end(net, compute)
        self.finished[k].load_state_dict(net.state_dict())
        self.index += 1
        if self.settings.exact_initial:
            self.set_state(k + 1, self.state_x, self.state_y, end)


def state_nodes(problem, closed_form_nodes: int = 257) -> tuple[Tensor, Tensor]:
    """Nodes of the initial-state splines: the reference's grid where there is one (the snapshot is then interpolated
    exactly at its own nodes), else ``closed_form_nodes`` evenly spaced nodes along each side."""
    if not problem.has_exact:
        ref = problem.solution()
        return torch.as_tensor(ref.x, dtype=torch.float64), torch.as_tensor(ref.y, dtype=torch.float64)
    d = problem.domain
    n = closed_form_nodes
    return torch.linspace(*d.x, n, dtype=torch.float64), torch.linspace(*d.y, n, dtype=torch.float64)


def initial_state_values(problem, x: Tensor, y: Tensor) -> Tensor:
    """The problem's initial state on the nodes: ``(ny, nx, 4)`` (u, v, u_t, v_t) at t0, float64."""
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    points = torch.stack([xx, yy, torch.full_like(xx, problem.domain.t[0])], -1).reshape(-1, 3)
    values = torch.cat([problem.initial_displacement(points), problem.initial_velocity(points)], -1)
    return values.reshape(*xx.shape, 4).to(torch.float64)


def window_slices(times: Tensor, marching: Marching | None, count: int) -> list[Tensor]:
    """For each window, a boolean mask over the validation slices' ``times`` that fall in it."""
    if marching is None:
        return [torch.ones_like(times, dtype=torch.bool)]
    k = torch.floor((times - marching.t0) / marching.delta + 1e-9).long().clamp(0, count - 1)
    return [k == j for j in range(count)]

