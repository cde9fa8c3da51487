"""Validation of Adam hyper-parameters and state dicts, for ``pinn.optim.persistent_adam.PersistentAdam``.

A state dict is checked completely before an optimizer changes, so a bad checkpoint leaves the optimizer as it
was. Accepted are state dicts of ``PersistentAdam`` (with ``format_version``) and of ``torch.optim.Adam`` /
``AdamW`` (without): both use torch's layout ``{"state": {index: {...}}, "param_groups": [{..., "params": [index,
...]}]}``, where indices count the parameters through the groups in order.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

FORMAT_VERSION = 1
"""Version of the state dict layout written by ``PersistentAdam.state_dict`` (key ``format_version``)."""

MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
# options that select torch.optim.Adam's fused/differentiable kernels; PersistentAdam has neither of them
TORCH_ONLY_KEYS = ("differentiable", "fused")
# how this process runs a step, not part of a run's state: a loaded state dict does not change it
PROCESS_KEYS = ("capturable",)
_FIX = "Load a checkpoint written for the same model and optimizer settings, or start the optimizer afresh."


def check_hyperparameters(*, lr: float, betas: Sequence[float], eps: float, weight_decay: float) -> None:
    """Raise ``ValueError`` naming the value unless each is a plain number (not a tensor) with lr >= 0, eps >= 0,
    weight_decay >= 0 and betas in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas={betas} must be two values (beta1, beta2).")
    values = {"lr": lr, "eps": eps, "weight_decay": weight_decay, "beta1": betas[0], "beta2": betas[1]}
    for name, value in values.items():
        # torch.optim.Adam takes a tensor lr or betas only with its fused or capturable kernels (its default
        # multi-tensor path refuses a tensor lr mid-step); PersistentAdam has neither, so it refuses them up front.
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            hint = " (a tensor: pass float(value); a scheduler sets plain numbers)" if isinstance(value, Tensor) else ""
            raise ValueError(f"invalid {name}={value!r}: must be a real number{hint}.")
    for name, value in values.items():
        ok = 0.0 <= value < 1.0 if name.startswith("beta") else 0.0 <= value
        if not ok:  # also catches NaN
            bound = "in [0, 1)" if name.startswith("beta") else ">= 0"
            raise ValueError(f"invalid {name}={value}: must be {bound}.")


def check_group(group: dict[str, Any], where: str) -> None:
    """Raise ``ValueError`` unless the parameter group ``group`` (its options, defaults filled in) is one
    ``PersistentAdam`` runs as asked: valid hyper-parameters and no torch-only kernel switched on."""
    for key in TORCH_ONLY_KEYS:
        if group.get(key):  # False or None (torch's defaults) ask for nothing
            raise ValueError(f"{where}: {key}={group[key]!r} selects a torch.optim.Adam kernel that PersistentAdam "
                             f"does not have; remove it, or use torch.optim.Adam.")
    try:
        check_hyperparameters(lr=group["lr"], betas=group["betas"], eps=group["eps"],
                              weight_decay=group["weight_decay"])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _fail(message: str) -> None:
    raise ValueError(f"optimizer state_dict: {message}. {_FIX}")


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_step(step: Any, where: str) -> None:
    if isinstance(step, Tensor):
        if step.numel() != 1:
            _fail(f"{where}: step has shape {_shape(step)}, expected a scalar")
        if step.is_complex() or step.dtype == torch.bool:
            _fail(f"{where}: step has dtype {step.dtype}, expected a real number")
        value = step.item()
    elif isinstance(step, (int, float)) and not isinstance(step, bool):
        value = step
    else:
        _fail(f"{where}: step is a {type(step).__name__}, expected a tensor or a number")
    if not (math.isfinite(value) and value >= 0):
        _fail(f"{where}: step={value} must be finite and >= 0")


def _check_param_state(state: Any, param: Tensor, amsgrad: bool, where: str) -> None:
    """Check the state of one parameter: keys, then a valid step, then shape and dtype of each moment."""
    if not isinstance(state, dict):
        _fail(f"{where}: state is a {type(state).__name__}, expected a dict")
    if not state:
        return  # the parameter never had a gradient: no state yet
    required = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if amsgrad else set())
    missing = sorted(required - state.keys())
    unexpected = sorted(state.keys() - required - {"max_exp_avg_sq"})
    if missing:
        _fail(f"{where}: missing key(s) {missing}" + (" (the group has amsgrad=True)" if amsgrad else ""))
    if unexpected:
        _fail(f"{where}: unexpected key(s) {unexpected}; not an Adam state")
    _check_step(state["step"], where)
    for key in MOMENT_KEYS:
        if key not in state:
            continue
        value = state[key]
        if not isinstance(value, Tensor):
            _fail(f"{where}: {key} is a {type(value).__name__}, expected a tensor")
        if _shape(value) != _shape(param):
            _fail(f"{where}: {key} has shape {_shape(value)}")
        if not value.is_floating_point():
            _fail(f"{where}: {key} has dtype {value.dtype}, expected a floating-point dtype")


def check_state_dict(param_groups: list[dict[str, Any]], state_dict: Any) -> None:
    """Raise ``ValueError`` unless ``state_dict`` is a valid Adam state for an optimizer with ``param_groups``.

    Checks the layout and ``format_version``, the group count, the parameters per group, each group's
    hyper-parameters, and each parameter's state (keys, finite non-negative step, moment shapes and dtypes).
    """
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
        _fail("expected a dict with keys 'state' and 'param_groups'")
    version = state_dict.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        _fail(f"format_version={version!r} is not supported (this version reads 1 to {FORMAT_VERSION})")
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
        _fail("'param_groups' must be a list and 'state' a dict")
    if len(saved_groups) != len(param_groups):
        _fail(f"it has {len(saved_groups)} parameter group(s), the optimizer has {len(param_groups)}")
    seen: set[Any] = set()
    for g, (group, saved) in enumerate(zip(param_groups, saved_groups)):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
            _fail(f"group {g} is not a dict with a 'params' list")
        ids, params = saved["params"], group["params"]
        if len(ids) != len(params):
            _fail(f"group {g} has {len(ids)} parameter(s), the optimizer's group {g} has {len(params)}")
        if seen & set(ids) or len(set(ids)) != len(ids):
            _fail(f"group {g} repeats parameter indices {list(ids)}")
        seen |= set(ids)
        merged = {**group, **saved}  # keys a foreign group lacks fall back to the optimizer's own
        try:
            check_hyperparameters(lr=merged["lr"], betas=merged["betas"], eps=merged["eps"],
                                  weight_decay=merged["weight_decay"])
        except (ValueError, TypeError) as err:
            _fail(f"group {g}: {str(err).rstrip('.')}")
        for i, (pid, param) in enumerate(zip(ids, params)):
            where = f"group {g}, parameter {i} (shape {_shape(param)})"
            _check_param_state(saved_state.get(pid, {}), param, bool(merged["amsgrad"]), where)
    stray = [k for k in saved_state if k not in seen]
    if stray:
        _fail(f"state for parameter indices {stray[:5]} that no group lists")


def clean_state_dict(param_groups: list[dict[str, Any]], state_dict: Any) -> dict[str, Any]:
    """Validate ``state_dict`` (see ``check_state_dict``) and return a copy ready for ``Optimizer.load_state_dict``:
    moments copied to their parameter's device and dtype, ``step`` a fresh float32 scalar (on the CPU, or on the
    parameter's device where the group is ``capturable``), torch-only kernel options dropped from the groups, the
    process's own setting (``capturable``) kept and missing options filled from the optimizer's
    groups."""
    check_state_dict(param_groups, state_dict)
    state: dict[Any, dict[str, Any]] = {}
    groups = []
    for group, saved in zip(param_groups, state_dict["param_groups"]):
        for pid, param in zip(saved["params"], group["params"]):
            entry = state_dict["state"].get(pid)
            if not entry:
                continue
            step = entry["step"]
            step = step.detach() if isinstance(step, Tensor) else torch.tensor(float(step))
            device = param.device if group.get("capturable") else "cpu"
            state[pid] = {"step": step.to(device, torch.float32, copy=True).reshape(())}
            for key in MOMENT_KEYS:
                if key in entry:
                    state[pid][key] = entry[key].detach().to(param.device, param.dtype, copy=True)
        merged = {k: v for k, v in group.items() if k != "params"}
        merged.update((k, v) for k, v in saved.items() if k not in TORCH_ONLY_KEYS + PROCESS_KEYS)
        merged["betas"] = tuple(float(b) for b in merged["betas"])
        groups.append(merged)
    return {"state": state, "param_groups": groups}
