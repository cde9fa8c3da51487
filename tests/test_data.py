"""ElasticDataModule: pools lie where they should, have the right sizes, and are reproducible from the seed."""

import pytest
import torch

from pinn.problems.closed_form import Domain, PlaneWaves, Wave
from pinn.training.data import ElasticDataModule


def _dm(**kwargs) -> ElasticDataModule:
    problem = PlaneWaves([Wave()], Domain((-1.0, 2.0), (0.5, 1.5), (0.25, 0.75)))
    dm = ElasticDataModule(problem, **{"n_interior": 300, "n_boundary": 120, "n_initial": 80, **kwargs})
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("sampler", ["uniform", "lhs", "sobol", "grid"])
def test_pools_lie_in_their_regions(sampler):
    dm = _dm(sampler=sampler)
    interior, boundary, initial = dm.pools["interior"], dm.pools["boundary"], dm.pools["initial"]
    assert interior.shape == (300, 3) and boundary.shape == (120, 3) and initial.shape == (80, 3)
    lo, hi = torch.tensor([-1.0, 0.5, 0.25]), torch.tensor([2.0, 1.5, 0.75])
    for pts in (interior, boundary, initial):
        assert bool(((pts >= lo) & (pts <= hi)).all())
    x, y = boundary[:, 0], boundary[:, 1]
    assert bool(((x == -1.0) | (x == 2.0) | (y == 0.5) | (y == 1.5)).all())
    assert bool((initial[:, 2] == 0.25).all())
    # the interior fills the box: every octant of the space-time box holds points
    octant = ((interior - lo) / (hi - lo) > 0.5).long() @ torch.tensor([1, 2, 4])
    assert len(torch.unique(octant)) == 8


def test_pools_are_reproducible_from_the_seed_and_differ_across_seeds():
    a, b, c = _dm(seed=3), _dm(seed=3), _dm(seed=4)
    for name in a.pools:
        assert torch.equal(a.pools[name], b.pools[name])
        assert not torch.equal(a.pools[name], c.pools[name])


def test_full_batch_is_the_whole_pool_every_step():
    dm = _dm()
    for step in (0, 7):
        batch = dm.batch(step)
        for name in dm.pools:
            assert torch.equal(batch[name], dm.pools[name])


def test_mini_batches_cover_each_pool_once_per_pass():
    dm = _dm(batch_size=100)
    assert dm.batches_per_pass == 3
    for start in (0, 3):
        batches = [dm.batch(start + i) for i in range(3)]
        for name, pool in dm.pools.items():
            seen = torch.cat([b[name] for b in batches])
            assert seen.shape == pool.shape
            assert torch.equal(torch.unique(seen, dim=0), torch.unique(pool, dim=0))
    assert not torch.equal(dm.batch(0)["interior"], dm.batch(3)["interior"])  # reshuffled each pass
    assert torch.equal(dm.batch(4)["interior"], _dm(batch_size=100).batch(4)["interior"])  # a function of the step


def test_state_dict_round_trip_restores_pools_and_generator():
    dm = _dm()
    state = dm.state_dict()
    after = dm.draw("interior", 10)
    other = _dm(seed=99)
    other.load_state_dict(state)
    for name in dm.pools:
        assert torch.equal(other.pools[name], dm.pools[name])
    assert torch.equal(other.draw("interior", 10), after)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(n_interior=0), "n_interior=0"),
        (dict(batch_size=5000), "batch_size=5000"),
        (dict(sampler="halton"), "sampler='halton'"),
        (dict(val_grid=(41, 1, 11)), "val_grid"),
    ],
)
def test_bad_values_raise(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        ElasticDataModule(**kwargs)


def test_validation_grid_loader_covers_the_grid():
    dm = _dm(val_grid=(5, 4, 3), val_batch_size=7)
    batches = list(dm.val_dataloader())
    grid = torch.cat(batches)
    assert grid.shape == (60, 3)
    assert torch.equal(grid, dm.problem.domain.grid(5, 4, 3, dtype=torch.float64))


@pytest.mark.parametrize("accumulate", [1, 2, 3])
def test_gradient_accumulation_visits_every_batch_of_a_pass_once(accumulate, tmp_path):
    """With ``accumulate_grad_batches = a`` a step takes a batches; every epoch still has ``steps_per_epoch`` steps,
    and the batches of each pass (3 slices of the interior pool) are all different and cover the pool once."""
    import lightning as L

    from pinn.training.module import ElasticPINN

    seen: list[torch.Tensor] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch["interior"].clone())

    dm = _dm(n_interior=30, n_boundary=6, n_initial=6, batch_size=10, steps_per_epoch=3)
    trainer = L.Trainer(max_steps=6, accumulate_grad_batches=accumulate, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
                        inference_mode=False, callbacks=[Record()], default_root_dir=tmp_path)
    trainer.fit(ElasticPINN(dm.problem, width=4, depth=1), dm)
    assert trainer.global_step == 6 and trainer.current_epoch == 2  # epochs keep their length in steps
    assert len(seen) == 6 * accumulate
    pool = dm.pools["interior"]
    for start in range(0, len(seen), 3):  # each pass: three different slices that together are the pool
        batches = seen[start:start + 3]
        together = torch.cat(batches)
        assert together.shape == pool.shape
        assert torch.equal(together.unique(dim=0), pool.unique(dim=0))
