"""Recover lam and mu on the reference plane waves (configs/inverse_plane_wave.yaml), noiseless and with 1 % noise.

Each run is exactly ``pinn fit -c configs/inverse_plane_wave.yaml`` (plus
``--data.observations.init_args.noise 0.01`` for the noisy one), run in this process; the table gives the
recovered values, their relative errors, the wall time of the whole run (config, fit and validation) and the
process CPU time it used. Run from the repository root:

    python benchmarks/inverse.py                  # both runs, full length (the README figures)
    python benchmarks/inverse.py --max-steps 300  # a quick check that the script works
    OMP_NUM_THREADS=1 python benchmarks/inverse.py --runs noisy --noise-seeds 0 1 2   # spread over noise draws

On a machine shared with other jobs the wall time overstates what a quiet machine needs; the CPU time does not
(for a one-thread run it is the wall time of a quiet core).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pinn.cli import cli_main  # noqa: E402

TRUTH = {"lam": 1.0, "mu": 0.5}
RUNS = {"noiseless": [], "noisy": ["--data.observations.init_args.noise", "0.01"]}


def run(name: str, extra: list[str], max_steps: int | None, save_dir: str) -> dict:
    args = ["fit", "-c", str(ROOT / "configs/inverse_plane_wave.yaml"), *extra,
            "--trainer.logger.init_args.save_dir", save_dir, "--trainer.logger.init_args.name",
            "inverse_" + name.replace(" ", "_").replace("=", ""), "--trainer.enable_progress_bar", "false"]
    if max_steps is not None:
        args += ["--trainer.max_steps", str(max_steps)]
    wall, cpu = time.perf_counter(), time.process_time()
    cli = cli_main(args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    values = cli.model.trainable_material.values()
    return {"run": name, "steps": cli.trainer.global_step, "wall_s": wall, "cpu_s": cpu, **values,
            **{f"err_{k}": abs(values[k] - v) / v for k, v in TRUTH.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--max-steps", type=int, default=None, help="override trainer.max_steps (default: config)")
    parser.add_argument("--save-dir", default="lightning_logs", help="where the runs write logs and checkpoints")
    parser.add_argument("--noise-seeds", type=int, nargs="+", default=[0],
                        help="repeat the noisy run with these noise seeds (data.observations.init_args.seed)")
    ns = parser.parse_args()
    sys.argv = sys.argv[:1]  # the runs take their arguments from run(), not from this script's command line
    rows = []
    for name in ns.runs:
        seeds = ns.noise_seeds if name == "noisy" else [0]
        for seed in seeds:
            label = name if len(seeds) == 1 else f"{name} seed={seed}"
            extra = [*RUNS[name], "--data.observations.init_args.seed", str(seed)]
            rows.append(run(label, extra, ns.max_steps, ns.save_dir))
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| run | steps | lam | mu | rel. error lam | rel. error mu | wall (s) | CPU (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['steps']} | {r['lam']:.4f} | {r['mu']:.4f} | {100 * r['err_lam']:.2f} % "
              f"| {100 * r['err_mu']:.2f} % | {r['wall_s']:.0f} | {r['cpu_s']:.0f} |")
    noisy = [r for r in rows if r["run"].startswith("noisy")]
    if len(noisy) > 1:
        for k in TRUTH:
            errs = torch.tensor([r[f"err_{k}"] for r in noisy], dtype=torch.float64) * 100
            print(f"noisy, {len(noisy)} noise draws: rel. error {k} mean {errs.mean():.2f} %, max {errs.max():.2f} %")


if __name__ == "__main__":
    main()
