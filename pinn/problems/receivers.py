"""Receivers: points of the domain where the displacement is recorded as seismograms.

Built from the problem's ``receivers:`` section, e.g.::

    receivers:
      line: {start: [20.0, 290.0], end: [280.0, 290.0], count: 14}   # evenly spaced, ends included
      positions: [[150.0, 200.0]]                                       # and/or single points
      names: null      # default R001, R002, ... (line first, then positions)
      network: XX      # SEED network code
      samples: 501     # samples per trace, evenly spaced over the domain's time window, ends included

Positions are in metres, ``x`` to the right and ``y`` up; receivers are ordered line first, then ``positions``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SEED_CODE = re.compile(r"[A-Za-z0-9]+")
STATION_CHARS = 5  # SEED station codes are at most 5 characters
NETWORK_CHARS = 2  # SEED network codes are 1 or 2 characters


def _point(value, key: str) -> tuple[float, float]:
    """``value`` as an ``(x, y)`` pair of finite floats, or a ValueError naming ``key``."""
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r} must be a point [x, y] in metres.") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{key}={[x, y]} must be finite numbers [x, y] in metres.")
    return (x, y)


@dataclass(frozen=True)
class ReceiverLine:
    """``count`` receivers evenly spaced on the segment from ``start`` to ``end``, both ends included.

    Args:
        start: ``[x, y]`` of the first receiver (m).
        end: ``[x, y]`` of the last receiver (m).
        count: Number of receivers, at least 1; a single receiver sits at ``start``.
    """

    start: tuple[float, float] = (0.0, 0.0)
    end: tuple[float, float] = (1.0, 0.0)
    count: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _point(self.start, "receivers.line.start"))
        object.__setattr__(self, "end", _point(self.end, "receivers.line.end"))
        if isinstance(self.count, bool) or int(self.count) != self.count or self.count < 1:
            raise ValueError(f"receivers.line.count={self.count!r} must be an integer >= 1.")
        object.__setattr__(self, "count", int(self.count))

    def positions(self) -> np.ndarray:
        """``(count, 2)`` float64 positions, start first."""
        a = np.linspace(0.0, 1.0, self.count)[:, None]  # (count, 1); [0.0] when count == 1
        return (1 - a) * np.asarray(self.start) + a * np.asarray(self.end)


class Receivers:
    """Where and how the displacement is recorded as seismograms (traces of ``u`` and ``v`` against time).

    Args:
        line: Receivers evenly spaced on a segment, ends included (``start``, ``end``, ``count``); listed first.
        positions: Single receivers ``[[x, y], ...]`` in metres, listed after the line.
        names: Station codes, one per receiver in order (line first, then positions): up to 5 letters or digits,
            unique. Default ``R001``, ``R002``, ...
        network: SEED network code of every trace: 1 or 2 letters or digits (``XX`` is the code for
            temporary or experimental networks).
        samples: Samples per trace, evenly spaced over the domain's time window ``t`` with both ends included,
            so the sample interval is ``(t1 - t0) / (samples - 1)``; at least 2.
    """

    def __init__(
        self,
        line: ReceiverLine | None = None,
        positions: list[tuple[float, float]] | None = None,
        names: list[str] | None = None,
        network: str = "XX",
        samples: int = 501,
    ) -> None:
        self.line = line
        self.positions = [_point(p, f"receivers.positions[{i}]") for i, p in enumerate(positions or [])]
        self._keys = [f"receivers.line (receiver {i + 1} of {line.count})" for i in range(line.count)] if line else []
        self._keys += [f"receivers.positions[{i}]" for i in range(len(self.positions))]
        if not self._keys:
            raise ValueError("receivers has no receivers: give receivers.line {start, end, count} and/or "
                             "receivers.positions [[x, y], ...], or drop the receivers section.")
        self.names = self._resolve_names(names)
        if not (isinstance(network, str) and SEED_CODE.fullmatch(network) and len(network) <= NETWORK_CHARS):
            raise ValueError(f"receivers.network={network!r} must be a SEED network code: 1 or 2 letters or digits, "
                             "e.g. XX.")
        self.network = network
        if isinstance(samples, bool) or int(samples) != samples or samples < 2:
            raise ValueError(f"receivers.samples={samples!r} must be an integer >= 2 (samples per trace).")
        self.samples = int(samples)

    def _resolve_names(self, names: list[str] | None) -> list[str]:
        """The given station codes, validated, or ``R001``, ``R002``, ... one per receiver."""
        count = len(self._keys)
        if names is None:
            if count > 9999:  # R + 4 digits is the longest default a 5-character station code holds
                raise ValueError(f"receivers has {count} receivers, more than the 9999 default names R0001...R9999 "
                                 "cover; give receivers.names.")
            return [f"R{i + 1:03d}" for i in range(count)]
        names = list(names)
        if len(names) != count:
            raise ValueError(f"receivers.names has {len(names)} names for {count} receivers (line first, then "
                             "positions); give one name per receiver or null for R001, R002, ...")
        for i, name in enumerate(names):
            if not (isinstance(name, str) and SEED_CODE.fullmatch(name) and len(name) <= STATION_CHARS):
                raise ValueError(f"receivers.names[{i}]={name!r} must be a SEED station code: 1 to 5 letters or "
                                 "digits, e.g. R001.")
        if len(set(names)) != count:
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"receivers.names repeats {twice}; station names must be unique (they name the files).")
        return names

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return (f"Receivers(line={self.line!r}, positions={self.positions!r}, names={self.names!r}, "
                f"network={self.network!r}, samples={self.samples})")

    def positions_array(self) -> Tensor:
        """``(R, 2)`` float64 positions ``(x, y)`` in metres, line first, then ``positions``."""
        parts = [self.line.positions()] if self.line else []
        parts.append(np.asarray(self.positions, dtype=np.float64).reshape(-1, 2))
        return torch.from_numpy(np.concatenate(parts, axis=0))

    def times(self, domain) -> Tensor:
        """``(T,)`` float64 sample times (s): ``samples`` evenly spaced over ``domain.t``, both ends included."""
        return torch.linspace(domain.t[0], domain.t[1], self.samples, dtype=torch.float64)

    def points(self, domain, dtype: torch.dtype = torch.float64) -> Tensor:
        """``(R * T, 3)`` points ``(x, y, t)``, receiver-major: a model's ``(R * T, 2)`` output reshapes to
        ``(R, T, 2)``."""
        xy, t = self.positions_array(), self.times(domain)  # (R, 2), (T,)
        r, n = xy.shape[0], t.shape[0]
        pts = torch.cat([xy[:, None, :].expand(r, n, 2), t[None, :, None].expand(r, n, 1)], dim=-1)  # (R, T, 3)
        return pts.reshape(-1, 3).to(dtype)

    def check(self, domain) -> None:
        """Raise a ValueError naming the first receiver outside ``domain``'s x/y box (its edges count as inside)."""
        (x0, x1), (y0, y1) = domain.x, domain.y
        for key, (x, y) in zip(self._keys, self.positions_array().tolist()):
            if not (x0 <= x <= x1 and y0 <= y <= y1):
                where = f"{key}={[x, y]}" if key.startswith("receivers.positions") else f"{key} at {[x, y]}"
                raise ValueError(f"{where} lies outside the domain x={[x0, x1]}, y={[y0, y1]}; move the "
                                 "receiver inside the domain or widen the problem's domain.")
