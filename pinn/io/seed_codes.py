"""The SEED codes and time of the traces this project writes (:mod:`pinn.io.seismograms`) and reads
(:mod:`pinn.io.trace_files`), in one place so that both keep the same convention.

SEED codes of each trace (``NET.STA.LOC.CHA``):

- network: ``network`` (default ``XX``); station: the receiver's name.
- location: ``PN`` for the PINN, ``RF`` for the reference, so one file holds both and they stay apart.
- channel: band + instrument + orientation. The band code follows the SEED table for broadband
  channels by sample rate (``C`` for 250 to 1000 Hz, ``H`` for 80 to 250 Hz, ``B`` for 10 to 80 Hz, ...,
  see :func:`band_code`): a synthetic has no corner period, and broadband is what it resembles. The instrument
  code is ``X``, FDSN's code for derived or generated channels. The orientation is ``E`` for ``u``
  (x, to the right, taken as east) and ``Z`` for ``v`` (y, up). So 500 samples per second give ``CXE`` and ``CXZ``.

Time: the problem's time zero maps to 1970-01-01T00:00:00 (``UTCDateTime(0)``), so a trace starts at
``UTCDateTime(0) + t[0]``.
"""

from __future__ import annotations

from obspy import UTCDateTime

TIME_ZERO = UTCDateTime(0)  # the problem's t = 0
COMPONENTS = ("u", "v")
ORIENTATIONS = ("E", "Z")  # SEED orientation codes of u (x, right) and v (y, up)
INSTRUMENT = "X"  # FDSN instrument code for derived or generated channels
LOCATIONS = {"pinn": "PN", "reference": "RF"}
# SEED broadband band codes: (lowest sample rate in Hz, code), highest first; slower than the last is Q.
BANDS = ((5000.0, "J"), (1000.0, "F"), (250.0, "C"), (80.0, "H"), (10.0, "B"), (1.0 + 1e-9, "M"),
         (0.1 + 1e-12, "L"), (0.01 + 1e-12, "V"), (0.001 + 1e-12, "U"), (1e-4, "R"), (1e-5, "P"), (1e-6, "T"))


def band_code(sampling_rate: float) -> str:
    """SEED band code of a broadband channel sampled at ``sampling_rate`` Hz."""
    return next((code for low, code in BANDS if sampling_rate >= low), "Q")


def channel_codes(sampling_rate: float) -> tuple[str, str]:
    """The channel codes of ``u`` and ``v`` at ``sampling_rate`` Hz, e.g. ``("CXE", "CXZ")`` at 500 Hz."""
    return tuple(band_code(sampling_rate) + INSTRUMENT + o for o in ORIENTATIONS)
