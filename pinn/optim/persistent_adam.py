r"""PersistentAdam: Adam with persistent per-parameter state, modelled on ``torch/optim/adam.py``.

For each parameter :math:`\theta` with gradient :math:`g_t` (Kingma & Ba 2015, Algorithm 1):

.. math::
    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
    \theta_t = \theta_{t-1} - \eta \, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, \qquad
    \hat m_t = \frac{m_t}{1 - \beta_1^t}, \quad \hat v_t = \frac{v_t}{1 - \beta_2^t}

with optional L2 weight decay (:math:`g_t \leftarrow g_t + \lambda\theta_{t-1}`), decoupled weight decay
(AdamW, Loshchilov & Hutter 2019: :math:`\theta \leftarrow \theta(1 - \eta\lambda)` before the update),
AMSGrad (Reddi et al. 2018: :math:`v^{max}_t = \max(v^{max}_{t-1}, v_t)` replaces :math:`v_t` in the denominator)
and ``maximize`` (:math:`g_t \leftarrow -g_t`).

The arithmetic is the same sequence of tensor operations as ``torch.optim.Adam`` (non-fused), so both give
identical results on the same gradients, with ``capturable`` as with torch's ``capturable``; the state is stored in
torch's layout, so state dicts move between the two. ``capturable=True`` keeps ``step`` on the parameter's device
and computes the bias corrections there, so a step reads nothing back to the host and can be captured in a CUDA
graph (``torch.cuda.graph``). ``StatelessAdam`` is the stateless approximation kept as a baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from pinn.optim.state import FORMAT_VERSION, check_group, check_hyperparameters, clean_state_dict

__all__ = ["FORMAT_VERSION", "PersistentAdam", "StatelessAdam", "persistent_adam"]

OPTIONS = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "amsgrad", "maximize", "foreach",
           "capturable")


class PersistentAdam(Optimizer):
    """Adam with per-parameter ``step``, ``exp_avg`` (m) and ``exp_avg_sq`` (v) kept across steps and checkpoints.

    Per parameter the state is ``step`` (a float32 scalar on the CPU, as in ``torch.optim.Adam``, so reading it
    costs no device synchronisation; on the parameter's device with ``capturable``), ``exp_avg`` and
    ``exp_avg_sq`` (like the parameter), and ``max_exp_avg_sq`` with ``amsgrad``. Every hyper-parameter is read
    from the parameter group at each step, so groups may differ (e.g. a separate learning rate for material
    parameters) and schedulers may change ``lr``.

    Args:
        params: Parameters or parameter groups (dicts) to optimise.
        lr: Learning rate eta.
        betas: Decay rates (beta1, beta2) of the first and second moment estimates, each in [0, 1).
        eps: Term added to the denominator for numerical stability.
        weight_decay: Weight decay coefficient lambda.
        decoupled_weight_decay: Apply weight decay to the parameters directly (AdamW) instead of as L2 on the
            gradient.
        amsgrad: Use the running maximum of the second moment (AMSGrad).
        maximize: Maximise the objective instead of minimising it.
        foreach: Use the multi-tensor ``torch._foreach_*`` path; ``None`` picks it when every parameter is on the
            CPU or a CUDA device.
        capturable: Keep ``step`` on the parameters' device and never synchronise with the host, so that the step
            can be captured in a CUDA graph (as ``torch.optim.Adam(capturable=True)``). It is a setting of the
            process, not of the run: a state dict loads into either.
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
        capturable: bool = False,
    ) -> None:
        check_hyperparameters(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        values = (lr, tuple(betas), eps, weight_decay, decoupled_weight_decay, amsgrad, maximize, foreach,
                  bool(capturable))
        super().__init__(params, dict(zip(OPTIONS, values)))

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # groups from older or foreign state dicts may lack newer options
            for key in OPTIONS:
                group.setdefault(key, self.defaults[key])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group after checking its options (``fused``, ``capturable`` and ``differentiable`` select torch
        kernels that PersistentAdam does not have: switched on, they are refused rather than ignored)."""
        options = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        check_group(options, f"parameter group {len(self.param_groups)}")
        super().add_param_group(param_group)

    def _check_step(self) -> None:
        """Everything a step could fail on, checked before it changes anything: a failed step leaves the
        parameters and the state as they were (groups can be edited between steps, as schedulers do)."""
        for g, group in enumerate(self.param_groups):
            check_group(group, f"parameter group {g}")
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("PersistentAdam does not support sparse gradients; use torch.optim.SparseAdam.")
                if not p.is_floating_point():
                    raise TypeError(f"PersistentAdam optimises real floating-point tensors, got dtype {p.dtype}.")

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps) -> None:
        """Collect the parameters of ``group`` that have a gradient, creating their state on first use."""
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            step_device = p.device if group["capturable"] else torch.device("cpu")
            if len(state) == 0:
                state["step"] = torch.zeros((), dtype=torch.float32, device=step_device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif state["step"].device != step_device:  # capturable switched, or state loaded on another device
                state["step"] = state["step"].to(step_device)
            if group["amsgrad"] and "max_exp_avg_sq" not in state:
                # zeros is the state AMSGrad starts from; also covers amsgrad switched on between steps
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            steps.append(state["step"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_step()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], [], [], []
            self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
            beta1, beta2 = group["betas"]
            persistent_adam(
                params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                decoupled_weight_decay=group["decoupled_weight_decay"], amsgrad=group["amsgrad"],
                maximize=group["maximize"], foreach=group["foreach"], capturable=group["capturable"],
            )
        return loss

    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer layout (``state``: index -> {step, exp_avg, exp_avg_sq[, max_exp_avg_sq]};
        ``param_groups``) plus ``format_version``; ``torch.optim.Adam.load_state_dict`` accepts it as is."""
        state_dict = super().state_dict()
        state_dict["format_version"] = FORMAT_VERSION
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of ``PersistentAdam`` or ``torch.optim.Adam``/``AdamW``.

        Pre-hooks (``register_load_state_dict_pre_hook``) run first, as in torch; then everything is checked
        before anything changes (group count, parameters per group, each state's keys,
        shapes, dtypes, a finite non-negative step; a ``ValueError`` names the group, the parameter index and its
        shape). State tensors are copied to each parameter's device and dtype, ``step`` to a CPU float32 scalar.
        """
        # As a pre-hook registered last, the check runs after the user's pre-hooks (torch documents those for
        # remapping a state dict, e.g. from another model's layout) and before anything is loaded.
        if not isinstance(state_dict, dict):
            clean_state_dict(self.param_groups, state_dict)  # raises the ValueError that says what is expected
        handle = self.register_load_state_dict_pre_hook(lambda opt, sd: clean_state_dict(opt.param_groups, sd))
        try:
            super().load_state_dict(state_dict)
        finally:
            handle.remove()


def persistent_adam(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor], steps: list[Tensor], *, lr: float, beta1: float, beta2: float, eps: float,
    weight_decay: float, decoupled_weight_decay: bool, amsgrad: bool, maximize: bool, foreach: bool | None,
    capturable: bool = False,
) -> None:
    """Functional PersistentAdam: updates ``params`` and the state lists in place (see the module docstring).

    ``max_exp_avg_sqs`` is used only with ``amsgrad``; ``steps`` are scalar tensors incremented here, on the
    parameters' device with ``capturable``.
    """
    if not params:  # e.g. a param group whose parameters got no gradient this step
        return
    if foreach is None:
        foreach = all(p.device.type in ("cuda", "cpu") for p in params)
    fn = _multi_tensor_persistent_adam if foreach else _single_tensor_persistent_adam
    fn(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
       weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay, amsgrad=amsgrad, maximize=maximize,
       capturable=capturable)


def _single_tensor_persistent_adam(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay,
    decoupled_weight_decay, amsgrad, maximize, capturable,
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
        if capturable:
            # the same update with the bias corrections as device tensors, folded into the denominator as torch
            # does (addcdiv_ takes no tensor value): denom = (sqrt(v) / (sqrt(bc2) * -s) + eps / -s), s = lr / bc1
            step_size_neg = (lr / (1 - beta1**step_t)).neg()
            bias_correction2_sqrt = (1 - beta2**step_t).sqrt()
            v = exp_avg_sq
            if amsgrad:
                max_exp_avg_sqs[i].copy_(torch.maximum(max_exp_avg_sqs[i], exp_avg_sq))
                v = max_exp_avg_sqs[i]
            denom = (v.sqrt() / (bias_correction2_sqrt * step_size_neg)).add_(eps / step_size_neg)
            param.addcdiv_(exp_avg, denom)
            continue
        step = step_t.item()
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
            denom = (max_exp_avg_sqs[i].sqrt() / bias_correction2_sqrt).add_(eps)
        else:
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)  # sqrt(v_hat) + eps
        param.addcdiv_(exp_avg, denom, value=-step_size)


def _multi_tensor_persistent_adam(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay,
    decoupled_weight_decay, amsgrad, maximize, capturable,
) -> None:
    for p_, g_, m_, v_, vmax_, s_ in _by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                                                         steps):
        if maximize:
            g_ = torch._foreach_neg(g_)
        # a plain number on every device: a tensor made here from host data would be a host-to-device copy in each
        # step, which a captured CUDA graph cannot hold (the CPU fallback's cost of wrapping 1 is negligible)
        torch._foreach_add_(s_, 1.0)
        if weight_decay != 0:
            if decoupled_weight_decay:
                torch._foreach_mul_(p_, 1 - lr * weight_decay)
            elif maximize:
                torch._foreach_add_(g_, p_, alpha=weight_decay)  # g_ is already a fresh negated copy
            else:
                g_ = torch._foreach_add(g_, p_, alpha=weight_decay)
        torch._foreach_lerp_(m_, g_, 1 - beta1)
        torch._foreach_mul_(v_, beta2)
        torch._foreach_addcmul_(v_, g_, g_, 1 - beta2)
        if capturable:
            # -(1 - b1^t) / lr and sqrt(1 - b2^t) as device tensors, then the parameter update divided by the former
            neg_bc1_over_lr = torch._foreach_pow(beta1, s_)
            torch._foreach_sub_(neg_bc1_over_lr, 1)  # b1^t - 1
            torch._foreach_div_(neg_bc1_over_lr, lr)
            torch._foreach_reciprocal_(neg_bc1_over_lr)  # -s = lr / (b1^t - 1)
            bc2_sqrt = torch._foreach_pow(beta2, s_)
            torch._foreach_sub_(bc2_sqrt, 1)
            torch._foreach_neg_(bc2_sqrt)
            torch._foreach_sqrt_(bc2_sqrt)
            if amsgrad:
                torch._foreach_maximum_(vmax_, v_)
            denom = torch._foreach_sqrt(vmax_ if amsgrad else v_)
            torch._foreach_div_(denom, bc2_sqrt)
            torch._foreach_add_(denom, eps)
            torch._foreach_div_(denom, neg_bc1_over_lr)
            torch._foreach_addcdiv_(p_, m_, denom)
            continue
        step_values = [s.item() for s in s_]
        neg_step_size = [(lr / (1 - beta1**t)) * -1 for t in step_values]
        bias_correction2_sqrt = [(1 - beta2**t) ** 0.5 for t in step_values]
        if amsgrad:
            torch._foreach_maximum_(vmax_, v_)
            denom = torch._foreach_sqrt(vmax_)
        else:
            denom = torch._foreach_sqrt(v_)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(p_, m_, denom, neg_step_size)


def _by_device_and_dtype(params: list[Tensor], *lists: list[Tensor]) -> list[tuple[list[Tensor], ...]]:
    """Split ``params`` and the parallel ``lists`` so that each part has one device and dtype, as foreach kernels
    need; an empty list (``max_exp_avg_sqs`` without amsgrad) stays empty."""
    first = params[0]
    if all(p.device == first.device and p.dtype == first.dtype for p in params):
        return [(params, *lists)]  # the usual case: nothing to split
    parts: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        parts.setdefault((p.device, p.dtype), []).append(i)
    return [tuple([xs[i] for i in idx] if xs else [] for xs in (params, *lists)) for idx in parts.values()]


class StatelessAdam(Optimizer):
    r"""Stateless approximation of Adam, kept as a baseline: no moment buffers, one scalar per parameter tensor.

    No config uses it; ``benchmarks/optim.py`` and the tests compare PersistentAdam against it. It stays in this
    module because it is built like PersistentAdam (the same ``defaults``, hyper-parameter checks and
    ``pinn.optim.state`` validation of its state dict), which its tests check side by side.

    Each parameter tensor :math:`\theta` with gradient :math:`g` is updated as

    .. math::
        s_t = \frac{\eta \sqrt{1 - \beta_2^t}}{(1 - \beta_1^t)\,(\sqrt{\overline{g^2}} + \epsilon)}, \qquad
        \theta \leftarrow \theta - s_t\, g,

    where :math:`\overline{g^2}` is the mean of :math:`g^2` over the tensor's elements: the Adam step with both
    moments replaced by the current gradient, and the second moment pooled over the tensor. The only state is the
    per-parameter ``step`` :math:`t`.

    Args:
        params: Parameters or parameter groups (dicts) to optimise.
        lr: Learning rate eta.
        betas: The (beta1, beta2) of the bias corrections, each in [0, 1).
        eps: Term added to the root-mean-square gradient for numerical stability.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        check_hyperparameters(lr=lr, betas=betas, eps=eps, weight_decay=0.0)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["step"] += 1
                t = state["step"].item()
                rms = p.grad.square().mean().sqrt()  # sqrt(mean(g^2)), a 0-d tensor: no device sync
                step_size = lr * (1 - beta2**t) ** 0.5 / (1 - beta1**t)
                p.addcdiv_(p.grad, rms.add_(eps), value=-step_size)
        return loss
