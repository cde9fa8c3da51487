"""A trained model from its checkpoint alone: the run is rebuilt from the config that ``pinn fit`` stores in it.

The model and data sections of the stored config are parsed as the CLI parses them (the same classes, the data
module's problem linked into the model), without the CLI itself, so that loading sits below it. Only the classes
are built: no trainer, logger or callback, nothing written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser

from pinn.io.checkpointing import load_checkpoint
from pinn.run_state import CheckpointError
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN


def model_from_config(config: str | dict[str, Any]) -> ElasticPINN:
    """The untrained :class:`ElasticPINN` of a run's config (YAML text or its dict, as ``pinn fit`` stores it).

    Only the ``model`` and ``data`` sections are read; ``data.problem`` becomes the model's problem, as in the CLI.
    """
    settings = yaml.safe_load(config) if isinstance(config, str) else config
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(ElasticPINN, "model", subclass_mode=False)
    parser.add_lightning_class_args(ElasticDataModule, "data", subclass_mode=False)
    parser.link_arguments("data.problem", "model.problem", apply_on="instantiate")
    parsed = parser.parse_object({key: settings.get(key) or {} for key in ("model", "data")})
    return parser.instantiate(parsed).model


def load(path: str | Path, map_location: str | torch.device = "cpu") -> ElasticPINN:
    """The :class:`ElasticPINN` stored in the checkpoint ``path``, in eval mode.

    The model and its problem are rebuilt from the run's config that ``pinn fit`` stores in every checkpoint
    (``checkpoint["config"]``), then the weights (and any trained material) are loaded; nothing is written.

    Raises:
        CheckpointError: The file is missing or damaged, or holds no run config (not written by ``pinn fit``).
    """
    checkpoint = load_checkpoint(path, map_location=map_location)
    config = checkpoint.get("config")
    if not config:
        raise CheckpointError(f"{path}: holds no run config (not written by `pinn fit`); build the model yourself "
                              "and call ElasticPINN.load_from_checkpoint(path, problem=...).")
    model = model_from_config(config)
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()
