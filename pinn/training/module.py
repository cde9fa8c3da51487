"""ElasticPINN: the LightningModule that turns point batches into named physics loss terms."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from pinn import compat
from pinn.networks.derivatives import Engine, compute_fields
from pinn.networks.mlp import MLP, Activation, Factorization, FourierFeatures
from pinn.optim.persistent_adam import PersistentAdam
from pinn.physics.elasticity import residual
from pinn.physics.units import Scales
from pinn.physics.unknowns import Unknowns, check_inverse_setup
from pinn.problems.closed_form import PlaneWaves, Problem, Wave
from pinn.training import shots
from pinn.training.balancing import Balancer, GradNormBalancing
from pinn.training.causal import Causal
from pinn.training.checks import check_setup
from pinn.training.compiled import CompiledKernel, decide_compile
from pinn.training.graphs import CaptureFailed, GraphedStep, graph_this_step, replayed_optimizer_step
from pinn.training.hparams import settings
from pinn.training.inverse import hold, inverse_scales, trainable_medium
from pinn.training.losses import LossWeights, boundary_loss
from pinn.training.metrics import RelativeL2, log_test, log_training_step, log_validation
from pinn.training.restore import load
from pinn.training.run_checkpoint import load_run_state, save_run_state
from pinn.training.stages import LBFGSStage, StallWatch, advance_stage, watch_stall
from pinn.training.windows import Marching, TimeWindows, initial_state_values, initial_targets, next_window, state_nodes


class ElasticPINN(L.LightningModule):
    r"""Physics-informed network for 2D elastodynamics.

    The loss is :math:`\sum_k w_k L_k` over the named terms ``pde``, ``bc``, ``ic_disp``, ``ic_vel``:
    mean squared Navier-Cauchy residual on interior points, squared displacement misfit on the boundary and at
    t = t0, and squared velocity misfit at t = t0 (Raissi, Perdikaris & Karniadakis 2019), plus ``data``, the
    squared misfit to observed displacements, when the batch carries observations.

    With ``unknowns`` the material in the residual is a :class:`~pinn.physics.unknowns.TrainableMaterial` (its
    parameters are ``nn.Parameter`` s of this module, so checkpoints carry them) trained jointly with the
    network in its own optimizer parameter group.

    Args:
        problem: The problem (linked from ``data.problem`` by the CLI).
        width: Units per hidden layer of the MLP.
        depth: Hidden layers of the MLP.
        activation: ``tanh`` or ``sin``.
        input_scale: Factor on the inputs normalised to [-1, 1], a first-layer frequency like SIREN's omega_0
            (Sitzmann et al. 2020); > 1 for problems several wavelengths across.
        loss_weights: Weight of each loss term.
        optimizer: Optimizer factory; ``PersistentAdam`` by default, any ``torch.optim`` class in YAML.
        scheduler: Optional learning-rate scheduler factory, stepped every training step.
        engine: Derivative engine: ``auto`` (fastest that applies), ``autograd`` or ``taylor``.
        compile: ``torch.compile`` the Taylor engine's streams of the PDE residual, forward and backward
            (:mod:`pinn.training.compiled`). ``"auto"``: when the Taylor engine applies, a compiler is found and
            ``fit`` will evaluate the loss at least ``MIN_EVALUATIONS`` (2000) times (one per step, ``max_iter``
            per L-BFGS step); ``true``: always; ``false``: never. Where it cannot compile, training goes on
            uncompiled after a warning that says why.
        cuda_graphs: Capture each Adam step (forward, backward, the ``PersistentAdam`` update) in a CUDA graph and
            replay it (:mod:`pinn.training.graphs`). ``"auto"``: on a CUDA device when nothing rules it out (the
            run log says what did); ``true``: the same, with a warning naming what rules it out; ``false``: never.
        causal: Causal weighting of the PDE residual over time slices (Wang, Sankaran & Perdikaris 2022); ``None``
            weights all times equally. ``train/loss_pde`` is then the weighted loss, and ``causal/weight_min`` the
            weight of the last slice (1 once every slice fits).
        unknowns: Material parameters to recover (inverse problem) with their initial guesses and learning rate;
            ``None`` keeps the problem's material fixed (forward problem).
        fourier: Spatio-temporal random Fourier features of the input (Wang, Wang & Perdikaris 2021), or ``None``.
        factorization: Random weight factorisation of every layer (Wang et al. 2022), or ``None``.
        lbfgs: An L-BFGS stage after the optimizer (strong-Wolfe line search; Liu & Nocedal 1989) from
            ``lbfgs.start_step`` on (:mod:`pinn.training.stages`), or ``None`` for the optimizer alone.
        balancing: Adaptive loss balancing by gradient norms (Wang, Teng & Perdikaris 2021), or ``None``; the
            factors multiply ``loss_weights`` and are logged as ``balance/<term>``.
        windows: Time-marching over consecutive windows and the exact initial state (:mod:`pinn.training.windows`),
            or ``None`` for one network over the whole interval with the initial state as loss terms.
        shot_network: With several shots (:mod:`pinn.training.shots`): ``input``, one network with the shot as an
            input (measured the more accurate), or ``networks``, one network per shot.
    """

    def __init__(
        self,
        problem: Problem | None = None,
        width: int = 64,
        depth: int = 4,
        activation: Activation = "tanh",
        input_scale: float = 1.0,
        loss_weights: LossWeights | None = None,
        optimizer: OptimizerCallable = PersistentAdam,
        scheduler: LRSchedulerCallable | None = None,
        engine: Engine = "auto",
        compile: bool | Literal["auto"] = "auto",
        cuda_graphs: bool | Literal["auto"] = "auto",
        unknowns: Unknowns | None = None,
        causal: Causal | None = None,
        fourier: FourierFeatures | None = None,
        factorization: Factorization | None = None,
        lbfgs: LBFGSStage | None = None,
        balancing: GradNormBalancing | None = None,
        windows: TimeWindows | None = None,
        shot_network: shots.ShotNetwork = "input",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["problem", "optimizer", "scheduler"])
        # settings objects are kept as given; their hparams entries become plain data (checkpoints load weights_only)
        hp = self.hparams
        self.problem = problem or PlaneWaves([Wave()])
        self.unknowns = settings(hp, "unknowns", Unknowns, unknowns)
        self.trainable_material = None
        if self.unknowns is not None and self.unknowns.trainable:
            check_inverse_setup(self.problem, self.unknowns)
            self.trainable_material = trainable_medium(self.problem, self.unknowns)
        fourier = settings(hp, "fourier", FourierFeatures, fourier)
        factorization = settings(hp, "factorization", Factorization, factorization)
        # output_scale is the displacement scale U, set with the scales (below, or on first use, or from a checkpoint)
        self.shot_network, self.shot = shot_network, 0  # shot: the one computed now (pinn.training.shots)
        self.net, self.shot_nets = shots.shot_networks(self.problem.n_shots, shot_network, lambda n: MLP(
            self.problem.domain.lower, self.problem.domain.upper, width, depth, activation, input_scale=input_scale,
            fourier=fourier, factorization=factorization, shots=n))
        self._scales: Scales | None = None
        if self.trainable_material is not None:  # from the starting material, before it trains; no reference needed
            self.scales = inverse_scales(self.problem, self.trainable_material)
        self.lbfgs = settings(hp, "lbfgs", LBFGSStage, lbfgs)
        self.stage = "adam"  # the optimizer stage the run is in ("adam": the configured optimizer, or "lbfgs")
        self.pool_version = 0  # the data module's pool version when the L-BFGS history began
        balancing = settings(hp, "balancing", GradNormBalancing, balancing)
        self.balancer = None if balancing is None else Balancer(list(asdict(LossWeights())), balancing)
        self.weights = settings(hp, "loss_weights", LossWeights, loss_weights or LossWeights())
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.engine = engine
        if compile not in (True, False, "auto"):
            raise ValueError(f"model.compile must be true, false or auto, got {compile!r}.")
        self.compile_mode = compile  # not self.compile: that is nn.Module's method
        self._kernel: CompiledKernel | None = None  # the compiled Taylor streams, where compiling was decided
        self._compile_decided = False
        if cuda_graphs not in (True, False, "auto"):
            raise ValueError(f"model.cuda_graphs must be true, false or auto, got {cuda_graphs!r}.")
        self.cuda_graphs = cuda_graphs
        self._graphs: GraphedStep | None = None
        self._graphs_decided = False
        self.graph_now = False  # whether the current training step runs in GraphedStep (warm-up, capture, replay)
        self.val_metric = RelativeL2()
        self.test_metric = RelativeL2()
        self.causal = settings(hp, "causal", Causal, causal)
        self.causal_weights: Tensor | None = None  # of the last step, for logging
        self.windows = settings(hp, "windows", TimeWindows, windows)
        needed = Marching.needed(self.windows)
        self.marching = Marching(self.net, self.problem.domain.t, self.windows) if needed else None
        self.stall = StallWatch()
        shots.check_shots(self)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """With ``problem=...`` Lightning's loader with that problem; without, :func:`pinn.load`, which rebuilds the
        problem from the run's config stored in the checkpoint (not a default problem)."""
        if "problem" in kwargs:
            return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, **kwargs)
        return load(checkpoint_path, cls, map_location or "cpu")

    @property
    def scales(self) -> Scales:
        """The characteristic scales (:mod:`pinn.physics.units`) the loss terms are divided by and the network's
        output is multiplied by (U). Restored from the checkpoint when there is one; otherwise the problem's,
        found on first use (a problem without a closed form and without ``displacement_scale`` reads U from its
        reference solution, so building a model never runs the solver: a fit finds them in ``setup``)."""
        if self._scales is None:
            self.scales = self.problem.scales
        return self._scales

    @scales.setter
    def scales(self, scales: Scales) -> None:
        self._scales = scales
        for net in [self.net, *self.shot_nets, *getattr(getattr(self, "marching", None), "finished", [])]:
            net.output_scale = float(scales.displacement)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.scales  # (found once, before the first step; a resumed fit then restores the stored ones)
        datamodule = getattr(compat.attached_trainer(self), "datamodule", None)
        check_setup(self, datamodule, stage)
        slices = getattr(datamodule, "val_grid", (0, 0, 1))[2]
        starts = None if self.marching is None else [self.marching.start(k) for k in range(self.windows.count)]
        self.val_metric = RelativeL2(self.problem.scored_domain.t, slices, starts)
        self.test_metric = RelativeL2(self.problem.scored_domain.t, slices, starts)

    @property
    def material(self):
        """The constant material: trainable in an inverse problem, else the problem's (a homogeneous medium)."""
        return self.problem.material if self.trainable_material is None else self.trainable_material

    def material_at(self, xy: Tensor):
        """The material in the residual at ``xy`` ``(N, 2)``: trainable in an inverse problem, else the problem's."""
        if self.trainable_material is None:
            return self.problem.material_at(xy)
        values = self.trainable_material.at(xy)
        if self.training and self.global_step < self.unknowns.start_step:  # still held at the initial guess
            values = hold(values, compat.attached_trainer(self) is not None and self.trainer.world_size > 1)
        return values

    def forward(self, xyt: Tensor) -> Tensor:
        """Displacement ``(N, 2)`` of the current shot at points ``(N, 3)`` (in any float dtype; computed in the
        model's), over the whole interval: with time windows each point from the window its time falls in."""
        self.scales  # (the network's output scale U is set with them)
        if self.marching is None:
            return shots.shot_net(self)(xyt.to(self.dtype))
        return self.marching.values(self.net, xyt.to(self.dtype), self._compute)

    def _compute(self, net, xyt: Tensor, order: str):
        self.scales  # (the network's output scale U is set with them)
        if self.compile_mode is True and not self._compile_decided:
            self.decide_compile(-1)
        # the residual in training only: evaluation shapes vary, and each would compile anew
        streams = self._kernel if self.training and order == "pde" and net is self.net else None
        return compute_fields(net, xyt, order, self.engine, streams)

    def fields(self, xyt: Tensor, order: str, window: int | None = None):
        """:class:`~pinn.physics.fields.Fields` of the solution at ``xyt`` (read in the model's dtype): the network's,
        or time window ``window``'s (``None``: the current one; :mod:`pinn.training.windows`), in which ``xyt`` lies."""
        if self.marching is None:
            return self._compute(shots.shot_net(self), xyt.to(self.dtype), order)
        k = self.marching.current if window is None else window
        return self.marching.fields(self.net, k, xyt.to(self.dtype), order, self._compute)

    def initial_targets(self, initial: Tensor) -> tuple[Tensor, Tensor] | None:
        """What the current window starts from at ``initial`` (:func:`~pinn.training.windows.initial_targets`)."""
        return initial_targets(self, initial)

    def to_window(self, xyt: Tensor) -> Tensor:
        """Training points over the whole interval mapped into the current window (unchanged without windows)."""
        return xyt if self.marching is None else self.marching.to_current(xyt)

    def decide_compile(self, max_steps: int) -> bool:
        """Start compiling, or not, as ``compile`` says for a fit of ``max_steps`` steps (-1: no limit); says why
        (:func:`~pinn.training.compiled.decide_compile`)."""
        self._compile_decided = True
        self._kernel = decide_compile(self, max_steps)
        return self._kernel is not None

    def on_fit_start(self) -> None:
        if not self._compile_decided:
            # the whole run's length, not what is left of it, so that a resumed run decides as the first one did
            self.decide_compile(self.trainer.max_steps)
        if self.marching is not None and self.windows.exact_initial and not self.marching.has_state:
            x, y = state_nodes(self.problem)
            self.marching.set_state(0, x, y, initial_state_values(self.problem, x, y))

    def pde_residual(self, xyt: Tensor) -> Tensor:
        """Residual ``(N, 2)`` of the solution at interior points ``(N, 3)`` of the data module's pools (over the
        whole interval; mapped into the current window), in SI (N/m^3)."""
        xyt = self.to_window(xyt.to(self.dtype))  # points are kept in float64; the model computes in its own dtype
        return self.residual_of(self.fields(xyt, "pde"), xyt)

    def residual_of(self, fields, xyt: Tensor) -> Tensor:
        """Residual ``(N, 2)`` (N/m^3) of ``fields`` (of order ``pde``) at the points ``xyt`` they were computed at, in
        the current shot's problem (:func:`~pinn.physics.elasticity.residual`)."""
        return residual(fields, self.material_at(xyt[:, :2]), self.problem.shot(self.shot).body_force(xyt),
                        self.problem.damping(xyt[:, :2]))

    def residual_norm(self, xyt: Tensor) -> Tensor:
        """Euclidean norm of the residual at each point ``(N,)`` over all shots, detached: what adaptive sampling
        ranks by (:func:`~pinn.training.shots.shot_residual_norm`)."""
        return shots.shot_residual_norm(self, xyt)

    def boundary_loss(self, xyt: Tensor) -> Tensor:
        """Mean squared misfit of each boundary point's condition (:func:`~pinn.training.losses.boundary_loss`)."""
        return boundary_loss(self, self.to_window(xyt))

    def loss_terms(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Unweighted loss terms of one batch of points (:func:`~pinn.training.losses.loss_terms`)."""
        terms, self.causal_weights = shots.shot_loss_terms(self, batch)
        return terms

    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # Loggers take their step from this loop counter, which Lightning bumps by one when it restarts from a
        # checkpoint saved at validation end; tying it to the optimizer step makes a resumed curve join without a gap.
        compat.set_logging_step(self.trainer, self.trainer.global_step)
        if self.marching is not None and self.marching.due(self.trainer.global_step):
            next_window(self)
        if self.lbfgs is not None:
            advance_stage(self, batch)
        self.graph_now = graph_this_step(self)

    def stage_start(self) -> int:
        """The global step the current window began at (0 without windows): ``lbfgs.start_step`` counts from it."""
        return 0 if self.marching is None else self.marching.started

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.stage == "lbfgs" and self.lbfgs.patience is not None:
            watch_stall(self, outputs["loss"] if isinstance(outputs, dict) else outputs)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        if not self.graph_now:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        replayed_optimizer_step(self, optimizer, optimizer_closure)

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer) -> None:
        if not self.graph_now:  # the graph's gradients are fixed buffers: they must stay
            super().optimizer_zero_grad(epoch, batch_idx, optimizer)

    def backward(self, loss: Tensor, *args, **kwargs) -> None:
        if not self.graph_now:  # the graph ran its own backward pass
            super().backward(loss, *args, **kwargs)

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted training loss and its unweighted terms."""
        terms = self.loss_terms(batch)
        return sum(self.weight(k) * v for k, v in terms.items()), terms

    def weight(self, name: str) -> Tensor | float:
        """The weight of loss term ``name``: the configured one, times the adaptive factor when balancing."""
        w = getattr(self.weights, name)
        return w if self.balancer is None else w * self.balancer.factor(name).to(self.dtype)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self.balancer is not None and self.stage == "adam" and self.balancer.due(self.global_step):
            nets = [self.net, *self.shot_nets]
            factors = self.balancer.update(self.loss_terms(batch), [p for n in nets for p in n.parameters()])
            self.log_dict({f"balance/{k}": v for k, v in factors.items()}, on_step=True, on_epoch=False)
        if self.graph_now:
            try:
                loss, terms = self._graphs.step(batch)
            except CaptureFailed:  # nothing ran: eagerly now, and Lightning's closure zeroes the gradients
                self.graph_now = False
        if not self.graph_now:
            loss, terms = self.training_loss(batch)
        if self.stage == "lbfgs" and self.trainer.world_size > 1:
            # the line search compares loss values: every process must see the same (mean) value, while the
            # gradient stays the local one, which DDP averages
            mean = self.trainer.strategy.reduce(loss.detach(), reduce_op="mean")
            loss = loss + (mean - loss.detach())
        log_training_step(self, loss, terms)
        return loss

    def on_fit_end(self) -> None:
        if self.trainable_material is not None:  # the answer of an inverse run, where the user sees it
            rank_zero_info(f"Recovered material after {self.global_step} steps: {self.trainable_material.extra_repr()}"
                           " (* = trained, else known)")

    @torch.enable_grad()
    def validation_step(self, xyt: Tensor, batch_idx: int) -> None:
        shots.update_metric(self, self.val_metric, xyt.to(self.dtype))

    def on_validation_epoch_end(self) -> None:
        log_validation(self)

    def truth_known(self) -> bool:
        """Whether the problem's medium is the truth the observations came from (synthetic observations)."""
        datamodule = getattr(compat.attached_trainer(self), "datamodule", None)
        return bool(getattr(getattr(datamodule, "observations", None), "knows_truth", False))

    @torch.enable_grad()
    def test_step(self, xyt: Tensor, batch_idx: int) -> None:
        shots.update_metric(self, self.test_metric, xyt.to(self.dtype))

    def on_test_epoch_end(self) -> None:
        log_test(self)

    def predict_step(self, xyt: Tensor, batch_idx: int) -> dict[str, Tensor]:
        return {"xyt": xyt, "displacement": shots.shot_displacements(self, xyt)}  # (N, 2 S)

    def size_buffers_like(self, state_dict: dict) -> None:
        """Give the buffers whose size a fit sets (the time windows' spline grid) the sizes in ``state_dict``, before
        it is checked against this model and loaded."""
        if self.marching is not None:
            self.marching.resize(state_dict, "marching.")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        save_run_state(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        load_run_state(self, checkpoint)

    def param_groups(self) -> list[dict]:
        """The network's parameters, and the material's in a group of their own with ``unknowns.lr``."""
        if self.trainable_material is None:
            return [{"params": self.trained_parameters()}]
        material = list(self.trainable_material.parameters())
        ids = {id(p) for p in material}
        rest = [p for p in self.trained_parameters() if id(p) not in ids]
        return [{"params": rest}, {"params": material, "lr": self.unknowns.lr}]

    def trained_parameters(self) -> list:
        """The parameters an optimizer updates: all but the finished time windows' frozen networks."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        if self.stage == "lbfgs":  # resumed inside the L-BFGS stage
            return self.lbfgs.optimizer(self.trained_parameters(), self)
        optimizer = self.optimizer_factory(self.param_groups())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

