"""Milliseconds per training step on a GPU, for PW2 and PW2 with more points: CUDA graphs with the compiled Taylor
streams, the compiled streams alone, and eager.

PW2 is the main job's problem and network (``configs/plane_wave.yaml``: 4096 interior, 1024 boundary and 1024
initial points, full batch); ``--sizes 1 10`` also times it with 10x the points. One step is what a training step
runs: ``ElasticPINN.training_loss``, its backward pass and the ``PersistentAdam`` update. With graphs the step is
:class:`pinn.training.graphs.GraphedStep` (eager warm-up, then capture and replay), as ``model.cuda_graphs: auto``
runs it on a GPU. Each variant is timed over ``--steps`` steps between two device synchronisations, after
``--warmup`` untimed steps (compiling and capturing), ``--rounds`` times interleaved; the table gives the medians.

    python benchmarks/gpu_step.py                    # PW2 and PW2 x10, 3 rounds of 50 steps
    python benchmarks/gpu_step.py --json out.json    # the figures as JSON too

Needs a CUDA device (``benchmarks/gpu.sh`` runs it with everything else a lent GPU machine checks).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

POINTS = (4096, 1024, 1024)  # interior, boundary, initial
VARIANTS = {"graphs": "CUDA graphs + compile", "compile": "compile only", "eager": "eager"}


def build(variant: str, scale: int):
    """The main job's model, optimizer and first batch on the GPU with ``scale`` x the points; returns one step."""
    from pinn.cli import cli_main
    from pinn.optim.persistent_adam import PersistentAdam
    from pinn.training.graphs import GraphedStep

    args = ["-c", str(ROOT / "configs" / "plane_wave.yaml"), "--model.compile", "false" if variant == "eager" else
            "true", "--trainer.logger", "false"]
    for key, n in zip(("n_interior", "n_boundary", "n_initial"), POINTS):
        args += [f"--data.{key}", str(n * scale)]
    cli = cli_main(args, run=False)
    model, data = cli.model.cuda().train(), cli.datamodule
    data.setup("fit")
    batch = {k: v.cuda().float() for k, v in data.batch(0).items()}
    optimizer = PersistentAdam(model.parameters(), lr=1e-3, capturable=variant == "graphs")
    if variant == "graphs":
        graphed = GraphedStep(model, optimizer)

        def step() -> None:
            graphed.step(batch)
        return model, step, graphed

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.training_loss(batch)
        loss.backward()
        optimizer.step()
    return model, step, None


def timed(step, steps: int) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps * 1e3


def run(args: argparse.Namespace) -> dict:
    results: dict = {}
    for scale in args.sizes:
        steps, notes, first = {}, [], {}
        for variant in VARIANTS:
            model, step, graphed = build(variant, scale)
            t = time.perf_counter()
            for _ in range(args.warmup):
                step()
            torch.cuda.synchronize()
            first[variant] = time.perf_counter() - t
            kernel = model._kernel
            if variant != "eager" and (kernel is None or kernel.state != "compiled"):
                notes.append(f"{VARIANTS[variant]} ran uncompiled: {getattr(kernel, 'reason', None)}")
            if graphed is not None and (graphed.failed or not graphed.captures):
                notes.append(f"graphs did not capture: {graphed.failed}")
            steps[variant] = step
        times = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant, step in steps.items():
                times[variant].append(timed(step, args.steps))
        ms = {v: statistics.median(ts) for v, ts in times.items()}
        results[scale] = {"ms_per_step": ms, "warmup_s": first, "notes": notes,
                          "points": sum(POINTS) * scale}
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 10], help="point multipliers of PW2")
    p.add_argument("--steps", type=int, default=50, help="timed steps per round and variant")
    p.add_argument("--warmup", type=int, default=8, help="untimed steps first (compile, warm-up, capture)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is reported)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu_step.py needs a CUDA device; torch sees none.")
    warnings.filterwarnings("ignore", category=UserWarning)
    results = run(args)
    print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; median of {args.rounds} rounds of "
          f"{args.steps} steps\n")
    print("| problem | points / step | " + " | ".join(f"{v} (ms)" for v in VARIANTS.values()) +
          " | graphs vs eager |")
    print("|---|---:|" + "---:|" * len(VARIANTS) + "---:|")
    for scale, r in results.items():
        ms = r["ms_per_step"]
        print(f"| PW2{'' if scale == 1 else f' x{scale}'} | {r['points']} | " +
              " | ".join(f"{ms[v]:.2f}" for v in VARIANTS) + f" | {ms['eager'] / ms['graphs']:.1f}x |")
    for r in results.values():
        for note in r["notes"]:
            print(note)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
