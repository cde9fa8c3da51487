r"""Levenberg-Marquardt: a damped Gauss-Newton method for a loss that is a sum of squares.

For a loss :math:`L(\theta) = \|r(\theta)\|^2` with residual rows :math:`r \in R^M` and their Jacobian
:math:`J = \partial r / \partial \theta \in R^{M \times P}`, one iteration solves

.. math::
    (J^T J + \lambda I)\, \delta = -J^T r

and takes :math:`\theta + \delta` if it lowers the loss, dividing the damping :math:`\lambda` by ``decrease``;
otherwise it keeps :math:`\theta`, multiplies :math:`\lambda` by ``increase`` and solves again (Levenberg 1944;
Marquardt 1963; Nocedal & Wright 2006, sec. 10.3). Small :math:`\lambda` is a Gauss-Newton step, large a short
steepest-descent step. On PINN losses this second-order model of the residual reaches errors that first-order and
quasi-Newton methods stall above (Bonfanti, Bruno & Cipriani 2024, "The challenges of the nonlinear regime for
PINNs"; Müller & Zeinhofer 2023, "Achieving high accuracy with PINNs via energy natural gradient descent", whose
Gauss-Newton matrix for a least-squares loss is this :math:`J^T J`).

The normal matrix is dense, P x P for P trained parameters: the method suits networks of a few thousand
weights (2.3 thousand: 42 MB and a 0.1 s Cholesky factorisation on two cores in float64), not tens of thousands.

The damping and the step counts are the whole state between steps (no history of past points), kept in the
parameter group, so :meth:`state_dict` carries them and a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor


class Residuals(Protocol):
    """What the optimizer minimises |r|^2 of: the rows r ``(M,)`` and the rows with their Jacobian ``(M, P)``, columns
    in the order of the optimizer's parameters (flattened), both at the current parameters."""

    def rows(self) -> Tensor: ...

    def rows_and_jacobian(self) -> tuple[Tensor, Tensor]: ...


class LevenbergMarquardt(torch.optim.Optimizer):
    r"""Levenberg-Marquardt over ``params`` (see the module docstring).

    ``step(closure)`` runs the closure once (the training step, which logs the loss), then one accepted iteration
    at most: up to ``max_tries`` solves with growing damping until one lowers :math:`\|r\|^2`.

    Args:
        params: The trained parameters, in the order of the Jacobian's columns.
        residuals: The rows and their Jacobian (:class:`Residuals`).
        damping: The initial :math:`\lambda`.
        increase: Factor on :math:`\lambda` after a rejected step (> 1).
        decrease: Divisor of :math:`\lambda` after an accepted step (> 1).
        min_damping: Floor of :math:`\lambda` (keeps :math:`J^T J + \lambda I` positive definite in floating point).
        max_tries: Solves per iteration before it gives up and leaves the parameters unchanged.
        iterations: Iterations per ``step`` (each with a new Jacobian).
    """

    def __init__(self, params, residuals: Residuals, damping: float = 1e-3, increase: float = 4.0,
                 decrease: float = 3.0, min_damping: float = 1e-12, max_tries: int = 10, iterations: int = 1) -> None:
        check_settings(damping, increase, decrease, min_damping, max_tries)
        defaults = dict(damping=damping, increase=increase, decrease=decrease, min_damping=min_damping,
                        max_tries=max_tries, accepted=0, rejected=0)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LevenbergMarquardt takes one parameter group (its normal matrix couples them all).")
        self.residuals, self.iterations = residuals, iterations

    def _params(self) -> list[Tensor]:
        return self.param_groups[0]["params"]

    def _add(self, delta: Tensor, sign: float = 1.0) -> None:
        offset = 0
        for p in self._params():
            n = p.numel()
            p.add_(delta[offset:offset + n].view_as(p).to(p.dtype), alpha=sign)
            offset += n

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for _ in range(self.iterations):
            if not self._iterate():
                break
        return loss

    def _iterate(self) -> bool:
        """One iteration; whether it took a step."""
        group = self.param_groups[0]
        with torch.enable_grad():
            r, jac = self.residuals.rows_and_jacobian()
        r, jac = r.detach(), jac.detach()
        normal, gradient = jac.T @ jac, jac.T @ r
        current = r.square().sum()
        if _distributed():  # each process holds its share of the rows: the mean over processes is the loss's
            for t in (normal, gradient, current):
                _mean(t)
        eye = torch.eye(normal.shape[0], dtype=normal.dtype, device=normal.device)
        for _ in range(group["max_tries"]):
            factor, info = torch.linalg.cholesky_ex(normal + group["damping"] * eye)
            if int(info) == 0:
                delta = -torch.cholesky_solve(gradient[:, None], factor)[:, 0]
                self._add(delta)
                trial = self.residuals.rows().detach().square().sum()
                if _distributed():
                    _mean(trial)
                if bool(torch.isfinite(trial)) and float(trial) < float(current):
                    group["damping"] = max(group["damping"] / group["decrease"], group["min_damping"])
                    group["accepted"] += 1
                    return True
                self._add(delta, -1.0)
            group["damping"] *= group["increase"]
            group["rejected"] += 1
        return False

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict.get("param_groups", []) if isinstance(state_dict, dict) else []
        if len(groups) != 1 or not all(k in groups[0] for k in ("damping", "increase", "decrease")):
            raise ValueError("The checkpoint's optimizer state is not a LevenbergMarquardt state (it needs one "
                             "parameter group with damping, increase and decrease): resume with the optimizer stage "
                             "the checkpoint was written in, or start the fit afresh.")
        g = groups[0]
        check_settings(g["damping"], g["increase"], g["decrease"], g["min_damping"], g["max_tries"],
                       where="the checkpoint's LevenbergMarquardt state")
        super().load_state_dict(state_dict)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1


def _mean(t: Tensor) -> None:
    """Replace ``t`` by its mean over the processes, in place (every process then solves the same system)."""
    torch.distributed.all_reduce(t)
    t /= torch.distributed.get_world_size()


def check_settings(damping, increase=4.0, decrease=3.0, min_damping=1e-12, max_tries=10,
                   where: str = "model.lbfgs") -> None:
    """Raise with the name and value of the first setting out of range."""
    for name, value, low in (("damping", damping, 0.0), ("min_damping", min_damping, 0.0)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
            raise ValueError(f"{where}: damping settings must be finite and > 0, got {name}={value}.")
    for name, value in (("increase", increase), ("decrease", decrease)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 1):
            raise ValueError(f"{where}: {name}={value} must be a finite number > 1.")
    if not (isinstance(max_tries, int) and max_tries >= 1):
        raise ValueError(f"{where}: max_tries={max_tries} must be an integer >= 1.")
