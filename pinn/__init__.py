"""Physics-informed neural networks for 2D elastic waves on PyTorch Lightning.

The names below are imported on first use (PEP 562), so that ``import pinn.physics.media`` loads torch alone, not
Lightning: importing a submodule runs this file first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "Fields": "pinn.physics.fields",
    "autograd_fields": "pinn.networks.derivatives",
    "compute_fields": "pinn.networks.derivatives",
    "taylor_fields": "pinn.networks.derivatives",
    "MLP": "pinn.networks.mlp",
    "PersistentAdam": "pinn.optim",
    "StatelessAdam": "pinn.optim",
    "persistent_adam": "pinn.optim",
    "Material": "pinn.physics.elasticity",
    "residual": "pinn.physics.elasticity",
    "strain": "pinn.physics.elasticity",
    "stress": "pinn.physics.elasticity",
    "traction": "pinn.physics.elasticity",
    "TrainableMaterial": "pinn.physics.unknowns",
    "Unknowns": "pinn.physics.unknowns",
    "Domain": "pinn.problems",
    "Manufactured": "pinn.problems",
    "PlaneWaves": "pinn.problems",
    "Problem": "pinn.problems",
    "Wave": "pinn.problems",
    "ElasticDataModule": "pinn.training.data",
    "ElasticPINN": "pinn.training.module",
    "LossWeights": "pinn.training.module",
    "FileObservations": "pinn.training.observations",
    "Observations": "pinn.training.observations",
    "SyntheticObservations": "pinn.training.observations",
    "read_observations": "pinn.io.observation_files",
    "write_observations": "pinn.io.observation_files",
    "ResidualResampling": "pinn.training.resampling",
    "ResampleRule": "pinn.training.sampling",
}
__all__ = [
    "Domain", "ElasticDataModule", "ElasticPINN", "Fields", "FileObservations", "LossWeights", "MLP", "Manufactured",
    "Material", "Observations", "PersistentAdam", "PlaneWaves", "Problem", "ResampleRule", "ResidualResampling",
    "StatelessAdam", "SyntheticObservations", "TrainableMaterial", "Unknowns", "Wave", "autograd_fields",
    "compute_fields", "load", "persistent_adam", "read_observations", "residual", "strain", "stress", "taylor_fields",
    "traction", "write_observations"
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'pinn' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def load(path, map_location="cpu"):
    """The :class:`~pinn.training.module.ElasticPINN` stored in the checkpoint ``path``, in eval mode, rebuilt from
    the run's config inside it (:func:`pinn.training.restore.load`); neither the solver nor the data module runs."""
    from pinn.training.module import ElasticPINN

    return ElasticPINN.load_from_checkpoint(path, map_location)


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


if TYPE_CHECKING:  # for type checkers and IDEs, which do not run __getattr__
    from pinn.io.observation_files import read_observations, write_observations
    from pinn.networks.derivatives import autograd_fields, compute_fields, taylor_fields
    from pinn.networks.mlp import MLP
    from pinn.optim import PersistentAdam, StatelessAdam, persistent_adam
    from pinn.physics.elasticity import Material, residual, strain, stress, traction
    from pinn.physics.fields import Fields
    from pinn.physics.unknowns import TrainableMaterial, Unknowns
    from pinn.problems import Domain, Manufactured, PlaneWaves, Problem, Wave
    from pinn.training.data import ElasticDataModule
    from pinn.training.module import ElasticPINN, LossWeights
    from pinn.training.observations import FileObservations, Observations, SyntheticObservations
    from pinn.training.resampling import ResidualResampling
    from pinn.training.sampling import ResampleRule
