"""Optimizers: PersistentAdam and its validated state dicts."""

from pinn.optim.persistent_adam import PersistentAdam, StatelessAdam, persistent_adam

__all__ = ["PersistentAdam", "StatelessAdam", "persistent_adam"]
