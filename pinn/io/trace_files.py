"""Seismic traces (miniSEED, SAC, anything ``obspy.read`` reads) and a station file, read into samples ``(M, 5)``,
columns ``(x, y, t, u, v)``; the SEED codes are those of :mod:`pinn.io.seed_codes`, and
:mod:`pinn.training.traces` describes the files and turns them into observations.
"""

from __future__ import annotations

import glob
import math
import warnings
from pathlib import Path

import numpy as np
import obspy
from obspy import UTCDateTime

from pinn.io.csv_table import finite, read_table
from pinn.io.seed_codes import COMPONENTS, ORIENTATIONS

STATION_COLUMNS = ("station", "x", "y")
COINCIDENT = 1e-9  # of a sample interval: E and Z samples this close are the same instant, float rounding aside
SINGLE_PRECISION = 1.2e-7  # relative rounding of a float32 (2**-23)


def read_traces(patterns: list[str], stations: str, location: str | None, every: int,
                origin: UTCDateTime) -> tuple[np.ndarray, dict]:
    """Samples ``(M, 5)`` float64 of the trace files matching ``patterns``, station by station in the
    station file's order, and ``{"NET.STA" or "STA": (x, y)}`` of the stations that have traces.

    Args:
        patterns: Paths or glob patterns; the matches of each pattern are read in sorted order.
        stations: The station file.
        location: Keep only traces with this SEED location code; None keeps all.
        every: Keep every ``every``-th sample of each trace.
        origin: The date and time of ``t = 0``.
    """
    positions, keyed_by_network = read_stations(stations)
    segments = _read_segments(_expand(patterns), positions, keyed_by_network, stations, location, every, origin)
    rows, receivers = [], {}
    for key, (x, y, _) in positions.items():  # the station file's order: the same samples for the same files
        if key in segments:
            rows.append(_station_rows(x, y, segments[key]))
            receivers[_label(key)] = (x, y)
    return np.concatenate(rows), receivers


def read_stations(path: str | Path) -> tuple[dict, bool]:
    """Read a station file: ``({key: (x, y, line)}, keyed_by_network)`` in file order.

    The key is ``(network, station)`` when the header has a ``network`` column, else the station code.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A missing column, a short row, a non-finite coordinate, an empty or repeated station, or no
            station; the message names the file, the line and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"station file {path} does not exist.")
    kind = "station file"
    table = read_table(path, kind, STATION_COLUMNS, optional=("network",), rows="one station per line",
                       row="the station")
    keyed_by_network = bool(table) and "network" in table[0][1]
    positions: dict = {}
    for line, cells in table:
        codes = {c: cells[c] for c in ("network", "station") if c in cells}
        for c, code in codes.items():
            if not code:
                raise ValueError(f"{kind} {path}: line {line}, column {c!r} is empty.")
        x, y = (finite(cells[c], path, kind, line, c) for c in ("x", "y"))
        key = (codes["network"], codes["station"]) if keyed_by_network else codes["station"]
        if key in positions:
            raise ValueError(f"{kind} {path}: line {line}, column 'station': station {_label(key)} is already "
                             f"on line {positions[key][2]}.")
        positions[key] = (x, y, line)
    if not positions:
        raise ValueError(f"station file {path} lists no stations; add one line 'station,x,y' per station.")
    return positions, keyed_by_network


def _label(key) -> str:
    return ".".join(key) if isinstance(key, tuple) else key


def _expand(patterns: list[str]) -> list[str]:
    """The files the patterns name, each pattern's matches sorted, each file once."""
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise ValueError(f"trace file pattern {pattern!r} matches no file.")
        if not glob.has_magic(pattern) and Path(pattern).is_dir():
            raise ValueError(f"trace file {pattern} is a folder; name its files with a pattern such as "
                             f"'{Path(pattern) / '*'}'.")
        for m in matches:
            if Path(m).is_file() and m not in files:  # a pattern may also match sub-folders
                files.append(m)
    return files


def _read_segments(files: list[str], positions: dict, keyed_by_network: bool, stations: str,
                   location: str | None, every: int, origin: UTCDateTime) -> dict:
    """``{station key: ([segments of u], [segments of v])}``; a segment is one trace's kept samples."""
    segments: dict = {}
    locations = set()
    for path in files:
        try:
            with warnings.catch_warnings():  # the rounding it announces is undone by _sample_interval
                warnings.filterwarnings("ignore", message="Sample spacing read from SAC file")
                stream = obspy.read(glob.escape(path))  # escaped: obspy.read globs its argument again
        except Exception as err:  # ObsPy raises many types for foreign or damaged files
            raise ValueError(f"trace file {path} is not readable by obspy.read ({type(err).__name__}: {err}).") from err
        for tr in stream:
            s = tr.stats
            locations.add(s.location)
            if location is not None and s.location != location:
                continue
            orientation = s.channel[-1:]
            if orientation not in ORIENTATIONS:
                raise ValueError(f"trace {tr.id} in {path}: channel {s.channel!r} has orientation {orientation!r}; "
                                 "use E for x (u) and Z for y (v, up).")
            key = (s.network, s.station) if keyed_by_network else s.station
            if key not in positions:
                raise ValueError(f"trace {tr.id} in {path}: station {_label(key)} is not in the station file "
                                 f"{stations}.")
            if s.npts == 0:
                continue
            delta = _sample_interval(s)
            if not (math.isfinite(delta) and delta > 0):
                raise ValueError(f"trace {tr.id} in {path}: sample interval {delta} s is not a positive number.")
            data = np.asarray(np.ma.filled(tr.data, np.nan), dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(data))
            if len(bad):
                raise ValueError(f"trace {tr.id} in {path}: sample {bad[0]} (0-based) is {data[bad[0]]}, not a finite "
                                 "number.")
            start = float(s.starttime - origin)
            k = np.arange(0, s.npts, every)
            segments.setdefault(key, ([], []))[ORIENTATIONS.index(orientation)].append({
                "t": start + k * delta, "data": data[k], "delta": delta, "start": start,
                "end": start + (s.npts - 1) * delta, "id": tr.id, "file": path, "location": s.location,
            })
    if not segments:
        if location is not None:
            raise ValueError(f"no trace with location {location!r} in the trace files {files} (locations present: "
                             f"{sorted(locations)}); set data.observations.location to one of them or null.")
        raise ValueError(f"no trace in the trace files {files}.")
    for key, per_component in segments.items():
        for c, segs in enumerate(per_component):
            segs.sort(key=lambda seg: seg["start"])
            for a, b in zip(segs, segs[1:]):
                if b["start"] <= a["end"] + COINCIDENT * min(a["delta"], b["delta"]):
                    hint = (" or keep one location with data.observations.location" if a["location"] != b["location"]
                            else "")
                    raise ValueError(
                        f"trace {b['id']} in {b['file']} overlaps trace {a['id']} in {a['file']}: both record "
                        f"{COMPONENTS[c]} of station {_label(key)} at t = {b['start']:.9g} to "
                        f"{min(a['end'], b['end']):.9g} s; remove one{hint}."
                    )
    return segments


def _sample_interval(stats) -> float:
    """The trace's sample interval (s), as its file holds it."""
    delta = float(stats.delta)
    if getattr(stats, "_format", None) == "SAC" and "sac" in stats and "delta" in stats.sac:
        # ObsPy rounds a SAC file's delta to whole microseconds (1/256 s reads as 0.003906 s), which shifts the
        # k-th sample by k times the rounding; the header's single-precision value is ~1e-8 relative. ObsPy's
        # value stays when it agrees, as it is the exact one for round intervals (0.01 s, not 0.0099999998 s).
        header = float(stats.sac.delta)
        if abs(delta - header) > SINGLE_PRECISION * header:
            return header
    return delta


def _station_rows(x: float, y: float, per_component: tuple[list, list]) -> np.ndarray:
    """Rows ``(x, y, t, u, v)`` of one station, in time order: E and Z at coincident times share a row."""
    (tu, u, du), (tv, v, dv) = (_joined(segs) for segs in per_component)
    match = _coincident(tu, du, tv, dv)
    paired = match >= 0
    v_alone = np.ones(len(tv), dtype=bool)
    v_alone[match[paired]] = False
    rows = np.full((len(tu) + int(v_alone.sum()), 5), np.nan)
    rows[:, 0], rows[:, 1] = x, y
    n = len(tu)
    rows[:n, 2], rows[:n, 3] = tu, u
    rows[np.flatnonzero(paired), 4] = v[match[paired]]
    rows[n:, 2], rows[n:, 4] = tv[v_alone], v[v_alone]
    return rows[np.argsort(rows[:, 2], kind="stable")]


def _joined(segs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times, values and sample intervals of one component's segments, end to end (they are sorted and apart)."""
    if not segs:
        return np.empty(0), np.empty(0), np.empty(0)
    return (np.concatenate([seg["t"] for seg in segs]), np.concatenate([seg["data"] for seg in segs]),
            np.concatenate([np.full(len(seg["t"]), seg["delta"]) for seg in segs]))


def _coincident(tu: np.ndarray, du: np.ndarray, tv: np.ndarray, dv: np.ndarray) -> np.ndarray:
    """For every time of ``tu``, the index of the same instant in the sorted ``tv``, or -1 where there is none."""
    match = np.full(len(tu), -1)
    if not (len(tu) and len(tv)):
        return match
    hi = np.minimum(np.searchsorted(tv, tu), len(tv) - 1)
    lo = np.maximum(hi - 1, 0)
    j = np.where(np.abs(tv[lo] - tu) <= np.abs(tv[hi] - tu), lo, hi)  # the nearest v time
    ok = np.flatnonzero(np.abs(tv[j] - tu) <= COINCIDENT * np.minimum(du, dv[j]))
    ok = ok[np.unique(j[ok], return_index=True)[1]]  # a v sample joins one row only
    match[ok] = j[ok]
    return match
