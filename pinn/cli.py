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
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from pinn.cli_errors import PINNArgumentParser, UserError, check_config_files
from pinn.io.checkpointing import (
    CheckpointError,
    RunCheckpoint,
    SaveConfigToCheckpoint,
    VerifiedCheckpointIO,
    load_checkpoint,
)
from pinn.io.material_history import MaterialHistory
from pinn.io.material_maps import MaterialMaps
from pinn.io.monitoring import HParamsSummary, ResidualHistogram, StepProgressBar, ValidationFigures
from pinn.io.prediction import PredictionWriter
from pinn.optim.run_state import check_state_dict
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN


def find_last_checkpoint(save_dir: str | Path, name: str) -> tuple[Path, int] | None:
    """The ``last.ckpt`` of the newest run of ``pinn fit`` under ``save_dir/name``, with its version number; ``None``
    when there is no run. A run is a ``version_N`` folder with a ``config.yaml`` or ``checkpoints/`` (validate, test
    and predict make folders with neither).

    Raises:
        UserError: The newest run has no ``last.ckpt`` (it stopped before its first save); an older run is not taken
            in its place without a word, the message names the newest one that has a ``last.ckpt``.
    """
    runs = sorted(
        (int(match.group(1)), folder) for folder in Path(save_dir, name).glob("version_*")
        if (match := re.fullmatch(r"version_(\d+)", folder.name))
        and ((folder / "config.yaml").is_file() or (folder / "checkpoints").is_dir())
    )
    if not runs:
        return None
    lasts = [(folder / "checkpoints" / "last.ckpt", version) for version, folder in reversed(runs)]
    if lasts[0][0].is_file():
        return lasts[0]
    older = [path for path, _ in lasts[1:] if path.is_file()]
    folder = lasts[0][0].parent.parent
    what = f"to continue an older run, pass its file: --ckpt_path {older[0]}" if older else \
        "no earlier run has one either; start a new run without --ckpt_path"
    raise UserError(f"--ckpt_path last: the newest run, {folder}, has no last.ckpt (it stopped before its first "
                    f"save); {what}")


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
        parser.add_lightning_class_args(MaterialMaps, "material_maps")
        parser.add_lightning_class_args(MaterialHistory, "material_history")
        parser.add_lightning_class_args(HParamsSummary, "hparams_tab")
        parser.add_lightning_class_args(StepProgressBar, "progress_bar")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")

    def _instantiate_trainer(self, config: dict, callbacks: list):  # a private hook: see pinn/compat.py
        # the step progress bar gives way to `trainer.enable_progress_bar: false` and to a bar in trainer.callbacks
        own_bar = any(isinstance(c, ProgressBar) for c in config.get("callbacks") or [])
        if own_bar or config.get("enable_progress_bar") is False:
            callbacks = [c for c in callbacks if not isinstance(c, StepProgressBar)]
        return super()._instantiate_trainer(config, callbacks)

    def parse_arguments(self, parser, args: ArgsType) -> None:
        """Parse; when ``--ckpt_path FILE`` comes without a config, start from the config stored in FILE."""
        argv = None if isinstance(args, (dict, Namespace)) else list(sys.argv[1:] if args is None else args)
        if argv is not None:
            check_config_files(argv)
        super().parse_arguments(parser, args)
        self._quiet_seed()
        sub = self.config.get("subcommand")
        if sub is None or argv is None:
            return
        ckpt_path = self.config[sub].get("ckpt_path")
        given = self.config.get("config") or self.config[sub].get("config")
        if not _is_checkpoint_file(ckpt_path) or ckpt_path == "last" or given:
            return
        stored = load_checkpoint(ckpt_path).get("config")
        if not stored:
            raise CheckpointError(f"{ckpt_path}: holds no run config (not written by `pinn fit`); pass one with -c.")
        at = argv.index(sub) + 1
        self.config = parser.parse_args([*argv[:at], "--config", stored, *argv[at:]])  # the command line wins
        self._quiet_seed()

    def _quiet_seed(self) -> None:
        """Take ``seed_everything`` out of Lightning's hands: it would log "Seed set to N" before the classes are
        built, a line of noise before any error they raise. :meth:`before_instantiate_classes` seeds instead, at the
        same point, and the line comes once everything is built."""
        sub = self.config.get("subcommand")
        config = self.config[sub] if sub else self.config
        self._seed = config.get("seed_everything")
        config.seed_everything = False

    def _parse_ckpt_path(self) -> None:
        """Disabled: LightningCLI's version reads the checkpoint unverified and silently puts its model
        hyper-parameters over the given config; here the stored config is used only when none is given, and a
        checkpoint that does not fit the config is an error (``instantiate_trainer``)."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self._seed is not False:  # as LightningCLI would: True picks a seed, and the config records it
            seed = None if self._seed is True else self._seed
            config.seed_everything = seed_everything(seed, workers=True, verbose=False)
        if self.subcommand in ("validate", "test", "predict"):
            # the run's config.yaml records how it was trained; evaluating a checkpoint must not overwrite it
            self.save_config_callback = None
            if not config.get("ckpt_path"):
                # stacklevel 5 is LightningCLI.__init__: Lightning prints warnings from its own files in one line
                rank_zero_warn(f"pinn {self.subcommand} without --ckpt_path scores an untrained network (its initial "
                               "weights); pass --ckpt_path last or a checkpoint file.", stacklevel=5)
        self._last = config.get("ckpt_path") == "last"
        if not self._last:
            return
        logger = config.trainer.get("logger")
        init = logger.get("init_args") if hasattr(logger, "get") else None
        save_dir = (init or {}).get("save_dir") or "lightning_logs"
        name = (init or {}).get("name") or "lightning_logs"
        found = find_last_checkpoint(save_dir, name)
        if found is None:
            raise UserError(
                f"--ckpt_path last: no last.ckpt under {Path(save_dir, name)}/version_*/checkpoints/ (no run yet); "
                "start a new run without --ckpt_path, or give the checkpoint file."
            )
        path, version = found
        config.ckpt_path = str(path)
        if init is not None:
            init["version"] = version  # continue writing into the same TensorBoard folder

    def instantiate_trainer(self, **kwargs):
        """Check what only fails once training starts (the optimizer's arguments, the checkpoint's fit to the
        model) before the trainer exists, so nothing is written; the trainer's own argument checks become one-line
        errors naming the key."""
        self._check_optimizer()
        self._check_checkpoint()
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except MisconfigurationException as err:
            trainer_keys = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
            key = next((f"trainer.{k}" for k in re.findall(r"`(\w+)`", str(err)) if k in trainer_keys), "trainer")
            raise UserError(f"{key}: {err}") from None
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not when a config picks its own
            trainer.strategy.checkpoint_io = VerifiedCheckpointIO()
        return trainer

    def _check_optimizer(self) -> None:
        """Build the optimizer and scheduler once, on the model's parameter groups, and throw them away."""
        model = self.model
        factory = getattr(model, "optimizer_factory", None)
        if factory is None:
            return
        try:
            optimizer = factory(model.param_groups())
        except (ValueError, TypeError) as err:
            raise UserError(f"model.optimizer: {err}") from None
        if getattr(model, "scheduler_factory", None) is not None:
            try:
                model.scheduler_factory(optimizer)
            except (ValueError, TypeError) as err:
                raise UserError(f"model.scheduler: {err}") from None

    def _check_checkpoint(self) -> None:
        """Verify the checkpoint and its fit to the model."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        if not _is_checkpoint_file(ckpt_path):  # "last" is a file by now (before_instantiate_classes)
            return
        try:
            saved = load_checkpoint(ckpt_path)["state_dict"]
            if hasattr(self.model, "size_buffers_like"):  # buffers sized by the run (ElasticPINN's time windows)
                self.model.size_buffers_like(saved)
            check_state_dict(saved, self.model.state_dict(), ckpt_path)
        except CheckpointError as err:
            if not self._last:
                raise
            # without -c, `last` would look for the run in the default folder: the advice needs the file itself
            raise CheckpointError(f"{err} With -c dropped, name the file instead of `last`: --ckpt_path {ckpt_path}"
                                  ) from None

    def after_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self._seed is not False:
            rank_zero_info(f"Seed set to {config.seed_everything}")


# `pinn --help` lists the subcommands LightningCLI builds; `reference` is dispatched before it (see main), so the
# description names it
DESCRIPTION = ("Physics-informed neural networks for 2D elastic waves. Subcommands: fit, validate, test and predict "
               "below, and reference (pinn reference -c CONFIG), which computes and caches the finite-difference "
               "reference of the config's problem; pinn reference --help says more.")

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
        parser_class=PINNArgumentParser,
        parser_kwargs={"description": DESCRIPTION},
        auto_configure_optimizers=False,  # no top-level --optimizer/--lr_scheduler: model.optimizer is the one way
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

    for k in range(problem.n_shots):  # one wavefield per shot
        shot = problem.shot(k)
        reference = shot.solution()
        m = reference.meta
        name = "" if problem.n_shots == 1 else f"shot {k}: "
        print(f"pinn reference: {name}{reference_path(shot)}: {len(reference.t)} times x {len(reference.y)} x "
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
