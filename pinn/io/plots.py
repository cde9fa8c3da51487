"""Figures of a finished run, from its log folder: ``python -m pinn.io.plots RUN [--out DIR]``.

``RUN`` is a version folder (``lightning_logs/plane_wave/version_3``) or an experiment folder
(``lightning_logs/plane_wave``: its newest version that holds checkpoints). Writes ``loss_curve.png`` from
the TensorBoard event files (all of them, so a resumed run gives one continuous curve) and, when
``pinn predict`` has run, copies the newest prediction's ``fields.png`` and its middle snapshot as
``snapshot.png``. These are the README's images.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from pinn.io.figures import curves_figure

CURVE_PREFIXES = ("train/loss", "val/rel_l2")


def _numbered(folder: Path, pattern: str) -> list[tuple[int, Path]]:
    found = [(re.fullmatch(pattern, p.name), p) for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return sorted((int(m.group(1)), p) for m, p in found if m)


def resolve_run(path: str | Path) -> Path:
    """The version folder ``path`` names, or the newest training run (``version_N`` with checkpoints) in it."""
    path = Path(path)
    versions = [p for _, p in _numbered(path, r"version_(\d+)")]
    if versions:  # `pinn predict` and `pinn validate` make versions too, without checkpoints
        return ([p for p in versions if (p / "checkpoints").is_dir()] or versions)[-1]
    if not any(path.glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"{path} holds no TensorBoard event files and no version_N folders; give a run's "
                                "log folder, e.g. lightning_logs/plane_wave or lightning_logs/plane_wave/version_0.")
    return path


def read_scalars(run: Path, prefixes: tuple[str, ...] = CURVE_PREFIXES) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Tag -> ``(steps, values)`` of every scalar whose tag starts with one of ``prefixes``, sorted by step.

    A step logged twice (a run resumed from an earlier checkpoint) keeps its latest value.
    """
    acc = EventAccumulator(str(run), size_guidance={SCALARS: 0}).Reload()  # 0: keep every point
    out = {}
    for tag in acc.Tags()[SCALARS]:
        if tag.startswith(prefixes):
            by_step = {e.step: e.value for e in acc.Scalars(tag)}
            steps = np.array(sorted(by_step))
            out[tag] = (steps, np.array([by_step[s] for s in steps]))
    return out


def write_plots(run: Path, out: Path, dpi: int = 100) -> list[Path]:
    """Write ``loss_curve.png`` (and copy the newest prediction figures) into ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    scalars = read_scalars(run)
    if not scalars:
        raise FileNotFoundError(f"no train/loss or val/rel_l2 scalars in the event files of {run}.")
    written = [out / "loss_curve.png"]
    curves_figure(scalars, title=f"{run.parent.name}/{run.name}", dpi=dpi).savefig(written[0])
    predictions = _numbered(run / "predictions", r"step_(\d+)")
    if predictions:
        newest = predictions[-1][1]
        snapshots = sorted(newest.glob("snapshot_t*.png"))
        for source, name in ((newest / "fields.png", "fields.png"),
                             (snapshots[len(snapshots) // 2] if snapshots else None, "snapshot.png")):
            if source is not None and source.exists():
                written.append(Path(shutil.copyfile(source, out / name)))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pinn.io.plots", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run's log folder (version_N) or its experiment folder (newest version)")
    parser.add_argument("--out", help="folder for the figures (default: the run's folder)")
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        run = resolve_run(args.run)
        written = write_plots(run, Path(args.out) if args.out else run, args.dpi)
    except FileNotFoundError as err:
        print(f"pinn.io.plots: error: {err}", file=sys.stderr)
        sys.exit(2)
    print("pinn.io.plots: wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
