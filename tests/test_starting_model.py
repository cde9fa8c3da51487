"""The starting model of an inverse run from a file: a layer table and a gridded .npz read to known values, the same
trainable parameters as the same guess written in YAML, and one error naming the file for each malformed one."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from pinn.physics.inversion import FieldUnknowns, LayerUnknowns, TrainableField, TrainableLayers
from pinn.physics.starting_model import grid_start, read_layer_table
from pinn.physics.unknowns import Unknowns
from pinn.problems import Domain

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = Domain((0.0, 200.0), (0.0, 100.0), (0.0, 0.1))


def write(tmp_path: Path, text: str, name: str = "start.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---- layers ------------------------------------------------------------------------------------------------
def test_layer_table_with_a_header_in_any_order_comments_and_spaces(tmp_path):
    path = write(tmp_path, "# from the well log\nrho  VS vp\n1900 900 1600   # upper\n\n2100, 1350, 2400\n")
    assert read_layer_table(path, 2) == {"vp": [1600.0, 2400.0], "vs": [900.0, 1350.0], "rho": [1900.0, 2100.0]}


def test_layer_table_without_a_header_is_vp_vs_rho(tmp_path):
    path = write(tmp_path, "1600,900,1900\n2400,1350,2100\n3000,1700,2300\n")
    assert read_layer_table(path, 3) == {"vp": [1600.0, 2400.0, 3000.0], "vs": [900.0, 1350.0, 1700.0],
                                         "rho": [1900.0, 2100.0, 2300.0]}


@pytest.mark.parametrize("train", [("vp", "vs"), ("vs",), ("vp", "vs", "rho")])
def test_layers_from_a_file_equal_the_same_guess_in_yaml(tmp_path, train):
    path = write(tmp_path, "vp,vs,rho\n2000,1000,1900\n2200,1100,2100\n")
    yaml_spec = LayerUnknowns([50.0], [2000.0, 2200.0], [1000.0, 1100.0], [1900.0, 2100.0], train=list(train))
    file_spec = Unknowns(layers={"interfaces": [50.0], "path": path, "train": list(train)}).layers
    a, b = TrainableLayers(yaml_spec).state_dict(), TrainableLayers(file_spec).state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    # a run's hyper-parameters hold both the file and its values: they rebuild the same unknowns
    again = LayerUnknowns(**asdict(file_spec))
    assert (again.vp, again.vs, again.rho) == (file_spec.vp, file_spec.vs, file_spec.rho)


LAYER_ERRORS = {
    "wrong header": ("vp,vs,density\n2000,1000,1900\n2200,1100,2100\n", "line 1: the header names"),
    "a top column": ("top,vp,vs,rho\n100,2000,1000,1900\n50,2200,1100,2100\n", "interfaces stay in"),
    "one row short": ("vp,vs,rho\n2000,1000,1900\n", "1 layer rows, but model.unknowns.layers.interfaces gives 2"),
    "empty": ("# nothing yet\n", "0 layer rows"),
    "a short row": ("2000,1000,1900\n2200,1100\n", "line 2 has 2 values, expected 3"),
    "not a number": ("2000,1000,1900\n2200,1100,2.1e3x\n", "line 2, column rho: '2.1e3x' is not a finite number"),
    "nan": ("2000,1000,1900\n2200,nan,2100\n", "line 2, column vs: 'nan' is not a finite number > 0"),
    "inf": ("2000,1000,1900\n2200,1100,inf\n", "column rho: 'inf'"),
    "zero": ("2000,0,1900\n2200,1100,2100\n", "line 1, column vs: '0'"),
    "negative": ("vp,vs,rho\n2000,1000,1900\n-2200,1100,2100\n", "line 3, column vp: '-2200'"),
    "vs above vp": ("2000,1000,1900\n1100,2200,2100\n", "line 2: vs=2200 is not below vp=1100"),
}


@pytest.mark.parametrize("case", list(LAYER_ERRORS))
def test_each_malformed_layer_table_is_one_error_naming_the_file(tmp_path, case):
    text, expected = LAYER_ERRORS[case]
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        LayerUnknowns([50.0], path=path)
    assert str(err.value).startswith(f"model.unknowns.layers.path={path}: ") and expected in str(err.value)


def test_missing_layer_table_and_a_conflicting_guess(tmp_path):
    missing = str(tmp_path / "nowhere.csv")
    with pytest.raises(FileNotFoundError, match=f"model.unknowns.layers.path={missing}: no such file"):
        LayerUnknowns([50.0], path=missing)
    path = write(tmp_path, "2000,1000,1900\n2200,1100,2100\n")
    with pytest.raises(ValueError, match="sets vp and path=.*give the starting model one way"):
        LayerUnknowns([50.0], vp=[2000.0, 2500.0], path=path)


def test_cli_stops_on_a_malformed_table_with_exit_code_2_before_writing(tmp_path):
    path = write(tmp_path, "vp,vs,rho\n2000,1000,1900\n2000,2100,2100\n")
    run = subprocess.run([sys.executable, "-m", "pinn", "fit", "-c", str(ROOT / "configs/inverse_layers.yaml"),
                          "--model.unknowns.layers.path", path, "--trainer.logger.init_args.save_dir",
                          str(tmp_path / "logs")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == (f"pinn: error: model.unknowns.layers.path={path}: line 3: vs=2100 is not below "
                                  "vp=2000; every layer needs 0 < vs < vp (are the columns in the right order? name "
                                  "them in a header).")
    assert not (tmp_path / "logs").exists()


# ---- a gridded model ---------------------------------------------------------------------------------------
def moduli(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """lam, mu, rho linear in x and y: cubic convolution reproduces them exactly."""
    return {"lam": 4e9 + 1e7 * x - 2e7 * y, "mu": 2e9 + 5e6 * x + 1e7 * y, "rho": 1200.0 + 0.5 * x + y}


def write_grid(tmp_path: Path, x: np.ndarray, y: np.ndarray, override: dict | None = None) -> str:
    """The model of :func:`moduli` on the grid ``x``, ``y``, arrays in ``override`` replaced (None: left out)."""
    X, Y = np.meshgrid(x, y)  # (ny, nx)
    m = moduli(X, Y)
    arrays = {"x": x, "y": y, "vp": np.sqrt((m["lam"] + 2 * m["mu"]) / m["rho"]), "vs": np.sqrt(m["mu"] / m["rho"]),
              "rho": m["rho"]} | (override or {})
    path = tmp_path / "start.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


def test_gridded_start_is_sampled_at_the_nodes(tmp_path):
    # a 10 m grid off the nodes of the 6 x 5 unknowns (40 m x 25 m apart), wide enough for the 4 x 4 stencil of each
    path = write_grid(tmp_path, np.arange(-25.0, 216.0, 10.0), np.arange(-15.0, 116.0, 10.0))
    nodes = grid_start(path, [6, 5], DOMAIN)
    X, Y = np.meshgrid(np.linspace(0, 200, 6), np.linspace(0, 100, 5))
    for name, value in moduli(X, Y).items():
        np.testing.assert_allclose(nodes[name].numpy(), value, rtol=1e-12)
    spec = FieldUnknowns([6, 5], train=["mu"], path=path)
    field = TrainableField(spec, DOMAIN)
    xy = torch.tensor([[40.0, 25.0], [100.0, 60.0]], dtype=torch.float64)  # a node; between nodes: bilinear
    with torch.no_grad():
        v = field.double().at(xy)
    exact = moduli(xy[:, 0].numpy(), xy[:, 1].numpy())
    corners = [moduli(x, y)["mu"] for x in (80.0, 120.0) for y in (50.0, 75.0)]  # the cell around (100, 60)
    weights = [0.5 * 0.6, 0.5 * 0.4, 0.5 * 0.6, 0.5 * 0.4]
    between = np.exp(sum(w * np.log(c) for w, c in zip(weights, corners)))  # trained: exp of bilinear log mu
    np.testing.assert_allclose(v.mu.numpy(), [exact["mu"][0], between], rtol=1e-6)
    np.testing.assert_allclose(v.lam.numpy(), exact["lam"], rtol=1e-6)  # known: bilinear, exact for a linear map
    np.testing.assert_allclose(v.rho.numpy(), exact["rho"], rtol=1e-6)
    np.testing.assert_allclose(v.lam_x.numpy(), [1e7, 1e7], rtol=1e-6)
    np.testing.assert_allclose(v.lam_y.numpy(), [-2e7, -2e7], rtol=1e-6)


@pytest.mark.parametrize("train", [["mu"], ["mu", "lam"], ["mu", "lam", "rho"], ["rho"]])
def test_uniform_file_equals_the_same_start_in_yaml(tmp_path, train):
    x, y = np.linspace(0, 200, 5), np.linspace(0, 100, 4)
    ones = np.ones((4, 5))
    path = write_grid(tmp_path, x, y, {"vp": 2500.0 * ones, "vs": 1200.0 * ones, "rho": 1900.0 * ones})
    yaml_field = TrainableField(FieldUnknowns([7, 6], {"vp": 2500.0, "vs": 1200.0, "rho": 1900.0}, train), DOMAIN)
    file_field = TrainableField(Unknowns(field={"shape": [7, 6], "path": path, "train": train}).field, DOMAIN)
    a, b = dict(yaml_field.named_parameters()), dict(file_field.named_parameters())
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    xy = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([200.0, 100.0])
    for q in ("lam", "mu", "rho"):
        torch.testing.assert_close(getattr(file_field.at(xy), q), getattr(yaml_field.at(xy), q).expand(50),
                                   rtol=1e-6, atol=0)


X_AXIS, Y_AXIS = np.linspace(0, 200, 5), np.linspace(0, 100, 4)
GRID_ERRORS = {
    "missing array": ({"rho": None}, "missing arrays ['rho']"),
    "wrong shape": ({"vp": np.full((5, 4), 2500.0)}, "vp has shape (5, 4), expected (ny, nx) = (4, 5)"),
    "not finite": ({"vs": np.where(np.eye(4, 5) > 0, np.nan, 1200.0)}, "vs is not finite at (row, column) (0, 0)"),
    "vs above vp": ({"vs": np.full((4, 5), 3000.0), "vp": np.full((4, 5), 2500.0)}, "0 < vs < vp"),
    "negative rho": ({"rho": np.full((4, 5), -1.0)}, "rho must be > 0"),
    "uneven axis": ({"x": np.array([0.0, 10.0, 50.0, 100.0, 200.0])}, "x must be finite, increasing and evenly"),
    "too small": ({"x": np.linspace(0, 150, 5)}, "the grid covers x in [0, 150], y in [0, 100], not the domain"),
}


@pytest.mark.parametrize("case", list(GRID_ERRORS))
def test_each_malformed_grid_is_one_error_naming_the_file(tmp_path, case):
    override, expected = GRID_ERRORS[case]
    ones = np.ones((4, 5))
    base = {"vp": 2500.0 * ones, "vs": 1200.0 * ones, "rho": 1900.0 * ones}
    path = write_grid(tmp_path, X_AXIS, Y_AXIS, base | override)
    with pytest.raises(ValueError) as err:
        TrainableField(FieldUnknowns([4, 4], path=path), DOMAIN)
    assert str(err.value).startswith(f"model.unknowns.field.path={path}: ") and expected in str(err.value)


def test_missing_or_unreadable_grid_and_start_given_twice(tmp_path):
    missing = str(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError, match=f"model.unknowns.field.path={missing}: no such file"):
        TrainableField(FieldUnknowns([4, 4], path=missing), DOMAIN)
    junk = write(tmp_path, "vp,vs\n", "junk.npz")
    with pytest.raises(ValueError, match=f"model.unknowns.field.path={junk}: not a readable .npz"):
        TrainableField(FieldUnknowns([4, 4], path=junk), DOMAIN)
    with pytest.raises(ValueError, match="give the starting model one way.*not both"):
        FieldUnknowns([4, 4], {"vp": 2500.0, "vs": 1200.0, "rho": 1900.0}, path=junk)
    with pytest.raises(ValueError, match="not neither"):
        FieldUnknowns([4, 4])


def test_an_overshoot_at_a_sharp_contrast_is_named_with_its_node(tmp_path):
    # vs jumps tenfold between two grid columns: cubic convolution undershoots mu below 0 next to the jump
    x, y = np.linspace(0, 200, 11), np.linspace(0, 100, 4)
    vs = np.where(x < 100, 100.0, 1000.0)[None].repeat(4, 0)
    path = write_grid(tmp_path, x, y, {"vp": np.full((4, 11), 3000.0), "vs": vs, "rho": np.full((4, 11), 2000.0)})
    with pytest.raises(ValueError, match=r"not physical at node \(x, y\) = \(.*smooth the model"):
        grid_start(path, [21, 2], DOMAIN)  # nodes 10 m apart, a node 5 m off each grid column
