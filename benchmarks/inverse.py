"""Inverse problems, noiseless and noisy: the quick closed-form check and the two realistic targets.

- ``plane_wave``: ``configs/inverse_plane_wave.yaml`` (lam and mu of plane waves, data from the closed form, 1 %
  noise in the noisy run).
- ``layers``: ``configs/inverse_layers.yaml`` (vp and vs of two layers from 21 surface geophones recording
  particle velocity; 2 % noise in the noisy runs). Targets: every layer's vp and vs within 2 % noiseless and 5 %
  with 2 % noise.
- ``inclusion``: ``configs/inverse_inclusion.yaml`` (the mu map of a stiff inclusion from full-field displacement
  snapshots; 2 % noise). Targets: ``inverse/rel_error`` of mu <= 0.10 noiseless and <= 0.15 with 2 % noise, the
  inclusion's centre within a tenth of its radius.

Each run is exactly ``pinn fit -c CONFIG`` (plus ``--data.observations.init_args.noise`` and ``seed`` for the noisy
ones, and ``--trainer.max_time`` when given), run in this process; the data come from the config's own source
(the Devito reference for the realistic problems, computed once and cached under references/). Run from the
repository root:

    python benchmarks/inverse.py --problem layers                         # noiseless, then noise seeds 0, 1, 2
    python benchmarks/inverse.py --problem inclusion --runs noisy --noise-seeds 1 --json out/inc1.json
    python benchmarks/inverse.py --table out/*.json                        # one table from runs made apart
    python benchmarks/inverse.py --problem layers --max-steps 50          # a quick check that the script works

Beside every PINN run of ``layers`` and ``inclusion``, a classical elastic FWI (``pinn.baselines.fwi``, deepwave:
``pip install -e ".[fwi]"``) inverts the same recordings (the PINN run's own observations, noise included) for the
same unknowns from the same start, by L-BFGS; the table prints both, error per unknown and wall time.
``--fwi-only`` runs only the baseline (seconds to a minute per run), ``--no-fwi`` only the PINN:

    python benchmarks/inverse.py --problem layers --fwi-only             # the classical baseline alone

Runs made side by side (``OMP_NUM_THREADS=1``, one per core) are written with ``--json`` and merged with
``--table``. On a machine shared with other jobs the wall time overstates what a quiet machine needs; the CPU
time does not (for a one-thread run it is the wall time of a quiet core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pinn.cli import cli_main  # noqa: E402
from pinn.io.material_maps import material_grid  # noqa: E402
from pinn.physics.inversion import TrainableLayers, material_errors  # noqa: E402

FWI_PROBLEMS = ("layers", "inclusion")  # plane_wave has no source for a propagator to start from

CONFIGS = {"plane_wave": "configs/inverse_plane_wave.yaml", "layers": "configs/inverse_layers.yaml",
           "inclusion": "configs/inverse_inclusion.yaml"}
NOISE = {"plane_wave": 0.01, "layers": 0.02, "inclusion": 0.02}


def inclusion_centre(material, domain, n: int = 201) -> np.ndarray:
    """Centre of the recovered inclusion: the centroid of mu's excess over its median (the background), over the
    region where the excess is above half its peak."""
    _, _, xy = material_grid(domain, (n, n))
    with torch.no_grad():
        mu = material.at(xy.to(next(material.buffers()).dtype)).mu.double()
    excess = mu - mu.median()
    weight = torch.where(excess > 0.5 * excess.max(), excess, 0.0)
    return (weight[:, None] * xy).sum(0).numpy() / float(weight.sum())


def measure(problem: str, material, truth) -> dict:
    """The figures of one problem's run: the estimate ``material`` and its errors against the ``truth`` problem."""
    if problem == "plane_wave":
        values, exact = material.values(), truth.material
        return {**values, **{f"err_{k}": abs(values[k] - getattr(exact, k)) / getattr(exact, k) for k in ("lam", "mu")}}
    out = {f"rel_error_{k}": v for k, v in material_errors(material, truth.medium, truth.domain).items()}
    if isinstance(material, TrainableLayers):
        speeds = {k: v.detach().double() for k, v in material.speeds().items()}
        for i, (name, layer) in enumerate(zip(material.spec.names, truth.medium.layers)):
            lam, mu, rho = layer.lame  # the true layer, however it was given (speeds or moduli)
            true = {"vp": ((lam + 2 * mu) / rho) ** 0.5, "vs": (mu / rho) ** 0.5}
            for k in ("vp", "vs"):
                value = float(speeds[k][i])
                out[f"{name}/{k}"] = value
                out[f"err_{name}/{k}"] = abs(value - true[k]) / true[k]
        out["err_max"] = max(v for k, v in out.items() if k.startswith("err_"))
    else:
        centre = inclusion_centre(material, truth.domain)
        out["centre_x"], out["centre_y"] = float(centre[0]), float(centre[1])
        out["centre_error_radii"] = float(np.hypot(*(centre - np.array(truth.medium.center))) / min(truth.medium.radii))
    return out


def run(problem: str, label: str, extra: list[str], max_steps: int | None, max_time: str | None,
        save_dir: str) -> tuple[dict, object]:
    """One PINN run: its row and the CLI (whose data module holds the recordings the FWI then inverts)."""
    args = ["fit", "-c", str(ROOT / CONFIGS[problem]), *extra, "--trainer.logger.init_args.save_dir", save_dir,
            "--trainer.logger.init_args.name", f"{problem}_{label}".replace(" ", "_").replace("=", ""),
            "--trainer.enable_progress_bar", "false"]
    if max_steps is not None:
        args += ["--trainer.max_steps", str(max_steps)]
    if max_time is not None:
        args += ["--trainer.max_time", max_time]
    wall, cpu = time.perf_counter(), time.process_time()
    cli = cli_main(args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"problem": problem, "run": label, "method": "PINN", "steps": cli.trainer.global_step, "wall_s": wall,
            "cpu_s": cpu, "threads": torch.get_num_threads(),
            **measure(problem, cli.model.trainable_material, cli.model.problem)}, cli


def fwi(problem: str, label: str, cli) -> dict:
    """The classical FWI on the recordings of ``cli``'s data module, from the config's starting model."""
    from pinn.baselines.fwi import invert

    data, unknowns = cli.datamodule, cli.model.unknowns
    wall, cpu = time.perf_counter(), time.process_time()
    result = invert(data.problem, unknowns.layers or unknowns.field, data.observed_shots, data.observations.quantity)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"problem": problem, "run": label, "method": "FWI", "steps": result.evaluations, "wall_s": wall,
            "cpu_s": cpu, "threads": torch.get_num_threads(), **measure(problem, result.material, data.problem)}


def table(rows: list[dict]) -> None:
    print(f"\ntorch {torch.__version__}")
    for problem in CONFIGS:
        mine = [r for r in rows if r["problem"] == problem]
        if not mine:
            continue
        print(f"\n{problem} ({CONFIGS[problem]}):\n")
        if problem == "plane_wave":
            keys = [("lam", "{:.4f}"), ("mu", "{:.4f}"), ("err_lam", "{:.2%}"), ("err_mu", "{:.2%}")]
        elif problem == "layers":
            layer_keys = (k for r in mine for k in r if "/" in k and not k.startswith("err_"))
            names = list(dict.fromkeys(k.split("/")[0] for k in layer_keys))  # top layer first, as in the config
            keys = [(f"{n}/{k}", "{:.1f}") for n in names for k in ("vp", "vs")]
            keys += [(f"err_{n}/{k}", "{:.2%}") for n in names for k in ("vp", "vs")] + [("err_max", "{:.2%}")]
        else:
            keys = [("rel_error_mu", "{:.3f}"), ("centre_error_radii", "{:.2f}")]
        print("| run | method | steps | " + " | ".join(k.replace("err_", "error ") for k, _ in keys)
              + " | threads | wall (s) | CPU (s) |")
        print("|---" * (len(keys) + 6) + "|")
        for r in mine:
            cells = [fmt.format(r[k]) if k in r else "" for k, fmt in keys]
            print(f"| {r['run']} | {r.get('method', 'PINN')} | {r['steps']} | " + " | ".join(cells)
                  + f" | {r['threads']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
        print("(steps: training steps of a PINN run, misfit evaluations of an FWI run)")
        noisy = [r for r in mine if r["run"].startswith("noisy") and r.get("method", "PINN") == "PINN"]
        if len(noisy) > 1:
            for k, fmt in keys:
                if k.startswith(("err_", "rel_error", "centre")):
                    v = np.array([r[k] for r in noisy])
                    print(f"noisy, {len(noisy)} noise draws, {k}: mean {fmt.format(v.mean())}, "
                          f"min {fmt.format(v.min())}, max {fmt.format(v.max())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=list(CONFIGS), default="layers")
    parser.add_argument("--runs", nargs="+", choices=["noiseless", "noisy"], default=["noiseless", "noisy"])
    parser.add_argument("--noise-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="repeat the noisy run with these noise seeds (data.observations.init_args.seed)")
    parser.add_argument("--max-steps", type=int, default=None, help="override trainer.max_steps (default: config)")
    parser.add_argument("--max-time", default=None, help="override trainer.max_time, DD:HH:MM:SS (default: config)")
    parser.add_argument("--save-dir", default="lightning_logs", help="where the runs write logs and checkpoints")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--table", nargs="+", default=None, help="print one table from rows written with --json")
    parser.add_argument("--fwi-only", action="store_true", help="run only the classical FWI baseline (fast)")
    parser.add_argument("--no-fwi", action="store_true", help="run only the PINN, not the FWI baseline beside it")
    ns = parser.parse_args()
    if ns.fwi_only and (ns.no_fwi or ns.problem not in FWI_PROBLEMS):
        parser.error(f"--fwi-only runs the FWI baseline, which needs --problem in {FWI_PROBLEMS} and no --no-fwi.")
    if ns.table:
        table([r for path in ns.table for r in json.loads(Path(path).read_text())])
        return
    sys.argv = sys.argv[:1]  # the runs take their arguments from run(), not from this script's command line
    rows = []
    for name in ns.runs:
        for seed in ns.noise_seeds if name == "noisy" else [0]:
            label = name if name == "noiseless" else f"noisy seed={seed}"
            extra = [] if name == "noiseless" else ["--data.observations.init_args.noise", str(NOISE[ns.problem]),
                                                    "--data.observations.init_args.seed", str(seed)]
            if ns.fwi_only:  # only build the config: the problem, the unknowns and the recordings
                cli = cli_main(["-c", str(ROOT / CONFIGS[ns.problem]), *extra], run=False)
            else:
                row, cli = run(ns.problem, label, extra, ns.max_steps, ns.max_time, ns.save_dir)
                rows.append(row)
            if ns.problem in FWI_PROBLEMS and not ns.no_fwi:
                rows.append(fwi(ns.problem, label, cli))
            if ns.json:
                Path(ns.json).parent.mkdir(parents=True, exist_ok=True)
                Path(ns.json).write_text(json.dumps(rows, indent=1))
    table(rows)


if __name__ == "__main__":
    main()
