"""What a checkpoint restores beside the weights and the optimizer, usable from every layer.

The global random states (so that a resumed run draws what the uninterrupted one would), the check that saved
weights fit the model they are loaded into, and :class:`CheckpointError`, the error of a checkpoint that cannot be
used. Plain torch and numpy: the checkpoint format (:mod:`pinn.io.checkpointing`), the model
(:mod:`pinn.training.module`) and the CLI all use them, so they live below all three.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import torch
from torch import Tensor


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is; the message names the file, the problem and what to do."""


def check_state_dict(saved: Mapping[str, Tensor], current: Mapping[str, Tensor], path: str | PurePath) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's ``saved`` weights fit the ``current`` model."""
    hint = "Use the config the checkpoint was trained with (it is stored inside: drop -c to use it)."
    for name, tensor in current.items():
        if name in saved and tuple(saved[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: parameter {name} has shape {list(saved[name].shape)} in the checkpoint, the config says "
                f"{list(tensor.shape)}. {hint}"
            )
    missing = [name for name in current if name not in saved]
    unexpected = [name for name in saved if name not in current]
    for names, where, other in ((missing, "the config's model", "the checkpoint"),
                                (unexpected, "the checkpoint", "the config's model")):
        if names:
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            raise CheckpointError(f"{path}: parameter {names[0]}{more} is in {where} but not in {other}. {hint}")


# ---- global random state ----------------------------------------------------------------------------------
def rng_states() -> dict[str, Any]:
    """The global random states (torch CPU and CUDA, numpy, Python) as plain data and tensors."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    # The Mersenne Twister words are uint32; an int32 view keeps every bit in half the bytes of int64.
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].view(np.int32).copy()), *np_state[2:]),
        "python": (version, torch.from_numpy(np.array(internal, dtype=np.uint32).view(np.int32)), gauss),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_states` captured (CUDA states only onto the same number of devices)."""
    torch.set_rng_state(states["torch"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().view(np.uint32), *rest))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal.numpy().view(np.uint32).tolist()), gauss))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
