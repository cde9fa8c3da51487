"""Opt-in ``torch.compile`` of a loss function, with an eager fallback that says why it was needed."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from pinn import compat


def _reason(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else 'no message'}"[:300]


class CompiledLoss:
    """Calls ``torch.compile(fn)``; where compiling fails, warns once with the reason and calls ``fn`` from then on.

    ``fn`` must be a pure function of its arguments that returns the loss (a scalar tensor), optionally in a tuple
    with anything else. The first call compiles the forward graph and, by differentiating a throw-away loss once
    w.r.t. ``params()``, the backward graph too (torch compiles it lazily, so a failure would otherwise surface
    later, inside the caller's ``backward``); that probe costs one extra forward and backward pass, once. A genuine
    error of ``fn`` itself is raised unchanged: on a failure the eager ``fn`` runs, and only if it succeeds is
    compiling blamed.

    Args:
        fn: The loss function.
        params: The tensors the loss is differentiated for (used by the backward probe only).
        name: What ``fn`` computes, for the warning.
        backend: ``torch.compile`` backend.
    """

    def __init__(
        self, fn: Callable, params: Callable[[], Iterable[Tensor]], name: str = "the loss", backend: str = "inductor"
    ) -> None:
        self.fn, self.params, self.name = fn, params, name
        self.state = "untried"  # -> "compiled" or "eager"
        self.reason: str | None = None
        # AOTAutograd's on-disk cache, on by default in torch 2.13: a training loss restored from it ran 40 % slower
        # than a fresh compile of the same loss (99 vs 70 ms a step for the reference model on a CPU), and saving an
        # entry once crashed the process with a segmentation fault, which no fallback can catch. Inductor's own
        # kernel cache stays on, so a second run still skips most of the compiling. The setting is process-wide (the
        # backward of a recompiled loss is compiled later, inside the caller's backward, so a scoped patch would miss
        # it); it is made only when compiling is asked for.
        compat.disable_autograd_cache()
        try:
            self.compiled = torch.compile(fn, backend=backend)
        except Exception as err:  # e.g. a Python version or platform that torch.compile does not support
            self._fall_back(err)

    def _fall_back(self, err: Exception) -> None:
        self.state, self.reason = "eager", _reason(err)
        warnings.warn(
            f"torch.compile could not compile {self.name} ({self.reason}); running it without compiling. "
            "Set compile to false to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )

    def __call__(self, *args):
        if self.state == "compiled":
            return self.compiled(*args)
        if self.state == "eager":
            return self.fn(*args)
        try:
            # a throw-away call first: it compiles the forward graph, and differentiating its loss compiles the
            # backward graph, so that a failure there surfaces here and not in the caller's backward
            probe = self.compiled(*args)
            loss = probe[0] if isinstance(probe, tuple) else probe
            params = [p for p in self.params() if p.requires_grad]
            if loss.requires_grad and params:
                torch.autograd.grad(loss, params, allow_unused=True)
            del probe, loss
            out = self.compiled(*args)
        except Exception as err:  # any failure of the compiler means: run eagerly
            out = self.fn(*args)  # raises here if the error was fn's own
            self._fall_back(err)
            return out
        self.state = "compiled"
        return out
