"""``MetaTrainer``: meta-trains an update rule on batches of problem instances.

Each training batch is unrolled for ``horizon`` steps in segments of ``unroll`` steps
(truncated back-propagation through time): after each segment the meta-loss over the
segment is back-propagated into the rule's weights, the meta-gradient is clipped, the
meta-optimizer steps, and the iterate and rule state (LSTM hidden state included) are
detached and carried into the next segment. Manual optimization, since one batch makes
``horizon / unroll`` meta-steps.

Validation rolls the rule out on each fixed scenario of the data module (InD and OOD)
for ``val_steps`` and logs the median relative suboptimality at ``val_checkpoints`` as
``val/{scenario}/rel@{k}``, and ``val/loss`` = the mean objective F(x_k) over k = 1 … ``val_steps``
and the instances of the InD scenario (what checkpoints monitor: the official code keeps the
checkpoint with the lowest such mean).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor

from l2o.eval.metrics import median, relative_suboptimality
from l2o.eval.rollout import pin_malloc_above_state, rollout, unroll_objectives
from l2o.meta.losses import META_LOSSES
from l2o.rules import LipschitzEstimate, StepContext, build_rule
from problems import Instances

META_OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


class MetaTrainer(LightningModule):
    """Meta-trains an update rule by truncated unrolls over batches of problem instances.

    Args:
        rule: registry name of the rule (``gomath``, ``mathl2o``, ``l2l``, ``rnnprop``).
        rule_config: its constructor arguments (e.g. ``{"hidden_size": 20}``).
        horizon: T, optimizer steps per training batch.
        unroll: K, steps per truncated segment (T must be a multiple of K).
        meta_loss: ``mean`` | ``weighted`` | ``last`` | ``log_relative`` (each a mean over
            the batch's instances).
        batch_reduction: ``mean`` over the instances, or ``sum`` (B × the mean: the official
            NTK-GD code's summed loss, whose meta-gradient grows with the batch).
        meta_optimizer: ``adam`` (the GoMathL2O code) or ``sgd`` (the NTK-GD code).
        lr: meta-optimizer learning rate.
        lr_milestones: meta-steps at which the learning rate is multiplied by ``lr_gamma``.
        lr_gamma: the schedule's factor.
        grad_clip: max norm of the meta-gradient (0 disables clipping).
        val_steps: validation rollout length.
        val_checkpoints: steps at which validation relative suboptimality is logged.
        compile: run each training segment (``unroll`` steps and their objectives, forward
            and backward) through ``torch.compile`` as one graph: a speed setting for long
            runs, since the first batch compiles (about a minute for GoMathL2O on 2 CPU
            cores) and every batch shape compiles once; the trained weights are the same
            without it, to rounding.
        lipschitz: ``exact`` (the family's L, as the papers train) or ``estimate``: the rule
            is unrolled on the online estimate of :class:`~l2o.rules.LipschitzEstimate`
            (no constant), so it learns the input scale it sees as a drop-in without one;
            ``l2o export`` records it and ``l2o.zoo.load`` returns such an entry wrapped in
            the estimate.
    """

    def __init__(
        self,
        rule: str = "gomath",
        rule_config: dict[str, Any] | None = None,
        horizon: int = 100,
        unroll: int = 20,
        meta_loss: str = "mean",
        lr: float = 1e-2,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.1,
        grad_clip: float = 1.0,
        val_steps: int = 100,
        val_checkpoints: list[int] | None = None,
        compile: bool = False,
        batch_reduction: str = "mean",
        meta_optimizer: str = "adam",
        lipschitz: str = "exact",
    ) -> None:
        super().__init__()
        if batch_reduction not in ("mean", "sum"):
            raise ValueError(f"Invalid batch_reduction: {batch_reduction!r}; choose 'mean' or 'sum'")
        if meta_optimizer not in META_OPTIMIZERS:
            raise ValueError(f"Invalid meta_optimizer: {meta_optimizer!r}; choose from {sorted(META_OPTIMIZERS)}")
        if lipschitz not in ("exact", "estimate"):
            raise ValueError(f"Invalid lipschitz: {lipschitz!r}; choose 'exact' or 'estimate'")
        if horizon < 1 or unroll < 1 or horizon % unroll:
            raise ValueError(f"horizon ({horizon}) must be a positive multiple of unroll ({unroll})")
        if meta_loss not in META_LOSSES:
            raise ValueError(f"Invalid meta_loss: {meta_loss!r}; choose from {sorted(META_LOSSES)}")
        if not lr > 0 or grad_clip < 0:
            raise ValueError(f"Invalid lr ({lr}) or grad_clip ({grad_clip})")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.rule = build_rule(rule, **(rule_config or {}))
        self.meta_loss = META_LOSSES[meta_loss]
        self.val_checkpoints = sorted(k for k in (val_checkpoints or [10, 50, val_steps]) if k <= val_steps)

    @property
    def stepping_rule(self):
        """What is unrolled: the rule, or the rule on the online L estimate (a wrapper with no
        weights of its own, so the checkpoint holds the rule's alone)."""
        return LipschitzEstimate(self.rule) if self.hparams.lipschitz == "estimate" else self.rule

    # -------------------------------------------------------------- training
    def training_step(self, instances: Instances, batch_idx: int) -> Tensor:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        hp = self.hparams
        # The LSTM rules' random initial state: seeded by the step count, which a resumed
        # run restores, so an interrupted run continues exactly.
        ctx = dataclasses.replace(StepContext.for_instances(instances),
                                  generator=torch.Generator().manual_seed(int(self.global_step)))
        optimum = instances.optimum() if hp.meta_loss == "log_relative" else None
        x = instances.x0()
        rule = self.stepping_rule
        state = rule.init_state(x, ctx)
        pin_malloc_above_state(x, state)  # here, not in a compiled segment's trace
        losses = []
        for start in range(0, hp.horizon, hp.unroll):
            with rule.shared_weights():  # the weights change only at the segment's end
                values, x, state = self.segment()(rule, instances, x, state, ctx)
            steps = torch.arange(start + 1, start + hp.unroll + 1, device=x.device)
            loss = self.meta_loss(values, steps, optimum, hp.horizon)
            if hp.batch_reduction == "sum":
                loss = loss * instances.batch_size
            optimizer.zero_grad()
            self.manual_backward(loss)
            norm = torch.nn.utils.clip_grad_norm_(
                self.rule.parameters(), hp.grad_clip if hp.grad_clip > 0 else float("inf")
            )
            # A non-finite meta-gradient would destroy the weights: skip that update.
            if bool(torch.isfinite(norm)):
                optimizer.step()
            scheduler.step()
            x = x.detach()
            state = {k: v.detach() for k, v in state.items()}
            losses.append(loss.detach())
        mean_loss = torch.stack(losses).mean()
        # Once per batch (a self.log call costs about 0.6 ms, 2% of a compiled toy batch when
        # made per segment): the last segment's norm, the value Lightning kept from per-segment calls.
        self.log("train/grad_norm", norm, on_step=True)
        self.log("train/meta_loss", mean_loss, prog_bar=True, on_step=True)
        return mean_loss

    def segment(self):
        """What runs a training segment: :meth:`unrolled_objectives`, or with ``compile=True`` its
        ``torch.compile`` (made on first use, and not part of copies or pickles)."""
        if not self.hparams.compile:
            return self.unrolled_objectives
        if "_compiled_segment" not in self.__dict__:
            self.__dict__["_compiled_segment"] = torch.compile(self.unrolled_objectives, dynamic=False)
        return self.__dict__["_compiled_segment"]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_compiled_segment", None)
        return state

    def unrolled_objectives(self, rule, instances: Instances, x: Tensor, state: dict[str, Tensor],
                            ctx: StepContext) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One truncated segment: ``rule`` unrolled ``unroll`` steps from ``x`` ``(B, n)``,
        ``state``. Returns the objectives F(x_k) ``(unroll, B)`` and the last ``x``, ``state``
        (what ``compile=True`` compiles as one graph)."""
        values = []
        for x, state, value in unroll_objectives(rule, instances, self.hparams.unroll, x=x, state=state, ctx=ctx):
            values.append(value)
        return torch.stack(values), x, state

    # ------------------------------------------------------------ validation
    def validation_step(self, batch: tuple[str, Instances], batch_idx: int) -> None:
        name, instances = batch
        trajectory = rollout(self.stepping_rule, instances, self.hparams.val_steps)
        relative = relative_suboptimality(trajectory.objective, instances.optimum())
        for k in self.val_checkpoints:
            self.log(f"val/{name}/rel@{k}", median(relative[k]), batch_size=instances.batch_size)
        if name == "ind":  # the official criterion: the mean objective over the validation run
            objective = torch.nan_to_num(trajectory.objective[1:], nan=1e30, posinf=1e30)
            self.log("val/loss", objective.mean(), prog_bar=True, batch_size=instances.batch_size)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the checkpoint this run resumed from (``l2o export`` joins the validation
        curves of an interrupted run's pieces through it)."""
        resumed = self.trainer.ckpt_path if self._trainer is not None else None
        checkpoint["resumed_from"] = str(resumed) if resumed else None

    # -------------------------------------------------------------- optimizer
    def configure_optimizers(self):
        optimizer = META_OPTIMIZERS[self.hparams.meta_optimizer](self.rule.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(self.hparams.lr_milestones or []), gamma=self.hparams.lr_gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
