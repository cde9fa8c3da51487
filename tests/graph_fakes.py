"""CUDA-graph semantics on the CPU, for tests: a recorder of the operations a step runs, and a stand-in for the
``torch.cuda`` calls of :class:`pinn.training.graphs.GraphedStep` built on it.

A CUDA graph records the kernels a block of code launches, on fixed memory, without running them; replaying it runs
those kernels again on the same memory. :class:`FakeCuda` does the same one level up: during a capture it records
every ATen operation with its arguments (the same tensor objects), then puts back every tensor the block changed in
place, so that nothing appears to have run; a replay runs the recorded operations again and writes each result into
the tensor the capture produced. What a real capture refuses (reading a value on the host, making a tensor from host
data) raises here too, so a step that is not capture-safe fails on the CPU as it would on a GPU.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten

# Operations whose result depends on reading device memory on the host: a synchronisation on CUDA, refused in a
# capture (``.item()``, ``bool(t)``, ``float(t)``; boolean-mask indexing and ``nonzero``, whose output size is data)
SYNCS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default, aten._unique2.default,
         aten.unique_consecutive.default, aten.unique_dim.default, aten.repeat_interleave.Tensor}
# A tensor made from host data (``torch.tensor``, ``torch.as_tensor``, ``torch.from_numpy``): a host-to-device copy
CREATIONS = {aten.lift_fresh.default, aten.lift_fresh_copy.default}


def _where() -> str:
    """The innermost line of this package's code on the stack (``pinn/x.py:12 in f``), for messages."""
    for frame in reversed(traceback.extract_stack()):
        if "/pinn/" in frame.filename:
            return f"pinn/{frame.filename.rsplit('/pinn/', 1)[1]}:{frame.lineno} in {frame.name}"
    return "outside the package"


def _is_sync(func, args) -> bool:
    if func in SYNCS:
        return True
    if func is aten.index.Tensor:  # x[mask]: the output's length is the number of True entries
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])
    return False


class HostTraffic(TorchDispatchMode):
    """Records, while active, what a captured CUDA graph cannot hold: host synchronisations (``syncs``), tensors made
    from host data (``creations``), and operands that come from outside without being allowed (``foreign``: a tensor
    kept on a host object and copied to the device each call, as ``self.grid.to(xy)`` would be on a GPU).

    Allowed operands are the tensors made while active and those of ``allowed`` (the network's parameters and
    buffers, the optimizer's state, the batch, the constants a problem made once on its device). Reading a tensor of
    ``host`` is no synchronisation: it lives in host memory on a GPU too (Adam's step counts, unless capturable).
    """

    def __init__(self, allowed=(), host=()) -> None:
        super().__init__()
        self.allowed = {id(t) for t in allowed}
        self.host = {id(t) for t in host}
        self.made: list[torch.Tensor] = []  # kept alive so that their ids stay theirs
        self.made_ids: set[int] = set()
        self.syncs: list[str] = []
        self.creations: list[str] = []
        self.foreign: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _is_sync(func, args) and not (args and id(args[0]) in self.host):
            self.syncs.append(f"{func} at {_where()}")
        if func in CREATIONS:
            self.creations.append(f"{func} at {_where()}")
        else:
            for t in tree_flatten((args, kwargs))[0]:
                if isinstance(t, torch.Tensor) and id(t) not in self.made_ids and id(t) not in self.allowed:
                    if t.dim() > 0 or func is not aten.copy_.default:  # (a scalar wrapped for copy_ is a fill)
                        self.foreign.append(f"{func} on a {tuple(t.shape)} {t.dtype} tensor made elsewhere, at "
                                            f"{_where()}")
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.made.append(t)
                self.made_ids.add(id(t))
        return out

    def problems(self) -> list[str]:
        return [f"host sync: {s}" for s in self.syncs] + [f"tensor from host data: {c}" for c in self.creations] + [
            f"foreign operand: {f}" for f in self.foreign]


class CaptureRefused(RuntimeError):
    """What the CUDA runtime says when a capture meets an operation it cannot record."""


class _Recording(TorchDispatchMode):
    """Runs and records each operation of a capture; refuses syncs and host data as a CUDA capture does; keeps the
    value each tensor had before the capture first changed it in place."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple] = []
        self.before: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.made: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _is_sync(func, args) or func in CREATIONS:
            raise CaptureRefused(f"operation not permitted when stream is capturing ({func})")
        schema = func._schema
        for i, a in enumerate(schema.arguments):  # tensors this op writes: keep their value before the capture
            if a.alias_info is not None and a.alias_info.is_write:
                value = args[i] if i < len(args) else kwargs.get(a.name)
                for t in tree_flatten(value)[0]:
                    if isinstance(t, torch.Tensor) and id(t) not in self.made and id(t) not in self.before:
                        self.before[id(t)] = (t, t.detach().clone())
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.made.add(id(t))
        return out


class FakeGraph:
    """Stand-in for ``torch.cuda.CUDAGraph`` (see the module docstring)."""

    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda, self.recording, self.ops = cuda, None, None
        self.replays = 0

    def capture_begin(self, capture_error_mode: str = "global") -> None:
        self.cuda.captures_begun += 1
        self.recording = _Recording()
        self.recording.__enter__()

    def capture_end(self) -> None:
        rec, self.recording = self.recording, None
        rec.__exit__(None, None, None)
        with torch.no_grad():  # a capture runs nothing: put back what the recording changed
            for t, value in rec.before.values():
                t.copy_(value)
        self.ops = rec.ops

    def replay(self) -> None:
        self.replays += 1
        with torch.no_grad():
            for func, args, kwargs, out in self.ops:
                new = func(*args, **kwargs)
                for old, fresh in zip(tree_flatten(out)[0], tree_flatten(new)[0]):
                    if isinstance(old, torch.Tensor) and old is not fresh:
                        old.copy_(fresh)

    def pool(self) -> tuple[int, int]:
        return (0, id(self))

    def reset(self) -> None:
        self.ops = None


class FakeCuda:
    """Stand-in for :class:`pinn.training.graphs.TorchCuda`: capture and replay on the CPU (:class:`FakeGraph`),
    streams as names on a stack, and counts of what was called."""

    def __init__(self) -> None:
        self.streams = ["default"]
        self.captures_begun = 0
        self.abandoned = 0
        self.released = 0
        self.ended: list[bool] = []  # per abandoned capture: whether its capture_end went through
        self.graphs: list[FakeGraph] = []

    def stream(self) -> str:
        return "side"

    @contextmanager
    def on(self, stream):
        self.streams.append(stream)
        try:
            yield
        finally:
            self.streams.pop()

    def graph(self) -> FakeGraph:
        self.graphs.append(FakeGraph(self))
        return self.graphs[-1]

    def synchronize(self) -> None:
        pass

    def abandon(self, graph: FakeGraph, ended: bool = False) -> None:
        if graph.recording is not None:  # the capture raised before capture_end: leave the recording mode
            graph.recording.__exit__(None, None, None)
            graph.recording = None
        self.abandoned += 1
        self.ended.append(ended)

    def release(self, graphs) -> None:
        self.released += len(list(graphs))
