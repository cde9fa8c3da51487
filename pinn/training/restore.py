"""A trained model from its checkpoint alone: the run is rebuilt from the config that ``pinn fit`` stores in it.

The model section and the problem of the stored config are parsed as the CLI parses them (the same classes, the
data module's problem linked into the model), without the CLI itself, so that loading sits below it. Only the
model and its problem are built: no data module, trainer, logger or callback; nothing is written, and the solver
does not run (the scales the network was trained with are in the checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser

from pinn.io.checkpoint_format import load_checkpoint
from pinn.optim.run_state import CheckpointError
from pinn.problems.problem import Problem


def model_from_config(config: str | dict[str, Any], model_class: type[L.LightningModule]) -> L.LightningModule:
    """The untrained model of a run's config (YAML text or its dict, as ``pinn fit`` stores it), an instance of
    ``model_class`` (:class:`~pinn.training.module.ElasticPINN`, which passes itself: this module sits below it).

    Only the ``model`` section and ``data.problem`` are read, and ``data.problem`` becomes the model's problem, as
    in the CLI; the data module is not built (its observations may need the reference solution).
    """
    settings = yaml.safe_load(config) if isinstance(config, str) else config
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(model_class, "model", subclass_mode=False)
    parser.add_subclass_arguments(Problem, "problem", required=False)
    parser.link_arguments("problem", "model.problem", apply_on="instantiate")
    problem = (settings.get("data") or {}).get("problem")
    parsed = parser.parse_object({"model": settings.get("model") or {}, "problem": problem})
    return parser.instantiate(parsed).model


def load(path: str | Path, model_class: type[L.LightningModule],
         map_location: str | torch.device = "cpu") -> L.LightningModule:
    """The ``model_class`` model stored in the checkpoint ``path``, in eval mode (``pinn.load`` and
    ``ElasticPINN.load_from_checkpoint`` without ``problem=`` call this with :class:`ElasticPINN`).

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
    model = model_from_config(config, model_class)
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()
