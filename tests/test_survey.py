"""The survey of configs/inverse_layers.yaml is one a geophysicist would lay out, and its header says what the YAML
holds: the arrival times it states are recomputed here from the geometry (straight rays, Snell's law) for every
shot."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from pinn.physics.sources import PointForce
from pinn.problems import Domain

CONFIG = Path(__file__).resolve().parents[1] / "configs/inverse_layers.yaml"


@pytest.fixture(scope="module")
def survey():
    text = CONFIG.read_text()
    cfg = yaml.safe_load(text)
    p = cfg["data"]["problem"]["init_args"]
    sources = [shot["sources"][0]["init_args"] for shot in p["shots"]]
    source = sources[len(sources) // 2]  # the middle shot
    return {"sources": sources, "header": "\n".join(line for line in text.splitlines() if line.startswith("#")),
            "domain": Domain(**p["domain"]), "layers": p["medium"]["init_args"]["layers"],
            "interface": p["medium"]["init_args"]["interfaces"][0], "source": source,
            "f0": source["wavelet"]["init_args"]["f0"], "t0": source["wavelet"]["init_args"]["t0"],
            "line": p["receivers"]["line"], "boundaries": p["boundaries"], "n_times": cfg["data"]["observations"]
            ["init_args"]["n_times"]}


def travel_time(offset: float, source_y: float, interface: float, top: float, v_upper: float, v_lower: float) -> float:
    """First-arrival time from a source below the interface to a surface receiver ``offset`` away (Fermat)."""
    a = np.linspace(0.0, offset, 200001)  # where the ray crosses the interface, horizontally from the source
    return float((np.hypot(a, interface - source_y) / v_lower + np.hypot(offset - a, top - interface) / v_upper).min())


def test_the_survey_is_well_posed(survey):
    d, f0, (upper, lower) = survey["domain"], survey["f0"], survey["layers"]
    longest = max(upper["vp"], lower["vp"]) / f0
    assert d.x[1] - d.x[0] >= 2 * longest  # at least two dominant wavelengths wide
    depth_in_wavelengths = (d.y[1] - survey["interface"]) / (upper["vp"] / f0) + \
        (survey["interface"] - d.y[0]) / (lower["vp"] / f0)
    assert depth_in_wavelengths >= 2 - 1e-9  # and deep, along the vertical
    assert d.y[1] - survey["interface"] >= upper["vp"] / f0  # the upper layer at least one P wavelength thick
    assert len(survey["sources"]) >= 3  # several shots, one wavelet
    for spec in survey["sources"]:
        source = PointForce(spec["position"], width=spec["width"])
        assert max(source.weight_beyond(d).values()) < 1e-6  # well inside: nothing of the Gaussian crosses an edge
        assert spec["wavelet"] == survey["source"]["wavelet"] and spec["position"][1] == survey["source"]["position"][1]
    line = survey["line"]
    assert min(line["start"][0] - d.x[0], d.x[1] - line["end"][0]) >= min(upper["vs"], lower["vs"]) / f0 / 2
    assert (d.t[1] - d.t[0]) / (survey["n_times"] - 1) < 1 / (2 * 2.5 * f0)  # sampled above Nyquist at 2.5 f0


def test_the_header_states_the_arrival_times_of_the_yaml(survey):
    d, (upper, lower), line = survey["domain"], survey["layers"], survey["line"]
    y = survey["source"]["position"][1]
    farthest = lambda x: max(abs(line["start"][0] - x), abs(line["end"][0] - x))  # noqa: E731
    # above a source, the farthest geophone of the middle shot, the farthest of any shot
    offsets = (0.0, farthest(survey["source"]["position"][0]),
               max(farthest(s["position"][0]) for s in survey["sources"]))
    header = " ".join(survey["header"].replace("#", " ").split())
    for wave, speed in (("P", "vp"), ("S", "vs")):
        times = [travel_time(o, y, survey["interface"], d.y[1], upper[speed], lower[speed]) for o in offsets]
        sentence = re.search(rf"direct {wave}: ([\d.]+), ([\d.]+) and ([\d.]+) s after .*? at t = ([\d.]+), "
                             rf"([\d.]+) and ([\d.]+) s", header)
        assert sentence is not None, wave
        stated = [float(v) for v in sentence.groups()]
        assert stated == pytest.approx([*times, *(t + survey["t0"] for t in times)], abs=6e-4), wave
    xs = [f"{s['position'][0]:g}" for s in survey["sources"]]
    assert f"at x = {', '.join(xs[:-1])} and {xs[-1]} m" in header
    assert f"for {d.t[1]:g} s" in header and f"of {survey['f0']:g} Hz" in header
