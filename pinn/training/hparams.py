"""Settings objects in a module's hyper-parameters as plain data.

A settings dataclass comes from YAML as a dict, or from Python as an instance; the module keeps the instance, and
its ``hparams`` (saved in every checkpoint) the plain dict, so that checkpoints load with ``weights_only``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, TypeVar

T = TypeVar("T")


def config_of(cls: type[T], value: T | dict | None) -> T | None:
    """A settings dataclass from YAML (a dict), as given (an instance), or ``None``."""
    return cls(**value) if isinstance(value, dict) else value


def settings(hparams: Any, name: str, cls: type[T], value: T | dict | None) -> T | None:
    """``value`` as a ``cls`` instance (or ``None``), recorded in ``hparams[name]`` as a plain dict (or ``None``)."""
    instance = config_of(cls, value)
    hparams[name] = None if instance is None else asdict(instance)
    return instance
