"""The fast path: several optimizer steps per ``training_step`` (``steps_per_call``), an opt-in room.

Lightning's own work per ``training_step`` (a dozen hook dispatches, ~0.25-0.5 ms on a 2-core AMD EPYC) costs more
than a linear-regression step. :class:`StepsPerCallModule` is a :class:`RegressionModule` that takes ``K`` optimizer
steps per call, on a block of ``K`` batches, so that work is paid once per ``K`` steps: the same batches, in the same
order, the same weights bit for bit as ``K = 1``. Everything about it lives here; the plain ``RegressionModule``
runs Lightning's own loop and knows nothing of blocks.

How blocks are served: at ``setup("fit")`` the module wraps two methods of ``trainer.datamodule`` on the instance
(never its class): ``train_dataloader``, which then returns :class:`StepBlocks` over the datamodule's own loader when
``K > 1``, and ``transfer_batch_to_device``, which moves a :class:`Block` batch by batch with the datamodule's own
code (Lightning calls the datamodule's hook, not the module's, when the datamodule defines one). ``teardown`` puts
both back.

>>> from lr_lightning import LinearRegression
>>> module = StepsPerCallModule(LinearRegression(2), steps_per_call=4)
>>> module.hparams.steps_per_call, module.resolved_steps_per_call  # 1 outside a fit
(4, 1)
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import lightning as L
import torch

from lr_lightning.core.checkpoints import unwrap_factory
from lr_lightning.core.data.datamodules import RegressionDataModule
from lr_lightning.core.data.loaders import Batch, BlockOrder, EpochOrder, TensorBatches
from lr_lightning.core.linear import LinearRegressionModule

# `steps_per_call="auto"`: enough rows per training_step that Lightning's own ~0.25-0.5 ms per call is a small share
# of it. A linear-regression step costs 0.15-0.5 ms per 1,024 rows x 16 features on the 2-core AMD EPYC VM (the hand
# loop of scripts/benchmark.py: 0.15-0.50 s for 977 steps, quiet or shared), so 32,768 rows (K = 32 at batch 1024, 4
# at 8192) is 5-16 ms of compute per call: Lightning's share is 3-5 % (README, "Steps per call"). Capped so that a
# tiny batch still returns to Lightning (signals, progress, checkpoints) every few milliseconds.
AUTO_ROWS_PER_CALL, AUTO_MAX_STEPS = 32_768, 256


class Block(tuple):
    """``K`` consecutive batches ``((x, y), ...)`` served as one item, for a module that takes ``K`` optimizer steps
    per ``training_step`` (``StepsPerCallModule(steps_per_call=K)``). A distinct type, so that a module (and
    ``transfer_batch_to_device``) can tell a block from a batch, whose tuple is ``(x, y)``.

    ``start`` is the position of its first batch in the epoch (0-based): Lightning steps an ``"interval": "step"``
    scheduler by the batch's position in the epoch, which the module needs for each step of the block.
    """

    start: int = 0
    _source: TensorBatches | None = None

    @classmethod
    def of(cls, batches: Iterable[Batch], start: int, source: TensorBatches | None) -> Block:
        """``batches`` as a block whose first batch is the epoch's ``start``-th, served by ``source``."""
        block = cls(batches)
        block.start, block._source = start, source
        return block

    def like(self, batches: Iterable[Batch]) -> Block:
        """Other ``batches`` (this block's, moved to a device) as a block at the same place in the epoch."""
        return Block.of(batches, self.start, self._source)

    def unserve(self, n: int) -> None:
        """Count this block's last ``n`` batches as not served: training stopped before them (``max_steps``), so a
        run resumed from a checkpoint written now must train on them, as one resumed after the same step with one
        step per call would."""
        if self._source is not None and n > 0:
            self._source._served -= n


class StepBlocks:
    """The batches of ``batches``, unchanged and in the same order, grouped into blocks of ``steps`` (:class:`Block`).

    Lightning's own work per ``training_step`` (a dozen hook dispatches, ~0.25-0.5 ms on a 2-core AMD EPYC) costs more
    than a linear-regression step; a block makes it one call per ``steps`` optimizer steps. Blocks never cross an
    epoch's end (its last block is shorter), so every epoch has ``ceil(batches / steps)`` of them, as Lightning's
    ``num_training_batches`` and ``val_check_batch`` expect. The state (epoch, batches consumed) is the inner
    loader's: checkpoints are written between blocks, so a resumed run with the same ``steps`` groups the rest of
    the epoch as the interrupted one would have.
    """

    batch_sampler = None

    def __init__(self, batches: TensorBatches, steps: int) -> None:
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
        self.batches, self.steps = batches, steps

    @property
    def sampler(self) -> EpochOrder | BlockOrder:
        return self.batches.sampler  # where Lightning calls set_epoch

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps (batches) per epoch; ``len`` counts blocks."""
        return len(self.batches)

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.steps)

    def __iter__(self) -> Iterator[Block]:
        block: list[Batch] = []
        start = 0
        for batch in self.batches:
            if not block:
                start = self.batches._served - 1  # counted when served: this batch's position in the epoch
            block.append(batch)
            if len(block) == self.steps:
                yield Block.of(block, start, self.batches)
                block = []
        if block:
            yield Block.of(block, start, self.batches)

    def state_dict(self) -> dict[str, int]:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches.load_state_dict(state)


class StepsPerCallModule(LinearRegressionModule):
    """A :class:`~lr_lightning.core.linear.LinearRegressionModule` that takes ``steps_per_call`` optimizer steps per
    ``training_step``.

    Built on the linear module because the linear model is where it pays, but any network works (the linear extras
    are inert for one that is not linear). The command line uses it for ``LinearRegression`` (where Lightning's
    per-call work is most of a step's cost) and for others when ``--steps_per_call`` is given.
    ``K = 1`` is Lightning's own loop; ``K > 1``
    steps through a :class:`Block` itself (manual optimization), each step what automatic optimization does.

    >>> from lr_lightning import LinearRegression
    >>> StepsPerCallModule(LinearRegression(1), steps_per_call=0)
    Traceback (most recent call last):
    ...
    ValueError: steps_per_call must be 'auto' or a whole number >= 1, got 0
    """

    def __init__(self, model: Any, optimizer: Any = None, lr_scheduler: Any = None, loss: Any = None, *,
                 steps_per_call: int | str = "auto", **kwargs: Any) -> None:
        """
        Args:
            model, optimizer, lr_scheduler, loss, kwargs: as :class:`LinearRegressionModule`.
            steps_per_call: optimizer steps per ``training_step`` (``K``): the datamodule's batches in blocks of
                ``K``, which the module steps through itself, so Lightning's per-step work is paid once per ``K``
                steps. Same batches, same order, same weights bit for bit as ``K = 1``.
                ``"auto"``: 1 where per-step hooks are needed (LBFGS, gradient clipping or accumulation,
                ``limit_train_batches``, ``overfit_batches`` or a ``val_check_interval`` within the epoch, a callback
                of yours with a per-step hook such as ``on_train_batch_end`` unless it sets ``per_step_hooks = False``,
                one with ``per_step_hooks = True``, a subclass overriding ``training_step``, ``optimizer_step`` or
                another per-step method (see ``_per_step_override``), a step- or time-interval ``ModelCheckpoint``,
                ``ThroughputMonitor``, ``GradientAccumulationScheduler``, a step-interval ``LearningRateMonitor``,
                ``DeviceStatsMonitor``, ``WeightAveraging`` (``EMAWeightAveraging``), ``SpikeDetection``,
                batches not from a ``RegressionDataModule``: see ``_needs_per_step_hooks``), else
                ``ceil(32768 / batch_size)``, at most 256, a quarter epoch and any callback's ``every_n_steps``. A
                whole number > 1 with one of those is a ValueError.
        """
        if not (steps_per_call == "auto" or isinstance(steps_per_call, int) and not isinstance(steps_per_call, bool)
                and steps_per_call >= 1):
            raise ValueError(f"steps_per_call must be 'auto' or a whole number >= 1, got {steps_per_call!r}")
        super().__init__(model, optimizer, lr_scheduler, loss, **kwargs)
        self.save_hyperparameters({"steps_per_call": steps_per_call})

    # ------------------------------------------------------------------- serving blocks (see the module's doc)
    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = self.trainer.datamodule
        if stage != "fit" or dm is None or "train_dataloader" in vars(dm):
            return
        serve, move = dm.train_dataloader, dm.transfer_batch_to_device

        def train_dataloader() -> Any:
            loader = serve()
            return loader if self.automatic_optimization else StepBlocks(loader, self.steps_per_block())

        def transfer_batch_to_device(batch: Any, device: torch.device, dataloader_idx: int) -> Any:
            if isinstance(batch, Block):  # each batch moved as the datamodule moves one
                return batch.like(move(b, device, dataloader_idx) for b in batch)
            return move(batch, device, dataloader_idx)

        dm.train_dataloader, dm.transfer_batch_to_device = train_dataloader, transfer_batch_to_device

    def teardown(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        if stage == "fit" and dm is not None:
            for name in ("train_dataloader", "transfer_batch_to_device"):
                vars(dm).pop(name, None)
        super().teardown(stage)

    @property
    def trained_steps_per_call(self) -> int:
        """The steps per call the last fit served (1 before any), for the summary and the benchmark."""
        return getattr(self, "_block_steps", 1)

    @property
    def steps_per_epoch(self) -> int | None:
        """Optimizer steps per epoch of the fit in progress when it serves blocks (callbacks read it: Lightning's
        ``num_training_batches`` counts calls); None with one step per call."""
        loader = self._trainer.train_dataloader if self._trainer is not None else None
        return len(loader.batches) if isinstance(loader, StepBlocks) else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self._trainer is not None and self.trainer.state.fn == "fit":
            self._resume_steps(checkpoint)

    def _resume_steps(self, checkpoint: dict[str, Any]) -> None:
        requested = self.hparams.get("steps_per_call", "auto")
        saved = saved_steps_per_call(checkpoint)
        switches_mode = (saved == 1) != self.automatic_optimization
        if requested == "auto" and saved != self.resolved_steps_per_call and \
                not (switches_mode and self.trainer.strategy.restore_checkpoint_after_setup):
            # `auto` resumes with the checkpoint's K, whatever it would pick now: Lightning restores the position
            # in the epoch in calls. Another block length is in time until the loaders are built; switching
            # between one step per call and blocks is in time for strategies that restore before configuring the
            # optimizers (for the others check_steps_per_call refuses it below).
            try:
                plan = self.steps_per_call_for(self.trainer, self.trainer.datamodule, requested=saved)
            except ValueError as e:
                raise ValueError(f"cannot resume: the checkpoint was trained with steps_per_call {saved}, and "
                                 f"{str(e).partition(': ')[2]}") from None
            why = plan[1] and "resumed from a checkpoint trained with steps_per_call 1"
            self._steps_plan = (weakref.ref(self.trainer), plan[0], why)
        check_steps_per_call(checkpoint, self.automatic_optimization, requested)

    def configure_optimizers(self) -> Any:
        config = super().configure_optimizers()
        if isinstance(config, dict) and not self.automatic_optimization:
            config["lr_scheduler"].pop("monitor", None)  # with blocks, _step_schedulers reads it itself
        return config

    def on_train_epoch_end(self) -> None:
        if self._trainer is not None and not self.automatic_optimization:
            self._step_schedulers(plateau=True)
        super().on_train_epoch_end()

    # ------------------------------------------------------------------------------ steps per call
    @property
    def automatic_optimization(self) -> bool:
        # Lightning's own loop (one training_step per optimizer step) for K = 1, exactly as before; K > 1 steps
        # through its block itself. Decided per fit, from the Trainer's settings (see steps_per_call_for).
        return self.resolved_steps_per_call == 1

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        # Lightning's constructor sets the attribute; here `steps_per_call` decides (steps_per_call=1: automatic).
        self._automatic_optimization = value

    def __getstate__(self) -> dict[str, Any]:
        # A copy or pickle of the module leaves its Trainer behind (Lightning's __getstate__ drops _trainer): so do the
        # per-fit notes kept with (a weak reference to) it, which a weak reference could not be pickled as.
        state = super().__getstate__()
        state.pop("_steps_plan", None)
        return state

    @property
    def resolved_steps_per_call(self) -> int:
        """``K`` for the fit in progress (1 outside one), decided once per Trainer by :meth:`steps_per_call_for`."""
        trainer = self._trainer
        if trainer is None or trainer.state.fn != "fit":
            return 1
        plan = getattr(self, "_steps_plan", None)
        # The Trainer is held by a weak reference: a deepcopy of the module (EMAWeightAveraging's AveragedModel, for
        # one) would otherwise copy the whole Trainer, its datamodule and the data in it.
        if plan is None or plan[0]() is not trainer:
            self._steps_plan = (weakref.ref(trainer), *self.steps_per_call_for(trainer, trainer.datamodule))
        return self._steps_plan[1]

    @property
    def steps_per_call_reason(self) -> str | None:
        """Why the fit in progress (or the last one) takes one step per call, if it does; None otherwise."""
        plan = getattr(self, "_steps_plan", None)
        return plan[2] if plan is not None else None

    def steps_per_call_for(self, trainer: L.Trainer, datamodule: Any = None,
                           requested: int | str | None = None) -> tuple[int, str | None]:
        """``(K, why K is 1)`` for a fit with ``trainer`` on ``datamodule``: ``steps_per_call`` (or ``requested``)
        resolved. An explicit ``K > 1`` where per-step hooks are needed is a ValueError naming the setting, never
        silently 1."""
        requested = self.hparams.get("steps_per_call", "auto") if requested is None else requested
        why = self._needs_per_step_hooks(trainer, datamodule)
        if requested == "auto":
            if why is not None:
                return 1, why
            batch_size = getattr(datamodule, "batch_size", None) or 1
            steps = max(1, min(AUTO_MAX_STEPS, math.ceil(AUTO_ROWS_PER_CALL / batch_size)))
            # At most a quarter epoch and any callback's interval, so that the default last.ckpt (four an epoch) and
            # `--checkpoint_every N` still come once per interval.
            intervals = [c.every_n_steps for c in trainer.callbacks if isinstance(getattr(c, "every_n_steps", None),
                                                                                   int)]
            per_epoch = _steps_per_epoch(datamodule, trainer.world_size)
            steps = min([steps, *intervals, *([max(1, per_epoch // 4)] if per_epoch else [])])
            if steps == 1:
                return 1, f"an epoch has {per_epoch} step{'s' if per_epoch != 1 else ''}" if per_epoch and \
                    per_epoch < 8 else "a checkpoint interval of 1 step"
            return steps, None
        if requested > 1 and why is not None:
            raise ValueError(f"steps_per_call={requested}: {why} needs one training_step per optimizer step; use "
                             "steps_per_call=1 (or 'auto', which then picks 1)")
        return requested, ("steps_per_call=1 was asked for" if requested == 1 else None)

    def steps_per_block(self) -> int:
        """The block length the datamodule serves this fit (1: plain batches): ``steps_per_call`` as resolved for it,
        the checkpoint's when ``auto`` resumes (see on_load_checkpoint). Remembered for the checkpoint and the
        summary, which outlive the fit's Trainer state."""
        self._block_steps = self.resolved_steps_per_call
        return self._block_steps

    def _needs_per_step_hooks(self, trainer: L.Trainer, datamodule: Any) -> str | None:
        """What in this fit needs Lightning's loop around every optimizer step, in words; None if nothing does."""
        if issubclass(self._optimizer_class(), torch.optim.LBFGS):
            return "LBFGS (its closure evaluates the loss several times per step)"
        if trainer.gradient_clip_val:
            return f"gradient clipping (gradient_clip_val={trainer.gradient_clip_val})"
        if trainer.accumulate_grad_batches != 1:
            return f"gradient accumulation (accumulate_grad_batches={trainer.accumulate_grad_batches})"
        # Lightning counts these in calls (training_step), so with blocks they would count K steps each: a different
        # number of optimizer steps (limit_train_batches, overfit_batches), or validation at other steps.
        # (overfit_batches first: Lightning implements it by setting limit_train_batches. An int counts batches, so
        # even limit_train_batches=1 is a limit; the float 1.0 is the whole epoch.)
        for setting, whole in (("overfit_batches", 0), ("limit_train_batches", 1.0), ("val_check_interval", 1.0)):
            value = getattr(trainer, setting, whole)
            if value != whole if setting == "overfit_batches" else isinstance(value, int) or value != whole:
                return f"{setting}={value} (Lightning counts it in calls into training_step)"
        for callback in trainer.callbacks:
            if why := _per_step_callback(callback):
                return f"the callback {type(callback).__name__} ({why})"
        if why := self._per_step_override():
            return why
        if not isinstance(datamodule, RegressionDataModule):
            return "batches not served by a RegressionDataModule (which serves blocks of steps)"
        return None

    def _per_step_override(self) -> str | None:
        """Why a subclass of this module needs one ``training_step`` per optimizer step, in words; None if it does not.

        Under blocks its ``training_step`` and ``on_train_batch_start``/``_end`` would see a ``Block`` of K batches, and
        Lightning calls neither ``optimizer_step``, ``optimizer_zero_grad``, ``on_before_zero_grad`` nor
        ``configure_gradient_clipping`` under manual optimization: a learning-rate warm-up written in ``optimizer_step``
        (as Lightning's docs show one) would silently not run. A subclass that handles blocks says so, as a callback
        does, with ``per_step_hooks = False``.
        """
        declared = getattr(self, "per_step_hooks", None)
        if declared is not None:
            return f"{type(self).__name__}.per_step_hooks = True" if declared else None
        for hook in MODULE_PER_STEP_HOOKS:
            if getattr(type(self), hook) is not getattr(StepsPerCallModule, hook):
                what = "would see a block of K batches" if hook in MODULE_PER_STEP_HOOKS[:3] else \
                    "is not called under manual optimization"
                return f"{type(self).__name__}.{hook} ({what}; set per_step_hooks = False if it handles blocks)"
        return None

    def _optimizer_class(self) -> type:
        cls, _ = unwrap_factory(self._factories["optimizer"])
        if cls is None:  # a lambda: build one on a copy of the parameters to see what it is
            cls = type(self._factories["optimizer"]([p.detach().clone().requires_grad_()
                                                     for p in self.model.parameters()]))
        return cls

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints fall between calls, and Lightning counts calls (batch_idx) within the epoch: a resumed run must
        # group the rest of the epoch the same way.
        checkpoint["steps_per_call"] = {"steps": getattr(self, "_block_steps", 1),
                                        "automatic": self.automatic_optimization}

    def on_train_start(self) -> None:
        super().on_train_start()
        self._direct_steps = not self.automatic_optimization and _lightning_adds_nothing_per_step(self)
        if self.automatic_optimization:
            return
        # What a subclass's configure_optimizers returns is known only now, after steps_per_call was resolved (the
        # resolution decides between automatic and manual optimization, which Lightning reads before calling it).
        requested = self.hparams.get("steps_per_call", "auto")
        k = f"{self.resolved_steps_per_call}" + (" (auto)" if requested == "auto" else "")
        if any(isinstance(o, torch.optim.LBFGS) for o in self.trainer.optimizers):
            raise ValueError(f"steps_per_call={k}: LBFGS (from "
                             f"{type(self).__name__}.configure_optimizers; its closure evaluates the loss several "
                             "times per step) needs one training_step per optimizer step; use steps_per_call=1")
        if any(c.interval == "step" and isinstance(c.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
               for c in self.trainer.lr_scheduler_configs):
            # Under manual optimization Lightning drops the config's `monitor`: there is nothing to step it on.
            raise ValueError(f"steps_per_call={k}: a ReduceLROnPlateau stepped every step "
                             "(\"interval\": \"step\") needs one training_step per optimizer step; use "
                             "steps_per_call=1")

    def _count_loss(self, loss: torch.Tensor, rows: int) -> None:
        """Adds one step's loss, weighted by its ``rows``, to the epoch's mean (``train/loss``).

        What ``MeanMetric.update`` does (the loss broadcast over the rows, times a weight of ones, summed into the
        metric's ``mean_value`` and ``weight`` states), on the states directly after the epoch's first update: the
        update's wrapper sets a dozen ``nn.Module`` attributes per call, which cost as much as a linear-regression
        step. One function for every step, whatever ``steps_per_call`` is, so the mean is bitwise the same.
        """
        metric, value = self.train_loss, loss.expand(rows)
        if not metric._update_count:  # the epoch's first: through the front door, for torchmetrics' bookkeeping
            metric.update(value)
            return
        weight = torch.ones_like(value).to(metric.dtype)
        metric.mean_value.add_((value.to(metric.dtype) * weight).sum())
        metric.weight.add_(weight.sum())

    def training_step(self, batch: Batch | Block, batch_idx: int) -> torch.Tensor | dict[str, torch.Tensor] | None:
        if isinstance(batch, Block):
            return self._training_block(batch, batch_idx)
        return super().training_step(batch, batch_idx)

    def _training_block(self, block: Block, batch_idx: int) -> dict[str, torch.Tensor]:
        """``len(block)`` optimizer steps, each exactly what Lightning's automatic optimization does for one batch
        (forward, zero_grad, backward, step; the same loss), so the weights are bitwise those of K = 1."""
        trainer, optimizer = self.trainer, self.optimizers()
        every, losses, max_steps = trainer.log_every_n_steps, [], trainer.max_steps
        direct = getattr(self, "_direct_steps", False)
        if self._first_call_of_epoch():
            self.log("train/loss", self.train_loss, on_step=False, on_epoch=True)
        # A subclass's "interval": "step" schedulers, which Lightning leaves to the module under manual optimization.
        per_step = [c for c in trainer.lr_scheduler_configs if c.interval == "step"]
        for position, batch in enumerate(block, start=block.start):
            step = self.global_step  # counts optimizer steps: Lightning counts manual optimizer.step() calls
            if 0 <= max_steps <= step:
                # max_steps is a number of optimizer steps; Lightning itself checks it only between calls. The
                # batches not trained on are given back, so that a checkpoint written now resumes with them.
                block.unserve(len(block) - len(losses))
                break
            loss, _, _ = self.model_step(batch)
            if direct:
                # The same zero_grad, backward and step, without the hooks Lightning would dispatch around them
                # (none of which does anything in this fit; see _lightning_adds_nothing_per_step), keeping the
                # optimizer-step count that global_step reads.
                optimizer.optimizer.zero_grad()
                loss.backward()
                optimizer._on_before_step()
                optimizer.optimizer.step()
                optimizer._on_after_step()
            else:
                optimizer.zero_grad()  # set_to_none, as automatic optimization does
                self.manual_backward(loss)  # under DDP: Lightning prepares the gradient all-reduce for each backward
                optimizer.step()
            for config in per_step:  # as Lightning does after each batch: by the batch's position in the epoch
                if (position + 1) % config.frequency == 0:
                    self.lr_scheduler_step(config.scheduler, None)
            loss = loss.detach()
            self._count_loss(loss, len(batch[0]))
            if (step + 1) % every == 0:
                # Written at its own step, as K = 1 writes it (a host sync, as K = 1's logger has on these steps).
                self.log("train/loss_step", loss, prog_bar=True, logger=False)
                trainer._logger_connector.log_metrics({"train/loss_step": loss, "epoch": trainer.current_epoch},
                                                      step=step)
            losses.append(loss)
        # Lightning adds one per call to the counter its loggers use as the x axis; make it count optimizer steps, so
        # that train/loss, val/* and the rest sit at the same steps as with K = 1.
        # (Steps taken, not the block's length: max_steps may have stopped it early.)
        trainer.fit_loop.epoch_loop._batches_that_stepped += len(losses) - 1
        if trainer.fit_loop.epoch_loop._num_ready_batches_reached():
            self._step_schedulers(plateau=False)  # where automatic optimization steps them: after the last batch
        if not losses:  # max_steps reached before the block's first step (Lightning checks between calls only)
            return None
        # `losses`: every step's loss, for the divergence guard to name the first bad step.
        return {"loss": losses[-1], "losses": torch.stack(losses)}

    def _step_schedulers(self, plateau: bool) -> None:
        """Lightning's epoch-interval scheduler stepping, which it leaves to the module under manual optimization:
        the others after an epoch's last batch, ``ReduceLROnPlateau`` (``plateau``) after its validation."""
        trainer, monitor = self.trainer, self.hparams.monitor
        for config in trainer.lr_scheduler_configs:  # (under manual optimization Lightning keeps no `monitor`)
            is_plateau = isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            if config.interval != "epoch" or is_plateau != plateau or (trainer.current_epoch + 1) % config.frequency:
                continue
            value = trainer.callback_metrics.get(monitor) if plateau else None
            if plateau and value is None:
                raise ValueError(f"ReduceLROnPlateau watches {monitor}, which this run does not log "
                                 f"(logged: {', '.join(sorted(trainer.callback_metrics)) or 'nothing'})")
            self.lr_scheduler_step(config.scheduler, value)



def _steps_per_epoch(datamodule: Any, world_size: int) -> int | None:
    """Optimizer steps per epoch of a datamodule with ``n_train`` and ``batch_size`` (per device), if it has them."""
    n, batch_size = getattr(datamodule, "n_train", None), getattr(datamodule, "batch_size", None)
    if not (isinstance(n, int) and isinstance(batch_size, int) and batch_size > 0):
        return None
    g = batch_size * max(1, world_size)
    return n // g if getattr(datamodule, "drop_last", False) else math.ceil(n / g)


def _saved_steps(checkpoint: Mapping[str, Any]) -> tuple[int, bool]:
    """``(steps, automatic)`` as on_save_checkpoint wrote them; older checkpoints took one step per call."""
    saved = checkpoint.get("steps_per_call") or {"steps": 1, "automatic": True}
    return int(saved.get("steps", 1)), bool(saved.get("automatic", True))


def saved_steps_per_call(checkpoint: Mapping[str, Any]) -> int:
    """The steps per call a checkpoint was trained with (1 for checkpoints from before steps_per_call)."""
    steps, automatic = _saved_steps(checkpoint)
    return 1 if automatic else steps


def check_steps_per_call(checkpoint: Mapping[str, Any], automatic: bool, requested: int | str) -> None:
    """A ValueError when a run resuming from ``checkpoint`` would not use its steps per call, saying why it must:
    Lightning restores the position in the epoch in calls, and one step per call (automatic optimization) and blocks
    (manual) count optimizer steps in different loops. The math is the same either way; only this bookkeeping needs
    the same setting. ``automatic``: this run's mode; ``requested``: its ``steps_per_call``."""
    steps, was_automatic = _saved_steps(checkpoint)
    if was_automatic != automatic or requested not in ("auto", steps):
        wanted = 1 if was_automatic else steps
        raise ValueError(f"cannot resume: the checkpoint was trained with steps_per_call {wanted}, not "
                         f"{requested}; resume with steps_per_call={wanted}")


# A subclass's methods that Lightning calls once per batch, or only under automatic optimization: see
# StepsPerCallModule._per_step_override.
MODULE_PER_STEP_HOOKS = ("training_step", "on_train_batch_start", "on_train_batch_end", "optimizer_step",
                         "optimizer_zero_grad", "on_before_zero_grad", "configure_gradient_clipping")
PER_STEP_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
                  "on_before_optimizer_step", "on_before_zero_grad")


def _per_step_callback(callback: L.Callback) -> str | None:
    """Why ``callback`` must see every optimizer step (so ``steps_per_call`` must be 1), in words; None if it need not.

    A callback says so itself with a class attribute ``per_step_hooks`` (True or False). Otherwise it is assumed to
    need them when it overrides a per-step hook (:data:`PER_STEP_HOOKS`) with code of its own: under blocks that hook
    runs once per call and sees a ``Block``, which code written for batches would misread. This package's callbacks
    and Lightning's are written for calls, except a ``ModelCheckpoint`` saving every N steps or seconds (it checks
    ``global_step % N``, which jumps by K), ``ThroughputMonitor`` (it counts one batch per call),
    ``GradientAccumulationScheduler``, a step-interval ``LearningRateMonitor``, ``DeviceStatsMonitor``,
    ``WeightAveraging`` and ``SpikeDetection`` (they act on every step).
    """
    from lightning.pytorch import callbacks as lightning_callbacks
    from lightning.pytorch.callbacks import (
        DeviceStatsMonitor,
        GradientAccumulationScheduler,
        LearningRateMonitor,
        ModelCheckpoint,
        ThroughputMonitor,
    )

    declared = getattr(callback, "per_step_hooks", None)
    if declared is not None:
        return "per_step_hooks = True" if declared else None
    if isinstance(callback, ModelCheckpoint) and (callback._every_n_train_steps or callback._train_time_interval):
        return "it saves every N training steps or seconds"
    if isinstance(callback, ThroughputMonitor):
        return "it counts batches per call"
    if isinstance(callback, GradientAccumulationScheduler):  # Lightning refuses it under manual optimization
        return "it accumulates gradients over batches"
    if isinstance(callback, LearningRateMonitor) and callback.logging_interval == "step":
        return "it logs the learning rate every N steps, checked once per call"
    if isinstance(callback, DeviceStatsMonitor):  # its per-batch statistics would be logged at other steps
        return "it logs device statistics every N steps, checked once per call"
    # Lightning's code, but per step: once per call under blocks, an average (EMAWeightAveraging) would take the
    # weights of every K-th step only, and a spike check see one loss of K. (Not in every Lightning >= 2.4.)
    for name, why in (("WeightAveraging", "it averages the weights after every optimizer step"),
                      ("SpikeDetection", "it checks every step's loss")):
        cls = getattr(lightning_callbacks, name, None)
        if cls is not None and isinstance(callback, cls):
            return why
    for hook in PER_STEP_HOOKS:
        code = getattr(type(callback), hook, None)
        if code is not None and code is not getattr(L.Callback, hook) and \
                not code.__module__.startswith(("lightning.", "lr_lightning.")):
            return f"its {hook} sees every step; set per_step_hooks = False if it handles a block of steps"
    return None


def _lightning_adds_nothing_per_step(module: L.LightningModule) -> bool:
    """Whether Lightning's work around each manual optimizer step (``manual_backward``, ``LightningOptimizer.step``)
    would do nothing but dispatch hooks here: one process (DDP's backward needs Lightning to prepare its gradient
    all-reduce), full precision (a mixed-precision backward scales the loss), and no callback or module code in the
    hooks it calls. Then a block's steps call torch directly, with the same arithmetic."""
    from lightning.pytorch.plugins.precision import DoublePrecision, Precision
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.utilities.model_helpers import is_overridden

    trainer = module.trainer
    if type(trainer.strategy) is not SingleDeviceStrategy or \
            type(trainer.strategy.precision_plugin) not in (Precision, DoublePrecision):
        return False
    hooks = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
    if any(getattr(type(c), h) is not getattr(L.Callback, h) for c in trainer.callbacks for h in hooks):
        return False
    return not any(is_overridden(h, module) for h in (*hooks, "backward", "optimizer_step", "optimizer_zero_grad"))


