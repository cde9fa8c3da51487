"""Physics-informed neural networks for 2D elastic waves on PyTorch Lightning."""

from pinn.data import ElasticDataModule
from pinn.derivatives import Fields, autograd_fields, compute_fields, taylor_fields
from pinn.module import ElasticPINN, LossWeights
from pinn.network import MLP
from pinn.optim import PersistentAdam, StatelessAdam, persistent_adam
from pinn.physics import Material, residual, strain, stress, traction
from pinn.problems import Domain, Manufactured, PlaneWaves, Problem, Wave
from pinn.resampling import ResidualResampling
from pinn.sampling import ResampleRule

__all__ = [
    "Domain", "ElasticDataModule", "ElasticPINN", "Fields", "LossWeights", "MLP", "Manufactured", "Material",
    "PersistentAdam", "PlaneWaves", "Problem", "ResampleRule", "ResidualResampling", "StatelessAdam", "Wave",
    "autograd_fields", "compute_fields", "persistent_adam", "residual", "strain", "stress", "taylor_fields",
    "traction",
]
