"""``torch.compile`` of the Taylor engine's streams: when it is worth it, where its cache lives, and an eager
fallback that says why it was needed.

What is compiled is :func:`pinn.networks.taylor.taylor_streams` for the PDE residual (the value and its eight
derivative streams on the interior points), not the whole loss. Profiling the eager step puts about half of it in
matrix products, which compiling does not speed up, and most of the rest in the elementwise products of the streams,
a dozen passes over ``(8, N, W)`` arrays per layer forward and backward, which compiling fuses. The boundary and
initial terms (a few streams on fewer points) and the loss terms stay eager. Compiling the whole loss instead took
longer to compile and gave slower steps than the streams alone (measurements in ``docs/speed.md``, *Compiling*).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from pinn.compat import has_triton, inductor_default_cache_dir, set_inductor_compile_threads
from pinn.networks.taylor import taylor_applies, taylor_streams

# Below this many loss evaluations a first compile would not pay for itself: the time it saves per step wins back
# its cost after about a thousand steps of the main job (docs/speed.md, *Compiling*). A warm cache pays off much
# sooner, but whether it is warm is not known before compiling.
MIN_EVALUATIONS = 2000


def _chosen_cache_dir() -> str | None:
    """``$TORCHINDUCTOR_CACHE_DIR`` where the user set it. torch writes its own default into that variable the first
    time it needs the cache (importing Lightning does), so that value does not count as chosen."""
    value = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    return None if not value or os.path.abspath(value) == os.path.abspath(inductor_default_cache_dir()) else value


def cache_dir() -> Path:
    """Where compiled kernels are kept between runs: ``$TORCHINDUCTOR_CACHE_DIR`` if the user set it, else
    ``$XDG_CACHE_HOME/pinn/torchinductor`` (``~/.cache/...``). torch's own default is under ``/tmp``, which is
    wiped at reboot and is private to a job on most clusters, so a second run would compile again."""
    chosen = _chosen_cache_dir()
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pinn" / "torchinductor"


def configure_compiler() -> None:
    """Point inductor at :func:`cache_dir` and compile in this process (unless the environment says otherwise).

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` each time it opens its cache, so setting it before the first compile
    suffices. Its default pool of compile workers costs a start-up of its own, which was not won back in the
    compiles measured (``docs/speed.md``, *Compiling*). So one thread, unless ``TORCHINDUCTOR_COMPILE_THREADS`` is
    set, which also spares the worker processes.
    """
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir())
    if "TORCHINDUCTOR_COMPILE_THREADS" not in os.environ:
        set_inductor_compile_threads(1)


def compiler_missing(device: torch.device) -> str | None:
    """Why inductor cannot compile for ``device`` here (no C++ compiler; no Triton for CUDA), or ``None``."""
    if device.type == "cuda":
        return None if has_triton() else "Triton is not installed"
    if device.type != "cpu":
        return f"the {device.type} device"
    cxx = os.environ.get("CXX") or "g++"
    if not any(shutil.which(c) for c in (cxx, "c++", "clang++")):
        return f"no C++ compiler ({cxx}) on PATH"
    return None


def loss_evaluations(max_steps: int, lbfgs_start: int | None, lbfgs_iterations: int) -> float:
    """How many times a run evaluates the loss: one per optimizer step, up to ``lbfgs_iterations`` per step of an
    L-BFGS stage from ``lbfgs_start`` on; infinite without a step limit (``max_steps`` < 0)."""
    if max_steps < 0:
        return float("inf")
    if lbfgs_start is None or lbfgs_start >= max_steps:
        return float(max_steps)
    return float(lbfgs_start + (max_steps - lbfgs_start) * lbfgs_iterations)


def _reason(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else 'no message'}"[:300]


class CompiledKernel:
    """Calls ``torch.compile(fn)`` where gradients are on; where compiling fails, warns once with the reason and
    calls ``fn`` from then on.

    ``fn`` takes tensors, modules and constants and returns a tuple of tensors (or ``None``). Under
    ``torch.no_grad`` (residuals ranked for resampling, predictions) ``fn`` runs eagerly: those calls come with
    other shapes, and each new shape would be compiled again. The first call with a new signature compiles the
    forward graph and, by differentiating its outputs once for ``params()`` and the tensor arguments, the backward
    graph too (torch compiles that lazily, so a failure would otherwise surface later, inside the caller's
    ``backward``); that probe costs one extra call, once per signature. An error of ``fn`` itself is raised
    unchanged: on a failure the eager ``fn`` runs, and only if it succeeds is the compiler blamed.

    Args:
        fn: The function.
        name: What ``fn`` computes, for the warning.
        params: The parameters ``fn`` reads besides its arguments (a module's), for the probe.
        backend: ``torch.compile`` backend.
    """

    def __init__(self, fn: Callable, name: str, params: Callable[[], Iterable[Tensor]] = tuple,
                 backend: str = "inductor") -> None:
        self.fn, self.name, self.params = fn, name, params
        self.state = "untried"  # -> "compiled" or "eager"
        self.reason: str | None = None
        self.signatures: set[tuple] = set()
        configure_compiler()
        try:
            self.compiled = torch.compile(fn, backend=backend)
        except Exception as err:  # e.g. a Python version or platform that torch.compile does not support
            self._fall_back(err)

    def _fall_back(self, err: Exception) -> None:
        self.state, self.reason = "eager", _reason(err)
        warnings.warn(
            f"torch.compile could not compile {self.name} ({self.reason}); running it without compiling. "
            "Set model.compile to false to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )

    def __call__(self, *args):
        if self.state == "eager" or not torch.is_grad_enabled():
            return self.fn(*args)
        key = tuple((tuple(a.shape), a.dtype, a.device, a.requires_grad) if isinstance(a, Tensor)
                    else a if isinstance(a, (str, int, float, type(None))) else id(a) for a in args)
        if key in self.signatures:
            return self.compiled(*args)
        try:
            probe = [a.detach().requires_grad_(a.requires_grad) if isinstance(a, Tensor) else a for a in args]
            outputs = [o for o in self.compiled(*probe) if isinstance(o, Tensor) and o.requires_grad]
            inputs = [a for a in [*probe, *self.params()] if isinstance(a, Tensor) and a.requires_grad]
            if outputs and inputs:
                torch.autograd.grad(sum(o.sum() for o in outputs), inputs, allow_unused=True)
            out = self.compiled(*args)
        except Exception as err:  # any failure of the compiler means: run eagerly
            out = self.fn(*args)  # raises here if the error was fn's own
            self._fall_back(err)
            return out
        self.signatures.add(key)
        self.state = "compiled"
        return out


def decide_compile(model, max_steps: int) -> CompiledKernel | None:
    """The compiled Taylor streams of ``model`` (an :class:`~pinn.training.module.ElasticPINN`) if its ``compile``
    setting says to compile for a fit of ``max_steps`` steps (-1: no limit), else ``None``; the run log says why.

    ``"auto"`` compiles when the Taylor engine applies, a compiler is found and the fit evaluates the loss at least
    :data:`MIN_EVALUATIONS` times; ``True`` whenever the Taylor engine applies; ``False`` never.
    """
    mode = model.compile_mode
    if mode is False:
        return None
    use, why = True, f"model.compile is {str(mode).lower()}"
    lbfgs = model.lbfgs
    n = loss_evaluations(max_steps, None if lbfgs is None else lbfgs.start_in(0),
                         1 if lbfgs is None else lbfgs.max_iter)
    if model.engine == "autograd" or not taylor_applies(model.net):
        use, why = False, "the Taylor engine does not apply, and only its streams are compiled"
    elif mode == "auto" and compiler_missing(model.device):
        use, why = False, compiler_missing(model.device)
    elif mode == "auto" and n < MIN_EVALUATIONS:
        use, why = False, f"a short run: up to {n:.0f} loss evaluations, fewer than {MIN_EVALUATIONS}"
    elif mode == "auto" and n < float("inf"):
        why += f" and the run is long: up to {n:.0f} loss evaluations"
    if use:
        rank_zero_info(f"Compiling the Taylor streams of the residual ({why}); model.compile: false turns it off.")
        return CompiledKernel(taylor_streams, "the Taylor streams", model.net.parameters)
    if mode is True:
        rank_zero_warn(f"model.compile is true, but {why}: running uncompiled.")
    else:
        rank_zero_info(f"Not compiling ({why}); model.compile: true compiles anyway.")
    return None
