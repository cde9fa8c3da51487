"""Command line: ``pinn fit|validate|test|predict -c configs/X.yaml [--ckpt_path PATH|last]``, and
``pinn reference -c configs/X.yaml``, which computes and caches the finite-difference reference of a problem without
a closed form (fit, validate, test and predict compute it first when it is missing)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from jsonargparse import Namespace
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import ArgsType, LightningCLI

from pinn.io.checkpointing import (
    CheckpointError,
    RunCheckpoint,
    SaveConfigToCheckpoint,
    VerifiedCheckpointIO,
    check_state_dict,
    load_checkpoint,
)
from pinn.io.monitoring import HParamsSummary, ResidualHistogram, StepProgressBar, ValidationFigures
from pinn.io.prediction import PredictionWriter
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN


class UserError(ValueError):
    """An error the user can fix (bad value, missing file); the CLI prints it in one line and exits 2."""


def find_last_checkpoint(save_dir: str | Path, name: str) -> tuple[Path, int] | None:
    """The ``last.ckpt`` of the newest version under ``save_dir/name``, with that version number."""
    found = []
    for path in Path(save_dir, name).glob("version_*/checkpoints/last.ckpt"):
        match = re.fullmatch(r"version_(\d+)", path.parent.parent.name)
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        return None
    version, path = max(found)
    return path, version


def _is_checkpoint_file(ckpt_path: str | Path | None) -> bool:
    """Whether ``--ckpt_path`` names a file (or ``last``, which the CLI resolves to one), not one of Lightning's
    special values: ``best``, ``hpc`` or a ``registry`` model."""
    return bool(ckpt_path) and ckpt_path not in ("best", "hpc") and not str(ckpt_path).startswith("registry")


class PINNCLI(LightningCLI):
    """LightningCLI for elastic PINNs: links the problem from the data module into the model, adds a
    ``checkpoint`` section (:class:`~pinn.io.checkpointing.RunCheckpoint`: best by ``val/rel_l2`` plus ``last.ckpt``),
    and resolves ``--ckpt_path last`` to the previous run of the same experiment so it continues in the same log
    folder. Checkpoints are written and read by :class:`~pinn.io.checkpointing.VerifiedCheckpointIO` and carry the
    run's config, so ``--ckpt_path X`` without ``-c`` rebuilds the run from the checkpoint alone; a checkpoint is
    verified (checksum, format, shapes against the model) before anything is written."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.problem", "model.problem", apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/rel_l2",
            "checkpoint.mode": "min",
            "checkpoint.save_top_k": 3,
            "checkpoint.save_last": True,
            "checkpoint.filename": "step={step}-rel_l2={val/rel_l2:.3e}",
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.every_n_train_steps": 100,
            "checkpoint.enable_version_counter": False,  # last.ckpt keeps its name when a run continues
        })
        # monitoring and outputs, each configurable under its own key (e.g. `val_figures: {every_n_validations: 5}`)
        parser.add_lightning_class_args(ValidationFigures, "val_figures")
        parser.add_lightning_class_args(ResidualHistogram, "residual_histogram")
        parser.add_lightning_class_args(HParamsSummary, "hparams_tab")
        parser.add_lightning_class_args(StepProgressBar, "progress_bar")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")

    def _instantiate_trainer(self, config: dict, callbacks: list):
        # the step progress bar gives way to `trainer.enable_progress_bar: false` and to a bar in trainer.callbacks
        own_bar = any(isinstance(c, ProgressBar) for c in config.get("callbacks") or [])
        if own_bar or config.get("enable_progress_bar") is False:
            callbacks = [c for c in callbacks if not isinstance(c, StepProgressBar)]
        return super()._instantiate_trainer(config, callbacks)

    def parse_arguments(self, parser, args: ArgsType) -> None:
        """Parse; when ``--ckpt_path FILE`` comes without a config, start from the config stored in FILE."""
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        if sub is None or isinstance(args, (dict, Namespace)):
            return
        ckpt_path = self.config[sub].get("ckpt_path")
        given = self.config.get("config") or self.config[sub].get("config")
        if not _is_checkpoint_file(ckpt_path) or ckpt_path == "last" or given:
            return
        stored = load_checkpoint(ckpt_path).get("config")
        if not stored:
            raise CheckpointError(f"{ckpt_path}: holds no run config (not written by `pinn fit`); pass one with -c.")
        argv = list(sys.argv[1:] if args is None else args)
        at = argv.index(sub) + 1
        self.config = parser.parse_args([*argv[:at], "--config", stored, *argv[at:]])  # the command line wins

    def _parse_ckpt_path(self) -> None:
        """Disabled: LightningCLI's version reads the checkpoint unverified and silently puts its model
        hyper-parameters over the given config; here the stored config is used only when none is given, and a
        checkpoint that does not fit the config is an error (``after_instantiate_classes``)."""

    def before_instantiate_classes(self) -> None:
        if self.subcommand in ("validate", "test", "predict"):
            # the run's config.yaml records how it was trained; evaluating a checkpoint must not overwrite it
            self.save_config_callback = None
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("ckpt_path") != "last":
            return
        logger = config.trainer.get("logger")
        init = logger.get("init_args") if hasattr(logger, "get") else None
        save_dir = (init or {}).get("save_dir") or "lightning_logs"
        name = (init or {}).get("name") or "lightning_logs"
        found = find_last_checkpoint(save_dir, name)
        if found is None:
            raise UserError(
                f"--ckpt_path last: no last.ckpt under {Path(save_dir, name)}/version_*/checkpoints/. "
                "Start a new run without --ckpt_path, or give the checkpoint file."
            )
        path, version = found
        config.ckpt_path = str(path)
        if init is not None:
            init["version"] = version  # continue writing into the same TensorBoard folder

    def after_instantiate_classes(self) -> None:
        """Verify the checkpoint and its fit to the model now, before the trainer writes anything."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        if _is_checkpoint_file(ckpt_path):  # "last" is a file by now (before_instantiate_classes)
            check_state_dict(load_checkpoint(ckpt_path)["state_dict"], self.model.state_dict(), ckpt_path)

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not when a config picks its own
            trainer.strategy.checkpoint_io = VerifiedCheckpointIO()
        return trainer


def cli_main(args: ArgsType = None, run: bool = True) -> PINNCLI:
    """Build and run the CLI (``args`` as a list or dict for tests, else ``sys.argv``; ``run=False`` only
    parses the configuration and instantiates the classes)."""
    return PINNCLI(
        ElasticPINN,
        ElasticDataModule,
        args=args,
        run=run,
        trainer_defaults={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "lightning_logs", "name": "default", "default_hp_metric": False},
            },
            "inference_mode": False,
        },
        save_config_callback=SaveConfigToCheckpoint,
        save_config_kwargs={"overwrite": True},
    )


def reference_main(args: list[str]) -> None:
    """``pinn reference -c X.yaml [--data.problem...]``: compute the problem's reference solution, or find it cached."""
    if any(a in ("-h", "--help") for a in args):
        print("usage: pinn reference -c CONFIG [-c OVERLAY ...] [--data.problem.init_args.KEY VALUE ...]\n\n"
              "Compute the Devito finite-difference reference of the config's problem and cache it on disk (under\n"
              "the problem's reference.cache_dir, keyed by the problem's content); prints where it is.")
        return
    problem = cli_main(args, run=False).datamodule.problem
    if problem.has_exact:
        raise UserError(f"{type(problem).__name__} has a closed-form solution, which is its truth; "
                        "`pinn reference` is for problems without one (e.g. pinn.problems.WaveProblem).")
    from pinn.problems.reference import reference_path

    reference = problem.solution()
    m = reference.meta
    print(f"pinn reference: {reference_path(problem)}: {len(reference.t)} times x {len(reference.y)} x "
          f"{len(reference.x)} nodes, h = {m['spacing'][0]:.4g} m, {m['steps']} steps, computed in "
          f"{m['wall_time_s']:.1f} s")


def main() -> None:
    """Console entry point: user errors in one line with exit code 2 (``PINN_DEBUG=1`` shows the traceback)."""
    try:
        if sys.argv[1:2] == ["reference"]:
            reference_main(sys.argv[2:])
            return
        cli_main()
    except (UserError, ValueError, FileNotFoundError) as err:
        if os.environ.get("PINN_DEBUG"):
            raise
        # jsonargparse wraps an error raised while building a nested object (the problem, its material, the
        # observations) in a multi-line "Does not validate against any of the Union subtypes"; the cause is the
        # user's error.
        while isinstance(err.__cause__, (ValueError, FileNotFoundError)):
            err = err.__cause__
        print(f"pinn: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
