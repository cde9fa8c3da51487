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
import hashlib
import json
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

from pinn.cli import cli_main  # noqa: E402
from pinn.networks.mlp import MLP  # noqa: E402
from pinn.optim.persistent_adam import PersistentAdam, StatelessAdam  # noqa: E402
from pinn.training.data import ElasticDataModule  # noqa: E402
from pinn.training.metrics import RelativeL2  # noqa: E402
from pinn.training.module import ElasticPINN  # noqa: E402

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
    cli = cli_main(["-c", str(config), "--seed_everything", str(seed), "--trainer.logger", "false"], run=False)
    model, data = cli.model.to(device), cli.datamodule
    data.setup("fit")
    lr = cli.config.model.optimizer.init_args.lr
    return model, data, float(lr)


def train(model: ElasticPINN, data: ElasticDataModule, opt: torch.optim.Optimizer, steps: int, device: str,
          report_at: int, name: str) -> tuple[list[float], float]:
    """Train ``steps`` steps; returns the losses L(theta_0), ..., L(theta_steps) and the relative L2 error of the
    displacement on the validation grid at step ``report_at``."""
    losses, err = [], math.nan
    batch = {k: v.to(device) for k, v in data.batch(0).items()}
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step == report_at:
            err = rel_l2(model, data, device)
        if data.batches_per_pass > 1:
            batch = {k: v.to(device) for k, v in data.batch(step).items()}
        opt.zero_grad(set_to_none=True)
        loss, _ = model.training_loss(batch)
        losses.append(loss.item())  # the loss at theta_step, before this step's update
        if not math.isfinite(losses[-1]) or step == steps:
            break
        loss.backward()
        opt.step()
        if step % 250 == 0:
            print(f"    {name} step {step:5d}  loss {losses[-1]:.4e}  ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    return losses, err


@torch.no_grad()
def rel_l2(model: ElasticPINN, data: ElasticDataModule, device: str) -> float:
    xyt = data.grid().to(device)
    metric = RelativeL2().to(device)
    metric.update(model(xyt), model.problem.displacement(xyt))
    return metric.compute()["rel_l2"].item()


def curve(name: str, config: Path, seed: int, steps: int, report_at: int, device: str,
          curves: Path | None) -> dict:
    """Loss curve of ``name`` (``StatelessAdam`` or ``PersistentAdam``) on ``config`` with network seed ``seed``,
    read from ``curves`` when an earlier run saved it there (so the runs can go in parallel processes)."""
    path = curves / f"{name}-seed{seed}-{steps}steps.json" if curves else None
    text = config.read_text()  # the configuration's content identifies the run, not where the file lies
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    key = {"config": f"{config.name} sha256:{digest}", "seed": seed, "steps": steps, "report_at": report_at,
           "device": device}
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in key} == key:
            return saved
    model, data, lr = plane_wave_setup(config, seed, device)
    cls = {"StatelessAdam": StatelessAdam, "PersistentAdam": PersistentAdam}[name]
    print(f"seed {seed}: {name}(lr={lr}) for {steps} steps", file=sys.stderr, flush=True)
    losses, err = train(model, data, cls(model.parameters(), lr=lr), steps, device, report_at, name)
    result = {**key, "optimizer": name, "lr": lr, "losses": losses, "rel_l2": err}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
    return result


def convergence_table(config: Path, steps: int, max_steps: int, seeds: list[int], device: str,
                      curves: Path | None) -> str:
    lines = [f"| seed | StatelessAdam loss after {steps} steps | PersistentAdam loss after {steps} | "
             f"steps PersistentAdam needs to reach it | fewer steps | rel. L2 after {steps}: Stateless / Persistent |",
             "|---:|---:|---:|---:|---:|---|"]
    for seed in seeds:
        base = curve("StatelessAdam", config, seed, steps, steps, device, curves)
        ours = curve("PersistentAdam", config, seed, max_steps, steps, device, curves)
        target = base["losses"][-1]
        reached = next((t for t, v in enumerate(ours["losses"]) if v <= target), None)
        ours_at = f"{ours['losses'][steps]:.4e}" if len(ours["losses"]) > steps else "diverged"
        if reached is None:
            needed, fewer = f"> {max_steps}", "n/a"
        else:
            needed, fewer = str(reached), f"{1 - reached / steps:+.0%}"
        lines.append(f"| {seed} | {target:.4e} | {ours_at} | {needed} | {fewer} | "
                     f"{base['rel_l2']:.3e} / {ours['rel_l2']:.3e} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds per optimizer (median is reported)")
    parser.add_argument("--round-seconds", type=float, default=0.5, help="approximate length of one timing round")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "plane_wave.yaml")
    parser.add_argument("--steps", type=int, default=2000, help="StatelessAdam steps that set the target loss")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="PersistentAdam steps (default: --steps); beyond --steps it shows how many more it needs")
    parser.add_argument("--curves", type=Path, default=None,
                        help="folder to save each run's loss curve in and to reuse saved ones from")
    parser.add_argument("--only", choices=["StatelessAdam", "PersistentAdam"], default=None,
                        help="run one optimizer's convergence runs only and save them (needs --curves); a later "
                             "run with the same --curves prints the table")
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
    if not args.skip_timing and args.only is None:
        print("### Step time (optimizer.step() only)\n\n" + timing_table(args.device, args.rounds,
                                                                          args.round_seconds) + "\n", flush=True)
    if not args.skip_memory and args.only is None:
        print("### Optimizer state memory\n\n" + memory_table(args.device) + "\n", flush=True)
    if args.only is not None:
        if args.curves is None:
            parser.error("--only needs --curves")
        for seed in args.seeds:
            n = args.steps if args.only == "StatelessAdam" else args.max_steps or args.steps
            curve(args.only, args.config, seed, n, args.steps, args.device, args.curves)
    elif not args.skip_convergence:
        max_steps = args.max_steps or args.steps
        table = convergence_table(args.config, args.steps, max_steps, args.seeds, args.device, args.curves)
        print(f"### Convergence on {args.config.name} (full batch)\n\n{table}\n", flush=True)


if __name__ == "__main__":
    main()
