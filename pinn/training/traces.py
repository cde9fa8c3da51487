r"""Receiver recordings as observations for inverse problems: seismic traces plus a station file.

:class:`TraceObservations` reads traces in any format ObsPy's ``obspy.read`` reads (miniSEED, SAC, ...) and a
CSV of station positions, and turns them into samples ``(M, 5)``, columns ``(x, y, t, u, v)``, like the other
observation sources (see ``pinn.training.observations``).

Traces, named by their SEED codes ``NET.STA.LOC.CHA``:

- station: looked up by its code in the station file (by network and code when the file has a ``network``
  column), which gives the position ``(x, y)`` in metres.
- orientation, the last letter of the channel code: ``E`` is ``u`` (x, to the right), ``Z`` is ``v`` (y, up),
  as ``pinn.io.seismograms`` writes them. Other orientations are refused: rotate the traces first.
- location: ``location: PN`` (or ``RF``) keeps only the traces of that location code, e.g. the PINN's (or the
  reference's) traces from a ``seismograms.mseed`` that this project wrote; other locations are skipped.
- time: sample ``k`` of a trace is at ``t = (starttime - time_zero) + k * delta`` seconds, with ``time_zero``
  1970-01-01T00:00:00 unless given (the problem's ``t = 0`` as this project writes it).

The ``E`` and ``Z`` samples of a station at the same time share one row; a component without a sample at that
time (a single-component geophone, or components sampled at different times) is NaN in its column.
:meth:`TraceObservations.load` keeps the samples inside the problem's time window (recordings usually run
longer than a simulation) and checks that every station lies inside the domain.

Station file, a header naming at least ``station, x, y`` in any order (``network`` optional, other columns
ignored), one station per line::

    network,station,x,y,elevation_note
    XX,S01,20.0,290.0,surface
    XX,S02,150.0,290.0,surface
    XX,S03,150.0,200.0,borehole

In YAML::

    data:
      observations:
        class_path: pinn.training.traces.TraceObservations
        init_args: {traces: "recordings/*.mseed", stations: stations.csv, quantity: velocity}

A malformed or unreadable file raises a ``ValueError`` naming the file and the line, column or trace at fault,
when the object is built, so a bad file stops a run before anything is written.
"""

from __future__ import annotations

import csv
import glob
import math
import warnings
from pathlib import Path

import numpy as np
import obspy
import torch
from obspy import UTCDateTime
from torch import Tensor

from pinn.problems.closed_form import Problem
from pinn.training.observations import Observations

QUANTITIES = ("displacement", "velocity")
ORIENTATIONS = {"E": 0, "Z": 1}  # last letter of the channel code -> column of (u, v), as pinn.io.seismograms writes
COMPONENTS = ("u", "v")
STATION_COLUMNS = ("station", "x", "y")
COINCIDENT = 1e-9  # of a sample interval: E and Z samples this close are the same instant, float rounding aside
# of the time window: miniSEED and SAC keep the sample rate in single precision, so the last sample of a
# recording that ends exactly at t1 reads back up to ~1e-7 relative late; it still belongs to the window
WINDOW_TOLERANCE = 1e-6
SINGLE_PRECISION = 1.2e-7  # relative rounding of a float32 (2**-23)


class TraceObservations(Observations):
    """Observations read from seismic traces (miniSEED, SAC, anything ``obspy.read`` reads) and a station file.

    The files are read and checked when the object is built, so a malformed file stops a run before anything
    is written.

    Args:
        traces: A path or glob pattern, or a list of them; the matches of each pattern are read in sorted order.
        stations: CSV file with a header naming ``station, x, y`` (and optionally ``network``); x, y in metres.
        quantity: What the traces record: ``displacement`` (m) or ``velocity`` (m/s).
        every: Keep every ``every``-th sample of each trace (1 keeps all).
        location: Keep only traces with this SEED location code (``PN`` and ``RF`` for the PINN's and the
            reference's traces written by this project); None keeps all.
        time_zero: The date and time of the problem's ``t = 0`` (any string ``obspy.UTCDateTime`` reads, e.g.
            ``2024-03-01T12:00:00``); None for 1970-01-01T00:00:00.

    Attributes:
        samples: ``(M, 5)`` float64 rows ``(x, y, t, u, v)`` of every trace read, station by station in the
            station file's order, time increasing; NaN where a component has no sample.
        receivers: ``{"NET.STA" or "STA": (x, y)}`` of the stations that have traces.
    """

    knows_truth = False  # measured data: no exact solution to compare the inversion with

    def __init__(self, traces: str | list[str] = "traces/*.mseed", stations: str = "stations.csv",
                 quantity: str = "displacement", every: int = 1, location: str | None = None,
                 time_zero: str | None = None) -> None:
        if quantity not in QUANTITIES:
            raise ValueError(f"data.observations.quantity={quantity!r} must be one of {QUANTITIES}.")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"data.observations.every={every!r} must be an integer >= 1.")
        if location is not None and not isinstance(location, str):
            raise ValueError(f"data.observations.location={location!r} must be a SEED location code or null.")
        if time_zero is None:
            origin = UTCDateTime(0)
        else:
            try:
                origin = UTCDateTime(time_zero)
            except Exception as err:  # ObsPy raises several types for text it cannot parse
                raise ValueError(f"data.observations.time_zero={time_zero!r} is not a date and time ObsPy reads "
                                 "(e.g. '2024-03-01T12:00:00').") from err
        patterns = [traces] if isinstance(traces, (str, Path)) else list(traces)
        if not patterns or not all(isinstance(p, (str, Path)) for p in patterns):
            raise ValueError(f"data.observations.traces={traces!r} must be a path or glob pattern, or a non-empty "
                             "list of them.")
        self.traces = str(traces) if isinstance(traces, (str, Path)) else [str(p) for p in patterns]
        self.stations = str(stations)
        self.quantity, self.every, self.location = quantity, every, location
        # a YAML timestamp arrives as a datetime; keep plain text so init_args stays plain data
        self.time_zero = time_zero if time_zero is None or isinstance(time_zero, str) else str(origin)

        positions, keyed_by_network = read_stations(self.stations)
        files = _expand([str(p) for p in patterns])
        segments = _read_segments(files, positions, keyed_by_network, self.stations, location, every, origin)
        rows, self.receivers = [], {}
        for key, (x, y, _) in positions.items():  # the station file's order: the same samples for the same files
            if key in segments:
                rows.append(_station_rows(x, y, segments[key]))
                self.receivers[_label(key)] = (x, y)
        self.samples = torch.from_numpy(np.concatenate(rows)).double()  # (M, 5)

    def init_args(self) -> dict:
        traces = self.traces if isinstance(self.traces, str) else list(self.traces)
        return {"traces": traces, "stations": self.stations, "quantity": self.quantity, "every": self.every,
                "location": self.location, "time_zero": self.time_zero}

    def load(self, problem: Problem) -> Tensor:
        d = problem.domain
        for name, (x, y) in self.receivers.items():
            if not (d.x[0] <= x <= d.x[1] and d.y[0] <= y <= d.y[1]):
                raise ValueError(f"station {name} at (x, y) = ({x}, {y}) m (station file {self.stations}) lies "
                                 f"outside the problem's domain x={list(d.x)}, y={list(d.y)}; fix the station file or "
                                 "the domain.")
        obs = self.samples
        t0, t1 = d.t
        slack = WINDOW_TOLERANCE * (t1 - t0)
        keep = (obs[:, 2] >= t0 - slack) & (obs[:, 2] <= t1 + slack)
        if not keep.any():
            raise ValueError(f"the traces {self.traces} span t = {obs[:, 2].min().item():.9g} to "
                             f"{obs[:, 2].max().item():.9g} s (time zero {self.time_zero or '1970-01-01T00:00:00'}), "
                             f"which misses the problem's time window t={list(d.t)}; set data.observations.time_zero "
                             "or the domain's t.")
        obs = obs[keep].clone()
        obs[:, 2].clamp_(t0, t1)  # only the rounding slack moves: a sample of the window stays in the domain
        return obs


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
    # utf-8-sig: spreadsheet programs start CSV files with a byte-order mark that would otherwise glue onto the
    # first column's name
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, r) for r in reader if len(r) > 1 or (r and r[0].strip())]
    if not rows:
        raise ValueError(f"station file {path} is empty; it needs a header line 'station,x,y' and one station per "
                         "line.")
    header = [cell.strip() for cell in rows[0][1]]
    missing = [c for c in STATION_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"station file {path}: missing column {missing[0]!r} in the header {header}; the first "
                         "line must name the columns station, x, y (and optionally network).")
    keyed_by_network = "network" in header
    index = {c: header.index(c) for c in (*STATION_COLUMNS, "network") if c in header}
    positions: dict = {}
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            raise ValueError(f"station file {path}: line {line} has no values; fill in the station or delete it.")
        if len(row) != len(header):
            raise ValueError(f"station file {path}: line {line} has {len(row)} fields, the header has {len(header)}.")
        codes = {c: row[index[c]].strip() for c in ("network", "station") if c in index}
        for c, code in codes.items():
            if not code:
                raise ValueError(f"station file {path}: line {line}, column {c!r} is empty.")
        xy = []
        for c in ("x", "y"):
            cell = row[index[c]].strip()
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"station file {path}: line {line}, column {c!r}: {cell!r} is not a finite number.")
            xy.append(value)
        key = (codes["network"], codes["station"]) if keyed_by_network else codes["station"]
        if key in positions:
            raise ValueError(f"station file {path}: line {line}, column 'station': station {_label(key)} is already "
                             f"on line {positions[key][2]}.")
        positions[key] = (xy[0], xy[1], line)
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
            segments.setdefault(key, ([], []))[ORIENTATIONS[orientation]].append({
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
