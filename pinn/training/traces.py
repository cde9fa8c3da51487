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

from pathlib import Path

import torch
from obspy import UTCDateTime
from torch import Tensor

from pinn.io.seed_codes import TIME_ZERO
from pinn.io.trace_files import read_traces
from pinn.problems.closed_form import Problem
from pinn.training.observations import QUANTITIES, Observations

# of the time window: miniSEED and SAC keep the sample rate in single precision, so the last sample of a
# recording that ends exactly at t1 reads back up to ~1e-7 relative late; it still belongs to the window
WINDOW_TOLERANCE = 1e-6


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
            origin = TIME_ZERO
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

        samples, self.receivers = read_traces([str(p) for p in patterns], self.stations, location, every, origin)
        self.samples = torch.from_numpy(samples).double()  # (M, 5)

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
