"""Physics-informed neural networks for 2D elastic waves on PyTorch Lightning."""

from pinn.io.loading import load
from pinn.networks.derivatives import Fields, autograd_fields, compute_fields, taylor_fields
from pinn.networks.mlp import MLP
from pinn.optim import PersistentAdam, StatelessAdam, persistent_adam
from pinn.physics.elasticity import Material, residual, strain, stress, traction
from pinn.physics.material import TrainableMaterial, Unknowns
from pinn.problems import Domain, Manufactured, PlaneWaves, Problem, Wave
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN, LossWeights
from pinn.training.observations import (
    FileObservations,
    Observations,
    SyntheticObservations,
    read_observations,
    write_observations,
)
from pinn.training.resampling import ResidualResampling
from pinn.training.sampling import ResampleRule

__all__ = [
    "Domain", "ElasticDataModule", "ElasticPINN", "Fields", "FileObservations", "LossWeights", "MLP", "Manufactured",
    "Material", "Observations", "PersistentAdam", "PlaneWaves", "Problem", "ResampleRule", "ResidualResampling",
    "StatelessAdam", "SyntheticObservations", "TrainableMaterial", "Unknowns", "Wave", "autograd_fields",
    "compute_fields", "load", "persistent_adam", "read_observations", "residual", "strain", "stress", "taylor_fields",
    "traction", "write_observations",
]
