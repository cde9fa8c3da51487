"""ElasticDataModule: the collocation, boundary and initial point pools, and the validation grid.

The data module owns all randomness of sampling through its own ``torch.Generator``; its ``state_dict`` holds
the pools, that generator and the resampling counters, so a checkpoint carries them. A training batch is a dict
of ``(n, 3)`` tensors ``{"interior", "boundary", "initial"}``, plus ``"observations"`` ``(M, 5)`` columns
``(x, y, t, u, v)`` (all of them every step, shared among processes like the pools) when the data module has
observations; with several shots (:mod:`pinn.problems.shots`) shot k's under :func:`shot_key`. Which slice
of the pools step ``s`` trains on is a pure function of ``s`` and the pools, so a resumed run sees the same batches
as an uninterrupted one.

Several processes (Lightning DDP): every rank draws the same GLOBAL pools from the same seed and keeps them (the
``state_dict`` is the same on every rank and independent of the device count). The point counts and
``batch_size`` are global budgets: step ``s``'s global batch is the single-process batch, and rank ``r`` of ``W``
trains on rows ``r, r + W, ...`` of it, so the ranks' shares are disjoint and their union is the global batch.
With every per-step count divisible by ``W``, DDP's gradient average equals the gradient of the global batch.
The validation grid is split the same way, without padding or duplicates, into the same number of batches on
every rank, so the metric's summed states equal the single-process ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import lightning as L
import torch
from torch import Tensor

from pinn.problems.closed_form import PlaneWaves, Problem, Wave
from pinn.training.observations import Observations
from pinn.training.sampling import SAMPLERS, ResampleRule, Sampler, rad, rar_d, sample

POOLS = ("interior", "boundary", "initial")


def _check_predict_grid(
    resolution: tuple[int, int], times: int | list[float], t_range: tuple[float, float]
) -> tuple[tuple[int, int], int | list[float]]:
    if len(resolution) != 2 or min(resolution) < 2:
        raise ValueError(f"data.predict_resolution={list(resolution)} must be two counts >= 2 (x, y).")
    if isinstance(times, int):
        if times < 1:
            raise ValueError(f"data.predict_times={times} must be a count >= 1 or a list of times.")
        return tuple(resolution), times
    times = [float(t) for t in times]
    t0, t1 = t_range
    if not times or any(not t0 <= t <= t1 for t in times) or any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError(f"data.predict_times={times} must be increasing times within the domain's t range "
                         f"[{t0}, {t1}], or a count.")
    return tuple(resolution), times


class PointBatches:
    """Iterable of one epoch of training batches, from the trainer's current global step to the epoch's end.

    An epoch is ``steps_per_epoch`` optimizer steps; with ``accumulate_grad_batches = a`` each step takes ``a``
    batches, and batch ``b = a x step + i`` is slice ``b`` of the pass order (:meth:`ElasticDataModule.batch`), so
    every batch of a pass is visited exactly once whatever ``a`` is. A run resumed from a mid-epoch checkpoint at
    step ``s`` yields only the batches of steps ``s`` to the end of that epoch (checkpoints fall between optimizer
    steps, never inside an accumulation). It is a stateful loader for Lightning (``state_dict`` /
    ``load_state_dict``) whose whole state is the global step, which Lightning restores itself.
    It has a length, so Lightning fetches no batch ahead: each batch is sliced after the previous step's
    callbacks have run, and a pool resampled at the end of one step is what the next step trains on."""

    def __init__(self, datamodule: ElasticDataModule) -> None:
        self.dm = datamodule

    def _accumulate(self) -> int:
        trainer = self.dm.trainer
        return max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1)) if trainer is not None else 1

    def __len__(self) -> int:
        return self.dm.steps_per_epoch * self._accumulate()

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        trainer, a, n = self.dm.trainer, self._accumulate(), self.dm.steps_per_epoch
        start = trainer.global_step if trainer is not None else 0
        for b in range(start * a, (start - start % n + n) * a):
            yield self.dm.batch(b)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class GridBatches:
    """Iterable of validation-grid batches (one loader to Lightning, which reads a list as several loaders)."""

    def __init__(self, batches: Sequence[Tensor]) -> None:
        self.batches = list(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.batches)


class ElasticDataModule(L.LightningDataModule):
    """Point pools for an elastic-wave PINN.

    Args:
        problem: The problem whose domain the points cover (shared with the model).
        n_interior: Collocation points in the space-time interior (PDE residual); this and the two counts below
            are global budgets, split across processes under DDP.
        n_boundary: Points on the four edges x time (boundary condition).
        n_initial: Points on the initial slice t = t0 (initial displacement and velocity).
        batch_size: Interior points per step, summed over all processes; ``None`` trains full batch. Boundary
            and initial batches are scaled so that every pool is traversed once per pass.
        steps_per_epoch: Training steps that make one Lightning epoch (validation and epoch-end hooks run
            between epochs).
        sampler: How the pools are drawn: ``uniform``, ``lhs`` (Latin hypercube), ``sobol`` (scrambled) or
            ``grid``; one name for every pool, or a mapping pool -> name such as
            ``{interior: sobol, boundary: lhs}`` (pools not named use ``uniform``).
        val_grid: Validation grid points along (x, y, t).
        val_batch_size: Grid points per validation (and prediction) batch.
        predict_resolution: Grid points along (x, y) of ``pinn predict``.
        predict_times: Times of ``pinn predict``: a count of evenly spaced times from t0 to t1, or a list of times.
        seed: Seed of the data module's own generator.
        observations: Displacement measurements for the data loss term (inverse problems), or ``None``.
    """

    def __init__(
        self,
        problem: Problem | None = None,
        n_interior: int = 4096,
        n_boundary: int = 1024,
        n_initial: int = 1024,
        batch_size: int | None = None,
        steps_per_epoch: int = 100,
        sampler: Sampler | dict[str, Sampler] = "uniform",
        val_grid: tuple[int, int, int] = (41, 41, 11),
        val_batch_size: int = 8192,
        predict_resolution: tuple[int, int] = (101, 101),
        predict_times: int | list[float] = 41,
        seed: int = 0,
        observations: Observations | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["problem"])
        for name, value in (("n_interior", n_interior), ("n_boundary", n_boundary), ("n_initial", n_initial),
                            ("steps_per_epoch", steps_per_epoch), ("val_batch_size", val_batch_size)):
            if value < 1:
                raise ValueError(f"data.{name}={value} must be >= 1.")
        if batch_size is not None and not 1 <= batch_size <= n_interior:
            raise ValueError(f"data.batch_size={batch_size} must be in [1, n_interior={n_interior}] or null.")
        samplers = dict(sampler) if isinstance(sampler, dict) else dict.fromkeys(POOLS, sampler)
        for pool, kind in samplers.items():
            if pool not in POOLS:
                raise ValueError(f"data.sampler names pool {pool!r}; pools are {POOLS}.")
            if kind not in SAMPLERS:
                raise ValueError(f"data.sampler={kind!r} for pool {pool!r} must be one of {SAMPLERS}.")
        if len(val_grid) != 3 or min(val_grid) < 2:
            raise ValueError(f"data.val_grid={list(val_grid)} must be three counts >= 2 (x, y, t).")
        self.problem = problem or PlaneWaves([Wave()])
        self.predict_resolution, self.predict_times = _check_predict_grid(predict_resolution, predict_times,
                                                                          self.problem.domain.t)
        self.n = {"interior": n_interior, "boundary": n_boundary, "initial": n_initial}
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.sampler = sampler
        self.samplers: dict[str, Sampler] = {pool: samplers.get(pool, "uniform") for pool in POOLS}
        self.val_grid = tuple(val_grid)
        self.val_batch_size = val_batch_size
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.pools: dict[str, Tensor] = {}
        self.pool_version = 0  # bumps whenever a pool is replaced, so batch permutations follow the new pool
        self.observations = observations
        if observations is not None:
            self.hparams["observations"] = observations.config()  # plain data, so checkpoints load with weights_only
        # [(M_k, 5)] per shot, fixed for the whole run; loaded here so that a bad file stops a run before anything is
        # written. `observed` is the first shot's, all there is in a problem of one shot.
        self.observed_shots = None if observations is None else observations.load_shots(self.problem)
        self.observed: Tensor | None = None if observations is None else self.observed_shots[0]

    # ---- pools -------------------------------------------------------------------------------------------
    def draw(self, pool: str, n: int) -> Tensor:
        """Draw ``n`` fresh points of one pool with that pool's sampler and the module's generator."""
        domain = self.problem.domain
        if pool == "interior":
            return domain.from_unit(sample(self.samplers[pool], n, 3, self.generator))
        if pool == "boundary":
            return domain.boundary_from_unit(sample(self.samplers[pool], n, 2, self.generator))
        if pool == "initial":
            return domain.initial_from_unit(sample(self.samplers[pool], n, 2, self.generator))
        raise KeyError(f"unknown pool {pool!r}; pools are {POOLS}")

    def redraw(self) -> None:
        """Draw every pool afresh with its sampler (the same sizes), e.g. when a stage has over-fitted its points."""
        self.pools = {name: self.draw(name, pool.shape[0]) for name, pool in self.pools.items()}
        self.pool_version += 1

    def setup(self, stage: str | None = None) -> None:
        if not self.pools:
            self.pools = {name: self.draw(name, self.n[name]) for name in POOLS}

    @property
    def batches_per_pass(self) -> int:
        return 1 if self.batch_size is None else math.ceil(self.pools["interior"].shape[0] / self.batch_size)

    def rank_and_world(self) -> tuple[int, int]:
        """``(global rank, number of processes)`` of the attached trainer; ``(0, 1)`` without one."""
        trainer = self.trainer
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def global_batch(self, step: int) -> dict[str, Tensor]:
        """The batch of global step ``step`` over all processes: full pools, or the step's slice of a seeded
        permutation (``k`` balanced slices per pass, so none is empty while every pool has >= k points)."""
        k = self.batches_per_pass
        if k == 1:
            return self._with_observations(dict(self.pools))
        epoch_pass, b = divmod(step, k)
        g = torch.Generator().manual_seed(hash((self.seed, self.pool_version, epoch_pass)) & 0x7FFF_FFFF)
        return self._with_observations({name: pool[torch.randperm(pool.shape[0], generator=g).tensor_split(k)[b]]
                                        for name, pool in self.pools.items()})

    def _with_observations(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.observed is not None:  # all of them every step; split over processes like the pools
            for k, observed in enumerate(self.observed_shots):
                batch[shot_key(observation_key(self.observations), k)] = observed
        return batch

    def batch(self, step: int) -> dict[str, Tensor]:
        """This process's share of :meth:`global_batch`: rows ``rank::world``."""
        rank, world = self.rank_and_world()
        self.check_shares(world)  # again each step: a growing pool (RAR-D) makes more, smaller slices per pass
        out = self.global_batch(step)
        return out if world == 1 else {name: points[rank::world] for name, points in out.items()}

    def check_shares(self, world: int) -> None:
        """Raise if some process would get no point of a pool in some step (its loss term would be NaN)."""
        k = self.batches_per_pass
        for name, pool in self.pools.items():
            if pool.shape[0] // k < world:
                raise ValueError(
                    f"data.n_{name}={pool.shape[0]} gives {pool.shape[0] // k} points per step (in {k} steps per "
                    f"pass), fewer than the number of processes ({world}); each process needs at least one point of "
                    f"every pool per step: raise data.n_{name} or data.batch_size, or use fewer devices."
                )
        fewest = None if self.observed is None else min(len(observed) for observed in self.observed_shots)
        if fewest is not None and fewest < world:
            raise ValueError(f"{fewest} observations cannot be shared among {world} processes; "
                             "each needs at least one: use more observations or fewer devices.")

    def resample(self, rule: ResampleRule, residual_norm: Callable[[Tensor], Tensor]) -> dict:
        """Redraw the interior pool from residuals with RAD or RAR-D (:mod:`pinn.training.sampling`).

        Draws ``rule.n_candidates`` candidates with the interior sampler and this module's generator, asks
        ``residual_norm`` for their residual norms ``(M,)``, and applies the rule. Everything random comes from
        the generator, so the new pool is a function of the saved state and the network alone.

        Returns:
            ``{"moved": points new to the pool, "pool_size": its size, "residual": (M,) CPU norms or None}``.
        """
        if not self.pools:
            raise RuntimeError("ElasticDataModule.resample needs the pools: call setup() first.")
        pool = self.pools["interior"]
        if rule.method == "rad" and rule.n_candidates < pool.shape[0]:
            raise ValueError(
                f"RAD n_candidates={rule.n_candidates} must be >= the interior pool size {pool.shape[0]} "
                "(the new pool is drawn from the candidates without replacement); raise n_candidates."
            )
        cap = rule.max_points if rule.max_points is not None else 2 * self.n["interior"]
        if rule.method == "rar-d" and pool.shape[0] >= cap:
            return {"moved": 0, "pool_size": pool.shape[0], "residual": None}  # full: no candidates, no draws
        candidates = self.draw("interior", rule.n_candidates)  # (M, 3)
        r = residual_norm(candidates).detach().to("cpu", torch.float64).reshape(-1)  # (M,)
        if r.numel() != candidates.shape[0]:
            raise ValueError(f"residual_norm returned {r.numel()} values for {candidates.shape[0]} candidates.")
        if rule.method == "rad":
            new = rad(pool.shape[0], candidates, r, self.generator, k=rule.k, c=rule.c)
        else:
            new = rar_d(pool, candidates, r, self.generator, rule.n_add, cap, k=rule.k, c=rule.c)
        moved = _count_new_rows(pool, new)
        self.pools["interior"] = new
        self.pool_version += 1
        return {"moved": moved, "pool_size": new.shape[0], "residual": r}

    # ---- loaders -----------------------------------------------------------------------------------------
    def train_dataloader(self) -> PointBatches:
        # Not a torch DataLoader, so Lightning injects no DistributedSampler: the sharding is in batch().
        self.check_shares(self.rank_and_world()[1])
        return PointBatches(self)

    def grid(self) -> Tensor:
        """The validation grid ``(nx*ny*nt, 3)``."""
        return self.problem.scored_domain.grid(*self.val_grid, dtype=torch.float64)

    def grid_batches(self, grid: Tensor | None = None) -> GridBatches:
        """This process's share of ``grid`` (default: the validation grid; rows ``rank::world``) in batches of at
        most ``val_batch_size``.

        Not a DataLoader: Lightning's DistributedSampler would pad the grid with repeated points (biasing the
        reduced metric). Every rank gets the same number of batches, because DDP's forward synchronises
        buffers, a collective that every rank must join equally often; a rank may get one empty batch."""
        rank, world = self.rank_and_world()
        grid = self.grid() if grid is None else grid
        k = math.ceil(math.ceil(grid.shape[0] / world) / self.val_batch_size)
        return GridBatches(grid[rank::world].tensor_split(k))

    def val_dataloader(self) -> GridBatches:
        return self.grid_batches()

    def test_dataloader(self) -> GridBatches:
        return self.grid_batches()

    def predict_axes(self) -> tuple[Tensor, Tensor, Tensor]:
        """Axes ``x (nx,)``, ``y (ny,)``, ``t (nt,)`` of the prediction grid."""
        d, (nx, ny) = self.problem.scored_domain, self.predict_resolution
        times = self.predict_times
        f64 = torch.float64
        t = torch.linspace(*d.t, times, dtype=f64) if isinstance(times, int) else torch.tensor(times, dtype=f64)
        return torch.linspace(*d.x, nx, dtype=f64), torch.linspace(*d.y, ny, dtype=f64), t

    def predict_grid(self) -> Tensor:
        """The prediction grid ``(nt*ny*nx, 3)``, t slowest, then y, then x."""
        x, y, t = self.predict_axes()
        t, y, x = torch.meshgrid(t, y, x, indexing="ij")
        return torch.stack([x, y, t], dim=-1).reshape(-1, 3)

    def predict_dataloader(self) -> GridBatches:
        return self.grid_batches(self.predict_grid())

    # ---- checkpoint --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "pools": {k: v.clone() for k, v in self.pools.items()},
            "generator": self.generator.get_state(),
            "pool_version": self.pool_version,
        }

    def load_state_dict(self, state: dict) -> None:
        self.pools = {k: v.clone() for k, v in state["pools"].items()}
        self.generator.set_state(state["generator"])
        self.pool_version = int(state["pool_version"])  # older checkpoints' resampling counters are not read


def observation_key(observations: Observations) -> str:
    """The batch key of the observations: ``observations`` for displacement, ``velocity_observations`` for
    particle velocity (what geophones record)."""
    return "velocity_observations" if observations.quantity == "velocity" else "observations"


def shot_key(key: str, k: int) -> str:
    """The batch key of shot ``k``'s samples under ``key``: ``key`` itself for the first shot."""
    return key if k == 0 else f"{key}/shot{k}"


def _count_new_rows(old: Tensor, new: Tensor) -> int:
    """How many rows of ``new`` are not rows of ``old`` (exact match), counted with multiplicity."""
    if old.shape[0] == 0:
        return new.shape[0]
    both = torch.cat([old, new])  # (n_old + n_new, 3)
    _, inverse = torch.unique(both, dim=0, return_inverse=True)
    in_old = torch.zeros(int(inverse.max()) + 1, dtype=torch.bool)
    in_old[inverse[: old.shape[0]]] = True
    return int((~in_old[inverse[old.shape[0]:]]).sum())
