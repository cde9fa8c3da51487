"""What the model adds to a checkpoint besides its weights, and reads back: the run state that makes a resumed run
the same run (global RNGs, the optimizer stage, the stall watch) and the scales that make a trained run load and
predict without the reference they came from."""

from __future__ import annotations

from dataclasses import asdict

from pinn import compat
from pinn.optim.run_state import check_state_dict, rng_states, set_rng_states
from pinn.physics.units import Scales


def save_run_state(model, checkpoint: dict) -> None:
    """``on_save_checkpoint`` of :class:`~pinn.training.module.ElasticPINN`."""
    checkpoint["rng_states"] = rng_states()  # global RNGs: exact resume even if a user adds e.g. dropout
    # which optimizer the saved optimizer state belongs to: configure_optimizers rebuilds that one on resume
    checkpoint["optimizer_stage"] = {"name": model.stage, "pool_version": model.pool_version,
                                     "stall": model.stall.state_dict()}
    # part of the trained model: a run loads and predicts with them, without the reference they came from
    checkpoint["scales"] = asdict(model.scales)


def load_run_state(model, checkpoint: dict) -> None:
    """``on_load_checkpoint``: check the weights fit, then restore what :func:`save_run_state` wrote."""
    trainer = compat.attached_trainer(model)
    path = getattr(trainer, "ckpt_path", None) or "checkpoint"
    model.size_buffers_like(checkpoint["state_dict"])
    check_state_dict(checkpoint["state_dict"], model.state_dict(), path)  # one clear error, not a RuntimeError
    stage = checkpoint.get("optimizer_stage", {"name": "adam"})
    if stage["name"] == "lbfgs" and model.lbfgs is None:
        raise ValueError(f"{path} was saved in the L-BFGS stage, but model.lbfgs is not set: resume with the "
                         "run's own config (model.lbfgs as it was).")
    # checkpoints written before the name was shared with the data module hold it as points_version
    model.stage, model.pool_version = stage["name"], int(stage.get("pool_version", stage.get("points_version", 0)))
    if "stall" in stage:
        model.stall.load_state_dict(stage["stall"])
    if "scales" in checkpoint:  # older checkpoints have none: the problem's are found on first use
        model.scales = Scales(**checkpoint["scales"])
    if model.stage == "lbfgs" and model.lbfgs.float64:
        model.double()  # the saved float64 weights load into float64 parameters, exactly
    if trainer is not None and trainer.state.fn == "fit" and "rng_states" in checkpoint:
        set_rng_states(checkpoint["rng_states"])
