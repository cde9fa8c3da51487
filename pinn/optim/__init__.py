"""Optimizers: PersistentAdam and its validated state dicts, and Levenberg-Marquardt for sums of squares."""

from pinn.optim.levenberg_marquardt import LevenbergMarquardt
from pinn.optim.persistent_adam import PersistentAdam, StatelessAdam, persistent_adam

__all__ = ["LevenbergMarquardt", "PersistentAdam", "StatelessAdam", "persistent_adam"]
