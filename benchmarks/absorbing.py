"""What each absorbing-edge model of the PINN costs before any training: its own problem, solved by the reference
solver, against the unbounded medium.

The truth at an absorbing edge is an unbounded medium (the reference's C-PML). The PINN's own problem is the
first-order dashpot on its outer edges, optionally behind a padding of width W in which its equations carry a
sponge (``padding``, ``padding_reflection``: a damping term rho d u_t, d rising as the square of the depth to
d0 = 3 vp_max ln(1/R) / (2 W)). ``reference.absorbing: first_order`` solves exactly that problem (the dashpot by
stress imaging, the sponge in the velocity update), so scoring it against the C-PML reference on the config's
validation grid, over the box the user gave, gives the error floor of each model: what a perfectly trained network
with that model would still miss. Scored like ``val/rel_l2``: over the window without its first slice, the worst
slice, the last slice. Both references start from rest at ``rest_time``, so the floor includes what the model does
before the window starts (the PINN instead starts from the C-PML snapshot at t0: its floor is at most this).

    python benchmarks/absorbing.py                             # both configs, the default widths and reflections
    python benchmarks/absorbing.py --configs layered_source --widths 0.5 1 --reflections 0.01

Widths are in dominant P wavelengths of the medium's fastest P speed (vp_max / f_peak).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realistic import boundary_model  # noqa: E402  (benchmarks/realistic.py: the same scoring, for the shipped model)

from pinn.cli import cli_main  # noqa: E402

CONFIGS = ("layered_source", "inclusion")


def problem_of(name: str, *overrides: str):
    return cli_main(["-c", str(ROOT / "configs" / f"{name}.yaml"), "--trainer.logger", "false", *overrides],
                    run=False).datamodule


def floor(name: str, widths: list[float], reflections: list[str]) -> list[dict]:
    truth_dm = problem_of(name)
    p = truth_dm.problem
    wavelength = p.medium.extremes(p.domain, 41)["vp_max"] / p.peak_frequency()
    rows = []
    for w in [0.0, *widths]:
        for r in (["null"] if w == 0 else reflections):
            overrides = ["--data.problem.init_args.reference.absorbing", "first_order",
                         "--data.problem.init_args.padding", str(w * wavelength),
                         "--data.problem.init_args.padding_reflection", r]
            dm = problem_of(name, *overrides)
            start = time.perf_counter()
            model = dm.problem.solution(log=lambda _: None)
            wall = time.perf_counter() - start
            rows.append({"width": w, "width_m": w * wavelength, "reflection": r, "wall_s": wall,
                         "area": _area(dm.problem) / _area(p), **boundary_model(truth_dm, model.displacement_at)})
    return rows


def _area(problem) -> float:
    d = problem.domain
    return (d.x[1] - d.x[0]) * (d.y[1] - d.y[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--widths", nargs="+", type=float, default=[0.5, 1.0, 1.5],
                        help="padding widths in dominant P wavelengths")
    parser.add_argument("--reflections", nargs="+", default=["null", "0.1", "0.01"],
                        help="padding_reflection values (null: undamped padding)")
    args = parser.parse_args()
    for name in args.configs:
        rows = floor(name, args.widths, args.reflections)
        print(f"\n{name}: the PINN's absorbing model solved by the reference solver, against the unbounded medium")
        print("| padding (P wavelengths) | padding (m) | sponge R | box area | window | worst slice | end "
              "| solve (s) |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|")
        for r in rows:
            sponge = "-" if r["width"] == 0 else ("none" if r["reflection"] == "null" else r["reflection"])
            print(f"| {r['width']:g} | {r['width_m']:.4g} | {sponge} | {r['area']:.2f} | {r['window']:.3f} | "
                  f"{r['worst']:.3f} | {r['end']:.3f} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
