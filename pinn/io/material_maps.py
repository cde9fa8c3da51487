"""Maps of the recovered material of an inverse run, next to the true one, as TensorBoard images.

:class:`MaterialMaps` draws, after every n-th validation, one row per estimated quantity (for example mu, or vp
and vs of a layered run): the estimate, the truth (when the observations were simulated on the problem's own
medium) and their relative difference ``(estimate - truth) / truth``. Each row shares one colour scale between
estimate and truth, so the eye compares like with like.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import numpy as np
import torch
from matplotlib.figure import Figure

from pinn.io.figures import ERROR_CMAP, MAGNITUDE_CMAP, new_figure, to_rgb
from pinn.io.monitoring import _EveryNValidations, summary_writers
from pinn.physics.inversion import plane_points, trained_quantities

LABELS = {"lam": "lambda (Pa)", "mu": "mu (Pa)", "rho": "rho (kg/m^3)", "c_p": "vp (m/s)", "c_s": "vs (m/s)"}


def material_grid(domain, resolution: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Axes ``x (nx,)``, ``y (ny,)`` and the points ``(ny*nx, 2)`` (x fastest) of a grid spanning ``domain``."""
    xy = plane_points(domain, *resolution)
    return np.linspace(*domain.x, resolution[0]), np.linspace(*domain.y, resolution[1]), xy


def material_figure(x: np.ndarray, y: np.ndarray, maps: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
                    step: int | None = None, errors: Mapping[str, float] | None = None, dpi: int = 80) -> Figure:
    """One row per quantity: estimate, truth and relative difference (the last two when the truth is given).

    Args:
        x: Grid x axis ``(nx,)``.
        y: Grid y axis ``(ny,)``.
        maps: ``{quantity: (estimate (ny, nx), truth (ny, nx) or None)}``, quantities named as in
            :class:`~pinn.physics.media.MediumValues` (``lam``, ``mu``, ``rho``, ``c_p``, ``c_s``).
        step: Training step, for the title.
        errors: Relative L2 error of each quantity, for the row titles.
        dpi: Resolution of the rendered figure.
    """
    with_truth = any(t is not None for _, t in maps.values())
    ncols = 3 if with_truth else 1
    aspect = (y[-1] - y[0]) / (x[-1] - x[0])
    fig = new_figure(3.2 * ncols + 0.4, (3.2 * aspect + 1.0) * len(maps) + 0.5, dpi)
    axes = fig.subplots(len(maps), ncols, squeeze=False, sharex=True, sharey=True)
    extent = (x[0], x[-1], y[0], y[-1])
    for row, (name, (estimate, truth)) in enumerate(maps.items()):
        both = [estimate] + ([truth] if truth is not None else [])
        lo, hi = min(float(a.min()) for a in both), max(float(a.max()) for a in both)
        hi = hi if hi > lo else lo + abs(lo) * 1e-6 + 1e-30
        panels = [("recovered", estimate, MAGNITUDE_CMAP, lo, hi)]
        if truth is not None:
            rel = (estimate - truth) / np.abs(truth)
            s = max(float(np.abs(rel).max()), 1e-6)
            panels += [("true", truth, MAGNITUDE_CMAP, lo, hi), ("(recovered - true) / true", rel, ERROR_CMAP, -s, s)]
        for col, (kind, data, cmap, vmin, vmax) in enumerate(panels):
            ax = axes[row, col]
            im = ax.imshow(data, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                           interpolation="nearest", aspect="equal")
            title = f"{LABELS.get(name, name)} {kind}"
            if kind == "recovered" and errors and name in errors:
                title += f"\nrel. L2 error {errors[name]:.3g}"
            ax.set_title(title, fontsize=9)
            fig.colorbar(im, ax=ax, location="bottom", shrink=0.9, format="{x:.3g}")
        axes[row, 0].set_ylabel("y (m)")
    for ax in axes[-1]:
        ax.set_xlabel("x (m)")
    fig.suptitle("Recovered material" + ("" if step is None else f", step {step}"))
    return fig


class MaterialMaps(_EveryNValidations):
    """After validation, log the maps of the recovered material of an inverse run (and the true ones when the
    observations were simulated on the problem's medium) as the image ``inverse/material``.

    Args:
        every_n_validations: Draw after every n-th validation; 0 switches the maps off.
        resolution: Grid points along x and y of each map.
        dpi: Resolution of the image.
    """

    def __init__(self, every_n_validations: int = 1, resolution: tuple[int, int] = (101, 101), dpi: int = 80) -> None:
        super().__init__(every_n_validations)
        if len(resolution) != 2 or min(resolution) < 2:
            raise ValueError(f"material_maps.resolution={list(resolution)} must be two counts >= 2 (x, y).")
        self.resolution, self.dpi = tuple(resolution), dpi

    @torch.no_grad()
    def render(self, pl_module: L.LightningModule, step: int) -> np.ndarray:
        """The figure as an ``(H, W, 3)`` uint8 image."""
        material, problem = pl_module.trainable_material, pl_module.problem
        x, y, xy = material_grid(problem.scored_domain, self.resolution)
        shape = (len(y), len(x))
        estimate = material.at(xy.to(pl_module.device, pl_module.dtype))
        truth = problem.medium.values(xy) if pl_module.truth_known() else None
        maps, errors = {}, {}
        for q in trained_quantities(material):
            e = torch.as_tensor(getattr(estimate, q)).double().expand(len(xy)).cpu().numpy().reshape(shape)
            t = None if truth is None else getattr(truth, q).double().numpy().reshape(shape)
            maps[q] = (e, t)
            if t is not None:
                errors[q] = float(np.linalg.norm(e - t) / np.linalg.norm(t))
        return to_rgb(material_figure(x, y, maps, step, errors, self.dpi))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(pl_module, "trainable_material", None) is None or not self._due(trainer):
            return
        image = self.render(pl_module, trainer.global_step)
        for writer in summary_writers(trainer):
            writer.add_image("inverse/material", image, trainer.global_step, dataformats="HWC")
