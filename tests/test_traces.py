"""Trace observations: the miniSEED and SAC files this project writes read back as the arrays written, E and Z
joined by time, the problem's time window, and every malformed input refused with the file and the place."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from obspy import Stream, Trace, UTCDateTime

from pinn.io.seismograms import write_seismograms
from pinn.problems.domain import Domain
from pinn.training.traces import TraceObservations

NAMES = ["S01", "S02", "ST3"]
POSITIONS = np.array([[20.0, 290.0], [150.0, 290.0], [150.0, 200.0]])
T = np.linspace(0.1, 0.6, 51)  # 100 samples per second: channels HXE and HXZ
DOMAIN = Domain(x=(0.0, 300.0), y=(0.0, 300.0), t=(0.0, 1.0))


def problem(**bounds) -> SimpleNamespace:
    return SimpleNamespace(domain=Domain(**{"x": DOMAIN.x, "y": DOMAIN.y, "t": DOMAIN.t, **bounds}))


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("traces")
    rng = np.random.default_rng(0)
    pinn, reference = rng.normal(0, 1e-3, (3, T.size, 2)), rng.normal(0, 1e-3, (3, T.size, 2))
    write_seismograms(out, NAMES, POSITIONS, T, pinn, reference, network="XY")
    # columns out of order, an extra column, and a station without traces: all allowed
    rows = [f"{y},XY,note {i},{n},{x}" for i, (n, (x, y)) in enumerate(zip(NAMES, POSITIONS))]
    (out / "stations.csv").write_text("y,network,remark,station,x\n" + "\n".join(rows + ["7,XY,spare,S99,8"]) + "\n")
    (out / "plain.csv").write_text("station,x,y\n" + "".join(f"{n},{x},{y}\n" for n, (x, y) in zip(NAMES, POSITIONS)))
    return SimpleNamespace(out=out, pinn=pinn, reference=reference, mseed=str(out / "seismograms.mseed"),
                           sac=str(out / "seismograms.sac" / "*.sac"), stations=str(out / "stations.csv"),
                           plain=str(out / "plain.csv"))


def expected(arrays: np.ndarray, t: np.ndarray = T) -> np.ndarray:
    """``(R * T, 5)`` rows station by station (station file order), time increasing."""
    r, n = arrays.shape[:2]
    return np.concatenate([np.column_stack([np.full(n, POSITIONS[i, 0]), np.full(n, POSITIONS[i, 1]), t,
                                            arrays[i, :, 0], arrays[i, :, 1]]) for i in range(r)])


def check(samples: torch.Tensor, want: np.ndarray) -> None:
    assert samples.dtype == torch.float64 and samples.shape == want.shape
    got = samples.numpy()
    np.testing.assert_array_equal(got[:, :2], want[:, :2])
    np.testing.assert_allclose(got[:, 2], want[:, 2], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(got[:, 3:], want[:, 3:])


def write_traces(path: Path, *specs, fmt: str = "MSEED") -> str:
    """One file of traces, each ``(NET.STA.LOC.CHA, start s after 1970, delta, data)``."""
    traces = []
    for seed_id, start, delta, data in specs:
        net, sta, loc, cha = seed_id.split(".")
        header = {"network": net, "station": sta, "location": loc, "channel": cha, "delta": delta,
                  "starttime": UTCDateTime(0) + start}
        traces.append(Trace(np.asarray(data), header=header))
    Stream(traces).write(str(path), format=fmt)
    return str(path)


def stations_file(path: Path, text: str = "station,x,y\nS01,10,20\n") -> str:
    path.write_text(text)
    return str(path)


# ---- reading back what pinn writes ---------------------------------------------------------------------------
@pytest.mark.parametrize("location, source", [("PN", "pinn"), ("RF", "reference")])
def test_mseed_reads_back_the_arrays_written(written, location, source):
    obs = TraceObservations(written.mseed, written.stations, location=location)
    check(obs.samples, expected(getattr(written, source)))  # FLOAT64 miniSEED: bit for bit
    assert obs.receivers == {f"XY.{n}": tuple(p) for n, p in zip(NAMES, POSITIONS)}


@pytest.mark.parametrize("location, source", [("PN", "pinn"), ("RF", "reference")])
def test_sac_folder_reads_back_the_arrays_in_single_precision(written, location, source):
    obs = TraceObservations(written.sac, written.plain, location=location)
    arrays = getattr(written, source)
    check(obs.samples, expected(arrays.astype(np.float32).astype(np.float64)))  # SAC stores float32 samples
    assert not np.array_equal(obs.samples[:, 3:].numpy(), expected(arrays)[:, 3:])


def test_a_list_of_patterns_reads_each_file_once(written):
    sac = Path(written.sac).parent
    # the second pattern repeats the Z files of the first: read twice they would overlap themselves
    obs = TraceObservations([str(sac / "*HXE.sac"), str(sac / "*.sac")], written.stations, location="PN")
    check(obs.samples, expected(written.pinn.astype(np.float32).astype(np.float64)))


def test_every_keeps_every_kth_sample(written):
    obs = TraceObservations(written.mseed, written.stations, every=4, location="RF")
    check(obs.samples, expected(written.reference[:, ::4], T[::4]))


def test_single_component_traces_leave_the_other_column_nan(written):
    obs = TraceObservations(str(Path(written.sac).parent / "*HXZ.sac"), written.stations, location="PN")
    want = expected(written.pinn.astype(np.float32).astype(np.float64))
    assert obs.samples[:, 3].isnan().all()
    np.testing.assert_array_equal(obs.samples[:, [0, 1, 4]].numpy(), want[:, [0, 1, 4]])


def test_time_zero_sets_the_problems_t_zero(tmp_path):
    start = UTCDateTime("2024-03-01T12:00:00")
    data = np.arange(30, dtype=np.int32) - 7  # counts, as a digitiser records them
    path = tmp_path / "day.mseed"
    Stream([Trace(data, header={"network": "XX", "station": "S01", "channel": "HHZ", "delta": 0.02,
                                "starttime": start + 1.5})]).write(str(path), format="MSEED")
    stations = stations_file(tmp_path / "s.csv")
    obs = TraceObservations(str(path), stations, time_zero="2024-03-01T12:00:00")
    np.testing.assert_allclose(obs.samples[:, 2].numpy(), 1.5 + 0.02 * np.arange(30), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(obs.samples[:, 4].numpy(), data.astype(np.float64))
    unset = TraceObservations(str(path), stations)
    assert unset.samples[0, 2].item() == pytest.approx(start.timestamp + 1.5, abs=1e-6)
    later = TraceObservations(str(path), stations, time_zero="2024-03-01T12:00:01")
    np.testing.assert_allclose(later.samples[:, 2].numpy(), 0.5 + 0.02 * np.arange(30), rtol=0, atol=1e-12)


def test_sac_sample_interval_is_not_rounded_to_microseconds(tmp_path):
    data = np.sin(np.arange(512) / 9.0)
    path = write_traces(tmp_path / "a.sac", ("XX.S01..HHE", 0.0, 1 / 256, data), fmt="SAC")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to announce: the header's interval is used as it is
        obs = TraceObservations(path, stations_file(tmp_path / "s.csv"))
    np.testing.assert_allclose(obs.samples[:, 2].numpy(), np.arange(512) / 256, rtol=0, atol=1e-12)


# ---- joining E and Z -----------------------------------------------------------------------------------------
def test_components_join_only_at_coincident_times(tmp_path):
    u, v = np.arange(10.0) + 100, np.arange(10.0) + 200
    path = write_traces(tmp_path / "a.mseed", ("XX.S01..HHE", 0.0, 0.01, u), ("XX.S01..HHZ", 0.05, 0.01, v))
    s = TraceObservations(path, stations_file(tmp_path / "s.csv")).samples.numpy()
    assert s.shape == (15, 5)  # 5 shared instants, 5 with u only, 5 with v only
    np.testing.assert_allclose(s[:, 2], 0.01 * np.arange(15), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(s[:10, 3], u)
    np.testing.assert_array_equal(s[5:, 4], v)
    assert np.isnan(s[10:, 3]).all() and np.isnan(s[:5, 4]).all()
    assert (s[:, :2] == [10.0, 20.0]).all()

    half = write_traces(tmp_path / "b.mseed", ("XX.S01..HHE", 0.0, 0.01, u), ("XX.S01..HHZ", 0.005, 0.01, v))
    s = TraceObservations(half, stations_file(tmp_path / "s.csv")).samples.numpy()
    assert s.shape == (20, 5)  # half a sample apart: no row holds both
    assert (np.isnan(s[:, 3]) != np.isnan(s[:, 4])).all()
    np.testing.assert_array_equal(s[0::2, 3], u)
    np.testing.assert_array_equal(s[1::2, 4], v)


def test_traces_with_a_gap_join_and_overlapping_traces_are_refused(tmp_path):
    stations = stations_file(tmp_path / "s.csv")
    a = write_traces(tmp_path / "a.mseed", ("XX.S01..HHE", 0.0, 0.01, np.arange(10.0)))
    b = write_traces(tmp_path / "b.mseed", ("XX.S01..HHE", 0.2, 0.01, np.arange(10.0) + 10))
    s = TraceObservations([b, a], stations).samples.numpy()
    np.testing.assert_allclose(s[:, 2], np.r_[0.01 * np.arange(10), 0.2 + 0.01 * np.arange(10)], atol=1e-12)
    np.testing.assert_array_equal(s[:, 3], np.arange(20.0))
    c = write_traces(tmp_path / "c.mseed", ("XX.S01..HHE", 0.09, 0.01, np.arange(5.0)))  # shares a's last instant
    with pytest.raises(ValueError, match=r"XX\.S01\.\.HHE in .*c\.mseed overlaps trace XX\.S01\.\.HHE in .*a\.mseed"):
        TraceObservations([a, b, c], stations)


def test_both_sources_without_a_location_overlap(written):
    with pytest.raises(ValueError, match=r"seismograms\.mseed.*station XY\.S01.*data\.observations\.location"):
        TraceObservations(written.mseed, written.stations)


# ---- the problem's window --------------------------------------------------------------------------------------
def test_load_keeps_the_samples_in_the_time_window(written):
    obs = TraceObservations(written.mseed, written.stations, location="PN")
    got = obs.load(problem(t=(0.2, 0.4)))
    keep = slice(10, 31)  # T[10] = 0.2 to T[30] = 0.4, both ends in
    check(got, expected(written.pinn[:, keep], T[keep]))
    got[:, 3] = 0.0
    assert obs.samples[:, 3].abs().min() > 0  # load hands out a copy
    check(obs.load(problem()), expected(written.pinn))


def test_load_keeps_a_last_sample_late_by_rounding(tmp_path):
    path = write_traces(tmp_path / "a.mseed", ("XX.S01..HHZ", 0.1, 0.1, np.array([1.0, 2.0, 3.0])))
    obs = TraceObservations(path, stations_file(tmp_path / "s.csv"))
    assert obs.samples[-1, 2].item() > 0.3  # 0.1 + 2 * 0.1 = 0.30000000000000004
    got = obs.load(problem(t=(0.0, 0.3)))
    assert got[:, 4].tolist() == [1.0, 2.0, 3.0] and got[-1, 2].item() == 0.3


def test_load_refuses_a_window_without_samples(written):
    obs = TraceObservations(written.mseed, written.stations, location="PN")
    with pytest.raises(ValueError, match=r"span t = 0\.1 to 0\.6 s .* time window t=\[5\.0, 6\.0\]"):
        obs.load(problem(t=(5.0, 6.0)))


def test_load_refuses_a_station_outside_the_domain(written):
    obs = TraceObservations(written.mseed, written.stations, location="PN")
    with pytest.raises(ValueError, match=r"station XY\.S02 at \(x, y\) = \(150\.0, 290\.0\) m .*stations\.csv.*"
                                         r"x=\[0\.0, 100\.0\]"):
        obs.load(problem(x=(0.0, 100.0)))
    with pytest.raises(ValueError, match=r"station XY\.ST3 .* y=\[250\.0, 300\.0\]"):
        obs.load(problem(y=(250.0, 300.0)))


# ---- configuration --------------------------------------------------------------------------------------------
def test_init_args_are_plain_data_and_rebuild_the_same_samples(written):
    obs = TraceObservations([written.mseed], written.stations, quantity="velocity", every=2, location="RF",
                            time_zero="1970-01-01T00:00:00.05")
    args = obs.init_args()
    assert yaml.safe_load(yaml.safe_dump(args)) == args == {
        "traces": [written.mseed], "stations": written.stations, "quantity": "velocity", "every": 2,
        "location": "RF", "time_zero": "1970-01-01T00:00:00.05"}
    assert obs.config()["class_path"] == "pinn.training.traces.TraceObservations"
    assert obs.quantity == "velocity" and TraceObservations.knows_truth is False
    assert torch.equal(TraceObservations(**args).samples, obs.samples)
    np.testing.assert_allclose(obs.samples[:26, 2].numpy(), T[::2] - 0.05, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    ({"quantity": "strain"}, "data.observations.quantity='strain'"),
    ({"every": 0}, "data.observations.every=0"),
    ({"every": 1.5}, "data.observations.every=1.5"),
    ({"every": True}, "data.observations.every=True"),
    ({"time_zero": "yesterday-ish"}, "data.observations.time_zero='yesterday-ish'"),
    ({"traces": []}, "data.observations.traces=[]"),
])
def test_arguments_are_checked(written, kwargs, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")):
        TraceObservations(**{"traces": written.mseed, "stations": written.stations, "location": "PN", **kwargs})


# ---- malformed files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("station,x,y\n", "lists no stations"),
    ("station,x\nS01,1\n", "missing column 'y'"),
    ("name,x,y\nS01,1,2\n", "missing column 'station'"),
    ("station,x,y\nS01,abc,2\n", "line 2, column 'x': 'abc' is not a finite number."),
    ("station,x,y\nS01,1,2\n\nS02,3,inf\n", "line 4, column 'y': 'inf' is not a finite number."),
    ("station,x,y\nS01,1,2\nS02,3\n", "line 3 has 2 fields, the header has 3."),
    ("station,x,y\nS01,1,2\n,,\n", "line 3 has no values"),
    ("station,x,y\n,1,2\n", "line 2, column 'station' is empty."),
    ("station,x,y\nS01,1,2\nS02,3,4\nS01,5,6\n", "line 4, column 'station': station S01 is already on line 2."),
    ("network,station,x,y\nXX,S01,1,2\nXY,S01,3,4\nXX,S01,5,6\n", "line 4, column 'station': station XX.S01 is "
                                                                   "already on line 2."),
])
def test_malformed_station_files_name_the_line_and_column(written, tmp_path, text, message):
    path = stations_file(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError) as err:
        TraceObservations(written.mseed, path, location="PN")
    assert str(err.value).startswith(f"station file {path}") and message in str(err.value)


def test_a_missing_station_file_is_named(written, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        TraceObservations(written.mseed, str(tmp_path / "nowhere.csv"))


def test_a_station_not_in_the_file_names_the_trace_and_files(written, tmp_path):
    path = stations_file(tmp_path / "two.csv", "station,x,y\nS01,20,290\nS02,150,290\n")
    with pytest.raises(ValueError, match=r"trace XY\.ST3\.PN\.HXE in .*seismograms\.mseed: station ST3 is not in "
                                         r"the station file .*two\.csv"):
        TraceObservations(written.mseed, path, location="PN")
    other_network = stations_file(tmp_path / "net.csv", "network,station,x,y\nXX,S01,20,290\n")
    with pytest.raises(ValueError, match=r"trace XY\.S01\.RF\.HXE .*station XY\.S01 is not in the station file"):
        TraceObservations(written.mseed, other_network, location="RF")


def test_an_unknown_orientation_is_refused(tmp_path):
    path = write_traces(tmp_path / "n.mseed", ("XX.S01..HHN", 0.0, 0.01, np.zeros(5)))
    with pytest.raises(ValueError, match=r"trace XX\.S01\.\.HHN in .*n\.mseed: channel 'HHN' has orientation 'N'; "
                                         r"use E for x \(u\) and Z for y \(v, up\)\."):
        TraceObservations(path, stations_file(tmp_path / "s.csv"))


def test_a_non_finite_sample_is_refused(tmp_path):
    path = write_traces(tmp_path / "nan.mseed", ("XX.S01..HHZ", 0.0, 0.01, np.array([0.0, 1.0, np.nan, 2.0])))
    with pytest.raises(ValueError, match=r"trace XX\.S01\.\.HHZ in .*nan\.mseed: sample 2 \(0-based\) is nan"):
        TraceObservations(path, stations_file(tmp_path / "s.csv"))


def test_no_trace_of_the_location_lists_those_present(written):
    with pytest.raises(ValueError, match=r"no trace with location 'XX' in .*seismograms\.mseed.*\['PN', 'RF'\]"):
        TraceObservations(written.mseed, written.stations, location="XX")


def test_unmatched_patterns_and_unreadable_files_are_named(written, tmp_path):
    with pytest.raises(ValueError, match=r"pattern '.*nowhere/\*\.mseed' matches no file"):
        TraceObservations(str(tmp_path / "nowhere" / "*.mseed"), written.stations)
    with pytest.raises(ValueError, match=r"pattern '.*gone\.mseed' matches no file"):
        TraceObservations([written.mseed, str(tmp_path / "gone.mseed")], written.stations)
    (tmp_path / "junk.mseed").write_text("time,u\n0,1\n")
    with pytest.raises(ValueError, match=r"trace file .*junk\.mseed is not readable by obspy\.read"):
        TraceObservations(str(tmp_path / "junk.mseed"), written.stations)
    (tmp_path / "empty.sac").write_bytes(b"")
    with pytest.raises(ValueError, match=r"trace file .*empty\.sac is not readable"):
        TraceObservations(str(tmp_path / "*.sac"), written.stations)
    with pytest.raises(ValueError, match=r"seismograms\.sac is a folder"):
        TraceObservations(str(Path(written.sac).parent), written.stations)
