"""Problems without a closed form against the Devito reference: configs/layered_source.yaml and configs/inclusion.yaml.

Each training run is exactly ``pinn fit -c configs/<name>.yaml``, run in this process after its reference has been
computed (the reference's wall time is reported on its own, and the fit's wall time counts from the fit's start,
the reference already cached). The trained network is then scored on the config's validation grid, leaving out the
first slice (the initial state it starts from), as ``val/rel_l2`` does: over the whole window, the worst slice and
the last slice (the end of the seismograms), and each slice, so the table shows where the error grows.

The error is split: the same scores against the reference computed with the PINN's own first-order absorbing edges
(``reference.absorbing: first_order``) tell the training error on the PINN's own problem, and that reference against
the unbounded-medium one (C-PML) tells what the boundary model alone costs. A last table checks the reference
itself: P and S plane waves started from their exact state, against the closed form, on three grids. Another table
gives each time window's PDE residual on fresh points (:func:`window_residuals`), and another how fast each window's
error varies in time against the field (:func:`window_time_scales`). With ``--window-split`` each time
window after the first is also trained alone from the reference's own state at its start (:func:`exact_start`): its
error then is the window's own training error, and the rest of the chained run's error in that window is what it
inherits from the windows before. Run from the repository root:

    python benchmarks/realistic.py                       # both configs, full length (the README figures)
    python benchmarks/realistic.py --max-steps 200       # a quick check that the script works
    python benchmarks/realistic.py --configs inclusion   # one of them
    python benchmarks/realistic.py --configs inclusion --checkpoints PATH/last.ckpt   # score a trained run
    python benchmarks/realistic.py --configs layered_source --window-split   # and each window from the exact state
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pinn.cli import cli_main  # noqa: E402
from pinn.io.figures import relative_l2  # noqa: E402
from pinn.physics.elasticity import Material  # noqa: E402
from pinn.problems import Domain, PlaneWaves, Wave  # noqa: E402
from pinn.problems.reference import ReferenceSettings, load_or_solve, solve  # noqa: E402

CONFIGS = ("layered_source", "inclusion")


FIRST_ORDER = ["--data.problem.init_args.reference.absorbing", "first_order"]


def fit(name: str, max_steps: int | None, save_dir: str) -> dict:
    config = str(ROOT / "configs" / f"{name}.yaml")
    common = ["-c", config, "--trainer.logger.init_args.save_dir", save_dir]
    problem = cli_main(common, run=False).datamodule.problem
    start = time.perf_counter()
    reference = load_or_solve(problem, force=True)  # its own wall time: the fit below finds it cached
    reference_s = time.perf_counter() - start
    args = ["fit", *common, "--trainer.enable_progress_bar", "false"]
    if max_steps is not None:
        args += ["--trainer.max_steps", str(max_steps)]
    wall, cpu = time.perf_counter(), time.process_time()
    cli = cli_main(args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"name": name, "steps": cli.trainer.global_step, "wall_s": wall, "cpu_s": cpu, "reference_s": reference_s,
            "grid": f"{len(reference.x)} x {len(reference.y)}", **score(name, cli.model, cli.datamodule)}


def scored(name: str, checkpoint: str) -> dict:
    """The scores of a run already trained (its checkpoint), with the config's data module."""
    from pinn import load
    from pinn.io.checkpointing import load_checkpoint

    dm = cli_main(["-c", str(ROOT / "configs" / f"{name}.yaml"), "--trainer.logger", "false"], run=False).datamodule
    model = load(checkpoint, "cpu")
    ckpt = load_checkpoint(checkpoint)  # verified, as the loader read it
    reference = dm.problem.solution()
    return {"name": name, "steps": ckpt["global_step"], "wall_s": math.nan, "cpu_s": math.nan,
            "reference_s": math.nan, "grid": f"{len(reference.x)} x {len(reference.y)}", **score(name, model, dm)}


def score(name: str, model, dm) -> dict:
    """The network against the reference, against the first-order reference, and that against the reference."""
    config = str(ROOT / "configs" / f"{name}.yaml")
    first_order = cli_main(["-c", config, "--trainer.logger", "false", *FIRST_ORDER],
                           run=False).datamodule.problem.solution()
    return {"slices": slice_errors(model, dm, dm.problem.truth),
            "first_order": slice_errors(model, dm, first_order.displacement_at),
            "boundary_model": boundary_model(dm, first_order.displacement_at),
            "residuals": window_residuals(model),
            "time_scales": window_time_scales(model, dm.problem.solution())}


def exact_start(name: str, save_dir: str, max_steps: int | None = None) -> list[dict]:
    """Each time window k >= 1 of config ``name`` trained alone: the config with its interval cut to the window, one
    window, the initial state the reference's snapshot at the window's start (built into the output as the config
    does), a fresh network and the config's steps per window; the validation grid and the reference's output times
    keep their spacing in time. Its error over the window (first slice left out) is the window's own training error,
    with nothing inherited."""
    config = str(ROOT / "configs" / f"{name}.yaml")
    base = cli_main(["-c", config, "--trainer.logger", "false"], run=False)
    windows, dm = base.model.windows, base.datamodule
    if windows is None or windows.count < 2:
        return []
    box, problem = dm.problem.scored_domain, dm.problem
    t0, t1 = box.t
    delta = (t1 - t0) / windows.count
    nx, ny, nt = dm.val_grid
    slices = round((nt - 1) / windows.count) + 1
    outputs = round((problem.reference.output_times - 1) / windows.count) + 1
    steps = windows.steps if max_steps is None else min(windows.steps, max_steps)
    rows = []
    for k in range(1, windows.count):
        a, b = t0 + k * delta, t0 + (k + 1) * delta
        domain = {"x": list(box.x), "y": list(box.y), "t": [a, b]}
        one = {"count": 1, "steps": steps, "exact_initial": windows.exact_initial, "ramp": windows.ramp}
        cli = cli_main(["fit", "-c", config, "--trainer.logger.init_args.save_dir", save_dir,
                        "--trainer.logger.init_args.name", f"{name}_window{k}_exact_start",
                        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", str(steps),
                        "--data.problem.init_args.domain", json.dumps(domain),
                        "--data.problem.init_args.reference.output_times", str(outputs),
                        "--model.windows", json.dumps(one), "--data.val_grid", json.dumps([nx, ny, slices])])
        errors = slice_errors(cli.model, cli.datamodule, cli.datamodule.problem.truth)
        rows.append({"index": k, "t": (a, b), "steps": cli.trainer.global_step, **errors})
    return rows


def trained_windows(model) -> tuple[list[float], float]:
    """The start of each time window trained so far and the windows' length (the whole interval without windows)."""
    problem, marching = model.problem, model.marching
    if marching is None:
        return [problem.domain.t[0]], problem.domain.t[1] - problem.domain.t[0]
    return [marching.start(k) for k in range(marching.current + 1)], marching.delta


def window_residuals(model, n: int = 8192, seed: int = 0) -> list[dict]:
    """The PDE residual of each time window on ``n`` fresh uniform points of the training box (not the points it was
    trained on): the mean of |r|^2 / F^2 (what ``train/loss_pde`` is on the training points), the same of the inertia
    term rho u_tt (how strong the wave still is), and their ratio as norms, ||r|| / ||rho u_tt||. The error a window
    adds grows like its residual integrated in time (Duhamel), so the ratio says how well each window solves its own
    equation, whatever the wavefield's amplitude."""
    problem = model.problem
    starts, length = trained_windows(model)
    generator = torch.Generator().manual_seed(seed)
    lower, upper = (torch.tensor(b, dtype=torch.float64) for b in (problem.domain.lower, problem.domain.upper))
    force = model.scales.force_density
    rows = []
    for k, start in enumerate(starts):
        xyt = lower + (upper - lower) * torch.rand(n, 3, generator=generator, dtype=torch.float64)
        xyt[:, 2] = start + length * torch.rand(n, generator=generator, dtype=torch.float64)
        xyt = xyt.to(model.device, model.dtype)
        f = model.fields(xyt, "pde", window=k)  # without windows: the one network
        r = model.residual_of(f, xyt).detach().double()
        rho = torch.as_tensor(model.material_at(xyt[:, :2]).rho).reshape(-1, 1)
        inertia = (rho * torch.stack([f.u_tt, f.v_tt], -1)).detach().double()
        rows.append({"window": k, "loss": float((r**2).sum(-1).mean()) / force**2,
                     "inertia": float((inertia**2).sum(-1).mean()) / force**2,
                     "relative": float(r.norm() / inertia.norm())})
    return rows


def window_time_scales(model, reference, n: int = 61, nt: int = 9) -> list[dict]:
    """How fast each time window's error varies in time, against the field: on an n x n x nt grid of the scored box
    in each window, the relative error of the displacement and of the velocity, and ||e_v|| / (omega ||e_u||) beside
    ||v|| / (omega ||u||), with omega = 1 / T the dominant angular frequency of the scales. An error that oscillates
    like the field has the field's ratio; a smaller ratio is an error slower than the waves, which the residual, scaled
    at omega, penalises weakly where it is also smooth in space (docs/benchmarks.md)."""
    box = model.problem.scored_domain
    starts, length = trained_windows(model)
    omega = 1.0 / model.scales.time
    rows = []
    for k, start in enumerate(starts):
        x = torch.linspace(*box.x, n, dtype=torch.float64)
        y = torch.linspace(*box.y, n, dtype=torch.float64)
        t = torch.linspace(start, start + length, nt + 1, dtype=torch.float64)[1:]  # not the window's initial state
        xyt = torch.stack(torch.meshgrid(x, y, t, indexing="ij"), -1).reshape(-1, 3)
        u, v = [], []
        for part in xyt.split(8192):
            f = model.fields(part.to(model.device, model.dtype), "velocity", window=k)
            u.append(f.displacement.detach().double().cpu())
            v.append(f.velocity.detach().double().cpu())
        u, v = torch.cat(u), torch.cat(v)
        ru, rv = reference.displacement_at(xyt).double(), reference.velocity_at(xyt).double()
        eu, ev = (u - ru).norm(), (v - rv).norm()
        rows.append({"window": k, "displacement": float(eu / ru.norm()), "velocity": float(ev / rv.norm()),
                     "error_rate": float(ev / (omega * eu)), "field_rate": float(rv.norm() / (omega * ru.norm()))})
    return rows


@torch.no_grad()
def slice_errors(model, dm, truth) -> dict:
    """Relative L2 error of the trained network against ``truth`` (points -> displacement) on each time slice of the
    validation grid (``slices``: (t, error)), over all slices but the first (``window``), the worst of those
    (``worst``) and the last (``end``)."""
    model = model.eval()
    grid = dm.grid()  # (nt*ny*nx, 3) float64, t slowest
    nt = dm.val_grid[2]
    pred = model(grid.to(model.device, model.dtype)).double().reshape(nt, -1, 2).cpu().numpy()
    exact = truth(grid).double().reshape(nt, -1, 2).numpy()
    times = grid.reshape(nt, -1, 3)[:, 0, 2].tolist()
    rows = [(t, relative_l2(p, r)["rel_l2"]) for t, p, r in zip(times, pred, exact)]
    return {"slices": rows, "window": relative_l2(pred[1:], exact[1:])["rel_l2"],
            "worst": max(e for _, e in rows[1:]), "end": rows[-1][1]}


def boundary_model(dm, first_order) -> dict:
    """The reference with the PINN's first-order absorbing edges against the C-PML one (the unbounded medium) on the
    validation grid, scored like :func:`slice_errors`: what the boundary model alone costs."""
    grid = dm.grid()
    nt = dm.val_grid[2]
    a = first_order(grid).reshape(nt, -1, 2).numpy()
    b = dm.problem.truth(grid).reshape(nt, -1, 2).numpy()
    rows = [relative_l2(x, y)["rel_l2"] for x, y in zip(a, b)]
    return {"window": relative_l2(a[1:], b[1:])["rel_l2"], "worst": max(rows[1:]), "end": rows[-1]}


def plane_wave_check(spacings: tuple[float, ...]) -> list[dict]:
    """The reference on P and S plane waves from their exact state and with exact edges, against the closed form."""
    k = 2 * math.pi / 100.0  # 100 m wavelength
    problem = PlaneWaves([Wave("P", 0.3, k), Wave("S", 1.2, k)], Domain((0.0, 200.0), (0.0, 200.0), (0.0, 0.05)),
                         Material(lam=8e9, mu=4e9, rho=2000.0))
    rows = []
    for h in spacings:
        start = time.perf_counter()
        ref = solve(problem, ReferenceSettings(spacing=h, output_times=2))
        wall = time.perf_counter() - start
        xyt = torch.cartesian_prod(torch.tensor(ref.t[-1:]), torch.tensor(ref.y), torch.tensor(ref.x))[:, [2, 1, 0]]
        exact = problem.displacement(xyt.double())
        got = torch.from_numpy(ref.displacement[-1].reshape(-1, 2))
        rows.append({"h": h, "err": float((got - exact).norm() / exact.norm()), "wall_s": wall})
    return rows


def smoothing_cost(name: str, widths: tuple[float, ...]) -> list[tuple[float, float]]:
    """What smoothing the interfaces costs: the reference of the config's medium smoothed over each width, against
    the reference with sharp interfaces (width 0), relative L2 over the whole space-time grid."""
    common = ["-c", str(ROOT / "configs" / f"{name}.yaml")]
    sharp = None
    rows = []
    for w in (0.0, *widths):
        problem = cli_main([*common, "--data.problem.init_args.medium.init_args.smoothing", str(w)],
                           run=False).datamodule.problem
        ref = load_or_solve(problem, log=lambda _: None).displacement
        if sharp is None:
            sharp = ref
        else:
            rows.append((w, float(((ref - sharp) ** 2).sum() ** 0.5 / (sharp**2).sum() ** 0.5)))
    return rows


def window_table(rows: list[dict], key: str, title: str, columns: tuple[str, ...], cells) -> None:
    """Print a table with one row per config and time window of ``row[key]``, the cells from ``cells(window)``."""
    print(f"\n{title}")
    print("| config | window | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    for r in rows:
        for w in r[key]:
            print(f"| {r['name']} | {w['window']} | " + " | ".join(cells(w)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--max-steps", type=int, default=None, help="override trainer.max_steps (default: config)")
    parser.add_argument("--save-dir", default="lightning_logs", help="where the runs write logs and checkpoints")
    parser.add_argument("--skip-plane-wave", action="store_true", help="skip the reference's own check")
    parser.add_argument("--skip-smoothing", action="store_true", help="skip the cost of smoothed interfaces")
    parser.add_argument("--checkpoints", nargs="+", default=None,
                        help="score these trained runs (one checkpoint per config, in the order of --configs) "
                             "instead of training")
    parser.add_argument("--window-split", action="store_true",
                        help="also train each time window after the first alone from the reference's state at its "
                             "start: the window's own error, without what it inherits")
    ns = parser.parse_args()
    sys.argv = sys.argv[:1]  # the runs take their arguments from fit(), not from this script's command line
    if ns.checkpoints:
        rows = [scored(name, path) for name, path in zip(ns.configs, ns.checkpoints, strict=True)]
    else:
        rows = [fit(name, ns.max_steps, ns.save_dir) for name in ns.configs]
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| config | steps | val/rel_l2 vs Devito | worst slice | end | fit wall (min) | fit CPU (min) "
          "| reference grid | reference wall (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        e = r["slices"]
        print(f"| {r['name']} | {r['steps']} | {e['window']:.3e} | {e['worst']:.3e} | {e['end']:.3e} | "
              f"{r['wall_s'] / 60:.1f} | {r['cpu_s'] / 60:.1f} | {r['grid']} | {r['reference_s']:.1f} |")
    print("\nThe error split: the PINN against the reference with its own first-order absorbing edges (training error "
          "on its own problem), and that reference against the C-PML one (the boundary model alone)")
    print("| config | PINN vs first-order ref: window | worst | end | first-order vs C-PML ref: window | worst | end |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        f, b = r["first_order"], r["boundary_model"]
        print(f"| {r['name']} | {f['window']:.3e} | {f['worst']:.3e} | {f['end']:.3e} | {b['window']:.3e} | "
              f"{b['worst']:.3e} | {b['end']:.3e} |")
    window_table(rows, "residuals", "The residual of each time window on fresh points: mean |r|^2 / F^2 "
                 "(train/loss_pde's measure), the same of rho u_tt, and ||r|| / ||rho u_tt||",
                 ("loss_pde on fresh points", "inertia", "residual / inertia"),
                 lambda w: (f"{w['loss']:.2e}", f"{w['inertia']:.2e}", f"{w['relative']:.3f}"))
    window_table(rows, "time_scales", "How fast the error varies in time: the displacement's and the velocity's "
                 "relative error per window, and ||e_v|| / (omega ||e_u||) against the field's ||v|| / (omega ||u||) "
                 "(smaller: an error slower than the waves)",
                 ("displacement error", "velocity error", "error: v / (omega u)", "field: v / (omega u)"),
                 lambda w: (f"{w['displacement']:.3f}", f"{w['velocity']:.3f}", f"{w['error_rate']:.2f}",
                            f"{w['field_rate']:.2f}"))
    for r in rows:
        slices = r["slices"]["slices"]
        print(f"\n{r['name']}: relative L2 error per time slice of the validation grid")
        print("| t (s) | " + " | ".join(f"{t:.3g}" for t, _ in slices) + " |")
        print("|---|" + "---:|" * len(slices))
        print("| rel. L2 | " + " | ".join(f"{e:.3f}" for _, e in slices) + " |")
    if ns.window_split:
        print("\nEach time window trained alone from the reference's state at its start (a fresh network, the "
              "config's steps per window): its own training error. The chained run's error in the same window is "
              "val/rel_l2_window/<k>; the difference is what the window inherits.")
        print("| config | window | t (s) | steps | own error over the window | worst slice | end |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for name in ns.configs:
            for w in exact_start(name, ns.save_dir, ns.max_steps):
                print(f"| {name} | {w['index']} | {w['t'][0]:.4g}-{w['t'][1]:.4g} | {w['steps']} | "
                      f"{w['window']:.3e} | {w['worst']:.3e} | {w['end']:.3e} |")
    for name, widths in (("layered_source", (2.0, 4.0, 8.0, 16.0)), ("inclusion", (0.0002, 0.0004, 0.0008, 0.0016))):
        if name in ns.configs and not ns.skip_smoothing:
            print(f"\n{name}: the reference with interfaces smoothed over w, against sharp interfaces (relative L2)")
            print("| w (m) | rel. L2 vs sharp |")
            print("|---:|---:|")
            for w, err in smoothing_cost(name, widths):
                print(f"| {w:g} | {err:.3e} |")
    if not ns.skip_plane_wave:
        print("\nDevito reference against the closed form: P + S plane waves (100 m wavelength), 200 m x 200 m, 0.05 s")
        print("| h (m) | rel. L2 at t = 0.05 s | order | wall (s) |")
        print("|---:|---:|---:|---:|")
        checks = plane_wave_check((4.0, 2.0, 1.0))
        for prev, c in zip([None, *checks], checks):
            order = "" if prev is None else f"{math.log(prev['err'] / c['err']) / math.log(prev['h'] / c['h']):.2f}"
            print(f"| {c['h']:g} | {c['err']:.3e} | {order} | {c['wall_s']:.1f} |")


if __name__ == "__main__":
    main()
