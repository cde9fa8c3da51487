"""The loss terms of a freshly initialised network under the two time scales of a problem without a closed form.

With scales from the waves (``time_scale: period``, the default: T = 1 / omega of the sources' peak frequency,
L = vp_max T) every term of a wave divides to O(1); with the crossing time (``time_scale: crossing``: L the larger
side, T = L / vp_max) the PDE residual divides to about (omega T)^2 and tractions and velocities to about omega T,
so the squared terms differ by orders of magnitude before any weight is applied. The script builds each config as
``pinn fit -c configs/<name>.yaml`` would (its reference cached first, without windows so that the initial-state
terms show), draws the config's points and prints each unweighted term at step 0 with the seed of the config.
Run from the repository root:

    python benchmarks/scales.py                           # layered_source and inclusion
    python benchmarks/scales.py --configs layered_source
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pinn.cli import cli_main  # noqa: E402

CONFIGS = ("layered_source", "inclusion")


def initial_terms(name: str, time_scale: str) -> dict[str, float]:
    args = ["-c", str(ROOT / "configs" / f"{name}.yaml"), "--data.problem.init_args.time_scale", time_scale,
            "--model.windows", "null", "--trainer.logger", "false"]
    cli = cli_main(args, run=False)
    model, dm = cli.model, cli.datamodule
    dm.setup("fit")
    model.setup("fit")
    with torch.no_grad():
        terms = model.loss_terms(dm.batch(0))
    s = model.scales
    return {"T (s)": s.time, "L (m)": s.length, **{k: float(v) for k, v in terms.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    ns = parser.parse_args()
    sys.argv = sys.argv[:1]
    print("| config | time_scale | T (s) | L (m) | pde | bc | ic_disp | ic_vel |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in ns.configs:
        for mode in ("crossing", "period"):
            t = initial_terms(name, mode)
            print(f"| {name} | {mode} | {t['T (s)']:.3g} | {t['L (m)']:.3g} | {t['pde']:.3g} | {t['bc']:.3g} | "
                  f"{t['ic_disp']:.3g} | {t['ic_vel']:.3g} |")


if __name__ == "__main__":
    main()
