"""Benchmark of PersistentAdam: step time and state memory against torch.optim.Adam, and convergence on the
plane-wave problem against the StatelessAdam baseline. Prints markdown tables.

    python benchmarks/optim.py                      # everything (the convergence part takes long on a CPU)
    python benchmarks/optim.py --skip-convergence   # step time and memory only
    python benchmarks/optim.py --steps 200 --skip-timing --skip-memory   # a quick convergence check

Step time: ``optimizer.step()`` alone on fixed gradients, median over rounds that alternate the optimizers.
Memory: bytes of the state tensors, counted exactly; ``step`` is a 4-byte float32 scalar on the CPU per parameter
tensor and is reported separately. Convergence: the setup of ``configs/plane_wave.yaml`` (network, initial
weights, points, loss weights, learning rate, derivative engine), full-batch training; the loss is the weighted
training loss of ``ElasticPINN`` at the current weights.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository's own pinn, also when run as a script

from pinn.cli import PINNCLI  # noqa: E402
from pinn.data import ElasticDataModule  # noqa: E402
from pinn.module import ElasticPINN  # noqa: E402
from pinn.network import MLP  # noqa: E402
from pinn.optim import PersistentAdam, StatelessAdam  # noqa: E402

NETS = {"PINN MLP 3-64x4-2": dict(width=64, depth=4), "MLP 3-1024x11-2": dict(width=1024, depth=11)}


def params_with_grads(width: int, depth: int, device: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [p for p in MLP(width=width, depth=depth).to(device).parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(opt: torch.optim.Optimizer, n: int, device: str) -> float:
    """Seconds per ``opt.step()``, averaged over ``n`` steps."""
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        opt.step()
    sync(device)
    return (time.perf_counter() - start) / n


def timing_table(device: str, rounds: int, min_seconds: float) -> str:
    makers: dict[str, Callable] = {
        "torch.optim.Adam(foreach=True)": lambda p: torch.optim.Adam(p, foreach=True),
        "PersistentAdam() (foreach)": lambda p: PersistentAdam(p),
        "PersistentAdam(foreach=False)": lambda p: PersistentAdam(p, foreach=False),
    }
    lines = ["| network | parameters | optimizer | step time | ratio to torch |", "|---|---:|---|---:|---:|"]
    for net, size in NETS.items():
        opts = {name: make(params_with_grads(**size, device=device)) for name, make in makers.items()}
        n_params = sum(p.numel() for p in opts["PersistentAdam() (foreach)"].param_groups[0]["params"])
        for opt in opts.values():  # warm up: state allocation, caches
            time_steps(opt, 3, device)
        per_step = time_steps(opts["torch.optim.Adam(foreach=True)"], 3, device)
        n = max(3, int(min_seconds / max(per_step, 1e-7)))  # steps per round so each round lasts ~min_seconds
        samples: dict[str, list[float]] = {name: [] for name in opts}
        for r in range(rounds):
            order = list(opts) if r % 2 == 0 else list(reversed(opts))  # alternate: drift hits all alike
            for name in order:
                samples[name].append(time_steps(opts[name], n, device))
        ref = statistics.median(samples["torch.optim.Adam(foreach=True)"])
        for name, s in samples.items():
            t = statistics.median(s)
            lines.append(f"| {net} | {n_params:,} | {name} | {t * 1e3:.3f} ms | {t / ref:.3f} |")
    return "\n".join(lines)


def state_bytes(opt: torch.optim.Optimizer) -> tuple[int, int, int]:
    """(bytes of state tensors other than step, number of step scalars, bytes of the step scalars)."""
    tensors, n_steps, step_bytes = 0, 0, 0
    for state in opt.state.values():
        for key, value in state.items():
            size = value.numel() * value.element_size()
            if key == "step":
                n_steps, step_bytes = n_steps + 1, step_bytes + size
            else:
                tensors += size
    return tensors, n_steps, step_bytes


def memory_table(device: str) -> str:
    lines = ["| network | optimizer | parameter bytes | state bytes (without step) | ratio | step scalars |",
             "|---|---|---:|---:|---:|---|"]
    for net, size in NETS.items():
        for name, make in [("PersistentAdam", lambda p: PersistentAdam(p)),
                           ("PersistentAdam(amsgrad=True)", lambda p: PersistentAdam(p, amsgrad=True)),
                           ("torch.optim.Adam(amsgrad=True)", lambda p: torch.optim.Adam(p, amsgrad=True))]:
            params = params_with_grads(**size, device=device)
            opt = make(params)
            opt.step()
            param_bytes = sum(p.numel() * p.element_size() for p in params)
            tensors, n_steps, step_bytes = state_bytes(opt)
            lines.append(f"| {net} | {name} | {param_bytes:,} | {tensors:,} | {tensors / param_bytes:.3f} | "
                         f"{n_steps} x 4 B = {step_bytes} B on the CPU |")
        del params, opt
    return "\n".join(lines)


def plane_wave_setup(config: Path, seed: int, device: str) -> tuple[ElasticPINN, ElasticDataModule, float]:
    """Model (initial weights as the CLI makes them), data module and learning rate of ``config``."""
    cli = PINNCLI(ElasticPINN, ElasticDataModule, run=False,
                  args=["-c", str(config), "--seed_everything", str(seed), "--trainer.logger", "false"])
    model, data = cli.model.to(device), cli.datamodule
    data.setup("fit")
    lr = cli.config.model.optimizer.init_args.lr
    return model, data, float(lr)


def train(model: ElasticPINN, data: ElasticDataModule, opt: torch.optim.Optimizer, steps: int, device: str,
          target: float = -math.inf, min_steps: int = 0, log: Callable[[str], None] = print) -> list[float]:
    """Train for up to ``steps`` steps; returns the losses L(theta_0), ..., L(theta_k). Stops at k >= ``min_steps``
    once some loss so far is <= ``target``."""
    losses = []
    batch = {k: v.to(device) for k, v in data.batch(0).items()}
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if data.batches_per_pass > 1:
            batch = {k: v.to(device) for k, v in data.batch(step).items()}
        opt.zero_grad(set_to_none=True)
        terms = model.loss_terms(batch)
        loss = sum(getattr(model.weights, k) * v for k, v in terms.items())
        losses.append(loss.item())  # the loss at theta_step, before this step's update
        if not math.isfinite(losses[-1]) or step == steps or (step >= min_steps and min(losses) <= target):
            break
        loss.backward()
        opt.step()
        if step % 250 == 0:
            log(f"    step {step:5d}  loss {losses[-1]:.4e}  ({time.perf_counter() - t0:.0f} s)")
    return losses


@torch.no_grad()
def rel_l2(model: ElasticPINN, data: ElasticDataModule, device: str) -> float:
    xyt = data.grid().to(device)
    pred, exact = model(xyt), model.problem.displacement(xyt)
    return ((pred - exact).norm() / exact.norm()).item()


def convergence_table(config: Path, steps: int, max_steps: int, seeds: list[int], device: str) -> str:
    lines = [f"| seed | StatelessAdam loss after {steps} steps | PersistentAdam loss after {steps} | "
             f"steps PersistentAdam needs to reach it | fewer steps | rel. L2: Stateless / Persistent |",
             "|---:|---:|---:|---:|---:|---|"]
    for seed in seeds:
        model, data, lr = plane_wave_setup(config, seed, device)
        init = copy.deepcopy(model.state_dict())
        print(f"seed {seed}: StatelessAdam(lr={lr}) for {steps} steps", file=sys.stderr)
        base = train(model, data, StatelessAdam(model.parameters(), lr=lr), steps, device,
                     log=lambda s: print(s, file=sys.stderr))
        target, base_err = base[-1], rel_l2(model, data, device)
        model.load_state_dict(init)
        print(f"seed {seed}: PersistentAdam(lr={lr}) until loss <= {target:.4e} (at most {max_steps})", file=sys.stderr)
        ours = train(model, data, PersistentAdam(model.parameters(), lr=lr), max_steps, device, target=target,
                     min_steps=steps, log=lambda s: print(s, file=sys.stderr))
        ours_err = rel_l2(model, data, device) if len(ours) == steps + 1 else float("nan")
        reached = next((t for t, v in enumerate(ours) if v <= target), None)
        ours_at = f"{ours[steps]:.4e}" if len(ours) > steps else "n/a"
        if reached is None:
            needed, fewer = f"> {len(ours) - 1}", "n/a"
        else:
            needed, fewer = str(reached), f"{1 - reached / steps:+.0%}"
        lines.append(f"| {seed} | {target:.4e} | {ours_at} | {needed} | {fewer} | {base_err:.3e} / {ours_err:.3e} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds per optimizer (median is reported)")
    parser.add_argument("--round-seconds", type=float, default=0.5, help="approximate length of one timing round")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "plane_wave.yaml")
    parser.add_argument("--steps", type=int, default=2000, help="StatelessAdam steps that set the target loss")
    parser.add_argument("--max-steps", type=int, default=None, help="PersistentAdam step limit (default 2x --steps)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="network initialisation seeds")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-convergence", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor()
    print(f"Machine: {args.device} ({name or platform.machine()}), {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, Python {platform.python_version()}\n")
    if not args.skip_timing:
        print("### Step time (optimizer.step() only)\n\n" + timing_table(args.device, args.rounds,
                                                                          args.round_seconds) + "\n", flush=True)
    if not args.skip_memory:
        print("### Optimizer state memory\n\n" + memory_table(args.device) + "\n", flush=True)
    if not args.skip_convergence:
        max_steps = args.max_steps or 2 * args.steps
        print(f"### Convergence on {args.config.name} (full batch)\n\n"
              + convergence_table(args.config, args.steps, max_steps, args.seeds, args.device) + "\n", flush=True)


if __name__ == "__main__":
    main()
