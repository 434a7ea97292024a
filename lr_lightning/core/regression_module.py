"""The LightningModule: loss, optimizer and metrics around any regression network.

``RegressionModule`` is stage 5 of the tutorial. It owns what the hand-written loop did (MSE loss, the SGD update)
plus what Lightning adds: metrics, logging, checkpoints that rebuild the network by themselves. Its parts are
injected, as in lightning-hydra-template: the network, an optimizer factory and a scheduler factory (any of
torch's, by config: ``--optimizer AdamW --optimizer.lr 0.01``). What it needs from the data (the feature map, the
target names, the dtype) it receives as arguments, from :meth:`RegressionDataModule.module_inputs`, never by
reaching into the Trainer.
"""

from __future__ import annotations

import inspect
import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics.regression import R2Score

from lr_lightning.core.checkpoints import (
    _short,
    _structure_problem,
    build_factory,
    build_model,
    factory_recipe,
    model_spec,
    read_checkpoint,
    unwrap_factory,
)
from lr_lightning.core.data.loaders import Block
from lr_lightning.core.features import FeatureMap
from lr_lightning.core.networks import single_linear
from lr_lightning.core.quiet import quiet_lightning

quiet_lightning()  # the Python API as quiet as the command line: see lr_lightning/core/quiet.py

Batch = tuple[torch.Tensor, torch.Tensor]
# `steps_per_call="auto"`: enough rows per training_step that Lightning's own ~0.25-0.5 ms per call is a small share
# of it. A linear-regression step costs 0.15-0.5 ms per 1,024 rows x 16 features on the 2-core AMD EPYC VM (the hand
# loop of scripts/benchmark.py: 0.15-0.50 s for 977 steps, quiet or shared), so 32,768 rows (K = 32 at batch 1024, 4
# at 8192) is 5-16 ms of compute per call: Lightning's share is 3-5 % (README, "Steps per call"). Capped so that a
# tiny batch still returns to Lightning (signals, progress, checkpoints) every few milliseconds.
AUTO_ROWS_PER_CALL, AUTO_MAX_STEPS = 32_768, 256
# The factories the module is given (lightning.pytorch.cli's aliases, spelled out here: importing that module defines
# a second class named ReduceLROnPlateau, which makes `--lr_scheduler ReduceLROnPlateau` ambiguous to jsonargparse).
OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]
LRSchedulerCallable = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler
                               | torch.optim.lr_scheduler.ReduceLROnPlateau]
DEFAULT_OPTIMIZER = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01}}


class RegressionModule(L.LightningModule):
    """Trains any regression ``nn.Module`` ``(N, in) -> (N, out)`` with MSE loss.

    The default optimizer is plain ``torch.optim.SGD`` with ``lr=0.01`` (no momentum, no weight decay), so a
    full-batch fit reproduces the hand-written tutorial step for step. Logged: ``train/loss`` (per epoch, weighted by
    batch size), ``train/loss_step``, ``val/loss``, ``val/mae``, ``val/r2`` and the same for ``test/``; with several
    targets these average over the targets, and ``val/loss_<target>`` etc. give each one.

    >>> from lr_lightning import LinearRegression
    >>> from functools import partial
    >>> module = RegressionModule(LinearRegression(2), optimizer=partial(torch.optim.AdamW, lr=0.1))
    >>> module(torch.zeros(5, 2)).shape
    torch.Size([5, 1])
    >>> module.hparams.model["class_path"], module.hparams.optimizer["class_path"]
    ('lr_lightning.core.networks.LinearRegression', 'torch.optim.adamw.AdamW')
    """

    def __init__(
        self,
        model: nn.Module | Mapping[str, Any],
        optimizer: OptimizerCallable | Mapping[str, Any] | None = None,
        lr_scheduler: LRSchedulerCallable | Mapping[str, Any] | None = None,
        *,
        normalization: dict[str, Any] | None = None,
        output_names: list[str] | None = None,
        weights_dtype: str | None = None,
        monitor: str = "val/loss",
        reference_mse: dict[str, float] | None = None,
        compile: bool = False,
        steps_per_call: int | str = "auto",
        trusted: Iterable[type] = (),
    ) -> None:
        """
        Args:
            model: the network, or its recipe ``{"class_path": ..., "init_args": ...}`` (a config's or a
                checkpoint's form; built only if its class is trusted, see ``trusted``).
            optimizer: ``params -> Optimizer``: a class, ``functools.partial(torch.optim.AdamW, lr=0.01)``, or a
                recipe. Default: ``torch.optim.SGD`` with ``lr=0.01``.
            lr_scheduler: ``optimizer -> scheduler``, stepped once per epoch; None for a constant rate.
            normalization: the data's feature map (:class:`~lr_lightning.core.features.FeatureMap` spec), applied in
                ``forward`` so predictions are in original units. From ``datamodule.module_inputs()``.
            output_names: the targets' names, for per-target metrics. From ``datamodule.module_inputs()``.
            weights_dtype: ``"float64"`` trains the network in float64 (float64 data stays float64). From
                ``datamodule.module_inputs()``. (Not ``dtype`` or ``target_names``: Lightning merges the module's and
                the datamodule's hyperparameters into one table, and a key in both must agree.)
            monitor: the metric ``ReduceLROnPlateau`` watches (``train/loss`` when there is no validation split).
            reference_mse: the best linear fit's MSE per split (``{"val": ...}``, from :mod:`lr_lightning.exact`);
                with it, ``val/excess_mse`` says how far training is from that optimum.
            compile: run the network through ``torch.compile`` (checkpoints are unaffected).
            steps_per_call: optimizer steps per ``training_step`` (``K``): the datamodule serves blocks of ``K``
                batches and the module steps through them itself (manual optimization), so Lightning's per-step
                work is paid once per ``K`` steps. Same batches, same order, same weights bit for bit as ``K = 1``.
                ``"auto"``: 1 where per-step hooks are needed (LBFGS, gradient clipping or accumulation,
                ``limit_train_batches``, ``overfit_batches`` or a ``val_check_interval`` within the epoch, a callback
                of yours with a per-step hook such as ``on_train_batch_end`` unless it sets ``per_step_hooks = False``,
                one with ``per_step_hooks = True``, a subclass overriding ``training_step``, ``optimizer_step`` or
                another per-step method (see ``_per_step_override``), a step- or time-interval ``ModelCheckpoint``,
                ``ThroughputMonitor``, ``GradientAccumulationScheduler``, a step-interval ``LearningRateMonitor``,
                ``DeviceStatsMonitor``,
                ``WeightAveraging`` (``EMAWeightAveraging``), ``SpikeDetection``,
                batches not from a ``RegressionDataModule``: see ``_needs_per_step_hooks``), else
                ``ceil(32768 / batch_size)``, at most 256, a quarter epoch and any callback's ``every_n_steps``. A
                whole number > 1 with one of those is a ValueError.
            trusted: classes besides this package's networks and torch's optimizers that a recipe may name; a recipe's
                class is called, so only classes whose code you trust. Never saved: trust is the loader's decision.
        """
        super().__init__()
        trusted = tuple(trusted)
        kinds = (nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler,
                 torch.optim.lr_scheduler.ReduceLROnPlateau)
        if strays := [c for c in trusted if not (isinstance(c, type) and issubclass(c, kinds))]:
            # A string or a function would widen trust to whatever it resolves to.
            raise ValueError(f"trusted: expected nn.Module, optimizer or scheduler classes, got {strays[0]!r}")
        networks = [c for c in trusted if issubclass(c, nn.Module)]
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be true or false, got {compile!r}")
        if not (steps_per_call == "auto" or isinstance(steps_per_call, int) and not isinstance(steps_per_call, bool)
                and steps_per_call >= 1):
            raise ValueError(f"steps_per_call must be 'auto' or a whole number >= 1, got {steps_per_call!r}")
        if weights_dtype not in (None, "float32", "float64"):
            raise ValueError(f"weights_dtype must be float32 or float64, got {weights_dtype!r}")
        if model is None:
            raise ValueError("model: no network given (a checkpoint that does not record how to build its network "
                             "needs it: RegressionModule.load_from_checkpoint(path, model=...))")
        self.model = build_model(model, networks) if isinstance(model, Mapping) else model
        if not isinstance(self.model, nn.Module):
            raise ValueError(f"model: expected an nn.Module or a recipe {{'class_path': ..., 'init_args': ...}}, "
                             f"got {_short(model)}")
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ValueError(f"the network {type(self.model).__name__} has no trainable parameters: nothing to train")
        if weights_dtype == "float64" and all(p.dtype == torch.float32 for p in self.model.parameters()):
            # Float64 data trains a float64 network: a float32 one would round every batch (on NIST's Norris, LBFGS
            # gets 4 digits instead of 13).
            self.model.to(torch.float64)
        recipe = dict(model) if isinstance(model, Mapping) else model_spec(self.model)
        if recipe is None:
            rank_zero_warn(f"cannot record how to rebuild {type(self.model).__qualname__}: give it as a recipe "
                           "(class_path and init_args, as configs do) or store each __init__ argument as an attribute "
                           "of the same name; else pass model= to load_from_checkpoint.")
        optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
        self._factories = {"optimizer": _factory(optimizer, "optimizer", trusted),
                           "lr_scheduler": _factory(lr_scheduler, "lr_scheduler", trusted)}
        self._check_factories()
        # Recipes, not objects, go into hparams: checkpoints then rebuild the network by themselves, and the
        # hyperparameters say which optimizer trained it.
        self.save_hyperparameters({"model": recipe, "optimizer": factory_recipe(optimizer),
                                   "lr_scheduler": factory_recipe(lr_scheduler), "normalization": normalization,
                                   "output_names": output_names, "weights_dtype": weights_dtype, "monitor": monitor,
                                   "reference_mse": reference_mse, "compile": compile,
                                   "steps_per_call": steps_per_call})
        # Raw inputs -> model features, and model outputs -> original units (None: the identity).
        self.feature_map = FeatureMap(normalization) if normalization else None
        self._check_intercept()
        if compile:
            self.model.compile()  # in place: the parameters and state_dict keys stay the network's own
        self.loss_fn = nn.MSELoss()
        # The epoch's mean train loss, weighted by batch size and accumulated on the device. No NaN check: on a GPU
        # it is a host sync every step, and a NaN loss shows up in the mean anyway.
        self.train_loss = MeanMetric(nan_strategy="disable")
        # One state per target (num_outputs / raw_values): the epoch's figures per target and, averaged, overall.
        metrics = regression_metrics(len(output_names) if output_names else 1)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def _check_factories(self) -> None:
        """Build the optimizer and scheduler once on a copy of the parameters, so that a bad setting (a negative or
        infinite lr, an argument the class does not take) is one line now, not an exception after start-up."""
        params = [p.detach().clone().requires_grad_() for p in self.model.parameters()]
        _check_numbers(self._factories["optimizer"], "optimizer")
        try:
            optimizer = self._factories["optimizer"](params)
        except (TypeError, ValueError) as e:
            raise ValueError(f"optimizer: {str(e).splitlines()[0]}") from None
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer: the factory returned a {type(optimizer).__name__}, not a torch optimizer")
        # torch checks `lr < 0` and the like, which nan passes; and a rate beyond the weights' dtype overflows in the
        # first step (float32: anything above 3.4e38).
        largest = max((torch.finfo(p.dtype).max for p in params if p.is_floating_point()), default=math.inf)
        for group in optimizer.param_groups:
            lr = group.get("lr")
            if isinstance(lr, (int, float)) and not (math.isfinite(lr) and 0 < lr <= largest):
                raise ValueError(f"optimizer: lr must be a finite number > 0, got {lr!r}"
                                 + (" (beyond the weights' float range)" if math.isfinite(lr) and lr > 0 else ""))
            for key, value in group.items():
                numbers = value if isinstance(value, tuple) else (value,)
                if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
                    raise ValueError(f"optimizer: {key} must be finite, got {value!r}")
        if self._factories["lr_scheduler"] is not None:
            try:
                self._factories["lr_scheduler"](optimizer)
            except (TypeError, ValueError, ZeroDivisionError) as e:
                raise ValueError(f"lr_scheduler: {str(e).splitlines()[0]}") from None

    def _check_intercept(self) -> None:
        """Data centred for a model with an intercept, fed to a linear network without one, fits the wrong model
        (NIST's NoInt1: 0.3 correct digits); the reverse cannot map back to raw units. The two must agree."""
        fm, layer = self.feature_map, single_linear(self.model)
        if fm is None or layer is None:
            return
        if fm.bias and layer.bias is None:
            raise ValueError("the data's feature map is centred for a model with an intercept (datamodule bias=True) "
                             "but the network has none (bias=False): pass bias=False to the datamodule too")
        if not fm.bias and layer.bias is not None:
            raise ValueError("the datamodule says the model has no intercept (bias=False) but the network has one: "
                             "build the network with bias=False too")

    # ------------------------------------------------------------------------------------ checkpoints
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             strict: bool | None = None, weights_only: bool | None = None,
                             **kwargs: Any) -> RegressionModule:
        """Lightning's ``load_from_checkpoint``, after a look at the file: a missing file, another program's file or a
        checkpoint without our structure is one ValueError / FileNotFoundError naming the file, not an AttributeError
        from deep inside Lightning. ``trusted=[MyNet]`` names classes a recipe may build."""
        if isinstance(checkpoint_path, (str, Path)) and weights_only is not False:
            path = Path(checkpoint_path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
            try:
                checkpoint = read_checkpoint(path)
            except ValueError as e:
                raise ValueError(f"{path}: not a checkpoint written by lr_lightning ({e})") from None
            problem = _structure_problem(checkpoint)
            unknown = [] if problem else unknown_hyperparameters(checkpoint.get("hyper_parameters") or {})
            if unknown:
                problem = f"unknown hyperparameters {', '.join(unknown)}"
            if problem:
                raise ValueError(f"{path}: not a checkpoint written by lr_lightning ({problem})")
        return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, weights_only,
                                            **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """torch's ``load_state_dict``, after checking that the weights fit the network, with one clear line if not.

        torch would report a mismatch as a many-line "size mismatch" RuntimeError, or with ``strict=False`` load what
        fits and skip the rest.
        """
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"state_dict: expected a mapping of parameter names to tensors, got "
                             f"{type(state_dict).__name__}")
        own = self.state_dict()
        for key, value in state_dict.items():
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"state_dict: {key!r} is a {type(value).__name__}, not a tensor")
            if key in own and value.shape != own[key].shape:
                raise ValueError(f"state_dict: {key!r} has shape {tuple(value.shape)} in the checkpoint, "
                                 f"{tuple(own[key].shape)} in the network {type(self.model).__name__} rebuilt here")
        if strict:
            missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
            if missing or unexpected:
                raise ValueError(f"state_dict does not fit the network {type(self.model).__name__}: "
                                 + "; ".join(f"{what} {', '.join(map(repr, keys[:5]))}"
                                             + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
                                             for what, keys in (("missing", missing), ("unexpected", unexpected))
                                             if keys))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def check_resumable(self, checkpoint: Mapping[str, Any], feature_names: list[str] | None = None) -> None:
        """Raise ValueError, naming what differs, if training cannot continue from ``checkpoint`` with this module:
        another network, optimizer or feature map (standardization, polynomial degree), other features
        (``feature_names``: the data's, compared with the checkpoint's datamodule's), or parameters of other shapes.
        Lightning would fail later with a size mismatch or a missing optimizer key, or worse, load weights trained on
        other features without a word."""
        saved = checkpoint.get("hyper_parameters") or {}
        differs = []
        for key, what in (("model", "network"), ("optimizer", "optimizer"), ("lr_scheduler", "lr_scheduler"),
                          ("normalization", "feature map (standardize/polynomial_degree)")):
            if key in saved and saved[key] != self.hparams.get(key):
                there, here = _describe(key, saved[key], self.hparams.get(key)), \
                    _describe(key, self.hparams.get(key), saved[key])
                differs.append(f"the {what}: " + (f"{there} there, {here} here" if there != here else
                                                  f"{here}, but fitted to other data (its statistics differ)"))
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        if data.get("feature_names") is not None and feature_names is not None \
                and list(data["feature_names"]) != list(feature_names):
            differs.append(f"the features: {', '.join(map(str, data['feature_names']))} there, "
                           f"{', '.join(feature_names)} here")
        state = checkpoint.get("state_dict")
        if not differs and isinstance(state, Mapping):
            ours = {k: tuple(v.shape) for k, v in self.state_dict().items()}
            theirs = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
            if ours != theirs:
                key = next(k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k))
                differs.append(f"the parameters: {key} is {theirs.get(key, 'missing')} there, "
                               f"{ours.get(key, 'missing')} here")
        if differs:
            raise ValueError("cannot resume: the checkpoint was trained with another setting; " + "; ".join(differs)
                             + " (resume with the settings of the first run)")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resuming `trainer.fit(..., ckpt_path=...)`: check before Lightning loads anything. (Not when a checkpoint
        # is loaded for use: load_from_checkpoint rebuilds the module from the checkpoint itself.)
        if self._trainer is not None and self.trainer.state.fn == "fit":
            self.check_resumable(checkpoint)
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

    # ------------------------------------------------------------------------------------------ steps
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions in original units from raw inputs (the feature map, if any, is applied here), in the
        network's dtype: a network trained on float64 data is float64, and float32 inputs are widened for it."""
        param = next(self.model.parameters(), None)
        if param is not None and x.is_floating_point() and x.dtype != param.dtype and param.dtype == torch.float64:
            x = x.to(param.dtype)
        if self.feature_map is None:
            return self.model(x)
        out = self.model(self.feature_map.features(x))
        if out.shape[-1] != len(self.feature_map.y_mean):
            # (N, 1) against a 2-output y_mean would broadcast to (N, 2): predictions for outputs the network lacks.
            raise ValueError(f"the network has {out.shape[-1]} output(s), its normalization (y_mean) "
                             f"{len(self.feature_map.y_mean)}")
        return self.feature_map.untarget(out)

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step shared by train, val and test, on batches already in model units: ``(loss, preds, targets)``."""
        x, y = batch
        preds = self.model(x)
        if preds.shape != y.shape:
            # (B, 1) against (B,) would broadcast to (B, B) in the loss and train the wrong model without a word.
            raise ValueError(f"prediction shape {tuple(preds.shape)} != target shape {tuple(y.shape)}; "
                             "targets must be (n_samples, n_outputs), a 1-D target one column")
        if not len(y):
            # Under DDP the last global batch of an epoch may leave a rank nothing (fewer samples than ranks). It
            # still takes part in the step's gradient all-reduce, with a zero loss and zero gradients.
            return preds.sum() * 0.0, preds, y
        return self.loss_fn(preds, y), preds, y

    # ----------------------------------------------------------------------------- steps per call
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
        for key in ("_steps_plan", "_loss_logged"):
            state.pop(key, None)
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
        if not getattr(datamodule, "serves_step_blocks", False):
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
            if getattr(type(self), hook) is not getattr(RegressionModule, hook):
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
        self._counted = None  # (global_step, batch_idx) whose loss is already counted; see training_step
        self._loss_logged = None  # (trainer, epoch) whose train/loss is logged; see _first_call_of_epoch
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

    def _first_call_of_epoch(self) -> bool:
        """Whether this is the epoch's first ``training_step`` in this run, where ``train/loss`` is logged (once an
        epoch is enough; see training_step). Not ``batch_idx == 0``: a run resumed mid-epoch starts at a later batch,
        and its first epoch then had no ``train/loss`` at all (``--stop_below``'s EarlyStopping stopped the run with
        a RuntimeError). That epoch's mean is of the batches trained in this run."""
        marker = getattr(self, "_loss_logged", None)
        if marker is not None and marker[0]() is self.trainer and marker[1] == self.trainer.current_epoch:
            return False
        self._loss_logged = (weakref.ref(self.trainer), self.trainer.current_epoch)
        return True

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

    def training_step(self, batch: Batch | Block, batch_idx: int) -> torch.Tensor | dict[str, torch.Tensor]:
        if isinstance(batch, Block):
            return self._training_block(batch, batch_idx)
        loss, _, _ = self.model_step(batch)
        # LBFGS evaluates the loss many times within one optimizer step: Lightning runs this method for every
        # evaluation of its line search. The step's loss is the first, at the step's start, as for SGD; counting the
        # others would log (and monitor, checkpoint and stop on) the mean of trial points.
        if getattr(self, "_counted", None) == (self.global_step, batch_idx):
            return loss
        self._counted = (self.global_step, batch_idx)
        # `self.log` costs more than a whole linear-regression step, so it is not called on every step. The epoch
        # mean accumulates on the device; logging the metric object once per epoch is enough for Lightning to
        # compute it at the epoch's end, before any callback reads `train/loss`. The step value is logged only
        # on the steps the logger writes (Lightning's own rule for log_every_n_steps).
        # Weighted by batch size as the loss counted once per sample (a view, no copy): torchmetrics 1.9 drops the
        # `weight` argument when nan_strategy="disable" (torchmetrics#3434).
        self._count_loss(loss.detach(), len(batch[0]))
        if self._first_call_of_epoch():
            self.log("train/loss", self.train_loss, on_step=False, on_epoch=True)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

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

    def on_train_epoch_end(self) -> None:
        if self._trainer is not None and not self.automatic_optimization:
            self._step_schedulers(plateau=True)
        optimizer = self.optimizers().optimizer if self._trainer is not None else None
        if not isinstance(optimizer, torch.optim.LBFGS):
            return
        # The strong-Wolfe line search compares loss values. Once the epoch's loss stops falling, the remaining
        # changes are below what the dtype resolves (on NIST's Wampler5 the loss is ~1 and moves by ~1e-22), and
        # the search drifts in rounding noise. From then on, unit quasi-Newton steps use the gradient alone,
        # which stays precise: measured on Wampler5 in float64, 6.5 correct digits instead of 1.6.
        loss = self.trainer.callback_metrics.get("train/loss")
        previous, self._last_lbfgs_loss = getattr(self, "_last_lbfgs_loss", None), loss
        if loss is not None and previous is not None and not loss < previous:
            for group in optimizer.param_groups:
                group["line_search_fn"] = None

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._update_metrics(batch, self.val_metrics)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._update_metrics(batch, self.test_metrics)

    def _update_metrics(self, batch: Batch, metrics: MetricCollection) -> None:
        # Metric states accumulate over the whole epoch (exact, whatever the batch sizes) and sum across devices.
        _, preds, y = self.model_step(batch)
        if self.feature_map is not None:  # report in the target's own units, not standardized ones
            preds, y = self.feature_map.untarget(preds), self.feature_map.untarget(y)
        metrics.update(preds, y)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics)

    def _log_metrics(self, metrics: MetricCollection) -> None:
        log_metrics(self, metrics, self.hparams.output_names or [], self.hparams.reference_mse)

    def predict_step(self, batch: Batch | torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        optimizer = self._factories["optimizer"](self.parameters())
        if self._factories["lr_scheduler"] is None:
            return optimizer
        scheduler = self._factories["lr_scheduler"](optimizer)
        # Stepped once per epoch (Lightning's default interval): schedules are stated in epochs.
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and self.automatic_optimization:
            config["monitor"] = self.hparams.monitor  # (with blocks, _step_schedulers reads it itself)
        return {"optimizer": optimizer, "lr_scheduler": config}

    # ------------------------------------------------------------------------------------------ results
    def coefficients(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The model as an affine map from raw inputs to raw predictions: ``(weight (out, in), bias (out,))``.

        In float64; ``in`` counts raw powers after a polynomial expansion (x1, x1², …, x2, …); ``bias`` is None
        without an intercept. Raises ValueError for a network that is not linear.
        """
        layer = single_linear(self.model)
        if layer is None:
            raise ValueError(f"coefficients() needs a linear model (one nn.Linear holding all parameters); "
                             f"{type(self.model).__name__} is not one")
        weight = layer.weight.detach().double().cpu().numpy()
        bias = layer.bias.detach().double().cpu().numpy() if layer.bias is not None else None
        if not np.isfinite(weight).all() or (bias is not None and not np.isfinite(bias).all()):
            raise ValueError("coefficients(): the weights are not finite (training diverged)")
        # Check the whole network really is that affine map (no activation or scaling around the layer).
        # Its own generator: asking for the coefficients must not move the global random state.
        probe = torch.randn(8, layer.in_features, generator=torch.Generator().manual_seed(0)).to(layer.weight)
        with torch.no_grad():
            expected = probe.double().cpu().numpy() @ weight.T + (bias if bias is not None else 0)
            if not np.allclose(self.model(probe).double().cpu().numpy(), expected, rtol=1e-4, atol=1e-4):
                raise ValueError(f"coefficients() needs a linear model; {type(self.model).__name__} is not affine")
        if self.feature_map is None:
            return weight, bias
        return self.feature_map.to_raw(weight, bias)

    def on_fit_end(self) -> None:
        # TensorBoard's HPARAMS tab shows `hp_metric` beside the hyperparameters; Lightning writes -1 there
        # until told otherwise. Make it the final validation loss (the training loss without validation).
        metrics = self.trainer.callback_metrics
        key = "val/loss" if "val/loss" in metrics else "train/loss"
        if key in metrics:
            self._hp_metric = float(metrics[key])
            self._log_hp_metric()

    def on_test_end(self) -> None:
        # Lightning logs its -1 placeholder again when a test stage starts (into a new event file, read after the
        # fit's): say the fit's value once more, last.
        self._log_hp_metric()

    def _log_hp_metric(self) -> None:
        value = getattr(self, "_hp_metric", None)
        if self.logger is not None and value is not None:
            self.logger.log_metrics({"hp_metric": value}, step=self.global_step)


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
# RegressionModule._per_step_override.
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


def regression_metrics(k: int) -> MetricCollection:
    """MSE (``loss``), MAE and R² over ``k`` targets, one state per target (``num_outputs`` / ``raw_values``)."""
    return MetricCollection({"loss": MeanSquaredError(num_outputs=k), "mae": MeanAbsoluteError(num_outputs=k),
                             "r2": R2Score(multioutput="raw_values")})


def log_metrics(module: L.LightningModule, metrics: MetricCollection, names: list[str],
                reference_mse: Mapping[str, float] | None = None) -> None:
    """Log each metric averaged over the targets (``val/loss``; R² the mean of the targets' R²) and, with several
    targets, per target (``val/loss_<name>``); with ``reference_mse``, ``<split>/excess_mse`` too. ``compute`` has
    already summed the states across devices."""
    if not next(iter(metrics.values())).update_called:  # an empty loop: nothing to report
        return
    values = metrics.compute()
    split = metrics.prefix.rstrip("/")
    reference = (reference_mse or {}).get(split)
    for key, value in values.items():
        value = value.reshape(-1)
        module.log(key, value.mean(), sync_dist=False)
        if key == f"{split}/loss" and reference is not None:  # both in original units, on the same rows
            module.log(f"{split}/excess_mse", value.mean() - reference, sync_dist=False)
        if len(names) > 1 and len(value) == len(names):
            for name, v in zip(names, value, strict=True):
                module.log(f"{key}_{name}", v, sync_dist=False)
    metrics.reset()


def _check_numbers(factory: Any, what: str) -> None:
    """A factory's arguments that the class takes as numbers (its default is one) must be numbers: torch would say
    ``'<' not supported between instances of 'str' and 'float'``, naming neither the argument nor the value."""
    cls, keywords = unwrap_factory(factory)
    try:
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()} if cls else {}
    except (TypeError, ValueError):
        return
    for key, value in keywords.items():
        default = defaults.get(key)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and \
                (not isinstance(value, (int, float, torch.Tensor)) or isinstance(value, bool)):
            raise ValueError(f"{what}: {key} must be a number, got {value!r}")


def _factory(value: Any, what: str, trusted: tuple[type, ...]) -> Any:
    """An optimizer or scheduler factory from what the module was given: a recipe (built under the trust rule), or a
    callable used as is."""
    if value is None or callable(value) and not isinstance(value, Mapping):
        return value
    if isinstance(value, Mapping):
        return build_factory(value, what, trusted)
    raise ValueError(f"{what}: expected a class, a callable or a recipe {{'class_path': ..., 'init_args': ...}}, "
                     f"got {_short(value)}")


def _describe(key: str, value: Any, other: Any = None) -> str:
    """A hyperparameter as a person reads it in a one-line message; a recipe of the same class as ``other`` shows
    only the arguments that differ (an optimizer has a dozen)."""
    if key in ("model", "optimizer", "lr_scheduler") and isinstance(value, Mapping):
        args = value.get("init_args") or {}
        name = str(value.get("class_path", "?")).rpartition(".")[2]
        if isinstance(other, Mapping) and str(other.get("class_path", "")).rpartition(".")[2] != name:
            return name  # another class: its name says enough
        if isinstance(other, Mapping):
            theirs = other.get("init_args") or {}
            args = {k: v for k, v in args.items() if theirs.get(k, object()) != v}
        return f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})"
    if key == "normalization":
        if not value:
            return "none"
        standardized = any(v != 1.0 for v in value.get("feature_scale", []))
        return f"polynomial_degree={value.get('polynomial_degree')}, bias={value.get('bias')}, " + (
            "standardized" if standardized else "not standardized")
    return repr(value)


def unknown_hyperparameters(hparams: Mapping[str, Any]) -> list[str]:
    """The keys of a checkpoint's ``hyper_parameters`` that ``RegressionModule`` does not take, sorted. ``trusted`` is
    one of them: trust is the user's to give, never the file's."""
    accepted = set(inspect.signature(RegressionModule.__init__).parameters) - {"self", "trusted"}
    return sorted(map(str, set(hparams) - accepted))
