"""A training step captured in a CUDA graph: forward, backward and the PersistentAdam update, replayed each step.

A PINN step launches hundreds of small kernels; on a GPU the launches, not the arithmetic, bound it for the point
counts PINNs use. Capturing the whole step once and replaying it (``torch.cuda.CUDAGraph``; the "whole network
capture" of the PyTorch CUDA-graph notes) removes the launch and Python overhead. A graph replays fixed kernels on
fixed memory, so it applies only where everything the step does is fixed:

- the shapes of the batch (full batch, or equal mini-batches; adaptive resampling that redraws a fixed-size pool
  only changes the values, which are copied into the graph's input buffers);
- the optimizer: ``PersistentAdam`` with ``capturable`` (no host synchronisation in its step) and no scheduler
  (the learning rate is baked into the graph);
- no Python decision that depends on the step: no loss balancing, no causal weights, no material held until a step,
  one process (DDP's reducer is not captured).

A batch of a new shape (a shorter last mini-batch, the pool after RAR-D grows it) runs eagerly for ``warmup``
steps and is then captured too; the L-BFGS stage runs eagerly. :func:`graph_blockers` says what rules
capture out for the whole run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from pinn.optim.persistent_adam import PersistentAdam


def graph_blockers(module, optimizer, world_size: int, scheduler: bool, clipping: bool) -> list[str]:
    """Why a CUDA graph cannot capture the training step of ``module`` with ``optimizer`` (empty: it can)."""
    reasons = []
    if module.device.type != "cuda":
        reasons.append(f"the model is on {module.device.type}, not CUDA")
    if world_size > 1:
        reasons.append("more than one process (DDP)")
    if type(optimizer) is not PersistentAdam:
        reasons.append(f"the optimizer is {type(optimizer).__name__}, not PersistentAdam")
    if scheduler:
        reasons.append("a learning-rate scheduler")
    if clipping:
        reasons.append("gradient clipping")
    if module.balancer is not None:
        reasons.append("loss balancing")
    if module.causal is not None:
        reasons.append("causal weighting")
    if module.trainable_material is not None:
        reasons.append("unknown material")
    return reasons


def decide_graphs(module) -> GraphedStep | None:
    """The :class:`GraphedStep` of ``module`` (an :class:`~pinn.training.module.ElasticPINN` in a fit) if its
    ``cuda_graphs`` setting says to capture and nothing rules it out, else ``None``; the run log says why not."""
    if module.cuda_graphs is False:
        return None
    trainer = module.trainer
    optimizer = trainer.optimizers[0]
    blockers = graph_blockers(module, optimizer, trainer.world_size, module.scheduler_factory is not None,
                              bool(trainer.gradient_clip_val))
    if not blockers:
        rank_zero_info("Capturing the Adam steps in a CUDA graph; model.cuda_graphs: false turns it off.")
        return GraphedStep(module, optimizer)
    if module.cuda_graphs is True:
        rank_zero_warn(f"model.cuda_graphs is true, but {'; '.join(blockers)}: running without CUDA graphs.")
    elif module.device.type == "cuda":
        rank_zero_info(f"Not capturing CUDA graphs ({'; '.join(blockers)}).")
    return None


def replayed_optimizer_step(module, optimizer, optimizer_closure) -> None:
    """``optimizer_step`` of a step that replays its graph: the closure runs ``training_step``, which replays the
    forward, backward and update; only if the capture failed there (the closure then ran the loss and backward
    eagerly) does the optimizer step here."""
    optimizer_closure()
    if not module.graph_now:
        optimizer.step()


def _signature(batch: dict[str, Tensor]) -> tuple:
    return tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in sorted(batch.items()))


@dataclass
class _Capture:
    """The graph of one batch signature: its input buffers, outputs and the gradients it writes (kept alive)."""

    graph: torch.cuda.CUDAGraph
    inputs: dict[str, Tensor]
    outputs: tuple[Tensor, dict[str, Tensor]]
    grads: list[Tensor]


class GraphedStep:
    """Captures ``loss = module.training_loss(batch); loss.backward(); optimizer.step()`` and replays it.

    One graph per batch signature (keys, shapes, dtypes), so that a full mini-batch and a shorter last one each
    keep theirs; at most ``keep`` of them, the least recently used dropped first (RAR-D growth makes a new
    signature each time).

    Args:
        module: The :class:`~pinn.training.module.ElasticPINN` (on a CUDA device).
        optimizer: Its ``PersistentAdam``; switched to ``capturable`` here.
        warmup: Eager steps with a batch signature before it is captured (torch's advice: lazily created state,
            such as the optimizer's moments or compiled kernels, must exist before capture).
        keep: How many captured signatures to keep.
    """

    def __init__(self, module, optimizer: PersistentAdam, warmup: int = 3, keep: int = 2) -> None:
        self.module, self.optimizer, self.warmup, self.keep = module, optimizer, warmup, keep
        for group in optimizer.param_groups:
            group["capturable"] = True
        self.captures: dict[tuple, _Capture] = {}  # in order of last use
        self.seen: dict[tuple, int] = {}  # eager steps per signature not captured yet
        self.failed: str | None = None

    def ready(self, batch: dict[str, Tensor]) -> bool:
        """Whether this batch's step replays (or captures) a graph; if not, it runs eagerly and counts as a
        warm-up step for its signature."""
        if self.failed is not None:
            return False
        signature = _signature(batch)
        if signature in self.captures:
            return True
        self.seen[signature] = self.seen.get(signature, 0) + 1
        return self.seen[signature] > self.warmup

    def step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One training step (the update included) from ``batch``; returns copies of the loss and its terms."""
        signature = _signature(batch)
        capture = self.captures.pop(signature, None)
        if capture is None:
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

    def _capture(self, batch: dict[str, Tensor]) -> _Capture:
        inputs = {k: v.clone() for k, v in batch.items()}
        self.optimizer.zero_grad(set_to_none=True)  # backward then allocates the gradients from the graph's pool
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                loss, terms = self.module.training_loss(inputs)
                loss.backward()
                self.optimizer.step()
        except Exception as err:  # a host synchronisation or an unsupported operation inside the step
            self.failed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
            warnings.warn(f"CUDA graph capture of the training step failed ({self.failed}); training goes on "
                          "without it. Set model.cuda_graphs to false to silence this.", RuntimeWarning, stacklevel=2)
            raise CaptureFailed from err
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        return _Capture(graph, inputs, (loss, terms), grads)


class CaptureFailed(RuntimeError):
    """Capture did not work: the caller runs the step eagerly instead."""
