r"""Time-marching over consecutive windows, and initial states built into the network's output.

**Windows** (Wight & Zhao 2020, "Solving Allen-Cahn and Cahn-Hilliard equations using the adaptive
physics-informed neural networks"; Mattey & Ghosh 2022, "A novel sequential method to train physics informed neural
networks"): the interval [t0, t1] is split into ``count`` windows of equal length Delta. Window k is trained for
``steps`` steps on [t_k, t_k + Delta] from the state the previous window reached at t_k (displacement and velocity),
and its network starts from the previous window's weights. A finished window's network is frozen and kept, so the
solution over the whole interval is the piecewise one and no single network carries the error of the whole
interval.

The data module keeps sampling the whole interval; the model maps each training point's time affinely into the
current window (t -> t_k + (t - t0) (1 + overlap) Delta / (t1 - t0); with ``overlap`` > 0 a window trains past the
next window's start), so pools, resampling and their checkpoints are the same with or without windows, and the
initial pool at t0 lands on t_k. Each window's network maps its own training interval onto [-1, 1] (as a network
over that window alone would), so the next window starts from the previous weights shifted by one window in time.

**Exact initial state** (Lagaris, Likas & Fotiadis 1998; Sun et al. 2020 for wave problems): with
``exact_initial``, the displacement of window k is

.. math::
    \mathbf{u}(\mathbf{x}, t) = \mathbf{b} + g(\tau)\,\big(\mathbf{N}(\mathbf{x}, t) - \mathbf{b}\big), \qquad
    \mathbf{b} = \mathbf{u}_k(\mathbf{x}) + \tau\,\mathbf{v}_k(\mathbf{x}), \qquad g = 1 - e^{-(\tau/\tau_r)^2},
    \qquad \tau = t - t_k,

so u = u_k and u_t = v_k hold at t_k whatever the network N is (g and g_t vanish there), and the initial-state loss
terms vanish. The network takes over within a few tau_r (``ramp`` of the window); the Taylor start, which grows
without bound, fades out. (The simpler u_k + tau v_k + (tau/Delta)^2 N leaves the network to cancel the Taylor start
over the whole window, a term several times the wave's amplitude after a period.) The
residual needs the second space derivatives of u_k and v_k, so the state is a C2 cubic-spline interpolant
(:mod:`pinn.physics.splines`) of nodal values: the reference's snapshot (or the closed form, or rest) for the first
window, the previous window's solution sampled on the same nodes for the next ones.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from pinn.physics.fields import Fields
from pinn.physics.splines import GridSpline, nodes_of, spline_coefficients
from pinn.training.stages import StallWatch, check_steps, per_window, switch_optimizers

ComputeFields = Callable[[nn.Module, Tensor, str], Fields]  # (net, points, order) -> Fields


@dataclass
class TimeWindows:
    """Time-marching and the exact initial state (see the module docstring).

    Args:
        count: Consecutive windows of equal length the time interval is split into (1: one network for all of it).
        steps: Training steps of each window but the last, which trains until ``trainer.max_steps``; or a list,
            one entry per window, the last repeating. An L-BFGS stage (``model.lbfgs``) starts ``lbfgs.start_step``
            steps into each window, and each window starts with a fresh optimizer (and scheduler).
        exact_initial: Build each window's initial displacement and velocity into the output, so they hold exactly
            (the ``ic_disp`` and ``ic_vel`` terms are then dropped).
        ramp: With ``exact_initial``: the time over which the network takes over from the initial state's Taylor
            start, as a fraction of the window's length.
        overlap: Each window trains on [t_k, t_k + (1 + overlap) Delta], past the time the next window takes over
            (and the last past t1), so that the state it hands over, and the end of the interval, lie inside its
            training interval rather than at its edge, where a network trained over an interval fits least well.
    """

    count: int = 1
    steps: int | list[int] = 2000
    exact_initial: bool = False
    ramp: float = 0.25
    overlap: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and self.count >= 1):
            raise ValueError(f"model.windows.count={self.count} must be an integer >= 1.")
        check_steps(self.steps, "model.windows.steps", 1)
        if not (0 < self.ramp <= 1):
            raise ValueError(f"model.windows.ramp={self.ramp} must be in (0, 1] (a fraction of the window).")
        if not (isinstance(self.overlap, (int, float)) and 0 <= self.overlap <= 1):
            raise ValueError(f"model.windows.overlap={self.overlap} must be in [0, 1] (a fraction of the window).")


def exact_initial_fields(state: dict[str, Tensor], n: Fields, tau: Tensor, ramp: float, order: str) -> Fields:
    r"""Fields of :math:`u = b + g\,(N - b)` with the Taylor start :math:`b = u_k + \tau v_k` and the blend
    :math:`g = 1 - e^{-s^2}`, :math:`s = \tau / \tau_r`, by the product rule (b_tt = 0, and g = g_t = 0 at
    :math:`\tau = 0`, so u = u_k and u_t = v_k there):
    :math:`u_t = b_t + g_t D + g D_t`, :math:`u_{tt} = g_{tt} D + 2 g_t D_t + g N_{tt}` with D = N - b, and in space
    :math:`u_{xx} = b_{xx} + g D_{xx}` (likewise x, y, yy, xy), where
    :math:`g_t = 2 s e^{-s^2} / \tau_r`, :math:`g_{tt} = (2 - 4 s^2) e^{-s^2} / \tau_r^2`.

    Args:
        state: The spline of (u, v, u_t, v_t) at t_k: ``f, f_x, f_y, f_xx, f_yy, f_xy`` each ``(N, 4)``.
        n: Fields of the network N at the points, of ``order``.
        tau: ``(N,)`` time since t_k.
        ramp: tau_r, the time over which the network takes over from the Taylor start.
        order: The derivative order of ``n`` (and of the result).
    """
    s = tau / ramp
    e = torch.exp(-(s**2))
    g, g_t, g_tt = 1 - e, 2 * s * e / ramp, (2 - 4 * s**2) * e / ramp**2
    out = Fields(u=n.u, v=n.v)
    for c, name in enumerate("uv"):
        f = state["f"]
        b, b_t = f[:, c] + tau * f[:, 2 + c], f[:, 2 + c]
        net = getattr(n, name)
        setattr(out, name, b + g * (net - b))
        if order == "value":
            continue
        net_t = getattr(n, f"{name}_t")
        setattr(out, f"{name}_t", b_t + g_t * (net - b) + g * (net_t - b_t))
        if order == "velocity":
            continue
        for d in (("x", "y") if order == "gradient" else ("x", "y", "xx", "yy", "xy")):
            sd = state[f"f_{d}"]
            b_d = sd[:, c] + tau * sd[:, 2 + c]
            setattr(out, f"{name}_{d}", b_d + g * (getattr(n, f"{name}_{d}") - b_d))
        if order == "pde":
            setattr(out, f"{name}_tt", g_tt * (net - b) + 2 * g_t * (net_t - b_t) + g * getattr(n, f"{name}_tt"))
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
        # training times over [t0, t1] map onto a window's training interval, (1 + overlap) Delta, by this factor
        self.stretch = (1 + windows.overlap) / windows.count
        if (windows.count > 1 or windows.overlap > 0) and hasattr(net, "center"):
            # each window's network reads its own training interval on [-1, 1], so a window keeps the time
            # resolution a network over one window would have
            with torch.no_grad():
                net.scale[2] /= self.stretch
                net.center[2] = self.start(0) + self.delta * (1 + windows.overlap) / 2
        self.register_buffer("index", torch.zeros((), dtype=torch.long))
        self.register_buffer("started_at", torch.zeros((), dtype=torch.long))  # global step the window began at
        self.register_buffer("ended", torch.zeros((), dtype=torch.bool))  # its stage stalled: move on now
        # nodes and coefficients of the splines; sized when the first state is set (or by a loaded checkpoint)
        self.register_buffer("state_x", torch.zeros(0))
        self.register_buffer("state_y", torch.zeros(0))
        self.register_buffer("state_coefficients", torch.zeros(0))
        self._register_load_state_dict_pre_hook(self.resize)
        self.register_load_state_dict_post_hook(lambda module, keys: module.refresh())
        # Python copies of what the buffers hold, read every step without a device sync
        self._current, self._started_at, self._ended, self._nodes = 0, 0, False, None

    @staticmethod
    def needed(windows: TimeWindows | None) -> bool:
        """Whether the settings need the windows' state: several windows, an exact initial state or an overlap."""
        return windows is not None and (windows.count > 1 or windows.exact_initial or windows.overlap > 0)

    def refresh(self) -> None:
        """Update the Python copies of the window's index, start and end and of the spline nodes from the buffers
        (after a load)."""
        self._current, self._started_at, self._ended = int(self.index), int(self.started_at), bool(self.ended)
        self._nodes = nodes_of(self.state_x, self.state_y) if self.has_state else None

    def resize(self, state_dict: dict, prefix: str, *args) -> None:
        """Size the spline buffers as in ``state_dict`` (their size is the grid's, known once a fit has begun)."""
        for name in ("state_x", "state_y", "state_coefficients"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], dtype=getattr(self, name).dtype))

    # ---- time ---------------------------------------------------------------------------------------------
    @property
    def current(self) -> int:
        """The current window's index."""
        return self._current

    @property
    def started(self) -> int:
        """The global step the current window began at."""
        return self._started_at

    def start(self, k: int) -> float:
        """t_k, the start of window k."""
        return self.t0 + k * self.delta

    def to_current(self, xyt: Tensor) -> Tensor:
        """Training points ``(N, 3)`` over [t0, t1] mapped into the current window's training interval, [t_k, t_k +
        (1 + overlap) Delta] (see the module docstring)."""
        t = self.start(self.current) + (xyt[:, 2:] - self.t0) * self.stretch
        return torch.cat([xyt[:, :2], t], dim=1)

    def due(self, step: int) -> bool:
        """Whether the current window is done at global step ``step`` (its steps are up, or it stalled)."""
        if self.current + 1 >= self.settings.count:
            return False
        return self._ended or step >= self._started_at + per_window(self.settings.steps, self.current)

    def finish_early(self) -> None:
        """End the current window at the next step (its optimizer has stalled)."""
        self.ended.fill_(True)
        self._ended = True

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
        if not self.has_state:
            raise RuntimeError("model.windows.exact_initial: the model has no initial state yet; it is set when a fit "
                               "starts, and a checkpoint of a fit carries it.")
        return GridSpline.on(self._nodes, self.state_coefficients[k])(xy)

    def fields(self, net: nn.Module, k: int, xyt: Tensor, order: str, compute: ComputeFields) -> Fields:
        """Fields of window k's solution at ``xyt`` (``net`` is the network being trained, used for the current
        window; the finished windows use their frozen copies)."""
        net_k = net if k == self.current else self.finished[k]
        n = compute(net_k, xyt, order)
        if not self.settings.exact_initial:
            return n
        tau = xyt[:, 2] - self.start(k)
        return exact_initial_fields(self.state(k, xyt[:, :2]), n, tau, self.settings.ramp * self.delta, order)

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
        self._nodes = nodes_of(self.state_x, self.state_y)

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

    def advance(self, net: nn.Module, compute: ComputeFields, step: int) -> None:
        """Finish the current window: freeze a copy of ``net``, take its end state as the next window's initial
        state (with ``exact_initial``), and move on. ``net`` keeps its weights: the next window starts from them."""
        k = self.current
        if k + 1 >= self.settings.count:
            raise RuntimeError(f"window {k} is the last of {self.settings.count}")
        if self.settings.exact_initial:
            end = self.sample_end(net, compute)
        self.finished[k].load_state_dict(net.state_dict())
        if hasattr(net, "center"):  # the next window's time on [-1, 1]; the weights start as window k's, shifted
            with torch.no_grad():
                net.center[2] += self.delta
        self.index += 1
        self._current += 1
        self.started_at.fill_(step)
        self.ended.fill_(False)
        self._started_at, self._ended = step, False
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


def initial_targets(model, initial: Tensor) -> tuple[Tensor, Tensor] | None:
    """Displacement and velocity ``(N, 2)`` the model's current window starts from at ``initial`` (points at its
    start): the problem's initial state in the first window, the previous window's solution (frozen) in the next
    ones; ``None`` when they are built into the output (``windows.exact_initial``)."""
    marching = model.marching
    if marching is not None and marching.settings.exact_initial:
        return None
    if marching is None or marching.current == 0:
        problem = model.problem.shot(model.shot)  # the current shot's (pinn.training.shots)
        return problem.initial_displacement(initial), problem.initial_velocity(initial)
    with torch.no_grad():
        f = model.fields(initial, "velocity", window=marching.current - 1)
    return f.displacement.detach(), f.velocity.detach()


def next_window(model) -> None:
    """Finish the model's current window and start the next from its weights and end state, with a fresh optimizer
    (and scheduler), in the first optimizer stage."""
    marching, trainer = model.marching, model.trainer
    marching.advance(model.net, model._compute, trainer.global_step)
    if model._kernel is not None:  # a new kernel: the compiled one may have specialised on the old time window
        model.decide_compile(trainer.max_steps)
    if model.stage == "lbfgs" and model.lbfgs.float64:
        model.float()  # each window's Adam runs at float32 speed, as the first one did
    model.stage, model.stall = "adam", StallWatch()
    switch_optimizers(trainer, model.configure_optimizers())
    k = marching.current
    rank_zero_info(f"Time window {k + 1} of {marching.settings.count} from step {trainer.global_step}: t in "
                   f"[{marching.start(k):.6g}, {marching.start(k + 1):.6g}] s")
