"""Physics-informed neural networks for 2D elastic waves on PyTorch Lightning."""

from pinn.data import ElasticDataModule
from pinn.derivatives import Fields, autograd_fields, compute_fields, taylor_fields
from pinn.material import TrainableMaterial, Unknowns
from pinn.module import ElasticPINN, LossWeights
from pinn.network import MLP
from pinn.observations import (
    FileObservations,
    Observations,
    SyntheticObservations,
    read_observations,
    write_observations,
)
from pinn.optim import PersistentAdam, StatelessAdam, persistent_adam
from pinn.physics import Material, residual, strain, stress, traction
from pinn.problems import Domain, Manufactured, PlaneWaves, Problem, Wave
from pinn.resampling import ResidualResampling
from pinn.sampling import ResampleRule

__all__ = [
    "Domain", "ElasticDataModule", "ElasticPINN", "Fields", "FileObservations", "LossWeights", "MLP", "Manufactured",
    "Material", "Observations", "PersistentAdam", "PlaneWaves", "Problem", "ResampleRule", "ResidualResampling",
    "StatelessAdam", "SyntheticObservations", "TrainableMaterial", "Unknowns", "Wave", "autograd_fields",
    "compute_fields", "persistent_adam", "read_observations", "residual", "strain", "stress", "taylor_fields",
    "traction", "write_observations",
]
