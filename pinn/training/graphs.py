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

A step outside those (a mini-batch of another size, the L-BFGS stage, the batch after RAR-D grows the pool) runs
eagerly; a new shape is captured again after ``warmup`` eager steps with it. :func:`graph_blockers` says what rules
capture out for the whole run.
"""

from __future__ import annotations

import warnings

import torch
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


def _signature(batch: dict[str, Tensor]) -> tuple:
    return tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in sorted(batch.items()))


class GraphedStep:
    """Captures ``loss = module.training_loss(batch); loss.backward(); optimizer.step()`` and replays it.

    Args:
        module: The :class:`~pinn.training.module.ElasticPINN` (on a CUDA device).
        optimizer: Its ``PersistentAdam``; switched to ``capturable`` here.
        warmup: Eager steps with a batch signature before it is captured (torch's advice: lazily created state,
            such as the optimizer's moments or compiled kernels, must exist before capture).
    """

    def __init__(self, module, optimizer: PersistentAdam, warmup: int = 3) -> None:
        self.module, self.optimizer, self.warmup = module, optimizer, warmup
        for group in optimizer.param_groups:
            group["capturable"] = True
        self.graph: torch.cuda.CUDAGraph | None = None
        self.signature: tuple | None = None
        self.seen = 0  # eager steps with the current signature
        self.failed: str | None = None
        self.static: dict[str, Tensor] = {}
        self.outputs: tuple[Tensor, dict[str, Tensor]] | None = None
        self.grads: list[Tensor] = []  # the gradients the graph writes; kept alive here

    def ready(self, batch: dict[str, Tensor]) -> bool:
        """Whether this batch's step replays (or captures) the graph; if not, it runs eagerly and counts as a
        warm-up step for its signature."""
        if self.failed is not None:
            return False
        signature = _signature(batch)
        if signature != self.signature:
            self.signature, self.seen, self.graph = signature, 0, None
        if self.graph is None and self.seen < self.warmup:
            self.seen += 1
            return False
        return True

    def step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One training step (the update included) from ``batch``; returns copies of the loss and its terms."""
        if self.graph is None:
            self._capture(batch)
        else:
            for k, v in batch.items():
                self.static[k].copy_(v)
        self.graph.replay()
        loss, terms = self.outputs
        return loss.detach().clone(), {k: v.detach().clone() for k, v in terms.items()}

    def _capture(self, batch: dict[str, Tensor]) -> None:
        self.static = {k: v.clone() for k, v in batch.items()}
        self.optimizer.zero_grad(set_to_none=True)  # backward then allocates the gradients from the graph's pool
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                loss, terms = self.module.training_loss(self.static)
                loss.backward()
                self.optimizer.step()
        except Exception as err:  # a host synchronisation or an unsupported operation inside the step
            self.failed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
            warnings.warn(f"CUDA graph capture of the training step failed ({self.failed}); training goes on "
                          "without it. Set model.cuda_graphs to false to silence this.", RuntimeWarning, stacklevel=2)
            raise CaptureFailed from err
        self.graph, self.outputs = graph, (loss, terms)
        self.grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]


class CaptureFailed(RuntimeError):
    """Capture did not work: the caller runs the step eagerly instead."""
