"""Checks a fit makes once the model meets its data module: one problem for both, and settings that fit together."""

from __future__ import annotations

from pinn.training.losses import problem_difference


def check_setup(model, datamodule, stage: str) -> None:
    """Raise ``ValueError`` with one message where the model and the data module cannot train together: two
    different problems, time windows with recordings, or unknowns without recordings."""
    if datamodule is None:
        return
    if getattr(datamodule, "problem", model.problem) is not model.problem:
        mismatch = problem_difference(model.problem, datamodule.problem)
        if mismatch:
            raise ValueError(f"the model and the data module hold different problems ({mismatch}): build both "
                             "from one problem object (the CLI links data.problem into the model).")
    observed = getattr(datamodule, "observed", None) is not None
    if model.marching is not None and model.windows.count > 1 and observed:
        raise ValueError("model.windows.count > 1 with data.observations: time windows train forward problems; "
                         "set model.windows.count to 1 for an inverse run.")
    if stage == "fit" and model.trainable_material is not None and not model.problem.has_exact and not observed:
        raise ValueError("model.unknowns is set but data.observations is not: without recordings nothing "
                         "constrains the material; add data.observations (see README, Inverse problems).")
