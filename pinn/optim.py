r"""PersistentAdam: Adam with persistent per-parameter state, modelled on ``torch/optim/adam.py``.

For each parameter :math:`\theta` with gradient :math:`g_t` (Kingma & Ba 2015, Algorithm 1):

.. math::
    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
    \theta_t = \theta_{t-1} - \frac{\eta}{1 - \beta_1^t} \cdot
        \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

with optional L2 weight decay (:math:`g_t \leftarrow g_t + \lambda\theta`), decoupled weight decay
(AdamW, Loshchilov & Hutter 2019: :math:`\theta \leftarrow \theta(1 - \eta\lambda)` before the update),
AMSGrad (Reddi et al. 2018: :math:`\hat v_t = \max(\hat v_{t-1}, v_t)` in the denominator) and ``maximize``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


class PersistentAdam(Optimizer):
    """Adam with per-parameter ``step``, ``exp_avg`` and ``exp_avg_sq`` kept across steps and checkpoints.

    Args:
        params: Parameters or parameter groups (dicts) to optimise.
        lr: Learning rate eta.
        betas: Decay rates (beta1, beta2) of the first and second moment estimates.
        eps: Term added to the denominator for numerical stability.
        weight_decay: Weight decay coefficient lambda.
        decoupled_weight_decay: Apply weight decay to the parameters directly (AdamW) instead of as L2.
        amsgrad: Use the running maximum of the second moment (AMSGrad).
        maximize: Maximise the objective instead of minimising it.
        foreach: Use the multi-tensor ``torch._foreach_*`` path; ``None`` picks it when all state is on CUDA or CPU.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate lr={lr}: must be >= 0.")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon eps={eps}: must be >= 0.")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta1={betas[0]}: must be in [0, 1).")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta2={betas[1]}: must be in [0, 1).")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay={weight_decay}: must be >= 0.")
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay, amsgrad=amsgrad, maximize=maximize, foreach=foreach,
        )
        super().__init__(params, defaults)

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("PersistentAdam does not support sparse gradients.")
            state = self.state[p]
            if len(state) == 0:
                # step lives on the CPU as a float32 scalar (as in torch.optim.Adam): reading it costs no device sync.
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            steps.append(state["step"])

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], [], [], []
            self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            persistent_adam(
                params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                decoupled_weight_decay=group["decoupled_weight_decay"], amsgrad=group["amsgrad"],
                maximize=group["maximize"], foreach=group["foreach"],
            )
        return loss


def persistent_adam(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor], steps: list[Tensor], *, lr: float, beta1: float, beta2: float, eps: float,
    weight_decay: float, decoupled_weight_decay: bool, amsgrad: bool, maximize: bool, foreach: bool | None,
) -> None:
    """Functional PersistentAdam: updates ``params`` and the state lists in place (see the module docstring)."""
    if foreach is None:
        foreach = all(p.device.type in ("cuda", "cpu") for p in params)
    fn = _multi_tensor_persistent_adam if foreach else _single_tensor_persistent_adam
    fn(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
       weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay, amsgrad=amsgrad, maximize=maximize)


def _single_tensor_persistent_adam(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay,
    decoupled_weight_decay, amsgrad, maximize,
) -> None:
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        exp_avg, exp_avg_sq, step_t = exp_avgs[i], exp_avg_sqs[i], steps[i]
        step_t += 1
        if weight_decay != 0:
            if decoupled_weight_decay:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)  # m = b1 m + (1 - b1) g
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v = b2 v + (1 - b2) g^2
        step = step_t.item()
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
            denom = (max_exp_avg_sqs[i].sqrt() / bias_correction2_sqrt).add_(eps)
        else:
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-step_size)


def _multi_tensor_persistent_adam(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay,
    decoupled_weight_decay, amsgrad, maximize,
) -> None:
    # foreach kernels need every list on one device and dtype: bucket by (device, dtype) first.
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        buckets.setdefault((p.device, p.dtype), []).append(i)
    for idx in buckets.values():
        p_ = [params[i] for i in idx]
        g_ = [grads[i] for i in idx]
        m_ = [exp_avgs[i] for i in idx]
        v_ = [exp_avg_sqs[i] for i in idx]
        s_ = [steps[i] for i in idx]
        if maximize:
            g_ = torch._foreach_neg(g_)
        torch._foreach_add_(s_, 1.0)
        if weight_decay != 0:
            if decoupled_weight_decay:
                torch._foreach_mul_(p_, 1 - lr * weight_decay)
            else:
                g_ = torch._foreach_add(g_, p_, alpha=weight_decay)
        torch._foreach_lerp_(m_, g_, 1 - beta1)
        torch._foreach_mul_(v_, beta2)
        torch._foreach_addcmul_(v_, g_, g_, 1 - beta2)
        step_values = [s.item() for s in s_]
        neg_step_size = [-lr / (1 - beta1**s) for s in step_values]
        bias_correction2_sqrt = [(1 - beta2**s) ** 0.5 for s in step_values]
        if amsgrad:
            vmax_ = [max_exp_avg_sqs[i] for i in idx]
            torch._foreach_maximum_(vmax_, v_)
            denom = torch._foreach_sqrt(vmax_)
        else:
            denom = torch._foreach_sqrt(v_)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(p_, m_, denom, neg_step_size)
