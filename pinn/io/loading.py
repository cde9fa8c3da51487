"""``pinn.load``: a trained model from its checkpoint alone, with the problem it was trained on."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from pinn.io.checkpointing import CheckpointError, load_checkpoint


def load(path: str | Path, map_location: str | torch.device = "cpu"):
    """The :class:`~pinn.training.module.ElasticPINN` stored in the checkpoint ``path``, in eval mode.

    The model and its problem are rebuilt from the run's config that ``pinn fit`` stores in every checkpoint
    (``checkpoint["config"]``), then the weights (and any trained material) are loaded; nothing is written.

    Raises:
        CheckpointError: The file is missing or damaged, or holds no run config (not written by ``pinn fit``).
    """
    from pinn.cli import cli_main  # the CLI imports this package; import it only when used

    checkpoint = load_checkpoint(path, map_location=map_location)
    config = checkpoint.get("config")
    if not config:
        raise CheckpointError(f"{path}: holds no run config (not written by `pinn fit`); build the model yourself "
                              "and call ElasticPINN.load_from_checkpoint(path, problem=...).")
    settings = yaml.safe_load(config)
    for key in ("ckpt_path", "weights_only", "verbose"):  # arguments of the subcommand, not of the run
        settings.pop(key, None)
    # the run's own config, minus anything that would write (no logger; checkpoints are only written by fit); as a
    # dict, since a config passed as text on the command line is first tried as a file name, which a long one is not
    settings.setdefault("trainer", {}).update(logger=False, enable_progress_bar=False)
    cli = cli_main(settings, run=False)
    model = cli.model
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()
