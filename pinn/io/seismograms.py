"""Seismograms at receivers: ``.npz`` arrays, a figure, miniSEED and SAC files.

:func:`write_seismograms` writes the PINN's displacement traces at the receivers, and the reference (closed-form
or simulated) traces when given, in SI units (m, s), into one folder:

- ``seismograms.npz``: ``names (R,)``, ``positions (R, 2)``, ``t (T,)``, ``pinn (R, T, 2)`` and, when given,
  ``reference (R, T, 2)``, plus ``network``; components are ``(u, v)``.
- ``seismograms.png``: u and v against time at every receiver, PINN and reference overlaid.
- ``seismograms.mseed``: every trace in one miniSEED file, FLOAT64 encoding (the arrays, bit for bit).
- ``seismograms.sac/NET.STA.LOC.CHA.sac``: the same traces, one SAC file each.

SEED codes (``NET.STA.LOC.CHA``) and the time zero of the traces: see :mod:`pinn.io.seed_codes`. The sample
interval is ``(t[-1] - t[0]) / (T - 1)``, which is ``t[1] - t[0]`` for the evenly spaced times traces need; uneven
times are refused. miniSEED and SAC store the rate in single precision, so ``delta`` reads back to about 1e-7
relative.

SAC headers: the receiver's ``x`` and ``y`` (m) are in ``user0`` and ``user1`` (``kuser0`` says ``x_y_m``);
``stla``/``stlo`` are latitude and longitude in degrees and stay unset. ``idep`` is ``IDISP``
(displacement, m); ``cmpaz``/``cmpinc`` are 90/90 for ``u`` (horizontal, east) and 0/0 for ``v`` (vertical, up).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from obspy import Stream, Trace
from obspy.core.util import AttribDict

from pinn.io.figures import new_figure
from pinn.io.seed_codes import COMPONENTS, LOCATIONS, TIME_ZERO, channel_codes

SAC_ORIENTATIONS = ((90.0, 90.0), (0.0, 0.0))  # (cmpaz, cmpinc) of u and v: azimuth from north, angle from up
SAC_IDISP = 6  # SAC's enumerated value for displacement in the idep header
SPACING_TOLERANCE = 1e-3  # of a sample interval: looser than float32 times' rounding, far tighter than resampling
ROWS_MAX = 6  # more receivers than this are drawn as a record section, one panel per component
CODE = re.compile(r"[A-Za-z0-9]+")
PINN_STYLE = {"color": "C0", "lw": 1.2}
REFERENCE_STYLE = {"color": "k", "lw": 1.0, "ls": "--"}


def sample_interval(t: np.ndarray) -> float:
    """The sample interval of evenly spaced, increasing ``t (T,)``; a ValueError otherwise."""
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)):
        raise ValueError(f"seismogram times t must be a 1D array of at least 2 finite times, got shape {t.shape}.")
    delta = (t[-1] - t[0]) / (t.size - 1)
    gaps = np.diff(t)
    if delta <= 0 or np.max(np.abs(gaps - delta)) > SPACING_TOLERANCE * delta:
        raise ValueError(f"seismogram times t must be increasing and evenly spaced (traces have one sample interval); "
                         f"got gaps from {gaps.min():.6g} s to {gaps.max():.6g} s. Sample at np.linspace(t0, t1, T).")
    return float(delta)


def _check(names: list[str], positions: np.ndarray, t: np.ndarray, pinn: np.ndarray, reference, network: str):
    """Raise a ValueError when the arrays' shapes or the SEED codes do not fit together."""
    r = len(names)
    want = (r, len(t), 2)
    if positions.shape != (r, 2):
        raise ValueError(f"positions has shape {positions.shape}; expected (R, 2) = {(r, 2)} for {r} names.")
    for key, arr in (("pinn", pinn), ("reference", reference)):
        if arr is not None and arr.shape != want:
            raise ValueError(f"{key} has shape {arr.shape}; expected (R, T, 2) = {want}.")
    bad = [n for n in names if not (isinstance(n, str) and CODE.fullmatch(n) and len(n) <= 5)]
    if bad or len(set(names)) != r:
        raise ValueError(f"station names must be unique SEED codes of 1 to 5 letters or digits; got {names}.")
    if not (CODE.fullmatch(network) and len(network) <= 2):
        raise ValueError(f"network={network!r} must be a SEED network code of 1 or 2 letters or digits.")


def _sac_header(xy: np.ndarray, component: int) -> AttribDict:
    cmpaz, cmpinc = SAC_ORIENTATIONS[component]
    return AttribDict(user0=float(xy[0]), user1=float(xy[1]), kuser0="x_y_m", idep=SAC_IDISP,
                      cmpaz=cmpaz, cmpinc=cmpinc)


def build_stream(names: list[str], positions: np.ndarray, t: np.ndarray, pinn: np.ndarray,
                 reference: np.ndarray | None = None, network: str = "XX") -> Stream:
    """ObsPy traces of every receiver and component: PINN (location ``PN``), then reference (``RF``) when given."""
    delta = sample_interval(t)
    channels = channel_codes(1.0 / delta)
    traces = []
    for source, data in (("pinn", pinn), ("reference", reference)):
        if data is None:
            continue
        for i, name in enumerate(names):
            for c, channel in enumerate(channels):
                header = {"network": network, "station": name, "location": LOCATIONS[source], "channel": channel,
                          "delta": delta, "starttime": TIME_ZERO + float(t[0]),
                          "sac": _sac_header(positions[i], c)}
                traces.append(Trace(np.ascontiguousarray(data[i, :, c], dtype=np.float64), header=header))
    return Stream(traces)


def _sac_files(stream: Stream, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for tr in stream:
        path = folder / f"{tr.id}.sac"  # NET.STA.LOC.CHA: unique per trace
        tr.write(str(path), format="SAC")
        paths.append(path)
    return paths


def _rows_figure(names, t, pinn, reference, dpi):
    """One row per receiver, u and v columns, each trace on its own displacement axis."""
    fig = new_figure(10.0, 1.3 * len(names) + 1.2, dpi)
    axes = fig.subplots(len(names), 2, sharex=True, squeeze=False)
    for i, name in enumerate(names):
        for c, comp in enumerate(COMPONENTS):
            ax = axes[i, c]
            ax.plot(t, pinn[i, :, c], **PINN_STYLE)
            if reference is not None:
                ax.plot(t, reference[i, :, c], **REFERENCE_STYLE)
            ax.set_title(f"{name}: {comp}", fontsize=9)
            ax.set_ylabel(f"{comp} displacement (m)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    return fig, axes.ravel()


def _record_section(names, t, pinn, reference, dpi):
    """One panel per component, receivers stacked top to bottom, all traces of a panel on one amplitude scale."""
    r = len(names)
    fig = new_figure(11.0, max(4.0, 0.32 * r + 1.6), dpi)
    axes = fig.subplots(1, 2, sharey=True, squeeze=False)[0]
    for c, (ax, comp) in enumerate(zip(axes, COMPONENTS)):
        peak = max(float(np.abs(a[..., c]).max()) for a in (pinn, reference) if a is not None)
        spacing = 2.2 * peak if peak > 0 else 1.0  # m per trace spacing: the largest peak fills 0.45 of it
        for i in range(r):
            ax.plot(t, i - pinn[i, :, c] / spacing, **PINN_STYLE)  # minus: receiver 0 on top, positive up
            if reference is not None:
                ax.plot(t, i - reference[i, :, c] / spacing, **REFERENCE_STYLE)
        ax.set_title(f"{comp} displacement (trace spacing = {spacing:.3g} m)", fontsize=10)
        ax.set_xlabel("time (s)")
        ax.set_xlim(t[0], t[-1])
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(r), names, fontsize=8 if r <= 30 else 6)
    axes[0].set_ylim(r - 0.4, -0.6)
    axes[0].set_ylabel("receiver")
    return fig, axes


def seismograms_figure(names: list[str], t: np.ndarray, pinn: np.ndarray, reference: np.ndarray | None = None,
                       dpi: int = 100):
    """The traces of ``pinn (R, T, 2)`` (and ``reference``) against ``t (T,)``: rows, or a record section when many."""
    layout = _rows_figure if len(names) <= ROWS_MAX else _record_section
    fig, axes = layout(names, t, pinn, reference, dpi)
    handles = [Line2D([], [], **PINN_STYLE, label="PINN")]
    if reference is not None:
        handles.append(Line2D([], [], **REFERENCE_STYLE, label="reference"))
    axes[0].legend(handles=handles, fontsize=8, loc="upper right")
    fig.suptitle("Seismograms: PINN" + (" vs reference" if reference is not None else ""))
    return fig


def write_seismograms(out: Path, names: list[str], positions: np.ndarray, t: np.ndarray, pinn: np.ndarray,
                      reference: np.ndarray | None = None, network: str = "XX", dpi: int = 100) -> list[str]:
    """Write the seismograms of receivers ``names`` into ``out`` (created if needed).

    Args:
        out: Output folder.
        names: Station codes, one per receiver (1 to 5 letters or digits, unique).
        positions: ``(R, 2)`` receiver positions ``(x, y)`` (m).
        t: ``(T,)`` evenly spaced sample times (s).
        pinn: ``(R, T, 2)`` PINN displacement ``(u, v)`` (m).
        reference: ``(R, T, 2)`` reference displacement (m), or None.
        network: SEED network code.
        dpi: Resolution of the figure.

    Returns:
        The paths written, relative to ``out``: the ``.npz``, ``.png``, ``.mseed`` and every SAC file.
    """
    out = Path(out)
    positions, t = np.asarray(positions, dtype=np.float64), np.asarray(t, dtype=np.float64)
    pinn = np.asarray(pinn, dtype=np.float64)
    reference = None if reference is None else np.asarray(reference, dtype=np.float64)
    names = [str(n) for n in names]
    _check(names, positions, t, pinn, reference, network)
    stream = build_stream(names, positions, t, pinn, reference, network)  # validates t before anything is written
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"names": np.array(names), "positions": positions, "t": t, "pinn": pinn, "network": np.array(network)}
    if reference is not None:
        arrays["reference"] = reference
    np.savez(out / "seismograms.npz", **arrays)
    seismograms_figure(names, t, pinn, reference, dpi).savefig(out / "seismograms.png")
    stream.write(str(out / "seismograms.mseed"), format="MSEED", encoding="FLOAT64")
    sac = _sac_files(stream, out / "seismograms.sac")
    return ["seismograms.npz", "seismograms.png", "seismograms.mseed"] + [str(p.relative_to(out)) for p in sac]
