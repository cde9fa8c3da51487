"""Training throughput on PW2 against two peer PINN libraries, DeepXDE and PINA.

PW2 is the reference problem of ``configs/plane_wave.yaml``: [0, 1]^2 x [0, 1], rho = 1, lam = 1, mu = 0.5, a P
plane wave at 0.3 rad and an S plane wave at 1.2 rad (|k| = 2 pi), the 2D Navier-Cauchy residual, the exact
displacement on the four edges and the exact displacement and velocity at t = 0; 3 x 64 tanh MLP; 4096 interior,
1024 boundary and 1024 initial points, full batch; Adam lr 1e-3; loss weights pde 0.001, bc 1, ic_disp 1,
ic_vel 0.02. The peers' scripts (``benchmarks/peers/*_pw2.py``) pose the same problem with the same network,
points, weights and optimizer in each library's own API.

    python benchmarks/throughput.py                       # 5 rounds of 20 timed steps, 2 threads
    python benchmarks/throughput.py --points-scale 10     # PW2 with 10x the points
    python benchmarks/throughput.py --config configs/layered_source.yaml   # this project only: no peer script
    python benchmarks/throughput.py --dry-run --threads 1 # every contender for 3 steps, 1 round: a check

The first run creates a virtual environment per peer under ``~/.cache/pinn-benchmark-peers/<name>``
(``--venv-dir``; over 1 GB each, so not in the repository) and installs ``benchmarks/peers/requirements-<name>.txt``
there with pip (the package registry is all it needs); later runs
reuse them (a changed requirements file reinstalls).

Contenders: this project's training step, eager (``model.compile: false``) and compiled (``true``, what
``compile: auto`` picks for runs of 2000 loss evaluations or more, the shipped configs' among them), the model and
first batch of ``pinn fit -c configs/plane_wave.yaml`` (or ``--config``), built by ``benchmarks/step.py``'s
``build``; one step is
``ElasticPINN.training_loss``, its backward pass and the ``PersistentAdam`` step, outside Lightning's loop),
DeepXDE (``Model.train``) and PINA (``Trainer.train``), each step of a peer timed inside the library's own
training loop by its callbacks (loss, backward and optimizer step). Each measurement is a fresh subprocess with
``OMP_NUM_THREADS`` and ``torch.set_num_threads`` set to ``--threads``: ``--warmup`` untimed steps (compiling, for
the compiled step), then ``--steps`` timed steps, of which it reports the median. The rounds alternate: round r
measures every contender (in an order rotated each round) before round r + 1, so drifts of the machine hit all of
them alike; the table gives the median over rounds. ``loss_first``, the loss at the initial weights of the same
problem, is a sanity column: the four should be finite and of the same size (the initial weights differ).

Compile time: the compiled contender's first measurement compiles into an empty inductor cache made for this run,
the later ones find its kernels there; the notes give the first training step's wall time of each (compiling
included) against the eager one's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
# the peers' environments (torch and all, over 1 GB each) live in the user's cache, not in the repository
VENV_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pinn-benchmark-peers"
POINTS = (4096, 1024, 1024)  # interior, boundary, initial
PW2_CONFIG = HERE.parent / "configs" / "plane_wave.yaml"
CONTENDERS = {
    "eager": "this project, eager",
    "compile": "this project, compiled",
    "deepxde": "DeepXDE",
    "pina": "PINA",
}


def peer_python(name: str, venv_dir: Path) -> Path:
    """The peer's virtual environment's interpreter; creates the environment and installs its requirements once."""
    env, requirements = venv_dir / name, PEERS / f"requirements-{name}.txt"
    python, stamp = env / "bin" / "python", env / ".installed-requirements"
    wanted = requirements.read_text()
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return python
    print(f"installing {name} into {env} ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
    stamp.write_text(wanted)
    return python


# --- this project's step, measured in a subprocess of this script --------------------------------------------------

def project_child(args: argparse.Namespace) -> None:
    """Times this project's PW2 step (``--child eager`` or ``--child compile``) and prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", "torch.compile could not compile", RuntimeWarning)  # reported in the JSON
    sys.path.insert(0, str(HERE))
    from step import build  # benchmarks/step.py: the main job's model and first batch

    import pinn.cli

    # build() parses configs/plane_wave.yaml through cli_main; these overrides go on its command line
    overrides = ["--model.compile", "true" if args.child == "compile" else "false"]
    if Path(args.config).resolve() == PW2_CONFIG.resolve():  # the peers' scripts pose PW2 on a 3 x 64 network
        overrides += ["--model.width", "64"]
    for key, n in zip(("n_interior", "n_boundary", "n_initial"), POINTS):
        overrides += [f"--data.{key}", str(n * args.points_scale)]
    cli_main = pinn.cli.cli_main
    pinn.cli.cli_main = lambda argv, run=True: cli_main([*argv, *overrides], run=run)
    t0 = time.perf_counter()
    model, step, _ = build("config", False, "cpu", Path(args.config).resolve())
    pinn.cli.cli_main = cli_main

    first: dict = {}
    training_loss = model.training_loss

    def record_first(batch):  # the loss of the first (warm-up) step: at the initial weights
        loss, terms = training_loss(batch)
        first.setdefault("loss", float(loss.detach()))
        first.setdefault("points", sum(len(v) for v in batch.values()))
        del model.training_loss  # back to the method itself
        return loss, terms

    model.training_loss = record_first
    t1 = time.perf_counter()
    step()
    first_step = time.perf_counter() - t1
    for _ in range(args.warmup - 1):
        step()
    setup = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    ms = statistics.median(times) * 1e3
    compiled = model._kernel.state if model._kernel is not None else "eager"
    print(json.dumps({
        "library": "pinn", "version": _version("pinn"), "torch": torch.__version__, "ms_per_step": ms,
        "points_per_s": first["points"] / (ms / 1e3), "steps": args.steps, "first_step_s": first_step,
        "threads": torch.get_num_threads(), "loss_first": first["loss"], "points_per_step": first["points"],
        "compiled": compiled, "reason": getattr(model._kernel, "reason", None), "setup_s": setup,
    }))


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "checkout"


# --- the parent: rounds of fresh subprocesses ------------------------------------------------------------------------

def command(name: str, args: argparse.Namespace) -> list[str]:
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
              "--points-scale", str(args.points_scale)]
    if name in ("eager", "compile"):
        return [sys.executable, str(Path(__file__).resolve()), "--child", name, "--config", args.config, *common]
    return [str(peer_python(name, Path(args.venv_dir))), str(PEERS / f"{name}_pw2.py"), *common]


def measure(name: str, args: argparse.Namespace) -> dict | None:
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, DDE_BACKEND="pytorch",
               TORCHINDUCTOR_CACHE_DIR=args.cache_dir)
    out = subprocess.run(command(name, args), env=env, capture_output=True, text=True, cwd=HERE.parent)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = "\n    ".join((out.stderr or out.stdout).strip().splitlines()[-15:])
        print(f"{CONTENDERS[name]} failed (exit {out.returncode}):\n    {tail}", flush=True)
        return None
    return json.loads(lines[-1])


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def run(args: argparse.Namespace) -> None:
    names = list(CONTENDERS) if Path(args.config).resolve() == PW2_CONFIG else ["eager", "compile"]
    for name in names:  # create the peers' environments before anything is timed
        if name not in ("eager", "compile"):
            peer_python(name, Path(args.venv_dir))
    load_before = load()
    results: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            res = measure(name, args)
            if res is not None:
                results[name].append(res)
                print(f"round {r + 1}/{args.rounds} {CONTENDERS[name]}: {res['ms_per_step']:.1f} ms/step",
                      flush=True)
                if args.dry_run:
                    print("  " + json.dumps(res), flush=True)
    load_after = load()

    import torch

    points = sum(POINTS) * args.points_scale
    setting = "PW2" if len(names) > 2 else f"{args.config} (no peer script for it)"
    print(f"\n{setting}{'' if args.points_scale == 1 else f' with {args.points_scale}x the points'}: "
          f"{points} points per step ({' + '.join(str(n * args.points_scale) for n in POINTS)})")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; {args.threads} threads; "
          f"load average {load_before} before, {load_after} after\n")
    eager = statistics.median(r["ms_per_step"] for r in results["eager"]) if results["eager"] else math.nan
    print("| contender | version | ms / step | points / s | time / this project's eager step | first loss |")
    print("|---|---|---:|---:|---:|---:|")
    for name in names:
        rs = results[name]
        if not rs:
            print(f"| {CONTENDERS[name]} | | failed | | | |")
            continue
        ms = statistics.median(r["ms_per_step"] for r in rs)
        spread = f" ({min(r['ms_per_step'] for r in rs):.1f}-{max(r['ms_per_step'] for r in rs):.1f})" \
            if len(rs) > 1 else ""
        print(f"| {CONTENDERS[name]} | {rs[0]['version']} | {ms:.1f}{spread} | {points / (ms / 1e3):,.0f} | "
              f"{ms / eager:.2f} | {rs[0]['loss_first']:.4g} |")
    print(f"\nmedian over {args.rounds} round(s) (min-max in brackets) of the median of {args.steps} timed steps "
          f"after {args.warmup} warm-up steps, each measurement a fresh process")
    for name in names:
        for r in results[name][:1]:
            if name == "compile" and r.get("compiled") != "compiled":
                print(f"note: {CONTENDERS[name]} ran uncompiled: {r.get('reason')}")
            if "setup_s" in r:
                print(f"note: {CONTENDERS[name]}: {r['setup_s']:.1f} s to build and run the warm-up steps "
                      f"({r['compiled']})")
            if "ms_per_step_loop" in r:
                print(f"note: {CONTENDERS[name]}: {r['ms_per_step_loop']:.1f} ms per step over the whole timed "
                      "training call, the library's work between steps included")
            if r.get("points_per_step", points) != points:
                what = {"deepxde": "the network and the PDE residual (every training point, boundary and initial "
                                   "included; a separate copy of the points per condition)",
                        "pina": "the network (the initial points once per condition: displacement and velocity)"}
                print(f"note: {CONTENDERS[name]} evaluates {what.get(name, 'the network')} on "
                      f"{r['points_per_step']} points per step")
    if results["eager"] and results["compile"]:
        eager_first = statistics.median(r["first_step_s"] for r in results["eager"])
        cold, warm = results["compile"][0]["first_step_s"], [r["first_step_s"] for r in results["compile"][1:]]
        print(f"compile: first step {cold:.1f} s with an empty cache, "
              + (f"{statistics.median(warm):.1f} s with the cached kernels (median of {len(warm)}), " if warm else "")
              + f"against {eager_first:.2f} s for the eager first step")
    firsts = [rs[0]["loss_first"] for rs in results.values() if rs]
    if firsts and (not all(math.isfinite(x) for x in firsts) or max(firsts) > 3 * min(firsts)):
        print("warning: the first losses are not finite or differ by more than 3x: check that the problems match")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (the median is reported)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them (compiling included)")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS and torch threads of every contender")
    p.add_argument("--points-scale", type=int, default=1, help="multiply every point count by this (10: PW2 x10)")
    p.add_argument("--venv-dir", default=str(VENV_DIR),
                   help="where the peers' virtual environments live (over 1 GB each; outside the repository)")
    p.add_argument("--config", default=str(PW2_CONFIG), help="this project's config (peers run only for PW2)")
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)  # the run's own inductor cache, made empty by run()
    p.add_argument("--dry-run", action="store_true", help="1 round of 3 steps after 1 warm-up step: a check")
    p.add_argument("--child", choices=["eager", "compile"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.dry_run:
        args.rounds, args.steps, args.warmup = 1, 3, 1
    if args.warmup < 1 or args.steps < 1 or args.rounds < 1 or args.points_scale < 1:
        p.error("--rounds, --steps, --warmup and --points-scale must be >= 1")
    if args.child:
        project_child(args)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pinn-inductor-") as cache:
        args.cache_dir = cache
        run(args)


if __name__ == "__main__":
    main()
