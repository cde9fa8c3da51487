"""Adaptive resampling: the data module's resample(), chunked and sharded residuals, the callback in a Trainer,
and the RAD overlay config through the CLI."""

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from pinn.problems.closed_form import Domain, PlaneWaves, Wave
from pinn.training.data import ElasticDataModule
from pinn.training.module import ElasticPINN
from pinn.training.resampling import ResidualResampling, chunked, sharded
from pinn.training.sampling import ResampleRule

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = Domain(x=(-1.0, 2.0), y=(0.0, 1.0), t=(0.0, 0.5))


def make_dm(n_interior=400, seed=0) -> ElasticDataModule:
    dm = ElasticDataModule(PlaneWaves([Wave()], domain=DOMAIN), n_interior=n_interior, n_boundary=32,
                           n_initial=32, seed=seed)
    dm.setup("fit")
    return dm


def slab_residual(xyt: torch.Tensor) -> torch.Tensor:
    """Synthetic residual: 5 on the slab x < -0.25 (a quarter of the domain's volume), 0 elsewhere."""
    return 5.0 * (xyt[:, 0] < -0.25).float()


# ---- ElasticDataModule.resample ----------------------------------------------------------------------------
def test_rad_resample_concentrates_on_the_high_residual_region():
    dm = make_dm()
    rule = ResampleRule("rad", n_candidates=40_000)
    fractions = []
    for _ in range(5):
        stats = dm.resample(rule, slab_residual)
        pool = dm.pools["interior"]
        assert pool.shape == (400, 3) and stats["moved"] == 400 and stats["pool_size"] == 400
        assert bool(((pool[:, 0] >= -1) & (pool[:, 0] <= 2) & (pool[:, 2] >= 0) & (pool[:, 2] <= 0.5)).all())
        fractions.append(float((pool[:, 0] < -0.25).float().mean()))
    # slab probability (1 + a) / 2 = 0.625 for a = 1/4 (uniform sampling: 0.25); 2000 draws, s.e. 0.011
    assert abs(sum(fractions) / 5 - 0.625) < 0.04
    assert dm.pool_version == 5


def test_rar_d_resample_grows_to_the_cap_keeping_old_points():
    dm = make_dm(n_interior=100)
    rule = ResampleRule("rar-d", n_candidates=5000, n_add=60)  # cap: 2 x 100
    first = dm.pools["interior"].clone()
    assert dm.resample(rule, slab_residual)["moved"] == 60
    assert dm.resample(rule, slab_residual)["pool_size"] == 200  # 100 + 60 + 40: stops at the cap
    pool = dm.pools["interior"]
    assert torch.equal(pool[:100], first)
    assert float((pool[100:, 0] < -0.25).float().mean()) > 0.45  # expected 0.625, uniform would be 0.25
    version, state = dm.pool_version, dm.generator.get_state()
    stats = dm.resample(rule, lambda xyt: pytest.fail("a full pool evaluates no residual"))
    assert stats == {"moved": 0, "pool_size": 200, "residual": None}
    assert dm.pool_version == version and torch.equal(dm.generator.get_state(), state)



def test_checkpoints_with_the_old_resampling_counters_still_load():
    dm = make_dm()
    dm.resample(ResampleRule("rad", n_candidates=2000), slab_residual)
    saved = dm.state_dict()
    assert set(saved) == {"pools", "generator", "pool_version"}
    other = make_dm(seed=99)
    other.load_state_dict({**saved, "resamples": 1, "points_moved": 400})  # as written before they were dropped
    assert other.pool_version == 1 and torch.equal(other.pools["interior"], dm.pools["interior"])

def test_resample_is_a_pure_function_of_the_saved_state():
    dm = make_dm()
    rule = ResampleRule("rad", n_candidates=2000)
    dm.resample(rule, slab_residual)
    saved = dm.state_dict()
    dm.resample(rule, slab_residual)
    after = {k: v.clone() for k, v in dm.pools.items()}
    other = make_dm(seed=99)  # a different seed: everything must come from the state
    other.load_state_dict(saved)
    other.resample(rule, slab_residual)
    for name, pool in after.items():
        assert torch.equal(other.pools[name], pool)
    assert other.pool_version == 2
    assert torch.equal(other.generator.get_state(), dm.generator.get_state())


def test_resample_before_setup_says_what_to_do():
    with pytest.raises(RuntimeError, match="call setup"):
        ElasticDataModule().resample(ResampleRule(), slab_residual)


def test_rad_needs_enough_candidates():
    with pytest.raises(ValueError, match="n_candidates=100 must be >= the interior pool size 400"):
        make_dm().resample(ResampleRule("rad", n_candidates=100), slab_residual)


# ---- chunked and sharded residuals -------------------------------------------------------------------------
def test_chunked_bounds_the_largest_evaluation_for_a_huge_candidate_set():
    seen = []

    def fn(points):
        seen.append(points.shape[0])
        return points.square().sum(-1)

    points = torch.rand(100_003, 3, generator=torch.Generator().manual_seed(0))
    out = chunked(fn, points, chunk_size=1000)
    assert max(seen) == 1000 and len(seen) == 101 and sum(seen) == 100_003
    torch.testing.assert_close(out, points.square().sum(-1))


def test_chunked_residual_norm_matches_closed_form():
    """Network = exact plane wave + (a x^2, b y^2): the residual is (-2a(lam + 2mu), -2b(lam + 2mu)) exactly."""
    problem = PlaneWaves([Wave("P", 0.3), Wave("S", 1.2)])
    model = ElasticPINN(problem).double()
    a, b = 0.3, -0.7

    class Perturbed(nn.Module):
        def forward(self, xyt):
            return problem.displacement(xyt) + torch.stack([a * xyt[:, 0] ** 2, b * xyt[:, 1] ** 2], dim=-1)

    model.net = Perturbed()
    m = problem.material
    points = torch.rand(2500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the resample runs outside the training graph; derivatives must still work
        out = chunked(model.residual_norm, points, chunk_size=300)
    expected = 2 * (m.lam + 2 * m.mu) * (a**2 + b**2) ** 0.5
    torch.testing.assert_close(out.double(), torch.full((2500,), expected, dtype=torch.float64), rtol=1e-5, atol=1e-5)


def test_sharded_gives_every_rank_the_full_residual():
    points = torch.rand(1001, 3, generator=torch.Generator().manual_seed(0))

    def fn(p):
        return p.sum(-1)

    world, share = 3, 334

    def fake_all_gather(local):  # what all ranks would contribute: their shares, zero-padded to equal size, stacked
        shares = [fn(points[r * share:(r + 1) * share]) for r in range(world)]
        assert any(torch.equal(local[: s.shape[0]], s) for s in shares)
        return torch.stack([torch.nn.functional.pad(s, (0, share - s.shape[0])) for s in shares])

    for rank in range(world):
        torch.testing.assert_close(sharded(fn, points, rank, world, fake_all_gather), fn(points))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for peak-memory statistics")
def test_chunked_peak_memory_does_not_grow_with_candidates():
    model = ElasticPINN().cuda()

    def peak(m):
        points = torch.rand(m, 3, device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        chunked(model.residual_norm, points, chunk_size=2048, device=torch.device("cuda"))
        return torch.cuda.max_memory_allocated() - base

    small, large = peak(4 * 2048), peak(64 * 2048)
    assert large < 1.2 * small


# ---- the callback in a Trainer -----------------------------------------------------------------------------
class PoolWatch(L.Callback):
    """Records, at the start of every step, whether the batch is the data module's current interior pool."""

    def __init__(self):
        self.same = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.same.append(torch.equal(batch["interior"], trainer.datamodule.pools["interior"]))


def test_callback_resamples_on_schedule_trains_on_the_new_pool_and_logs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    L.seed_everything(0)
    dm = ElasticDataModule(n_interior=64, n_boundary=16, n_initial=16, steps_per_epoch=4, val_grid=(3, 3, 2))
    model = ElasticPINN(dm.problem, width=8, depth=2)
    callback = ResidualResampling("rad", every_n_steps=3, n_candidates=500, chunk_size=128)
    watch = PoolWatch()
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="rad")
    trainer = L.Trainer(max_steps=10, callbacks=[callback, watch], logger=logger, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, inference_mode=False,
                        limit_val_batches=0, accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    assert [s for s in range(11) if callback.due(s)] == [3, 6, 9]
    assert dm.pool_version == 3
    assert watch.same == [True] * 10  # Lightning prefetches a batch, yet every step sees the current pool
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("resample/moved")] == [(3, 64.0), (6, 64.0), (9, 64.0)]
    assert [e.step for e in events.Histograms("resample/residual")] == [3, 6, 9]
    assert [e.step for e in events.Images("resample/interior_points")] == [3, 6, 9]


def test_callback_resamples_once_per_optimizer_step_under_gradient_accumulation():
    L.seed_everything(0)
    dm = ElasticDataModule(n_interior=32, n_boundary=8, n_initial=8, steps_per_epoch=8, val_grid=(3, 3, 2))
    model = ElasticPINN(dm.problem, width=8, depth=1)
    trainer = L.Trainer(max_steps=5, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, inference_mode=False,
                        limit_val_batches=0, accelerator="cpu",
                        callbacks=[ResidualResampling("rad", every_n_steps=2, n_candidates=100, log_images=False)])
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 5 and dm.pool_version == 2  # at steps 2 and 4, not again on their next micro-batch


@pytest.mark.parametrize("kwargs, match", [({"every_n_steps": 0}, "every_n_steps=0"),
                                           ({"chunk_size": 0}, "chunk_size=0"), ({"method": "r3"}, "'r3'")])
def test_callback_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResidualResampling(**kwargs)


@pytest.mark.slow
def test_rad_config_runs_through_the_cli(tmp_path):
    args = [sys.executable, "-m", "pinn", "fit", "-c", str(ROOT / "configs/plane_wave.yaml"),
            "-c", str(ROOT / "configs/plane_wave_rad.yaml"), "--trainer.max_steps=6",
            f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.enable_progress_bar=false",
            "--data.n_interior=128", "--data.n_boundary=32", "--data.n_initial=32", "--data.steps_per_epoch=3",
            "--data.val_grid=[3, 3, 2]", "--trainer.check_val_every_n_epoch=1", "--model.width=8",
            "--trainer.callbacks.init_args.every_n_steps=2", "--trainer.callbacks.init_args.n_candidates=1000",
            "--trainer.callbacks.init_args.chunk_size=256"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ckpt = torch.load(tmp_path / "plane_wave_rad/version_0/checkpoints/last.ckpt", weights_only=True)
    state = ckpt["ElasticDataModule"]
    # steps 2, 4 and 6: the last checkpoint holds the pool that a run resumed from it trains on
    assert state["pool_version"] == 3
    assert state["pools"]["interior"].shape == (128, 3)
