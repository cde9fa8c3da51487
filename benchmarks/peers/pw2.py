"""What the peer scripts share: PW2's constants, its exact solution, its point sets, the command line and the
JSON line they print. Plain numpy and torch, so that every peer's own environment can import it (the scripts run
from this folder, which Python puts on the path)."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

LAM, MU, RHO = 1.0, 0.5, 1.0
WAVES = [("P", 0.3), ("S", 1.2)]  # kind, angle; |k| = 2 pi, amplitude 1, phase 0
K = 2 * math.pi
N_INTERIOR, N_BOUNDARY, N_INITIAL = 4096, 1024, 1024
WEIGHTS = {"pde": 0.001, "bc": 1.0, "ic_disp": 1.0, "ic_vel": 0.02}


def exact(xyt, lib=np):
    """Exact displacement and velocity ``(N, 2)`` of the two plane waves (numpy arrays or torch tensors)."""
    u, vel = 0.0, 0.0
    for kind, angle in WAVES:
        c = math.sqrt((LAM + 2 * MU) / RHO) if kind == "P" else math.sqrt(MU / RHO)
        d = (math.cos(angle), math.sin(angle)) if kind == "P" else (-math.sin(angle), math.cos(angle))
        arg = K * math.cos(angle) * xyt[:, 0] + K * math.sin(angle) * xyt[:, 1] - c * K * xyt[:, 2]
        s, co = lib.sin(arg), -c * K * lib.cos(arg)
        u = u + lib.stack([d[0] * s, d[1] * s], 1)
        vel = vel + lib.stack([d[0] * co, d[1] * co], 1)
    return u, vel


def points(scale: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform random interior points, boundary points (once around the perimeter x time) and points at t = 0."""
    rng = np.random.default_rng(seed)
    interior = rng.random((N_INTERIOR * scale, 3))
    s, tau = 4 * rng.random(N_BOUNDARY * scale), rng.random(N_BOUNDARY * scale)
    edge, a = np.minimum(np.floor(s), 3), s - np.minimum(np.floor(s), 3)  # bottom, right, top, left
    x = np.select([edge == 0, edge == 1, edge == 2], [a, np.ones_like(a), 1 - a], np.zeros_like(a))
    y = np.select([edge == 0, edge == 1, edge == 2], [np.zeros_like(a), a, np.ones_like(a)], 1 - a)
    boundary = np.stack([x, y, tau], axis=1)
    initial = np.concatenate([rng.random((N_INITIAL * scale, 2)), np.zeros((N_INITIAL * scale, 1))], axis=1)
    return interior, boundary, initial


def arguments(description: str) -> argparse.Namespace:
    """The command line every peer script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--points-scale", type=int, default=1, help="multiply every point count by this")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where to train (cuda: the first GPU; the loop time then ends with a device synchronisation)")
    return p.parse_args()


def synchronize(device: str) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a wall-clock interval holds all of it."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def report(library: str, version: str, torch_version: str, ms: float, args: argparse.Namespace, threads: int,
           **extra) -> None:
    """Print the one JSON line that ``benchmarks/throughput.py`` reads: ``ms`` is the median step in ms."""
    n = (N_INTERIOR + N_BOUNDARY + N_INITIAL) * args.points_scale
    print(json.dumps({"library": library, "version": version, "torch": torch_version, "ms_per_step": ms,
                      "points_per_s": n / (ms / 1e3), "steps": args.steps, "threads": threads, **extra}))
