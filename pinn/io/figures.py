"""Matplotlib figures of displacement fields and training curves.

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, never through ``pyplot``: nothing here
touches matplotlib's global backend or figure registry, so they render on headless machines and inside
training without leaking memory. Fields are arrays on a regular grid, ``(nt, ny, nx, 2)`` with components
``(u, v)``, and axes ``x (nx,)``, ``y (ny,)``, ``t (nt,)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

COMPONENTS = ("u", "v")
FIELD_CMAP = "RdBu_r"  # signed displacement: white is zero
ERROR_CMAP = "PuOr_r"  # signed error, visibly different from the field colours
MAGNITUDE_CMAP = "magma"
ERROR_PERCENTILE = 99.0  # error colour scales end here: a few large errors (often a corner) would wash out the rest


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure with an Agg canvas and constrained layout (titles and colour bars are never clipped)."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_rgb(fig: Figure) -> np.ndarray:
    """Render a figure to an ``(H, W, 3)`` uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _symmetric(*arrays: np.ndarray) -> float:
    """Half-width of a colour scale centred on zero that covers every array (never 0, so the bar is drawable)."""
    m = max(float(np.abs(a).max()) for a in arrays)
    return m if m > 0 else 1.0


def _image(ax, data: np.ndarray, extent: Sequence[float], cmap: str, vmin: float, vmax: float):
    """One ``(ny, nx)`` field with y pointing up and equal axis units."""
    return ax.imshow(data, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                     interpolation="nearest", aspect="equal")


def _error_scale(err: np.ndarray) -> float:
    """Half-width of the error colour scale: the ``ERROR_PERCENTILE`` of |err| (its maximum if that is 0)."""
    s = float(np.percentile(np.abs(err), ERROR_PERCENTILE))
    return s if s > 0 else _symmetric(err)


def _colorbar(fig: Figure, im, axes, label: str, scale: float, aspect: float, extend: str = "neither") -> None:
    """A horizontal colour bar under ``axes`` with ticks at -scale, 0 and scale (short labels never collide)."""
    fig.colorbar(im, ax=axes, location="bottom", shrink=0.9, aspect=aspect, label=label, extend=extend,
                 ticks=[-scale, 0.0, scale], format="{x:.2g}")


def relative_l2(pred: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Relative L2 errors ``||pred - exact|| / ||exact||`` of the vector and of each component."""
    err2, ref2 = ((pred - exact) ** 2).reshape(-1, 2).sum(0), (exact**2).reshape(-1, 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):  # a component that is exactly zero has an infinite error
        out = {"rel_l2": float(np.sqrt(err2.sum() / ref2.sum()))}
        out.update({f"rel_l2_{c}": float(np.sqrt(err2[i] / ref2[i])) for i, c in enumerate(COMPONENTS)})
    return out


def field_figure(
    x: np.ndarray, y: np.ndarray, t: np.ndarray, pred: np.ndarray, exact: np.ndarray | None = None,
    step: int | None = None, errors: Mapping[str, float] | None = None, dpi: int = 100, truth: str = "exact",
) -> Figure:
    """Predicted, exact and error fields of u and v, one row per time.

    Columns are ``u predicted, u exact, u error, v predicted, v exact, v error`` (only the predicted columns
    without ``exact``). Predicted and exact share one colour scale per component, symmetric about zero and
    common to all rows; the error (predicted - exact) has its own symmetric scale per component, up to the
    ``ERROR_PERCENTILE`` of its magnitude (the colour bar's arrows mark the saturated tail).

    Args:
        x: Grid x axis ``(nx,)``.
        y: Grid y axis ``(ny,)``.
        t: The times of the rows ``(nt,)``.
        pred: Predicted displacement ``(nt, ny, nx, 2)``.
        exact: Exact displacement of the same shape, or ``None``.
        step: Training step, shown in the title.
        errors: ``rel_l2``, ``rel_l2_u``, ``rel_l2_v`` for the title; computed from these arrays when omitted
            and ``exact`` is given.
        dpi: Resolution of the rendered figure.
        truth: What ``exact`` is, for the labels: ``exact`` or ``reference``.
    """
    if exact is not None and errors is None:
        errors = relative_l2(pred, exact)
    kinds = ("predicted", "exact", "error") if exact is not None else ("predicted",)
    ncols, nt = len(kinds) * 2, len(t)
    fig = new_figure(1.95 * ncols + 0.6, 1.9 * nt + 1.3, dpi)
    axes = fig.subplots(nt, ncols, sharex=True, sharey=True, squeeze=False)
    extent = (x[0], x[-1], y[0], y[-1])
    for c, comp in enumerate(COMPONENTS):
        cols = slice(c * len(kinds), (c + 1) * len(kinds))
        scale = _symmetric(pred[..., c], *([] if exact is None else [exact[..., c]]))
        panels = {"predicted": (pred[..., c], FIELD_CMAP, scale)}
        if exact is not None:
            err = pred[..., c] - exact[..., c]
            panels |= {"exact": (exact[..., c], FIELD_CMAP, scale), "error": (err, ERROR_CMAP, _error_scale(err))}
        for k, kind in enumerate(kinds):
            data, cmap, s = panels[kind]
            col = c * len(kinds) + k
            axes[0, col].set_title(f"{comp} {truth if kind == 'exact' else kind}")
            for row in range(nt):
                im = _image(axes[row, col], data[row], extent, cmap, -s, s)
            if kind == "predicted":
                field_im = im
            elif kind == "error":
                tail = "both" if np.abs(data).max() > s else "neither"
                _colorbar(fig, im, axes[:, col], f"{comp} predicted - {truth}", s, aspect=12, extend=tail)
        _colorbar(fig, field_im, axes[:, cols][:, :2] if exact is not None else axes[:, cols],
                  f"{comp} displacement", scale, aspect=25)
    for row, time in enumerate(t):
        axes[row, 0].set_ylabel(f"t = {time:.3g}\n\ny")
    for ax in axes[-1]:
        ax.set_xlabel("x")
    fig.suptitle(_title(step, errors))
    return fig


def _title(step: int | None, errors: Mapping[str, float] | None) -> str:
    parts = [] if step is None else [f"step {step}"]
    if errors:
        text = (f"relative L2 error {errors['rel_l2']:.3e} (u {errors['rel_l2_u']:.3e}, "
                f"v {errors['rel_l2_v']:.3e})")
        if "rel_l2_end" in errors:  # what a user reads: the end of the seismogram
            text += f", at the end {errors['rel_l2_end']:.3e}"
        parts.append(text)
    return ":  ".join(parts) or "displacement"


def slice_error_figure(times: np.ndarray, errors: np.ndarray, starts: Sequence[float] = (), step: int | None = None,
                       dpi: int = 80) -> Figure:
    """The relative L2 error of each validation time slice against time, with the time windows' starts marked."""
    fig = new_figure(6.0, 3.2, dpi)
    ax = fig.add_subplot()
    ax.semilogy(times, errors, "o-", ms=3)
    for t in list(starts)[1:]:
        ax.axvline(t, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("t (s)")
    ax.set_ylabel("relative L2 error")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("error per time slice" + ("" if step is None else f" (step {step})"))
    return fig


def snapshot_figure(
    x: np.ndarray, y: np.ndarray, time: float, disp: np.ndarray, scales: tuple[float, float], magnitude_max: float,
    step: int | None = None, dpi: int = 100,
) -> Figure:
    """u, v and the magnitude sqrt(u^2 + v^2) at one time, on fixed colour scales so snapshots compare.

    Args:
        x: Grid x axis ``(nx,)``.
        y: Grid y axis ``(ny,)``.
        time: The snapshot's time.
        disp: Displacement ``(ny, nx, 2)``.
        scales: Half-widths of the u and of the v colour scale.
        magnitude_max: Top of the magnitude colour scale.
        step: Training step of the model, shown in the title.
        dpi: Resolution of the rendered figure.
    """
    fig = new_figure(10.5, 3.9, dpi)
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    extent = (x[0], x[-1], y[0], y[-1])
    for c, comp in enumerate(COMPONENTS):
        im = _image(axes[c], disp[..., c], extent, FIELD_CMAP, -scales[c], scales[c])
        axes[c].set_title(comp)
        _colorbar(fig, im, axes[c], f"{comp} displacement", scales[c], aspect=15)
    mag = np.sqrt((disp**2).sum(-1))
    im = _image(axes[2], mag, extent, MAGNITUDE_CMAP, 0.0, magnitude_max)
    axes[2].set_title("|u| = sqrt(u² + v²)")
    fig.colorbar(im, ax=axes[2], location="bottom", shrink=0.9, aspect=15, label="displacement magnitude",
                 ticks=[0.0, magnitude_max / 2, magnitude_max], format="{x:.2g}")
    axes[0].set_ylabel("y")
    for ax in axes:
        ax.set_xlabel("x")
    fig.suptitle(f"predicted displacement at t = {time:.3g}" + ("" if step is None else f"  (step {step})"))
    return fig


def magnitude_frames(
    x: np.ndarray, y: np.ndarray, t: np.ndarray, disp: np.ndarray, step: int | None = None, dpi: int = 80,
) -> list[np.ndarray]:
    """RGB frames ``(H, W, 3)`` of the displacement magnitude at every time of ``disp (nt, ny, nx, 2)``.

    One figure is laid out and drawn once, on one colour scale for the whole clip; each frame then redraws only
    the image, the spines over it and the title onto that background (blitting), so that a long clip does not
    cost a full draw per frame (``docs/monitoring.md``).
    """
    mag = np.sqrt((disp**2).sum(-1))  # (nt, ny, nx)
    fig = new_figure(5.0, 4.6, dpi)
    ax = fig.subplots()
    im = _image(ax, mag[0], (x[0], x[-1], y[0], y[-1]), MAGNITUDE_CMAP, 0.0, float(mag.max()) or 1.0)
    fig.colorbar(im, ax=ax, label="|u| = sqrt(u² + v²)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(_frame_title(t[0], step))
    fig.canvas.draw()  # lay out with the title in place, then freeze the layout for every frame
    fig.set_layout_engine("none")
    im.set_animated(True)
    ax.title.set_animated(True)
    fig.canvas.draw()  # the background: everything but the animated image and title
    background = fig.canvas.copy_from_bbox(fig.bbox)
    frames = []
    for k, time in enumerate(t):
        fig.canvas.restore_region(background)
        im.set_data(mag[k])
        ax.title.set_text(_frame_title(time, step))
        for artist in (im, *ax.spines.values(), ax.title):
            ax.draw_artist(artist)
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    return frames


def save_gif(path, frames: Sequence[np.ndarray], fps: int = 10, cmap: str = MAGNITUDE_CMAP) -> None:
    """Write RGB frames as an endlessly looping GIF.

    GIF frames hold at most 256 colours. An adaptive palette bands a smooth colour map, so the palette is the
    colour map itself (224 of its colours, which is what ``imshow`` paints) plus 32 greys for text, lines
    and their anti-aliased edges; the same palette for every frame also keeps colours from flickering.
    """
    lut = matplotlib.colormaps[cmap].resampled(224)(np.arange(224))[:, :3]
    greys = np.repeat(np.linspace(0, 1, 32)[:, None], 3, axis=1)
    palette = Image.new("P", (1, 1))
    palette.putpalette((np.concatenate([lut, greys]) * 255).round().astype(np.uint8).ravel().tolist())
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def _frame_title(time: float, step: int | None) -> str:
    return f"predicted |u| at t = {time:.3f}" + ("" if step is None else f" (step {step})")


def curves_figure(scalars: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "", dpi: int = 100) -> Figure:
    """Training curves on log scales: the loss and its terms (left), validation errors (right).

    Args:
        scalars: Tag -> ``(steps, values)``, as logged (``train/loss``, ``train/loss_<term>``, ``val/rel_l2*``).
        title: Figure title (e.g. the run folder).
        dpi: Resolution of the rendered figure.
    """
    fig = new_figure(11.0, 4.2, dpi)
    left, right = fig.subplots(1, 2)
    for ax, prefix, ylabel in ((left, "train/loss", "training loss"), (right, "val/rel_l2", "relative L2 error")):
        tags = sorted(tag for tag in scalars if tag.startswith(prefix))
        for tag in tags:
            steps, values = scalars[tag]
            main = tag == prefix
            ax.plot(steps, values, label=tag, lw=1.8 if main else 1.0, color="black" if main else None,
                    zorder=3 if main else 2)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if tags:
            ax.legend(fontsize="small")
    left.set_title("loss (weighted sum) and its unweighted terms")
    right.set_title("validation error against the exact solution")
    if title:
        fig.suptitle(title)
    return fig
