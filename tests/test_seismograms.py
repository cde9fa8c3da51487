"""Receivers and seismogram files: positions and names as configured, and every file format reads back the arrays
with the SEED codes, sample interval, start time and coordinates it was written with."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import obspy
import pytest
import torch
from PIL import Image

from pinn.io.seed_codes import band_code, channel_codes
from pinn.io.seismograms import write_seismograms
from pinn.problems.receivers import ReceiverLine, Receivers

DOMAIN = SimpleNamespace(x=(0.0, 300.0), y=(0.0, 300.0), t=(0.0, 0.5))
NAMES = ["R001", "R002", "ST3"]
POSITIONS = np.array([[20.0, 290.0], [150.0, 290.0], [150.0, 200.0]])
T = np.linspace(0.1, 0.6, 251)  # delta = 2 ms: 500 samples per second, channels CXE / CXZ


def traces(seed: int, r: int = 3) -> np.ndarray:
    """``(R, T, 2)`` smooth wavelets with distinct amplitudes, not representable in float32."""
    rng = np.random.default_rng(seed)
    amp, t0 = rng.uniform(1e-4, 1e-3, (r, 1, 2)), rng.uniform(0.2, 0.5, (r, 1, 2))
    return amp * np.exp(-(((T[None, :, None] - t0) / 0.03) ** 2)) * np.cos(40 * (T[None, :, None] - t0))


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[str], np.ndarray, np.ndarray]:
    out = tmp_path_factory.mktemp("seis") / "out"
    pinn, reference = traces(0), traces(1)
    files = write_seismograms(out, NAMES, POSITIONS, T, pinn, reference, network="XY")
    return out, files, pinn, reference


def check_stream(stream: obspy.Stream, pinn: np.ndarray, reference: np.ndarray) -> None:
    """Every (source, receiver, component) once, with the codes, timing and data written."""
    assert len(stream) == 2 * 3 * 2
    arrays = {"PN": pinn, "RF": reference}
    seen = set()
    for tr in stream:
        s = tr.stats
        i, c = NAMES.index(s.station), {"CXE": 0, "CXZ": 1}[s.channel]
        seen.add((s.location, s.station, s.channel))
        assert s.network == "XY"
        assert s.delta == pytest.approx(T[1] - T[0], rel=1e-6)
        assert abs(s.starttime - (obspy.UTCDateTime(0) + 0.1)) < 1e-6
        assert s.npts == T.size
        np.testing.assert_array_equal(tr.data, arrays[s.location][i, :, c])  # FLOAT64: bit for bit
    assert seen == {(loc, n, ch) for loc in ("PN", "RF") for n in NAMES for ch in ("CXE", "CXZ")}


def test_mseed_reads_back(written):
    out, files, pinn, reference = written
    assert files[:3] == ["seismograms.npz", "seismograms.png", "seismograms.mseed"]
    stream = obspy.read(str(out / "seismograms.mseed"))
    assert {tr.data.dtype for tr in stream} == {np.dtype(np.float64)}
    check_stream(stream, pinn, reference)


@pytest.mark.filterwarnings("ignore:Sample spacing read from SAC file")  # obspy rounds delta to microseconds
def test_sac_reads_back_with_coordinates(written):
    out, files, pinn, reference = written
    sac = sorted((out / "seismograms.sac").iterdir())
    assert sorted(f for f in files if f.startswith("seismograms.sac/")) == [f"seismograms.sac/{p.name}" for p in sac]
    assert "XY.ST3.RF.CXZ.sac" in {p.name for p in sac}
    stream = obspy.Stream([obspy.read(str(p), format="SAC")[0] for p in sac])
    for tr in stream:  # SAC stores float32
        tr.data = tr.data.astype(np.float64)
        i = NAMES.index(tr.stats.station)
        h = tr.stats.sac
        assert (h.user0, h.user1) == tuple(POSITIONS[i])
        assert h.idep == 6  # IDISP
        assert (h.cmpaz, h.cmpinc) == ((90.0, 90.0) if tr.stats.channel == "CXE" else (0.0, 0.0))
    f32 = {k: v.astype(np.float32).astype(np.float64) for k, v in (("p", pinn), ("r", reference))}
    check_stream(stream, f32["p"], f32["r"])


def test_npz_and_png(written):
    out, _, pinn, reference = written
    with np.load(out / "seismograms.npz") as z:  # no pickles: names are a unicode array
        assert z["names"].tolist() == NAMES and str(z["network"]) == "XY"
        np.testing.assert_array_equal(z["positions"], POSITIONS)
        np.testing.assert_array_equal(z["t"], T)
        np.testing.assert_array_equal(z["pinn"], pinn)
        np.testing.assert_array_equal(z["reference"], reference)
    img = np.asarray(Image.open(out / "seismograms.png").convert("RGB"))
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # lines, text and legend, not a blank canvas


def test_without_reference_and_record_section(tmp_path):
    names = [f"S{i:02d}" for i in range(20)]
    pinn = np.concatenate([traces(i) for i in range(7)])[:20]  # (20, T, 2)
    files = write_seismograms(tmp_path, names, np.zeros((20, 2)), T, pinn, None, dpi=50)
    stream = obspy.read(str(tmp_path / "seismograms.mseed"))
    assert len(stream) == 40 and {tr.stats.location for tr in stream} == {"PN"}
    assert len(files) == 3 + 40
    with np.load(tmp_path / "seismograms.npz") as z:
        assert "reference" not in z.files
    img = np.asarray(Image.open(tmp_path / "seismograms.png").convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20


def test_uneven_times_and_bad_shapes_refused(tmp_path):
    t = T.copy()
    t[100] += 0.3 * (T[1] - T[0])
    with pytest.raises(ValueError, match="evenly spaced"):
        write_seismograms(tmp_path, NAMES, POSITIONS, t, traces(0), None)
    assert not any(tmp_path.iterdir())  # nothing written before the check
    with pytest.raises(ValueError, match=r"reference has shape"):
        write_seismograms(tmp_path, NAMES, POSITIONS, T, traces(0), traces(0)[:, :-1])
    # float32 times of an even grid are accepted
    write_seismograms(tmp_path, NAMES, POSITIONS, T.astype(np.float32), traces(0), None)


def test_channel_codes():
    assert channel_codes(500.0) == ("CXE", "CXZ")
    assert [band_code(r) for r in (8000, 2000, 500, 100, 40, 5, 1, 0.1)] == list("JFCHBMLV")


def test_receiver_line_and_default_names():
    rec = Receivers(line=ReceiverLine((20.0, 290.0), (280.0, 290.0), 14), positions=[(150.0, 200.0)])
    xy = rec.positions_array()
    assert xy.dtype == torch.float64 and xy.shape == (15, 2)
    np.testing.assert_allclose(xy[:14, 0].numpy(), np.arange(14) * 20.0 + 20.0, rtol=0, atol=1e-12)
    assert xy[:14, 1].eq(290.0).all() and xy[14].tolist() == [150.0, 200.0]
    assert rec.names[:2] == ["R001", "R002"] and rec.names[-1] == "R015" and len(rec) == 15
    rec.check(SimpleNamespace(x=(20.0, 280.0), y=(0.0, 290.0), t=(0.0, 1.0)))  # edges count as inside
    t = rec.times(DOMAIN)
    assert t.shape == (501,) and t[0] == 0.0 and t[-1] == 0.5
    pts = rec.points(DOMAIN).reshape(15, 501, 3)
    assert pts[3, 7].tolist() == pytest.approx([80.0, 290.0, 0.007])
    single = Receivers(line=ReceiverLine((1.0, 2.0), (5.0, 6.0), 1), names=["A1"])
    assert single.positions_array().tolist() == [[1.0, 2.0]]


def test_receivers_from_yaml_config():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(Receivers, "receivers")
    cfg = parser.parse_string("receivers:\n  line: {start: [0, 10], end: [30, 10], count: 4}\n"
                              "  positions: [[5.0, 5.0]]\n  names: [A, B, C, D, E]\n  network: ZZ\n  samples: 11\n")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    rec = instantiate(cfg).receivers
    assert rec.positions_array()[:, 0].tolist() == [0.0, 10.0, 20.0, 30.0, 5.0]
    assert rec.names == list("ABCDE") and rec.network == "ZZ" and rec.samples == 11


@pytest.mark.parametrize("kwargs, match", [
    ({}, "no receivers"),
    ({"positions": [(1.0, 1.0)], "names": ["A", "B"]}, r"receivers\.names has 2 names for 1"),
    ({"positions": [(1.0, 1.0)], "names": ["TOOLONG"]}, r"receivers\.names\[0\]='TOOLONG'"),
    ({"positions": [(1.0, 1.0)], "names": ["R-1"]}, r"receivers\.names\[0\]"),
    ({"positions": [(1.0, 1.0), (2.0, 2.0)], "names": ["A", "A"]}, r"receivers\.names repeats \['A'\]"),
    ({"positions": [(1.0, 1.0)], "network": "XYZ"}, r"receivers\.network='XYZ'"),
    ({"positions": [(1.0, 1.0)], "samples": 1}, r"receivers\.samples=1"),
    ({"positions": [(1.0, float("nan"))]}, r"receivers\.positions\[0\]"),
])
def test_bad_receivers(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Receivers(**kwargs)


def test_bad_line_count():
    with pytest.raises(ValueError, match=r"receivers\.line\.count=0"):
        ReceiverLine((0.0, 0.0), (1.0, 0.0), 0)


def test_receiver_outside_domain():
    rec = Receivers(positions=[(1.0, 1.0), (2.0, 2.0), (400.0, 10.0)])
    with pytest.raises(ValueError, match=r"receivers\.positions\[2\]=\[400\.0, 10\.0\] lies outside .*widen"):
        rec.check(DOMAIN)
    line = Receivers(line=ReceiverLine((0.0, 100.0), (0.0, 400.0), 4))
    with pytest.raises(ValueError, match=r"receivers\.line \(receiver 4 of 4\) at \[0\.0, 400\.0\] lies outside"):
        line.check(DOMAIN)
