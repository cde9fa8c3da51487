"""Milliseconds per training step and peak memory of the derivative engines, on the reference setup.

One step is what Lightning runs per batch: ``ElasticPINN.training_loss`` (every loss term) and its backward pass
inside ``PersistentAdam.step(closure)``. Reference setup: 4 x 64 tanh MLP; 4096 interior, 1024 boundary and 1024
initial points, full batch; the two plane waves of ``configs/plane_wave.yaml``.

    python benchmarks/step.py                              # autograd, taylor, taylor with torch.compile
    python benchmarks/step.py --no-compile                 # eager engines only (a minute)
    python benchmarks/step.py --threads 1 --clock cpu      # on a shared, busy machine

The variants are timed interleaved (round r times every variant before round r + 1), so drifts of a shared machine
hit all of them alike; the table gives the median over rounds and ratios of those medians, all from one run.

Floor: 8 plain forward passes of the network on the interior points, the matrix work of pushing the 8 streams of
the residual (value, 3 first and 4 second derivatives) forward once; a training step also runs the backward pass
through them, which costs about twice that again, so no engine reaches the floor itself.

Peak memory: on CUDA the peak allocated during one step above what was allocated before it. On CPU the rise of the
process's peak resident set during one step (Linux), in a fresh subprocess per variant with glibc's mmap threshold
fixed so that freed tensors go back to the system.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pinn import ElasticDataModule, ElasticPINN, Material, PersistentAdam, PlaneWaves, Wave  # noqa: E402

# "config": the network and points of configs/plane_wave.yaml as shipped (its Fourier features included), eager
VARIANTS = [("autograd", False), ("taylor", False), ("config", False), ("taylor", True)]
STREAMS = 8  # value, x, y, t, xx, yy, tt, xy


def name(engine: str, compile: bool) -> str:
    if engine == "config":
        return "main job (configs/plane_wave.yaml)"
    return engine + (" + compile" if compile else "")


MAIN_JOB = Path(__file__).resolve().parents[1] / "configs" / "plane_wave.yaml"


def build(engine: str, compile: bool, device: str, config: Path = MAIN_JOB
          ) -> tuple[ElasticPINN, Callable[[], None], Callable[[], None]]:
    """The reference model and batch on ``device``; returns (the model, one training step, one plain forward).
    ``engine="config"``: the model and first batch of ``pinn fit -c config`` instead, as the config sets them."""
    if engine == "config":
        from pinn.cli import cli_main

        cli = cli_main(["-c", str(config)], run=False)
        model, data = cli.model.to(device), cli.datamodule
    else:
        problem = PlaneWaves([Wave("P", 0.3, 2 * math.pi), Wave("S", 1.2, 2 * math.pi)],
                             material=Material(1.0, 0.5, 1.0))
        data = ElasticDataModule(problem, n_interior=4096, n_boundary=1024, n_initial=1024, seed=0)
        torch.manual_seed(0)
        model = ElasticPINN(problem, width=64, depth=4, activation="tanh", engine=engine, compile=compile).to(device)
    data.setup("fit")
    batch = {k: v.to(device, torch.float32) for k, v in data.batch(0).items()}  # the points, in the model dtype
    optimizer = PersistentAdam(model.parameters(), lr=1e-3)

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.training_loss(batch)
        loss.backward()
        return loss

    def step() -> None:
        optimizer.step(closure)

    @torch.no_grad()
    def forward() -> None:
        model.net(batch["interior"])

    return model, step, forward


def timer(clock: str, device: str) -> Callable[[], float]:
    tick = time.process_time if clock == "cpu" else time.perf_counter

    def now() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        return tick()

    return now


def peak_memory_child(engine: str, compile: bool, device: str) -> float | None:
    """MiB above the pre-step level at the peak of one step (runs inside the measuring process)."""
    _, step, _ = build(engine, compile, device)
    for _ in range(2):  # compile and reach steady state first
        step()
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        base = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        step()
        return (_status_kib("VmHWM") - base) / 1024
    except OSError:
        return None


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def peak_memory(engine: str, compile: bool, args: argparse.Namespace) -> float | None:
    if args.device == "cuda":
        return peak_memory_child(engine, compile, args.device)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, __file__, "--memory-child", engine, str(int(compile)), "--threads", str(args.threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"memory of {name(engine, compile)} not measured: {out.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine(args: argparse.Namespace) -> str:
    if args.device == "cuda":
        what = torch.cuda.get_device_name()
    else:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
        what = f"{cpu or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{what}; torch {torch.__version__}; {args.clock} clock; load average {load}"


def run(args: argparse.Namespace) -> None:
    variants = [v for v in VARIANTS if args.compile or not v[1]]
    now = timer(args.clock, args.device)
    steps, forward, warmup, notes = {}, None, {}, {}
    for engine, compile in variants:
        model, step, fwd = build(engine, compile, args.device)
        t = time.perf_counter()
        step()  # compiles, for the compiled variants
        warmup[(engine, compile)] = time.perf_counter() - t
        step()
        steps[(engine, compile)], forward = step, forward or fwd
        kernel = model._kernel
        if compile and (kernel is None or kernel.state != "compiled"):
            notes[(engine, compile)] = f"{name(engine, compile)} ran uncompiled: {getattr(kernel, 'reason', None)}"
    forward()
    times: dict = {v: [] for v in [*variants, "forward"]}
    for _ in range(args.rounds):
        for v in variants:
            t = now()
            for _ in range(args.steps):
                steps[v]()
            times[v].append((now() - t) / args.steps * 1e3)
        t = now()
        for _ in range(args.steps * 4):
            forward()
        times["forward"].append((now() - t) / (args.steps * 4) * 1e3)
    ms = {v: statistics.median(ts) for v, ts in times.items()}
    floor = STREAMS * ms["forward"]
    memory = {v: peak_memory(*v, args) for v in variants} if args.memory else {}
    base = ms[("autograd", False)]
    print(f"\nmachine: {machine(args)}\n")
    print("| variant | ms / step | speed-up vs autograd | x floor | peak memory (MiB) | first step (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for v in variants:
        mem = memory.get(v)
        mem = f"{mem:.0f}" if mem is not None else "n/a"
        print(f"| {name(*v)} | {ms[v]:.1f} | {base / ms[v]:.2f} | {ms[v] / floor:.2f} | {mem} | {warmup[v]:.1f} |")
    print(f"| floor: {STREAMS} plain forward passes | {floor:.1f} | {base / floor:.2f} | 1.00 | | |")
    print(f"\nmedian of {args.rounds} rounds of {args.steps} steps each; plain forward pass {ms['forward']:.2f} ms; "
          "first step: wall time, compiling included")
    for note in notes.values():
        print(note)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time, or process CPU time (single thread on a busy machine: excludes waiting)")
    p.add_argument("--rounds", type=int, default=7, help="timing rounds (the median is reported)")
    p.add_argument("--steps", type=int, default=5, help="training steps per round and variant")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile variants")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    p.add_argument("--quick", action="store_true", help="3 rounds of 2 steps")
    p.add_argument("--memory-child", nargs=2, metavar=("ENGINE", "COMPILE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    warnings.filterwarnings("ignore", "torch.compile could not compile", RuntimeWarning)  # the table notes it
    torch.set_num_threads(args.threads)
    if args.clock == "cpu" and args.threads > 1:
        p.error("--clock cpu sums the time of all threads; use it with --threads 1")
    if args.memory_child:
        print(json.dumps(peak_memory_child(args.memory_child[0], bool(int(args.memory_child[1])), "cpu")))
        return
    if args.quick:
        args.rounds, args.steps = 3, 2
    run(args)


if __name__ == "__main__":
    main()
