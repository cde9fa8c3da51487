"""Each private name in :mod:`pinn.compat` still exists and still does what the package relies on.

A failure names the attribute and the installed versions: update :mod:`pinn.compat` (and the pins in
``pyproject.toml``) rather than the callers.
"""

from __future__ import annotations

import importlib.util
import inspect
import signal

import lightning as L
import pytest
import torch
import torch._functorch.config
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import Logger
from torch.utils.tensorboard import SummaryWriter

from pinn import compat


def require(owner, name: str) -> None:
    """Fail with the attribute's name and the versions when ``owner`` no longer has ``name``."""
    where = owner.__name__ if isinstance(owner, type) else type(owner).__name__
    assert hasattr(owner, name), (
        f"{where}.{name} is gone in {compat.VERSIONS}: pinn.compat relies on it; adapt pinn/compat.py or pin an "
        "older version in pyproject.toml"
    )


class Tiny(L.LightningModule):
    """y = w x fitted by SGD; logs ``loss`` every step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        loss = ((self.w * batch - 2 * batch) ** 2).mean()
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", ((self.w * batch - 2 * batch) ** 2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.001)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.arange(1.0, 9.0), batch_size=2)  # 4 batches

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.ones(2), batch_size=2)


class Steps(Logger):
    """Records the step each metric is logged at."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: dict[str, list[int]] = {}

    name = "steps"
    version = 0

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        for key in metrics:
            self.steps.setdefault(key, []).append(step)


def trainer(tmp_path, **kwargs) -> L.Trainer:
    options = dict(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0, max_epochs=1, limit_val_batches=1)
    return L.Trainer(**{**options, **kwargs})


def test_set_logging_step_moves_the_loggers_step(tmp_path):
    require(L.Trainer(logger=False).fit_loop.epoch_loop, "_batches_that_stepped")

    class Jump(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            compat.set_logging_step(trainer, 100 + 10 * batch_idx)

    logger = Steps()
    trainer(tmp_path, logger=logger, log_every_n_steps=1, callbacks=[Jump()], limit_val_batches=0).fit(Tiny())
    assert logger.steps["loss"] == [100, 110, 120, 130], (
        f"the logging step no longer follows fit_loop.epoch_loop._batches_that_stepped in {compat.VERSIONS}")


def test_attached_trainer_is_none_until_a_trainer_runs_the_module(tmp_path):
    model = Tiny()
    assert compat.attached_trainer(model) is None
    run = trainer(tmp_path, max_steps=1)
    run.fit(model)
    assert compat.attached_trainer(model) is run


def test_validation_due_predicts_the_next_validation(tmp_path):
    require(L.Trainer(logger=False).fit_loop.epoch_loop, "_should_check_val_fx")
    require(L.Trainer(logger=False).fit_loop, "_data_fetcher")

    class Watch(Callback):
        due: list[int] = []
        ran: list[int] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if compat.validation_due(trainer):
                self.due.append(trainer.global_step)

        def on_validation_end(self, trainer, pl_module):
            self.ran.append(trainer.global_step)

    watch = Watch()
    trainer(tmp_path, val_check_interval=2, callbacks=[watch]).fit(Tiny())
    assert watch.ran == [2, 4], watch.ran
    assert watch.due == watch.ran, (
        f"epoch_loop._should_check_val_fx(fit_loop._data_fetcher) no longer says which batches a validation "
        f"follows in {compat.VERSIONS}: said {watch.due}, validations ran after {watch.ran}")


def test_launcher_kill_forwards_signals_of_a_multi_process_run():
    assert compat.launcher_kill(L.Trainer(logger=False, accelerator="cpu", devices=1)) is None
    ddp = L.Trainer(logger=False, accelerator="cpu", strategy="ddp", devices=2)
    require(ddp.strategy.launcher, "kill")
    kill = compat.launcher_kill(ddp)
    assert callable(kill) and list(inspect.signature(kill).parameters) == ["signum"], (
        f"{type(ddp.strategy.launcher).__name__}.kill(signum) changed in {compat.VERSIONS}")
    kill(signal.SIGTERM)  # no process started yet: nothing to signal, and no error


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A ModelCheckpoint after a 4-step fit that saved last.ckpt every 2 steps and ranked by ``loss``."""
    tmp_path = tmp_path_factory.mktemp("fit")
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_last=True, monitor="loss",
                               save_top_k=1, save_on_exception=True)
    fit = trainer(tmp_path, callbacks=[callback], limit_val_batches=0, log_every_n_steps=1)
    fit.fit(Tiny())
    return callback, fit


@pytest.mark.parametrize("name", ["_every_n_train_steps", "_last_global_step_saved", "_monitor_candidates",
                                  "_should_skip_saving_checkpoint", "_should_save_on_exception",
                                  "_save_topk_checkpoint", "_save_last_checkpoint"])
def test_model_checkpoint_has(name):
    require(ModelCheckpoint(), name)


def test_model_checkpoint_state(fitted):
    callback, fit = fitted
    assert compat.every_n_train_steps(callback) == 2
    assert compat.last_saved_step(callback) == fit.global_step == 4
    candidates = compat.monitor_candidates(callback, fit)
    assert int(candidates["step"]) == 4 and int(candidates["epoch"]) == fit.current_epoch, candidates
    assert "loss" in candidates, candidates
    assert compat.should_skip_saving(callback, fit), "already saved at this step: ModelCheckpoint must skip"
    assert not compat.should_save_on_exception(callback, fit), "already saved at this step"
    assert not compat.should_save_on_exception(ModelCheckpoint(save_on_exception=False), fit)
    assert compat.should_save_on_exception(ModelCheckpoint(save_on_exception=True), fit)


def test_model_checkpoint_saves(fitted):
    callback, fit = fitted
    candidates = compat.monitor_candidates(callback, fit)
    last = callback.dirpath + "/last.ckpt"
    fit.strategy.remove_checkpoint(last)
    compat.save_last(callback, fit, candidates)
    assert callback.last_model_path == last and torch.load(last, weights_only=False)["global_step"] == 4
    compat.save_top_k(callback, fit, {**candidates, "loss": torch.tensor(-1.0)})
    assert float(callback.best_model_score) == -1.0, (
        f"ModelCheckpoint._save_topk_checkpoint no longer ranks the given candidates in {compat.VERSIONS}")


def test_event_file_writer_is_the_runs_own_and_reopens(tmp_path):
    writer = SummaryWriter(tmp_path)
    require(writer, "_get_file_writer")
    file_writer = compat.event_file_writer(writer)
    assert callable(file_writer.add_summary) and file_writer.get_logdir() == str(tmp_path)
    writer.close()
    reopened = compat.event_file_writer(writer)
    assert reopened is not None and reopened.get_logdir() == str(tmp_path), "a closed SummaryWriter must reopen"
    writer.close()


def test_long_options_lists_every_option():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--max_steps", type=int, default=1)
    parser.add_argument("-v", "--verbose", action="store_true")
    require(parser, "_actions")
    assert {"--help", "--max_steps", "--verbose"} <= set(compat.long_options(parser))
    assert "-v" not in compat.long_options(parser)


def test_lightning_cli_builds_the_trainer_through_instantiate_trainer(tmp_path):
    """:class:`pinn.cli.PINNCLI` overrides ``LightningCLI._instantiate_trainer(config, callbacks)`` to drop its
    step progress bar before the Trainer sees it (the public ``instantiate_trainer`` does not receive the
    callbacks added with ``add_lightning_class_args``)."""
    require(LightningCLI, "_instantiate_trainer")
    seen = {}

    class CLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")

        def _instantiate_trainer(self, config, callbacks):
            seen["config"], seen["callbacks"] = config, list(callbacks)
            return super()._instantiate_trainer(config, callbacks)

    cli = CLI(Tiny, run=False, save_config_callback=None, args=[f"--trainer.default_root_dir={tmp_path}",
                                                                 "--trainer.logger=false"])
    assert [type(c) for c in seen.get("callbacks", [])] == [ModelCheckpoint], (
        f"LightningCLI no longer passes its extra callbacks to _instantiate_trainer in {compat.VERSIONS}")
    assert seen["config"]["logger"] is False and cli.trainer.checkpoint_callback is not None


def test_inductor_default_cache_dir_is_torchs_own(monkeypatch):
    from torch._inductor.runtime import cache_dir_utils

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert compat.inductor_default_cache_dir() == cache_dir_utils.cache_dir(), (
        f"torch._inductor.runtime.cache_dir_utils.default_cache_dir() is not inductor's cache in {compat.VERSIONS}")


def test_set_inductor_compile_threads(monkeypatch):
    import torch._inductor.config

    require(torch._inductor.config, "compile_threads")
    monkeypatch.setattr(torch._inductor.config, "compile_threads", torch._inductor.config.compile_threads)
    compat.set_inductor_compile_threads(1)
    assert torch._inductor.config.compile_threads == 1


def test_has_triton_answers():
    import torch.utils._triton

    require(torch.utils._triton, "has_triton")
    assert isinstance(compat.has_triton(), bool)
    if importlib.util.find_spec("triton") is None:
        assert not compat.has_triton(), f"has_triton() says yes without the triton package in {compat.VERSIONS}"


@pytest.mark.parametrize("name", ["_cuda_endAllocateToPool", "_cuda_releasePool"])
def test_cuda_pool_bindings_exist(name):
    """The allocator bindings a failed CUDA-graph capture is undone with (present in CPU builds too)."""
    require(torch._C, name)


class Scaled(Tiny):
    def __init__(self, w0: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.w0 = w0


def test_lightning_cli_puts_checkpoint_hyperparameters_over_the_config_in_parse_ckpt_path(tmp_path):
    """:class:`pinn.cli.PINNCLI` overrides ``LightningCLI._parse_ckpt_path`` to do nothing: LightningCLI's puts the
    model hyper-parameters of a checkpoint over the given config, unverified. Here a checkpoint says ``w0=5``."""
    from pinn.cli import PINNCLI

    require(LightningCLI, "_parse_ckpt_path")
    ckpt = tmp_path / "w0.ckpt"
    torch.save({"hyper_parameters": {"w0": 5.0}}, ckpt)

    class CLI(LightningCLI):
        def _run_subcommand(self, subcommand):  # only the parsing is under test
            pass

    class Disabled(CLI):
        _parse_ckpt_path = PINNCLI._parse_ckpt_path

    args = ["validate", f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"]
    assert CLI(Scaled, save_config_callback=None, args=args).model.w0 == 5.0, (
        f"LightningCLI no longer reads the checkpoint's hyper-parameters in _parse_ckpt_path in {compat.VERSIONS}: "
        "PINNCLI's override may be dropped")
    assert Disabled(Scaled, save_config_callback=None, args=args).model.w0 == 0.0
    assert PINNCLI._parse_ckpt_path is not LightningCLI._parse_ckpt_path
