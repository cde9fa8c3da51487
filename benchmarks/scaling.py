"""Data-parallel scaling: training steps/s and points/s for 1, 2, ... processes, printed as a markdown table.

Each row is a real ``pinn fit`` run (Lightning DDP for more than one process) of ``configs/plane_wave.yaml``
with validation and checkpoints off; a callback times the steps after a warm-up on rank 0. Two modes:

- ``strong``: the config's global point budget, split across the processes (what the config means under DDP);
- ``weak``: the budget times the number of processes, so every process keeps the one-process share.

``points/s`` counts the interior, boundary and initial points of all processes per second. On CPU each process
gets ``cores / processes`` threads (Lightning sets ``OMP_NUM_THREADS`` when it is unset), or ``--threads``. On a
loaded machine multi-threaded processes slow down far more than single-threaded ones (threads wait on each
other), which flatters more processes: compare with ``--threads 1`` there.

    python benchmarks/scaling.py                      # CPU (gloo), 1 and 2 processes, both modes
    python benchmarks/scaling.py --quick              # a few steps, to check that it runs
    python benchmarks/scaling.py --accelerator gpu --processes 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/plane_wave.yaml"
BUDGET = {k: yaml.safe_load(CONFIG.read_text())["data"][k] for k in ("n_interior", "n_boundary", "n_initial")}


class StepTimer(L.Callback):
    """Writes the wall time of the training steps after ``warmup`` (rank 0) to a JSON file.

    Args:
        out_file: Where the JSON record goes.
        warmup: Steps excluded from the timing (first-call overheads, allocator warm-up).
    """

    def __init__(self, out_file: str = "timing.json", warmup: int = 5) -> None:
        self.out_file, self.warmup, self.start = out_file, warmup, None

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            self._sync(pl_module)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        elapsed = time.perf_counter() - self.start
        if trainer.is_global_zero:
            record = {"steps": trainer.global_step - self.warmup, "seconds": elapsed, "world": trainer.world_size}
            Path(self.out_file).write_text(json.dumps(record))


def run(processes: int, mode: str, args: argparse.Namespace, tmp: Path) -> dict:
    """One ``pinn fit`` run; returns its timing record plus the global points per step."""
    scale = processes if mode == "weak" else 1
    data = {k: v * scale for k, v in BUDGET.items()}
    out = tmp / f"{mode}-{processes}.json"
    total = args.warmup + args.steps
    overlay = {
        "trainer": {
            "accelerator": args.accelerator, "devices": processes, "strategy": "ddp" if processes > 1 else "auto",
            "max_steps": total, "limit_val_batches": 0, "num_sanity_val_steps": 0, "logger": False,
            "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(tmp),
            "callbacks": [{"class_path": "benchmarks.scaling.StepTimer",
                           "init_args": {"out_file": str(out), "warmup": args.warmup}}],
        },
        "model": {"width": args.width, "depth": args.depth},
        "data": {**data, "steps_per_epoch": total, "batch_size": None},  # one epoch: no epoch-end work timed
        "checkpoint": {"monitor": None, "save_top_k": 0, "save_last": False},
    }
    config = tmp / f"{mode}-{processes}.yaml"
    config.write_text(yaml.safe_dump(overlay))
    cmd = [sys.executable, "-m", "pinn", "fit", "-c", str(CONFIG), "-c", str(config)]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    record = json.loads(out.read_text())
    record["points"] = sum(data.values())
    return record


def machine(accelerator: str) -> str:
    if accelerator == "gpu" and torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", choices=["strong", "weak"], default=["strong", "weak"])
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: cores/processes)")
    parser.add_argument("--quick", action="store_true", help="10 timed steps, 2 warm-up steps")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup = 10, 2

    print(f"machine: {machine(args.accelerator)}; torch {torch.__version__}, lightning {L.__version__}; "
          f"MLP {args.depth}x{args.width}, full batch, {args.steps} timed steps after {args.warmup}; "
          f"threads per process: {args.threads or 'cores / processes'}\n")
    print("| mode | processes | points/step (global) | points/step/process | steps/s | points/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            base = None
            for p in args.processes:
                r = run(p, mode, args, Path(tmp))
                steps_s = r["steps"] / r["seconds"]
                points_s = steps_s * r["points"]
                base = base or points_s
                print(f"| {mode} | {p} | {r['points']} | {r['points'] // p} | {steps_s:.2f} | {points_s:,.0f} "
                      f"| {points_s / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
