"""``pinn predict`` output: the predicted displacement on a grid as ``.npz``, PNG snapshots and a GIF.

The grid comes from the data module (``data.predict_resolution`` and ``data.predict_times`` in YAML). Files
go into the log folder of the run the checkpoint belongs to, ``<save_dir>/<name>/version_N/predictions/
step_<S>/``, where S is the checkpoint's training step, so predictions of different checkpoints sit side by
side and never overwrite a training run's files. A problem of several shots (:mod:`pinn.problems.shots`) gets one
folder per shot in there, ``shot_<k>/``, each with the files of a problem of one shot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from pinn.io.figures import field_figure, magnitude_frames, relative_l2, save_gif, snapshot_figure
from pinn.io.seismograms import write_seismograms


def grid_arrays(xyt: np.ndarray, disp: np.ndarray) -> dict[str, np.ndarray]:
    """Arrange scattered predictions of a regular grid onto it.

    Args:
        xyt: Points ``(N, 3)`` of a tensor-product grid, in any order, possibly with repeats.
        disp: Displacement at those points ``(N, 2)``.

    Returns:
        ``x (nx,)``, ``y (ny,)``, ``t (nt,)``, ``xyt (nt, ny, nx, 3)`` and ``displacement (nt, ny, nx, 2)``.
    """
    axes = [np.unique(xyt[:, i]) for i in range(3)]
    nx, ny, nt = (len(a) for a in axes)
    idx = [np.searchsorted(a, xyt[:, i]) for i, a in enumerate(axes)]  # exact matches: values come from the axes
    out = np.full((nt, ny, nx, 2), np.nan, dtype=disp.dtype)
    out[idx[2], idx[1], idx[0]] = disp
    if np.isnan(out).any():
        raise ValueError(f"predictions cover {len(np.unique(xyt, axis=0))} distinct points, not the full "
                         f"{nx} x {ny} x {nt} grid their coordinates span; predict on a regular (x, y, t) grid.")
    t, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return {"x": axes[0], "y": axes[1], "t": axes[2], "xyt": np.stack([x, y, t], -1), "displacement": out}


def run_dir(trainer: L.Trainer) -> Path:
    """The log folder of the run whose checkpoint is predicted from (``.../version_N``), else the trainer's."""
    if trainer.ckpt_path:
        ckpt = Path(trainer.ckpt_path).resolve()
        if ckpt.parent.name == "checkpoints":
            return ckpt.parent.parent
    return Path(trainer.log_dir or trainer.default_root_dir)


def _gather(trainer: L.Trainer, rows: Tensor) -> Tensor:
    """Rows of every process, concatenated (processes may hold different counts: prediction does not pad)."""
    if trainer.world_size == 1:
        return rows
    sizes = trainer.strategy.all_gather(torch.tensor([rows.shape[0]], device=rows.device)).flatten().tolist()
    padded = rows.new_zeros(max(sizes), rows.shape[1])
    padded[: rows.shape[0]] = rows
    gathered = trainer.strategy.all_gather(padded)  # (world, max(sizes), C)
    return torch.cat([gathered[r, :n] for r, n in enumerate(sizes)])


class PredictionWriter(L.Callback):
    """Write what ``pinn predict`` computed: ``prediction.npz`` with the grid axes ``x``, ``y``, ``t``, the
    points ``xyt (nt, ny, nx, 3)``, the predicted ``displacement (nt, ny, nx, 2)`` (and ``exact`` when the
    problem has a closed-form solution) and the checkpoint's ``step``; ``snapshot_t<time>.png`` figures of u,
    v and |u|; ``fields.png`` (predicted, exact and error at the first, middle and last time); and
    ``magnitude.gif``, the displacement magnitude over all times. Prints the folder.

    Args:
        snapshots: PNG snapshots at evenly spaced prediction times, first and last included (0: none); an odd
            count includes the middle time.
        fps: Frames per second of the GIF (one frame per prediction time).
        dpi: Resolution of the PNG figures.
        output_dir: Write here instead of ``<run log folder>/predictions/step_<S>``.
    """

    def __init__(self, snapshots: int = 5, fps: int = 10, dpi: int = 100, output_dir: str | None = None) -> None:
        if snapshots < 0 or fps < 1 or dpi < 10:
            raise ValueError(f"prediction_writer: snapshots={snapshots} must be >= 0, fps={fps} >= 1, dpi={dpi} >= 10.")
        self.snapshots, self.fps, self.dpi, self.output_dir = snapshots, fps, dpi, output_dir
        self.step: int | None = None
        self._rows: list[Tensor] = []

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.step = int(checkpoint.get("global_step", 0))

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []

    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._rows.append(torch.cat([outputs["xyt"], outputs["displacement"]], dim=-1).detach())  # (B, 3 + 2 S)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = _gather(trainer, torch.cat(self._rows)).float().cpu().numpy()  # (N, 3 + 2 S): x, y, t, (u, v) per shot
        self._rows = []
        # The other processes wait while rank 0 writes: one that exited alone aborted in its process-group teardown
        # about one run in ten (a C++ terminate), and the launcher then killed rank 0 before it had written.
        try:
            if trainer.is_global_zero:
                self.write_all(trainer, pl_module, rows)
        finally:
            trainer.strategy.barrier("prediction_written")

    def write_all(self, trainer: L.Trainer, pl_module: L.LightningModule, rows: np.ndarray) -> None:
        """Write every shot's files from the gathered ``rows`` (N, 3 + 2 S), and print where."""
        step = self.step if self.step is not None else trainer.global_step
        out = Path(self.output_dir) if self.output_dir else run_dir(trainer) / "predictions" / f"step_{step}"
        shots = pl_module.problem.n_shots
        for k in range(shots):
            folder = out if shots == 1 else out / f"shot_{k}"
            problem = pl_module.problem.shot(k)
            written = self.write(folder, grid_arrays(rows[:, :3], rows[:, 3 + 2 * k: 5 + 2 * k]), problem, step)
            if problem.receivers is not None:
                written += self.write_receivers(folder, pl_module, k)
            tqdm.write(f"pinn predict: wrote {', '.join(written)} to {folder}")  # on its own line, under the bars

    @torch.no_grad()
    def write_receivers(self, out: Path, pl_module: L.LightningModule, shot: int = 0) -> list[str]:
        """Seismograms of shot ``shot`` at the problem's receivers (PINN, and the reference or closed form) in SI;
        see :func:`pinn.io.seismograms.write_seismograms`."""
        problem = pl_module.problem.shot(shot)
        receivers = problem.receivers
        points = receivers.points(problem.domain, torch.float64)  # (R*T, 3), grouped by receiver
        t = receivers.times(problem.domain).numpy()  # (T,)
        shape = (len(receivers), len(t), 2)
        every = pl_module.predict_step(points.to(pl_module.device, pl_module.dtype), 0)["displacement"]  # (R*T, 2 S)
        pred = every[:, 2 * shot: 2 * shot + 2].double().cpu().numpy().reshape(shape)
        truth = problem.truth(points).double().numpy().reshape(shape)
        positions = receivers.positions_array().numpy()
        written = write_seismograms(out, receivers.names, positions, t, pred, truth, receivers.network, self.dpi)
        sac = [name for name in written if name.startswith("seismograms.sac/")]
        return [name for name in written if name not in sac] + [f"seismograms.sac/ ({len(sac)} traces)"]

    def write(self, out: Path, arrays: dict[str, np.ndarray], problem: Any, step: int) -> list[str]:
        """Write all files into ``out``; returns their names."""
        out.mkdir(parents=True, exist_ok=True)
        x, y, t, disp = arrays["x"], arrays["y"], arrays["t"], arrays["displacement"]
        truth = "exact" if problem.has_exact else "reference"  # closed form, or the finite-difference solution
        xyt = torch.from_numpy(arrays["xyt"].reshape(-1, 3))
        arrays[truth] = problem.truth(xyt).numpy().astype(disp.dtype).reshape(disp.shape)
        np.savez(out / "prediction.npz", **arrays, step=np.int64(step))
        written = [f"prediction.npz (displacement {tuple(disp.shape)} = (nt, ny, nx, (u, v)))"]

        scales = tuple(float(np.abs(disp[..., c]).max()) or 1.0 for c in range(2))
        magnitude_max = float(np.sqrt((disp**2).sum(-1)).max()) or 1.0
        picks = np.unique(np.linspace(0, len(t) - 1, self.snapshots).round().astype(int)) if self.snapshots else []
        for k in picks:
            fig = snapshot_figure(x, y, float(t[k]), disp[k], scales, magnitude_max, step, self.dpi)
            fig.savefig(out / f"snapshot_t{t[k]:.3f}.png")
        if len(picks):
            written.append(f"{len(picks)} snapshot_t*.png")
        if truth in arrays:
            rows = np.unique([0, len(t) // 2, len(t) - 1])
            errors = relative_l2(disp, arrays[truth])  # over the whole prediction grid
            errors["rel_l2_end"] = relative_l2(disp[-1], arrays[truth][-1])["rel_l2"]  # its last time
            fig = field_figure(x, y, t[rows], disp[rows], arrays[truth][rows], step, errors, self.dpi, truth)
            fig.savefig(out / "fields.png")
            written.append("fields.png")
        save_gif(out / "magnitude.gif", magnitude_frames(x, y, t, disp, step), self.fps)
        written.append(f"magnitude.gif ({len(t)} frames)")
        return written
