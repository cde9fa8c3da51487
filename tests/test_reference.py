"""The Devito finite-difference reference against truth: plane waves (convergence), P waves reflecting off free and
fixed edges, a point force against its spectral free-space solution (absorbing layers), a fixed box, a snapshot
start; the cache file and interpolation. Run with ``pytest -s`` to see the measured errors."""

import cmath
import math

import numpy as np
import pytest
import torch

from pinn.physics.elasticity import Material
from pinn.physics.media import Homogeneous
from pinn.physics.sources import PointForce, Ricker
from pinn.problems import Boundaries, Domain, PlaneWaves, Wave, WaveProblem
from pinn.problems.reference import Reference, ReferenceSettings, load_or_solve, reference_path, solve

pytest.importorskip("devito")
pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: a second torch thread only adds contention

RHO, VP, VS = 2000.0, 2000.0, 1000.0
MATERIAL = Material(lam=RHO * (VP**2 - 2 * VS**2), mu=RHO * VS**2, rho=RHO)


def relative_error(ref: Reference, problem, n: int = -1) -> float:
    """Relative L2 error of the reference's displacement at output ``n`` against the closed form, over all nodes."""
    y, x = np.meshgrid(ref.y, ref.x, indexing="ij")
    xyt = torch.tensor(np.stack([x, y, np.full_like(x, ref.t[n])], -1).reshape(-1, 3))
    exact = problem.displacement(xyt).numpy().reshape(ref.displacement[n].shape)
    return float(np.linalg.norm(ref.displacement[n] - exact) / np.linalg.norm(exact))


def test_plane_waves_converge_at_second_order():
    """P and S plane waves from their exact state with exact edges: the error falls 4x per halving of h (and dt)."""
    k = 2 * math.pi / 50  # 50 m waves: 40 Hz P, 20 Hz S; vs / f_max = 25 m
    problem = PlaneWaves([Wave("P", 0.3, k), Wave("S", 1.2, k)], Domain((0.0, 100.0), (0.0, 80.0), (0.0, 0.05)),
                         MATERIAL)
    errors = []
    for ppw in (10.0, 20.0, 40.0):
        ref = solve(problem, ReferenceSettings(points_per_wavelength=ppw, output_times=3))
        errors.append(relative_error(ref, problem))
        print(f"plane waves: h = {ref.meta['spacing'][0]} m, dt = {ref.meta['dt']:.3g} s, error {errors[-1]:.3e}")
    y, x = np.meshgrid(ref.y, ref.x, indexing="ij")
    xyt = torch.tensor(np.stack([x, y, np.full_like(x, ref.t[-1])], -1).reshape(-1, 3))
    exact_v = problem.velocity(xyt).numpy().reshape(ref.velocity[-1].shape)
    error_v = np.linalg.norm(ref.velocity[-1] - exact_v) / np.linalg.norm(exact_v)
    print(f"plane waves: finest velocity error {error_v:.3e}")
    assert error_v < 1e-3  # measured 6.2e-4
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    print("plane waves: error ratios per halving", [f"{r:.2f}" for r in ratios])
    assert all(r > 3.5 for r in ratios)  # measured 4.05, 4.01
    assert errors[-1] < 6e-4  # measured 3.5e-4


def reflection(kind: str, incidence: float, k_p: float, y_top: float) -> list[Wave]:
    """A P wave hitting the edge y = y_top from below at ``incidence`` (rad from the normal), with its reflected P
    and converted S waves; amplitudes and phases from sigma_yy = sigma_xy = 0 (``free``, Aki & Richards 2002, 5.2)
    or u = 0 (``fixed``)."""
    k_s = k_p * VP / VS
    theta_s = -math.acos(k_p * math.sin(incidence) / k_s)  # Snell: same horizontal wavenumber, going down
    waves = [("P", math.pi / 2 - incidence, k_p), ("P", incidence - math.pi / 2, k_p), ("S", theta_s, k_s)]
    rows = []
    for wave, theta, k in waves:  # the two conditions on y = y_top for u = Im(C d exp(i(k.x - w t))), per unit C
        kx, ky = k * math.cos(theta), k * math.sin(theta)
        dx, dy = (math.cos(theta), math.sin(theta)) if wave == "P" else (-math.sin(theta), math.cos(theta))
        phase = cmath.exp(1j * ky * y_top)
        if kind == "free":
            rows.append((phase * (MATERIAL.lam * (kx * dx + ky * dy) + 2 * MATERIAL.mu * dy * ky),
                         phase * MATERIAL.mu * (dx * ky + dy * kx)))
        else:
            rows.append((phase * dx, phase * dy))
    a = np.array([[rows[1][0], rows[2][0]], [rows[1][1], rows[2][1]]])
    c = np.linalg.solve(a, -np.array([rows[0][0], rows[0][1]]))
    return [Wave(w, theta, k, abs(amp), cmath.phase(amp)) for (w, theta, k), amp in zip(waves, [1.0, *c])]


@pytest.mark.parametrize("kind, finest", [("free", 6e-3), ("fixed", 6e-3)])  # measured 3.6e-3, 3.7e-3
def test_reflection_off_an_edge_matches_closed_form(kind, finest):
    """A P wave at 30 degrees reflecting off a free or fixed top edge (P and converted S), exact on the other edges:
    the edge adds no error of lower order."""
    problem = PlaneWaves(reflection(kind, math.radians(30), 2 * math.pi / 50, 80.0),
                         Domain((0.0, 100.0), (0.0, 80.0), (0.0, 0.04)), MATERIAL)
    problem.boundaries = Boundaries("exact", "exact", kind, "exact")
    xyt = torch.tensor([[x, 80.0, 0.03] for x in np.linspace(0, 100, 7)], dtype=torch.float64)
    g, u = problem.gradient(xyt), problem.displacement(xyt)
    sigma_yy = MATERIAL.lam * (g[:, 0, 0] + g[:, 1, 1]) + 2 * MATERIAL.mu * g[:, 1, 1]
    sigma_xy = MATERIAL.mu * (g[:, 0, 1] + g[:, 1, 0])
    assert g.abs().max() > 0.01  # the closed form strains the edge, and meets the condition there:
    condition = max(sigma_yy.abs().max(), sigma_xy.abs().max()) / MATERIAL.mu if kind == "free" else u.abs().max()
    assert condition < 1e-9
    errors = []
    for ppw in (10.0, 20.0):
        ref = solve(problem, ReferenceSettings(points_per_wavelength=ppw, output_times=3))
        errors.append(relative_error(ref, problem))
        print(f"{kind} edge: h = {ref.meta['spacing'][0]} m, error {errors[-1]:.3e}")
    print(f"{kind} edge: error ratio per halving {errors[0] / errors[1]:.2f}")
    assert errors[0] / errors[1] > 3.5  # measured 4.19 (free), 3.93 (fixed)
    assert errors[-1] < finest


def point_force_problem(boundaries: Boundaries, cache_dir: str = "references") -> WaveProblem:
    """A vertical 25 Hz line force at x = 100 m in a homogeneous 200 m x 200 m box, 0.25 s, h = 2 m."""
    force = PointForce((100.0, 120.0), 1e6, (0.0, -1.0), 4.0, Ricker(25.0))
    return WaveProblem(Domain((0.0, 200.0), (0.0, 200.0), (0.0, 0.25)), Homogeneous(vp=VP, vs=VS, rho=RHO), [force],
                       boundaries, reference=ReferenceSettings(spacing=2.0, output_times=6, cache_dir=cache_dir))


def spectral_solution(problem: WaveProblem, ref: Reference) -> np.ndarray:
    """Displacement ``(nt, ny, nx, 2)`` of the problem's force in an unbounded homogeneous medium: per spatial Fourier
    mode k, P (along k) and S (across k) oscillators rho u'' + rho c^2 |k|^2 u = f_k w(t), started at rest, on a
    periodic box wide enough that nothing wraps around before the last time."""
    (source,), h = problem.sources, ref.x[1] - ref.x[0]
    margin = math.ceil(VP * ref.t[-1] / h) + 8
    n = len(ref.x) + 2 * margin
    axis = ref.x[0] + (np.arange(n) - margin) * h
    gy, gx = np.meshgrid(axis - ref.x[0] + ref.y[0], axis, indexing="ij")
    f = source.spatial(torch.tensor(np.stack([gx, gy], -1).reshape(-1, 2))).numpy().reshape(n, n, 2)
    f_hat = np.fft.fft2(f, axes=(0, 1))  # (n, n, 2), axes (ky, kx)
    ky, kx = np.meshgrid(*(2 * np.pi * np.fft.fftfreq(n, h),) * 2, indexing="ij")
    k = np.hypot(kx, ky)
    k_hat = np.stack([kx, ky], -1) / np.where(k > 0, k, 1.0)[..., None]
    k_perp = np.stack([-k_hat[..., 1], k_hat[..., 0]], -1)
    tau = np.linspace(0.0, ref.t[-1], 2001)
    w = source.wavelet(torch.tensor(tau)).numpy()
    out = []
    for t in ref.t:
        out.append(np.zeros((len(ref.y), len(ref.x), 2)))
        mask = tau <= t
        for c, direction in ((VP, k_hat), (VS, k_perp)):
            omega_table = np.linspace(0.0, 2 * np.pi * 8 * source.wavelet.f0, 4000)  # the Ricker has nothing above
            s = t - tau[mask]  # response sin(omega s) / omega of a unit impulse, s -> s at omega = 0
            kernel = np.sin(np.outer(omega_table, s)) / np.where(omega_table > 0, omega_table, 1.0)[:, None]
            kernel[0] = s
            integral = np.trapezoid(kernel * w[mask], tau[mask], axis=1) if mask.sum() > 1 else 0 * omega_table
            response = np.interp(c * k, omega_table, integral) / RHO  # (n, n)
            amplitude = (f_hat * direction).sum(-1) * response
            u = np.fft.ifft2(amplitude[..., None] * direction, axes=(0, 1)).real
            out[-1] += u[margin: margin + len(ref.y), margin: margin + len(ref.x)]
    return np.stack(out)


@pytest.fixture(scope="module")
def absorbing_box() -> tuple[WaveProblem, Reference]:
    problem = point_force_problem(Boundaries("absorbing", "absorbing", "absorbing", "absorbing"))
    return problem, solve(problem)


def test_point_force_matches_spectral_solution(absorbing_box):
    """Source injection, time alignment and the absorbing layers against the free-space solution: the waves leave
    the box without coming back."""
    problem, ref = absorbing_box
    truth = spectral_solution(problem, ref)
    peak = np.abs(truth).max()
    for n in range(1, len(ref.t)):
        error = np.linalg.norm(ref.displacement[n] - truth[n]) / np.linalg.norm(truth[n])
        worst = np.abs(ref.displacement[n] - truth[n]).max() / peak
        print(f"point force: t = {ref.t[n]:.2f} s, max |u| {np.abs(truth[n]).max() / peak:.3f} of the peak, "
              f"relative L2 error {error:.2e}, max error / peak {worst:.1e}")
        assert error < 0.02  # measured up to 7.0e-3
        assert worst < 5e-3  # measured up to 2.3e-3


def test_fixed_box_keeps_energy_symmetric_and_cached(absorbing_box, tmp_path):
    """The same force in a box with fixed sides and a free top: the waves stay (unlike the absorbing box), the
    solution is mirror-symmetric about the force's vertical line, and load_or_solve solves once then loads."""
    problem = point_force_problem(Boundaries("fixed", "fixed", "free", "fixed"), str(tmp_path))
    lines = []
    ref = load_or_solve(problem, log=lines.append)
    assert len(lines) == 1 and str(reference_path(problem)) in lines[0] and reference_path(problem).exists()
    print(lines[0])
    again = load_or_solve(problem, log=lines.append)
    assert len(lines) == 1 and np.array_equal(again.displacement, ref.displacement)
    late_fixed = np.sqrt((ref.displacement[-1] ** 2).mean())
    late_absorbing = np.sqrt((absorbing_box[1].displacement[-1] ** 2).mean())
    print(f"rms |u| at t = {ref.t[-1]} s: fixed/free box {late_fixed:.2e}, absorbing box {late_absorbing:.2e}")
    assert late_fixed > 30 * late_absorbing  # measured 160
    u = ref.displacement  # x = 100 m is the middle column: u_x odd, u_y even about it
    scale = np.abs(u).max()
    assert np.abs(u[..., 0]).max() > 0.1 * scale
    asym = max(np.abs(u[..., 0] + u[..., ::-1, 0]).max(), np.abs(u[..., 1] - u[..., ::-1, 1]).max()) / scale
    print(f"mirror asymmetry / peak: {asym:.1e}")
    assert asym < 1e-4


def test_snapshot_start_matches_a_run_from_rest():
    """initial: snapshot runs from rest at rest_time and hands over at t0: the same as a run from rest at t = 0."""
    force = PointForce((50.0, 50.0), 1e6, (0.6, -0.8), 5.0, Ricker(25.0))

    def problem(t0: float, initial: str, outputs: int) -> WaveProblem:
        return WaveProblem(Domain((0.0, 100.0), (0.0, 100.0), (t0, 0.1)), Homogeneous(vp=VP, vs=VS, rho=RHO), [force],
                           Boundaries("absorbing", "absorbing", "absorbing", "absorbing"), initial, 0.0,
                           reference=ReferenceSettings(spacing=4.0, absorbing_cells=10, output_times=outputs))

    full, late = solve(problem(0.0, "rest", 5)), solve(problem(0.05, "snapshot", 3))
    assert np.allclose(late.t, full.t[2:]) and late.meta["t_start"] == pytest.approx(0.0, abs=1e-12)
    scale = np.abs(full.displacement).max()
    gap = max(np.abs(late.displacement - full.displacement[2:]).max() / scale,
              np.abs(late.velocity - full.velocity[2:]).max() / np.abs(full.velocity).max())
    print(f"snapshot vs rest: max difference / peak {gap:.1e}")
    assert gap < 1e-5


def small_reference() -> Reference:
    x, y, t = np.linspace(0, 2, 3), np.linspace(-1, 1, 5), np.linspace(0, 0.5, 2)
    tt, yy, xx = np.meshgrid(t, y, x, indexing="ij")
    disp = np.stack([xx + 2 * yy + 3 * tt, xx * 0 - 1], -1)  # linear: trilinear interpolation is exact
    return Reference(x, y, t, disp, -disp, {"spacing": [1.0, 0.5], "note": "test"})


def test_interpolation_is_trilinear_and_refuses_outside_points():
    ref = small_reference()
    xyt = torch.tensor([[0.3, 0.7, 0.1], [2.0, -1.0, 0.5], [1.5, 0.2, 0.25]], dtype=torch.float64)
    expected = torch.stack([xyt[:, 0] + 2 * xyt[:, 1] + 3 * xyt[:, 2], -torch.ones(3, dtype=torch.float64)], -1)
    assert torch.allclose(ref.displacement_at(xyt), expected)
    assert torch.allclose(ref.velocity_at(xyt.float()), -expected.float())
    assert ref.velocity_at(xyt.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="outside"):
        ref.displacement_at(torch.tensor([[0.0, 0.0, 0.6]], dtype=torch.float64))


def test_save_load_round_trip_and_corrupt_files(tmp_path):
    ref = small_reference()
    path = tmp_path / "sub" / "r.npz"
    ref.save(path)
    back = Reference.load(path)
    for name in ("x", "y", "t", "displacement", "velocity"):
        assert np.array_equal(getattr(back, name), getattr(ref, name))
    assert back.meta == ref.meta and list(path.parent.iterdir()) == [path]  # no temporary file left
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match=rf"{path}.*pinn reference -c CONFIG"):
        Reference.load(path)
    np.savez(path, x=ref.x, y=ref.y, t=ref.t, displacement=ref.displacement[:, :2], velocity=ref.velocity,
             meta=np.array("{}"))
    with pytest.raises(ValueError, match=rf"{path}.*shape"):
        Reference.load(path)


@pytest.mark.parametrize("field, value, fragment", [
    ("spacing", -1.0, "reference.spacing"), ("space_order", 3, "reference.space_order"),
    ("courant", 0.6, "reference.courant"), ("output_times", 1, "reference.output_times"),
    ("absorbing_cells", 2, "reference.absorbing_cells"),
])
def test_settings_validation(field, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        ReferenceSettings(**{field: value})
