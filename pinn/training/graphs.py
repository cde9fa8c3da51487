"""A training step captured in a CUDA graph: forward, backward and the PersistentAdam update, replayed each step.

A PINN step launches hundreds of small kernels; on a GPU the launches, not the arithmetic, bound it for the point
counts PINNs use. Capturing the whole step once and replaying it (``torch.cuda.CUDAGraph``; the "whole network
capture" of the PyTorch CUDA-graph notes) removes the launch and Python overhead. A graph replays fixed kernels on
fixed memory, so it applies only where everything the step does is fixed:

- the shapes of the batch (full batch, or equal mini-batches; adaptive resampling that redraws a fixed-size pool
  only changes the values, which are copied into the graph's input buffers);
- the optimizer: ``PersistentAdam`` with ``capturable`` (no host synchronisation in its step) and no scheduler
  (the learning rate is baked into the graph);
- the loss: no tensor made from host data and no host synchronisation inside it (constants are made once on the
  device, :mod:`pinn.physics.device_cache`; ``tests/test_host_traffic.py`` checks every shipped config);
- no Python decision that depends on the step, and nothing outside the step that acts on it: :func:`graph_blockers`
  lists the settings that rule capture out for the whole run (several devices, accumulation, mixed precision, ...),
  and the run log says which, once.

Each batch signature runs eagerly for ``warmup`` steps, on the side stream the capture uses, and is then captured;
a new shape (a shorter last mini-batch, the pool after RAR-D grows it) warms up in turn. The L-BFGS stage runs
eagerly, and its start gives the graphs' memory back. A capture that fails is undone (stream, allocator, pool) and
the run goes on eagerly, with one warning.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from lightning.pytorch.strategies import ParallelStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from pinn import compat
from pinn.optim.persistent_adam import PersistentAdam

# Precisions a graph holds: a plain dtype end to end, no gradient scaler
EXACT_PRECISIONS = ("32-true", "64-true", "32", "64")


def graph_blockers(module, optimizer, trainer=None, *, scheduler: bool = False) -> list[str]:
    """Why a CUDA graph cannot capture the training step of ``module`` with ``optimizer`` under ``trainer`` (empty:
    it can). Each rule is a setting the captured step cannot hold:

    - a strategy over several devices (by type, not by the number of processes: DDP's reducer hooks run in backward
      even in a world of one, and a graph would capture one rank's all-reduce);
    - gradient accumulation (each replay also steps the optimizer, so a global step would take that many updates);
    - precision other than 32 or 64 bit (mixed precision's gradient scaler steps the optimizer itself, and skips
      steps with non-finite gradients, a decision on the host);
    - gradient clipping and anomaly detection (host decisions after backward);
    - a learning-rate scheduler (the rate is baked into the graph), and any other optimizer than PersistentAdam;
    - loss balancing, causal weights, unknown material and time windows (decisions that depend on the step).
    """
    reasons = []
    if module.device.type != "cuda":
        reasons.append(f"the model is on {module.device.type}, not CUDA")
    if trainer is not None:
        strategy = trainer.strategy
        if isinstance(strategy, ParallelStrategy):
            reasons.append(f"the {type(strategy).__name__} (several devices or processes)")
        if trainer.accumulate_grad_batches != 1:
            reasons.append(f"gradient accumulation (accumulate_grad_batches={trainer.accumulate_grad_batches})")
        if str(trainer.precision) not in EXACT_PRECISIONS:
            reasons.append(f"precision {trainer.precision}")
        if trainer.gradient_clip_val:
            reasons.append("gradient clipping")
    if torch.is_anomaly_enabled():
        reasons.append("anomaly detection")
    if type(optimizer) is not PersistentAdam:
        reasons.append(f"the optimizer is {type(optimizer).__name__}, not PersistentAdam")
    if scheduler:
        reasons.append("a learning-rate scheduler")
    if module.balancer is not None:
        reasons.append("loss balancing")
    if module.causal is not None:
        reasons.append("causal weighting")
    if module.trainable_material is not None:
        reasons.append("unknown material")
    if module.marching is not None:
        reasons.append("time windows or an exact initial state")
    return reasons


def decide_graphs(module) -> GraphedStep | None:
    """The :class:`GraphedStep` of ``module`` (an :class:`~pinn.training.module.ElasticPINN` in a fit) if its
    ``cuda_graphs`` setting says to capture and nothing rules it out, else ``None``; the run log says why not, once."""
    if module.cuda_graphs is False:
        return None
    trainer = module.trainer
    optimizer = trainer.optimizers[0]
    blockers = graph_blockers(module, optimizer, trainer, scheduler=module.scheduler_factory is not None)
    if not blockers:
        rank_zero_info("Capturing the Adam steps in a CUDA graph; model.cuda_graphs: false turns it off.")
        return GraphedStep(module, optimizer)
    if module.cuda_graphs is True:
        rank_zero_warn(f"model.cuda_graphs is true, but {'; '.join(blockers)}: running without CUDA graphs.")
    elif module.device.type == "cuda":
        rank_zero_info(f"Not capturing CUDA graphs ({'; '.join(blockers)}).")
    return None


def graph_this_step(module) -> bool:
    """Whether this training step of ``module`` runs in its :class:`GraphedStep`: decided once per fit
    (:func:`decide_graphs`), for the Adam stage only, until a capture fails. At the switch to L-BFGS the graphs and
    their memory are given back: that stage runs eagerly, in float64, and never returns to Adam."""
    if not module._graphs_decided:
        module._graphs_decided = True
        module._graphs = decide_graphs(module)
    if module._graphs is None:
        return False
    changed = None if module.stage != "adam" else module._graphs.changed(module.trainer)
    if module.stage != "adam" or changed:
        if changed:  # a callback or the user changed what the graph holds fixed: eager from here on
            rank_zero_warn(f"CUDA graphs off from step {module.trainer.global_step}: {changed}.")
        module._graphs.release()
        module._graphs = None
        return False
    return module._graphs.active


def replayed_optimizer_step(module, optimizer, optimizer_closure) -> None:
    """``optimizer_step`` of a step that :class:`GraphedStep` runs: the closure runs ``training_step``, which runs
    the forward, backward and update (eagerly in a warm-up, or by replaying the graph); only if a capture failed
    there (the closure then ran the loss and backward eagerly) does the optimizer step here."""
    optimizer_closure()
    if not module.graph_now:
        optimizer.step()


class TorchCuda:
    """The few ``torch.cuda`` calls a :class:`GraphedStep` makes, in one place, so that tests on a machine without
    CUDA can put a recording stand-in in their place (``tests/test_graph_logic.py``)."""

    def stream(self):
        return torch.cuda.Stream()

    @contextmanager
    def on(self, stream):
        """Run the block on ``stream``, ordered after the work queued so far and before the work queued later, and
        back on the caller's stream afterwards whatever happens inside (torch's advice: warm up and capture on one
        side stream)."""
        caller = torch.cuda.current_stream()
        stream.wait_stream(caller)
        try:
            with torch.cuda.stream(stream):
                yield
        finally:
            caller.wait_stream(stream)

    def graph(self):
        return torch.cuda.CUDAGraph()

    def synchronize(self) -> None:
        torch.cuda.synchronize()

    def abandon(self, graph, ended: bool) -> None:
        """Undo what a failed capture left, then free its memory. If ``capture_end`` went through (the step raised
        inside the capture), the graph's own ``reset`` releases its pool. If ``capture_end`` raised, it did so before
        telling the caching allocator, which would go on routing allocations to the graph's pool: end that, and
        release the pool, here."""
        if not ended:
            device, pool = torch.cuda.current_device(), graph.pool()
            for undo in (compat.cuda_end_allocate_to_pool, compat.cuda_release_pool):
                try:
                    undo(device, pool)
                except RuntimeError:  # this torch had already done it
                    pass
        try:
            graph.reset()
            torch.cuda.synchronize()  # reads (and so clears) the capture's error, if the stream kept one
        except RuntimeError:
            pass
        torch.cuda.empty_cache()

    def release(self, graphs) -> None:
        for graph in graphs:
            graph.reset()
        torch.cuda.empty_cache()


CUDA = TorchCuda()


def _settings(optimizer) -> list[tuple]:
    """The settings a captured update holds fixed, per parameter group. Checked before every step, so a tensor
    setting (a learning rate on the device) counts by identity: reading its value would wait for the device."""
    keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay")
    return [tuple(("tensor", id(v)) if isinstance(v := group.get(k), Tensor) else v for k in keys)
            for group in optimizer.param_groups]


def _signature(batch: dict[str, Tensor]) -> tuple:
    return tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in sorted(batch.items()))


@dataclass
class _Capture:
    """The graph of one batch signature: its input buffers, outputs and the gradients it writes (kept alive)."""

    graph: object  # torch.cuda.CUDAGraph
    inputs: dict[str, Tensor]
    outputs: tuple[Tensor, dict[str, Tensor]]
    grads: list[Tensor]


class GraphedStep:
    """Runs ``loss = module.training_loss(batch); loss.backward(); optimizer.step()``: eagerly for the first
    ``warmup`` steps of a batch signature, then captured in a CUDA graph and replayed.

    Warm-up and capture run on one side stream, so that what is created lazily per stream (cuBLAS workspaces) exists
    before capture. One graph per batch signature (keys, shapes, dtypes), so that a full mini-batch and a shorter
    last one each keep theirs; at most ``keep`` of them, the least recently used dropped first (RAR-D growth makes a
    new signature each time). A capture that fails (a host synchronisation or an operation a graph cannot hold)
    leaves the stream and the allocator as they were, warns once, and every later step runs eagerly.

    Args:
        module: The :class:`~pinn.training.module.ElasticPINN` (on a CUDA device).
        optimizer: Its ``PersistentAdam``; switched to ``capturable`` here.
        warmup: Eager steps with a batch signature before it is captured (torch's advice: lazily created state,
            such as the optimizer's moments or compiled kernels, must exist before capture).
        keep: How many captured signatures to keep.
        cuda: The CUDA calls (:class:`TorchCuda`; a stand-in in tests).
    """

    def __init__(self, module, optimizer: PersistentAdam, warmup: int = 3, keep: int = 2, cuda=None) -> None:
        self.module, self.optimizer, self.warmup, self.keep = module, optimizer, warmup, keep
        self.cuda = cuda or CUDA
        for group in optimizer.param_groups:
            group["capturable"] = True
        self.captures: dict[tuple, _Capture] = {}  # in order of last use
        self.seen: dict[tuple, int] = {}  # eager steps per signature not captured yet
        self.failed: str | None = None
        self.stream = self.cuda.stream()
        self.settings = _settings(optimizer)

    def changed(self, trainer) -> str | None:
        """What changed since the graphs were made that a captured step would silently ignore (the optimizer
        replaced, a scheduler added, a learning rate or another setting of the update changed, say by a callback),
        or ``None``."""
        if trainer.optimizers[0] is not self.optimizer:
            return "the optimizer was replaced"
        if trainer.lr_scheduler_configs:
            return "a learning-rate scheduler was added"
        if _settings(self.optimizer) != self.settings:
            return "the optimizer's settings (learning rate, betas, eps or weight decay) changed"
        return None

    @property
    def active(self) -> bool:
        """Whether the steps still run here (until a capture fails)."""
        return self.failed is None

    def step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One training step (the update included) from ``batch``; returns copies of the loss and its terms.
        Raises :class:`CaptureFailed` (nothing updated) when the capture fails: the caller runs the step eagerly."""
        signature = _signature(batch)
        capture = self.captures.pop(signature, None)
        if capture is None:
            self.seen[signature] = self.seen.get(signature, 0) + 1
            if self.seen[signature] <= self.warmup:
                return self._eager(batch)
            capture = self._capture(batch)
            del self.seen[signature]
        else:
            for k, v in batch.items():
                capture.inputs[k].copy_(v)
        self.captures[signature] = capture  # now the most recently used
        while len(self.captures) > self.keep:
            del self.captures[next(iter(self.captures))]
        capture.graph.replay()
        loss, terms = capture.outputs
        return loss.detach().clone(), {k: v.detach().clone() for k, v in terms.items()}

    def _eager(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        with self.cuda.on(self.stream):
            self.optimizer.zero_grad(set_to_none=True)
            loss, terms = self.module.training_loss(batch)
            loss.backward()
            self.optimizer.step()
        return loss.detach(), {k: v.detach() for k, v in terms.items()}

    def _capture(self, batch: dict[str, Tensor]) -> _Capture:
        inputs = {k: v.clone() for k, v in batch.items()}
        self.optimizer.zero_grad(set_to_none=True)  # backward then allocates the gradients from the graph's pool
        self.cuda.synchronize()
        graph = self.cuda.graph()
        error, ended = None, False
        with self.cuda.on(self.stream):
            # thread-local: another thread's CUDA calls (a data loader's) neither break the capture nor fail
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                loss, terms = self.module.training_loss(inputs)
                loss.backward()
                self.optimizer.step()
            except Exception as err:  # a host synchronisation or an operation a graph cannot hold
                error = err
            try:
                graph.capture_end()
                ended = True
            except Exception as err:
                error = error or err
        if error is not None:
            self.optimizer.zero_grad(set_to_none=True)  # gradients in the abandoned pool
            loss = terms = None
            self.cuda.abandon(graph, ended)
            self.failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
            warnings.warn(f"CUDA graph capture of the training step failed ({self.failed}); training goes on "
                          "without it. Set model.cuda_graphs to false to avoid the attempt.", RuntimeWarning,
                          stacklevel=2)
            raise CaptureFailed(self.failed) from error
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        return _Capture(graph, inputs, (loss, terms), grads)

    def release(self) -> None:
        """Give back the graphs and their memory pools (the L-BFGS stage runs eagerly, in float64): the gradients
        that lived in a pool are dropped first."""
        self.optimizer.zero_grad(set_to_none=True)
        graphs = [c.graph for c in self.captures.values()]
        self.captures.clear()
        self.cuda.release(graphs)


class CaptureFailed(RuntimeError):
    """Capture did not work: the caller runs the step eagerly instead."""
