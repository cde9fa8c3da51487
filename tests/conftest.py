import math
from pathlib import Path

import pytest
import torch
import yaml

from pinn.physics.elasticity import Material
from pinn.problems.closed_form import Domain, Manufactured, PlaneWaves, Wave


def reference_waves() -> list[Wave]:
    """The reference problem's P wave at 0.3 rad and S wave at 1.2 rad, |k| = 2 pi."""
    return [Wave("P", 0.3, 2 * math.pi), Wave("S", 1.2, 2 * math.pi)]


@pytest.fixture
def plane_waves() -> PlaneWaves:
    return PlaneWaves(reference_waves(), Domain(), Material(1.0, 0.5, 1.0))


@pytest.fixture
def exact_problems() -> list:
    """Every problem with a closed-form solution, with non-trivial parameters."""
    mat = Material(lam=2.0, mu=0.7, rho=1.3)
    dom = Domain((-1.0, 2.0), (0.5, 1.5), (0.0, 0.7))
    return [
        PlaneWaves(reference_waves(), Domain(), Material(1.0, 0.5, 1.0)),
        PlaneWaves([Wave("P", -0.7, 3.0, 0.5, 0.4), Wave("S", 2.5, 5.0, 1.5, -1.0), Wave("S", 0.1, 1.0)], dom, mat),
        Manufactured(1.0, math.pi, math.pi, 2 * math.pi, Domain(), Material(1.0, 0.5, 1.0)),
        Manufactured(0.3, 2.0, 1.3, 4.0, dom, mat),
    ]


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module of tiny runs: with tiny tensors, extra threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_run_config():
    """Returns ``write(root, name, trainer, **sections)``, see :func:`_tiny_run_config`."""
    return _tiny_run_config


def _tiny_run_config(root: Path, name: str, trainer: dict, **sections) -> str:
    """YAML of a tiny ``pinn fit`` run logging to ``root/logs/name``: a 2 x 8 network, quiet trainer, the given
    ``trainer`` options on top, and the other sections (``data``, ``checkpoint``, ...) as given."""
    base = {"inference_mode": False, "log_every_n_steps": 1, "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": f"{root}/logs", "name": name}}}
    config = {"seed_everything": 0, "trainer": {**base, **trainer}, "model": {"width": 8, "depth": 2}, **sections}
    return yaml.safe_dump(config, sort_keys=False)
