"""Every private Lightning, torch, jsonargparse and argparse name this package relies on, in one place.

Each function below reaches one name that starts with ``_``, because no public API does the same job; its comment
says why it is needed and what public API is missing. ``tests/test_compat.py`` checks each of them against the
installed versions and fails naming the attribute and the version, so an upgrade that renames one is caught there
rather than in the middle of a training run. ``pyproject.toml`` pins Lightning to the minor versions these tests
pass on, and CI runs them on the lowest and the highest.

Two private hooks of ``LightningCLI`` are overridden in :class:`pinn.cli.PINNCLI` rather than called; the tests
check that LightningCLI still routes through them:

- ``_instantiate_trainer(config, callbacks)``, the only place that sees the callbacks added with
  ``add_lightning_class_args`` before the Trainer is built (the public ``instantiate_trainer(**kwargs)`` does not
  get them);
- ``_parse_ckpt_path()``, disabled: it reads the checkpoint unverified and puts its model hyper-parameters over the
  given config, and no public option turns that off.

Not listed here: ``torch._foreach_*`` in :mod:`pinn.optim.persistent_adam`. Those are the multi-tensor kernels that
``torch.optim.Adam`` itself is built on, exported by torch for optimizers to use; they are covered by the
optimizer's tests against ``torch.optim.Adam``.
"""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

import lightning
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

VERSIONS = f"lightning {lightning.__version__}, torch {torch.__version__}"
"""The versions in use, for error messages."""


# ---- the training loop ---------------------------------------------------------------------------------------
def set_logging_step(trainer, step: int) -> None:
    """Make loggers record the next ``self.log`` values at ``step``.

    Lightning logs at ``fit_loop.epoch_loop._batches_that_stepped``, a counter that it bumps by one when a run
    restarts from a checkpoint taken at the end of a validation. There is no public way to set the logging step
    (``trainer.global_step`` is read-only), so a resumed curve would otherwise start one step late.
    """
    trainer.fit_loop.epoch_loop._batches_that_stepped = step


def attached_trainer(module: lightning.LightningModule):
    """The trainer ``module`` is attached to, or ``None``.

    ``LightningModule.trainer`` raises when no trainer is attached (a model used from Python, a model being loaded);
    ``_trainer`` is the only way to ask whether one is.
    """
    return module._trainer


def validation_due(trainer) -> bool:
    """Whether the epoch loop will run a validation right after the current training batch.

    Asked in ``on_train_batch_end``: the loop decides it with this very call right after that hook. Lightning
    has no public "is a validation due" query; repeating its rule (``val_check_interval``, ``check_val_every_n_epoch``,
    the last batch of an epoch, ``should_stop``...) would drift from it.
    """
    return trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)


def launcher_kill(trainer) -> Callable[[int], None] | None:
    """The function that sends a signal on to the processes Lightning's launcher started, if it started any.

    ``trainer.strategy.launcher`` is public, but the launcher classes are private (``_SubprocessScriptLauncher``
    ...) and so is their ``kill(signum)``. Lightning's own SIGTERM handler, which a :class:`~pinn.io.interrupts.
    SignalLatch` replaces, forwards the signal with it, so the replacement must too.
    """
    launcher = trainer.strategy.launcher
    return getattr(launcher, "kill", None) if launcher is not None else None


# ---- ModelCheckpoint -----------------------------------------------------------------------------------------
# RunCheckpoint writes last.ckpt at other moments than ModelCheckpoint does, but the same way: it calls the
# methods ModelCheckpoint's own hooks call. They are protected and there is no public "save last now" or "rank
# these metrics now"; copying them would also copy their handling of save_last="link", top-k files, the version
# counter and the loggers' after_save_checkpoint.
def every_n_train_steps(callback: ModelCheckpoint) -> int:
    """The ``every_n_train_steps`` the callback was built with (ModelCheckpoint keeps it under a private name)."""
    return callback._every_n_train_steps


def last_saved_step(callback: ModelCheckpoint) -> int:
    """The ``global_step`` of the callback's latest checkpoint (no public attribute holds it)."""
    return callback._last_global_step_saved


def monitor_candidates(callback: ModelCheckpoint, trainer) -> dict[str, Tensor]:
    """The metrics a checkpoint name and ranking are built from: the logged ones plus ``epoch`` and ``step``."""
    return callback._monitor_candidates(trainer)


def should_skip_saving(callback: ModelCheckpoint, trainer) -> bool:
    """ModelCheckpoint's own rule for not saving now (fast_dev_run, sanity check, already saved at this step)."""
    return callback._should_skip_saving_checkpoint(trainer)


def should_save_on_exception(callback: ModelCheckpoint, trainer) -> bool:
    """Whether ``save_on_exception`` asks for a checkpoint now (ModelCheckpoint, Lightning >= 2.5.3)."""
    return callback._should_save_on_exception(trainer)


def save_top_k(callback: ModelCheckpoint, trainer, candidates: dict[str, Tensor]) -> None:
    """Rank the current weights by ``monitor`` and keep the best ``save_top_k`` files."""
    callback._save_topk_checkpoint(trainer, candidates)


def save_last(callback: ModelCheckpoint, trainer, candidates: dict[str, Tensor]) -> None:
    """Write ``last.ckpt`` (or its link) and record it as the latest save."""
    callback._save_last_checkpoint(trainer, candidates)


# ---- TensorBoard ---------------------------------------------------------------------------------------------
def event_file_writer(writer: Any):
    """The ``FileWriter`` behind a ``torch.utils.tensorboard.SummaryWriter``, reopened if the writer was closed.

    Hyper-parameter summaries must go into the run's own event file; ``SummaryWriter.add_hparams`` writes them to
    a new sub-folder instead. Lightning's ``TensorBoardLogger.log_hyperparams`` calls this same private method.
    """
    return writer._get_file_writer()


# ---- torch.compile (inductor) -------------------------------------------------------------------------------
def inductor_default_cache_dir() -> str:
    """The kernel cache folder inductor picks when ``TORCHINDUCTOR_CACHE_DIR`` is unset (under ``/tmp``).

    torch writes this default into the variable the first time it needs the cache, so telling a folder the user
    chose from torch's own needs the default; torch exports no public function that gives it.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return default_cache_dir()


def set_inductor_compile_threads(threads: int) -> None:
    """Compile with ``threads`` threads (1: in this process, no pool of worker processes).

    Inductor's options live in the private ``torch._inductor.config``. Its ``compile_threads`` is decided once, from
    ``TORCHINDUCTOR_COMPILE_THREADS`` or the core count, when that module is first imported (which importing
    Lightning may already have done), so setting the variable later has no effect.
    """
    import torch._inductor.config

    torch._inductor.config.compile_threads = threads


def has_triton() -> bool:
    """Whether Triton, which inductor needs for CUDA kernels, is installed and usable; torch's own check is private."""
    from torch.utils._triton import has_triton

    return has_triton()


# ---- CUDA graphs ---------------------------------------------------------------------------------------------
def cuda_end_allocate_to_pool(device: int, pool: tuple[int, int]) -> None:
    """Tell the caching allocator that allocations on ``device`` no longer go to graph memory pool ``pool``.

    ``CUDAGraph.capture_end`` does this, but when the capture failed it raises before, and the allocator then goes
    on treating allocations as part of a capture (``torch.cuda.empty_cache`` later fails an internal assert). torch
    has no public call to undo a failed capture; this private binding is what ``capture_end`` uses.
    """
    torch._C._cuda_endAllocateToPool(device, pool)


def cuda_release_pool(device: int, pool: tuple[int, int]) -> None:
    """Drop the allocator's hold on graph memory pool ``pool`` so its blocks can be freed (private, as above)."""
    torch._C._cuda_releasePool(device, pool)


# ---- argparse / jsonargparse ---------------------------------------------------------------------------------
def long_options(parser: ArgumentParser) -> list[str]:
    """Every ``--option`` a parser accepts, for "did you mean" hints.

    argparse keeps its options only in ``parser._actions`` (jsonargparse reads that list too); there is no public
    accessor short of parsing ``format_help()``.
    """
    return [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
