"""The estimates of an inverse run over its steps, as files a user can read without TensorBoard.

:class:`MaterialHistory` writes ``material_history.csv`` into the run's folder (``<save_dir>/<name>/version_N/``,
next to ``checkpoints/``): a header ``step,<quantity>,...`` and one row per written step, the starting model at the
first step and the estimate after every n-th step and at the end of the fit, one column per estimated quantity
(the names of the ``material/<name>`` scalars: ``upper/vp`` per layer, ``mu_min``/``mu_max`` of a map, ``mu`` of one
constant material), in the problem's units: m/s, kg/m^3 and Pa for the SI problems of layers and maps. A run
resumed with ``--ckpt_path last`` continues the same file: rows after the checkpoint's step (written before an
interruption) are dropped and written again, so every step appears once. At the end of the fit it draws
``material_history.png``, one panel per quantity. Forward runs write nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure

from pinn.io.figures import new_figure

NAME = "material_history"
UNITS = {"vp": "vp (m/s)", "vs": "vs (m/s)", "rho": "rho (kg/m^3)", "mu": "mu (Pa)", "lam": "lambda (Pa)"}


def quantity(column: str) -> str:
    """The quantity a column holds: ``upper/vp`` -> ``vp``, ``mu_min`` -> ``mu``, ``lam`` -> ``lam``."""
    last = column.rsplit("/", 1)[-1]
    return last.rsplit("_", 1)[0] if last.endswith(("_min", "_max")) else last


def estimates(material) -> dict[str, float]:
    """The estimated (trained) quantities of an unknown medium by column name, as floats."""
    trained = set(material.trained)
    return {k: float(v) for k, v in material.scalars().items() if quantity(k) in trained}


def read_history(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Columns (``step`` first) and rows ``(R, C)`` of a ``material_history.csv``."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(v) for v in row] for row in rows[1:]]).reshape(-1, len(rows[0]))


def history_figure(columns: list[str], rows: np.ndarray, release: int = 0, units: bool = True,
                   dpi: int = 100) -> Figure:
    """One panel per quantity (vp, vs, ...), one line per layer or per end of a map's range, against the step.

    Args:
        columns: ``step`` and the estimated quantities, as in the CSV.
        rows: The CSV's rows ``(R, 1 + Q)``.
        release: The step the material was released (``model.unknowns.start_step``); drawn when > 0.
        units: Label the axes with SI units (not for the non-dimensional closed-form problems).
        dpi: Resolution of the figure.
    """
    groups: dict[str, list[int]] = {}
    for i, column in enumerate(columns[1:], 1):
        groups.setdefault(quantity(column), []).append(i)
    fig = new_figure(4.2 * len(groups), 3.4, dpi)
    for ax, (q, indices) in zip(np.atleast_1d(fig.subplots(1, len(groups))), groups.items()):
        for i in indices:
            label = columns[i].rsplit("/", 1)[0] if "/" in columns[i] else columns[i]
            ax.plot(rows[:, 0], rows[:, i], marker="." if len(rows) < 30 else None, label=label)
        if release > 0:
            ax.axvline(release, color="grey", ls=":", lw=1, label="released")
        ax.set_xlabel("step")
        ax.set_ylabel(UNITS.get(q, q) if units else q)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Estimated material over the run")
    return fig


class MaterialHistory(Callback):
    """Write the estimates of an inverse run to ``material_history.csv`` in the run's folder, every
    ``every_n_steps`` steps and at the end of the fit, and draw ``material_history.png`` at the end (module
    docstring). Nothing for a forward run.

    Args:
        every_n_steps: A row every n-th training step (the first and last steps of a fit are always written);
            0 writes only those.
        dpi: Resolution of the figure.
    """

    def __init__(self, every_n_steps: int = 50, dpi: int = 100) -> None:
        if isinstance(every_n_steps, bool) or every_n_steps < 0 or dpi < 10:
            raise ValueError(f"material_history: every_n_steps={every_n_steps} must be >= 0 (0: first and last step "
                             f"only), dpi={dpi} >= 10.")
        self.every_n_steps, self.dpi = int(every_n_steps), dpi
        self.path: Path | None = None
        self._last = -1  # the last step written

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        material = getattr(pl_module, "trainable_material", None)
        self.path = None
        if material is None or not trainer.is_global_zero:
            return
        self.path = Path(trainer.log_dir or trainer.default_root_dir) / f"{NAME}.csv"
        columns = ["step", *estimates(material)]
        # a resumed run continues its file; a new one starts its own
        kept = self._earlier_rows(columns, trainer.global_step) if trainer.ckpt_path else []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerows([columns, *kept])
        self._last = int(kept[-1][0]) if kept else -1
        self._write(trainer, material)  # the starting model, or where a resumed run stands

    def _earlier_rows(self, columns: list[str], step: int) -> list[list[str]]:
        """Rows up to ``step`` of the file an earlier part of this run wrote (none if there is none)."""
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0] != columns:
            rank_zero_warn(f"{self.path} has the columns {rows[0] if rows else []}, not {columns}: it belongs to "
                           "another run and is replaced.")
            return []
        return [row for row in rows[1:] if int(row[0]) <= step]

    def _write(self, trainer: L.Trainer, material) -> None:
        step = trainer.global_step
        if self.path is None or step == self._last:
            return
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([step, *(f"{v:.9g}" for v in estimates(material).values())])
        self._last = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_) -> None:
        if self.path is not None and self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._write(trainer, pl_module.trainable_material)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.path is None:
            return
        self._write(trainer, pl_module.trainable_material)
        columns, rows = read_history(self.path)
        unknowns = getattr(pl_module, "unknowns", None)
        fig = history_figure(columns, rows, getattr(unknowns, "start_step", 0), not pl_module.problem.has_exact,
                             self.dpi)
        fig.savefig(self.path.with_suffix(".png"))
