"""Host values as tensors on the device, made once and kept.

A problem's constants (a source's position, an edge's normals, a gridded medium's samples) are Python numbers or
CPU arrays. Making a tensor of them on every call copies them from the host to the device on every training step:
a synchronising copy, and one that a captured CUDA graph cannot hold (``torch.cuda.graph`` refuses it, or replays
the first step's values). A :class:`DeviceCache` makes each one once per device and dtype, the first time a step
asks (an eager warm-up step, before any capture), and hands back the same tensor afterwards.

:func:`cached_tensors` lists every tensor the live caches hold, so that a test can tell these constants from a
tensor that comes into a step from the host (``tests/test_host_traffic.py``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

_CACHES: weakref.WeakSet = weakref.WeakSet()


class DeviceCache:
    """Tensors made from host values, one per ``(name, device, dtype)``.

    Not copied with its owner (pickling or deep-copying a problem gives an empty cache): what it holds lives on one
    process's devices.
    """

    def __init__(self) -> None:
        self._tensors: dict[tuple, Tensor] = {}
        _CACHES.add(self)

    def get(self, name: Any, make: Callable[[], Any], device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
        """The tensor ``make()`` gives (numbers, a list, an array or a CPU tensor), in ``dtype`` on ``device``;
        ``make`` runs only the first time for this name, device and dtype."""
        key = (name, torch.device(device), dtype)
        tensor = self._tensors.get(key)
        if tensor is None:
            value = make()
            # host numbers straight in the target dtype: through float32 first would round float64 constants
            value = value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=dtype)
            tensor = self._tensors[key] = value.to(device=device, dtype=dtype or value.dtype).detach()
        return tensor

    def like(self, name: Any, make: Callable[[], Any], like: Tensor) -> Tensor:
        """:meth:`get` in the device and dtype of ``like``."""
        return self.get(name, make, like.device, like.dtype)

    def clear(self) -> None:
        self._tensors.clear()

    def __len__(self) -> int:
        return len(self._tensors)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def __deepcopy__(self, memo) -> DeviceCache:
        return DeviceCache()

    def __repr__(self) -> str:
        return f"DeviceCache({len(self)} tensors)"


def cached_tensors() -> list[Tensor]:
    """Every tensor held by a live :class:`DeviceCache`."""
    return [t for cache in list(_CACHES) for t in cache._tensors.values()]


def device_cache(owner: object) -> DeviceCache:
    """The :class:`DeviceCache` of ``owner`` (made on first use, kept in its ``__dict__`` under a private name, so
    that content keys and equality, which skip private and non-field attributes, do not see it)."""
    cache = owner.__dict__.get("_device_cache")
    if cache is None:
        cache = owner.__dict__["_device_cache"] = DeviceCache()
    return cache
