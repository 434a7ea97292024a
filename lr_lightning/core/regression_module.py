"""The LightningModule: loss, optimizer and metrics around any regression network.

``RegressionModule`` is stage 5 of the tutorial: what the hand-written loop did (the loss, the SGD update) plus what
Lightning adds (metrics, logging, checkpoints that rebuild the network by themselves). Its parts are injected, as in
lightning-hydra-template: the network, the loss, an optimizer factory and a scheduler factory (by config:
``--loss HuberLoss --optimizer AdamW --optimizer.lr 0.01``). What it needs from the data (the feature map, the target
names, the dtype) it receives as arguments, ``**dm.module_inputs()``; ``setup`` refuses a datamodule that disagrees.
The checks it runs live in :mod:`lr_lightning.core.checks`; the linear model's extras in
:mod:`lr_lightning.core.linear`; the fast path in :mod:`lr_lightning.core.steps_per_call`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics.regression import R2Score

from lr_lightning.core import checks, weighting
from lr_lightning.core.checkpoints import build_model, class_path, factory_recipe, model_spec
from lr_lightning.core.features import FeatureMap
from lr_lightning.core.quiet import quiet_lightning

Batch = tuple[torch.Tensor, torch.Tensor]
# The factories the module is given (lightning.pytorch.cli's aliases, spelled out here: importing that module defines
# a second class named ReduceLROnPlateau, which makes `--lr_scheduler ReduceLROnPlateau` ambiguous to jsonargparse).
OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]
LRSchedulerCallable = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler
                               | torch.optim.lr_scheduler.ReduceLROnPlateau]
DEFAULT_OPTIMIZER = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01}}


class RegressionModule(L.LightningModule):
    """Trains any regression ``nn.Module`` ``(N, in) -> (N, out)`` with an injected loss (default MSE).

    The default optimizer is plain ``torch.optim.SGD`` with ``lr=0.01``, so a full-batch fit reproduces the
    hand-written tutorial step for step. Logged: ``train/loss`` (the epoch's mean, weighted by batch size, in the
    units the network trains in), ``train/loss_step``, ``val/loss`` (the same loss, on predictions and targets in the
    data's original units), ``val/mse``, ``val/mae``, ``val/r2`` and the same for ``test/``; with several targets the
    metrics average over them and ``val/mse_<target>`` etc. give each one.

    >>> from functools import partial
    >>> from lr_lightning import LinearRegression
    >>> module = RegressionModule(LinearRegression(2), loss=nn.HuberLoss(delta=0.5),
    ...                           optimizer=partial(torch.optim.AdamW, lr=0.1))
    >>> module(torch.zeros(5, 2)).shape
    torch.Size([5, 1])
    >>> module.hparams.loss, module.hparams.optimizer["class_path"]
    ({'class_path': 'torch.nn.modules.loss.HuberLoss', 'init_args': {'reduction': 'mean', 'delta': 0.5}}, \
'torch.optim.adamw.AdamW')
    """

    def __init__(
        self,
        model: nn.Module | Mapping[str, Any],
        optimizer: OptimizerCallable | Mapping[str, Any] | None = None,
        lr_scheduler: LRSchedulerCallable | Mapping[str, Any] | None = None,
        loss: nn.Module | Mapping[str, Any] | None = None,
        *,
        normalization: dict[str, Any] | None = None,
        output_names: list[str] | None = None,
        weights_dtype: str | None = None,
        monitor: str = "val/loss",
        compile: bool = False,
        trusted: Iterable[type] = (),
    ) -> None:
        """
        Args:
            model: the network, or its recipe ``{"class_path": ..., "init_args": ...}`` (a config's or a
                checkpoint's form; built only if its class is trusted, see ``trusted``).
            optimizer: ``params -> Optimizer``: a class, ``functools.partial(torch.optim.AdamW, lr=0.01)``, or a
                recipe. Default: ``torch.optim.SGD`` with ``lr=0.01``.
            lr_scheduler: ``optimizer -> scheduler``, stepped once per epoch; None for a constant rate.
            loss: any ``nn.Module`` loss (``nn.HuberLoss(delta=0.5)``) or its recipe; default ``nn.MSELoss()``.
            normalization: the data's feature map (:class:`~lr_lightning.core.features.FeatureMap` spec), applied in
                ``forward`` so predictions are in original units. From ``datamodule.module_inputs()``.
            output_names: the targets' names, for per-target metrics. From ``datamodule.module_inputs()``.
            weights_dtype: ``"float64"`` trains the network in float64 (float64 data stays float64). From
                ``datamodule.module_inputs()``.
            monitor: the metric ``ReduceLROnPlateau`` watches (``train/loss`` when there is no validation split).
            compile: run the network through ``torch.compile`` (checkpoints are unaffected).
            trusted: classes besides this package's networks, torch's losses, optimizers and schedulers that a recipe
                may name; a recipe's class is called, so only classes whose code you trust. Never saved.
        """
        super().__init__()
        quiet_lightning()  # the Python API as quiet as the command line (lr_lightning/core/quiet.py)
        trusted = checks.trusted_classes(trusted)
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be true or false, got {compile!r}")
        if weights_dtype not in (None, "float32", "float64"):
            raise ValueError(f"weights_dtype must be float32 or float64, got {weights_dtype!r}")
        if model is None:
            raise ValueError("model: no network given (a checkpoint that does not record how to build its network "
                             "needs it: RegressionModule.load_from_checkpoint(path, model=...))")
        networks = [c for c in trusted if issubclass(c, nn.Module)]
        self.model = build_model(model, networks) if isinstance(model, Mapping) else model
        if not isinstance(self.model, nn.Module):
            raise ValueError(f"model: expected an nn.Module or a recipe {{'class_path': ..., 'init_args': ...}}, "
                             f"got a {type(model).__name__}")
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ValueError(f"the network {type(self.model).__name__} has no trainable parameters: nothing to train")
        if weights_dtype == "float64" and all(p.dtype == torch.float32 for p in self.model.parameters()):
            self.model.to(torch.float64)  # float64 data trains a float64 network (float32 would round every batch)
        self.loss_fn = checks.build_loss(loss, trusted)
        checks.check_loss(self.loss_fn)
        recipes = {"model": dict(model) if isinstance(model, Mapping) else model_spec(self.model),
                   "loss": checks.canonical_loss(loss) if isinstance(loss, Mapping) else model_spec(self.loss_fn)}
        for key, part in (("model", self.model), ("loss", self.loss_fn)):
            if recipes[key] is None:
                rank_zero_warn(f"cannot record how to rebuild the {key} {type(part).__qualname__}: store its __init__ "
                               "arguments as a dict self.init_args (or as same-name attributes), or give it as a "
                               f"recipe (class_path and init_args); else pass {key}= to load_from_checkpoint.")
        optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
        self._factories = {"optimizer": checks.factory(optimizer, "optimizer", trusted),
                           "lr_scheduler": checks.factory(lr_scheduler, "lr_scheduler", trusted)}
        checks.check_factories(self.model, self._factories)
        # Recipes, not objects, go into hparams: checkpoints then rebuild the network and the loss by themselves.
        self.save_hyperparameters({**recipes, "optimizer": factory_recipe(optimizer),
                                   "lr_scheduler": factory_recipe(lr_scheduler), "normalization": normalization,
                                   "output_names": output_names, "weights_dtype": weights_dtype, "monitor": monitor,
                                   "compile": compile})
        self.save_hyperparameters(checks.subclass_arguments(self, self.hparams))  # a subclass's own (delta=0.5)
        # Raw inputs -> model features, and model outputs -> original units (None: the identity).
        self.feature_map = FeatureMap(normalization) if normalization else None
        checks.check_intercept(self.feature_map, self.model)
        if compile:
            self.model.compile()  # in place: the parameters and state_dict keys stay the network's own
        # The epoch's mean loss per split, weighted by batch size and accumulated on the device.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        # One state per target (num_outputs / raw_values): the epoch's figures per target and, averaged, overall.
        metrics = regression_metrics(len(output_names) if output_names else 1)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    # ------------------------------------------------------------------------------------ checkpoints
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             strict: bool | None = None, weights_only: bool | None = None,
                             **kwargs: Any) -> RegressionModule:
        """Lightning's ``load_from_checkpoint``, after :func:`~lr_lightning.core.checkpoints.check_checkpoint_file`
        looked at the file: one ValueError / FileNotFoundError naming it rather than an error deep inside Lightning.
        ``trusted=[MyNet]`` names classes a recipe may build."""
        from lr_lightning.core.checkpoints import check_checkpoint_file

        if isinstance(checkpoint_path, (str, Path)) and weights_only is not False:
            check_checkpoint_file(Path(checkpoint_path), cls)
        return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, weights_only,
                                            **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        checks.check_state_dict(self, state_dict, strict)  # one line, not torch's many-line size mismatch
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def check_resumable(self, checkpoint: Mapping[str, Any], feature_names: list[str] | None = None) -> None:
        """A ValueError naming what differs if training cannot continue from ``checkpoint`` with this module."""
        checks.check_resumable(self, checkpoint, feature_names)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["module_class"] = class_path(type(self))  # which class to rebuild (a subclass, say)
        checks.warn_unrecorded(self, self.hparams)  # a subclass's tensor argument cannot be in it: say so, once

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is not None and self.trainer.state.fn == "fit":  # resuming: check before anything loads
            self.check_resumable(checkpoint)

    def setup(self, stage: str) -> None:
        checks.check_handoff(self, self.trainer.datamodule, stage)  # `**dm.module_inputs()` cannot be forgotten

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

    def model_step(self, batch: Batch, original_units: bool = False) -> tuple[torch.Tensor, torch.Tensor,
                                                                                torch.Tensor]:
        """The step shared by train, val and test: ``(loss, preds, targets)`` on a batch in model units; with
        ``original_units``, predictions and targets (and so the loss) are mapped back to the data's units first."""
        x, y, *w = batch  # (x, y), or (x, y, w) with a weight column: the loss is then weighted
        preds = self.model(x)
        if preds.shape != y.shape:
            # (B, 1) against (B,) would broadcast to (B, B) in the loss and train the wrong model without a word.
            raise ValueError(f"prediction shape {tuple(preds.shape)} != target shape {tuple(y.shape)}; "
                             "targets must be (n_samples, n_outputs), a 1-D target one column")
        if original_units and self.feature_map is not None:
            preds, y = self.feature_map.untarget(preds), self.feature_map.untarget(y)
        if not len(y):
            # Under DDP the last global batch of an epoch may leave a rank nothing (fewer samples than ranks). It
            # still takes part in the step's gradient all-reduce, with a zero loss and zero gradients.
            return preds.sum() * 0.0, preds, y
        return weighting.step_loss(self.loss_fn, preds, y, w), preds, y

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self.model_step(batch)
        # LBFGS evaluates the loss many times within one optimizer step (Lightning runs this method for each): the
        # step's loss is the first, at the step's start, as for SGD; counting the trial points would log their mean.
        if getattr(self, "_counted", None) == (self.global_step, batch_idx):
            return loss
        self._counted = (self.global_step, batch_idx)
        self._count_loss(loss.detach(), len(batch[0]))
        # `self.log` costs more than a linear-regression step: the epoch's metric object is logged once per epoch
        # (Lightning computes it at the epoch's end), the step value on the steps the logger writes.
        if self._first_call_of_epoch():
            self.log("train/loss", self.train_loss, on_step=False, on_epoch=True)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def _count_loss(self, loss: torch.Tensor, rows: int) -> None:
        """Adds one step's loss, weighted by its ``rows``, to the epoch's mean (``train/loss``; a view, no copy:
        torchmetrics 1.9 drops ``weight`` when nan_strategy="disable", torchmetrics#3434)."""
        self.train_loss.update(loss.expand(rows))

    def _first_call_of_epoch(self) -> bool:
        """Whether this is the epoch's first ``training_step`` in this run, where ``train/loss`` is logged. Not
        ``batch_idx == 0``: a run resumed mid-epoch starts at a later batch (its epoch's mean is of those batches)."""
        marker = getattr(self, "_loss_logged", None)
        if marker is not None and marker[0]() is self.trainer and marker[1] == self.trainer.current_epoch:
            return False
        self._loss_logged = (weakref.ref(self.trainer), self.trainer.current_epoch)
        return True

    def __getstate__(self) -> dict[str, Any]:  # Lightning's drops the Trainer; so goes the weak reference to it
        return {k: v for k, v in super().__getstate__().items() if k != "_loss_logged"}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._update(batch, self.val_loss, self.val_metrics)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._update(batch, self.test_loss, self.test_metrics)

    def _update(self, batch: Batch, mean_loss: MeanMetric, metrics: MetricCollection) -> None:
        # States accumulate over the whole epoch (exact, whatever the batch sizes) and sum across devices.
        loss, preds, y = self.model_step(batch, original_units=True)
        if len(y):
            mean_loss.update(loss, weight=len(y))
        metrics.update(preds, y)

    def on_validation_epoch_end(self) -> None:
        self.log_split(self.val_loss, self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self.log_split(self.test_loss, self.test_metrics)

    def log_split(self, mean_loss: MeanMetric, metrics: MetricCollection) -> dict[str, torch.Tensor]:
        """Log a split's loss and metrics (``val/loss``, ``val/mse``, ...); returns the metrics' values."""
        split = metrics.prefix.rstrip("/")
        if mean_loss.update_called:
            self.log(f"{split}/loss", mean_loss.compute(), sync_dist=False)
        mean_loss.reset()
        return log_metrics(self, metrics, self.hparams.output_names or [])

    def predict_step(self, batch: Batch | torch.Tensor, batch_idx: int) -> torch.Tensor:  # raw rows in, raw out
        return self(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        optimizer = self._factories["optimizer"](self.parameters())
        if self._factories["lr_scheduler"] is None:
            return optimizer
        scheduler = self._factories["lr_scheduler"](optimizer)
        # Stepped once per epoch (Lightning's default interval): schedules are stated in epochs.
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.hparams.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_fit_end(self) -> None:
        # TensorBoard's HPARAMS tab: the hyperparameters beside the final val (else train) loss, once, under the
        # curve's own tag (fit.py's RunLogger draws no card for it, nor Lightning's placeholder hp_metric of -1).
        metrics, logger = self.trainer.callback_metrics, self.logger
        key = "val/loss" if "val/loss" in metrics else "train/loss"
        if key in metrics and isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(logger.hparams, {key: float(metrics[key])}, step=self.global_step)


def regression_metrics(k: int) -> MetricCollection:
    """MSE, MAE and R² over ``k`` targets, one state per target (``num_outputs`` / ``raw_values``)."""
    return MetricCollection({"mse": MeanSquaredError(num_outputs=k), "mae": MeanAbsoluteError(num_outputs=k),
                             "r2": R2Score(multioutput="raw_values")})


def log_metrics(module: L.LightningModule, metrics: MetricCollection, names: list[str]) -> dict[str, torch.Tensor]:
    """Log each metric averaged over the targets (``val/mse``; R² the mean of the targets' R²) and, with several
    targets, per target (``val/mse_<name>``); returns the values (``compute`` summed the states across devices)."""
    if not next(iter(metrics.values())).update_called:  # an empty loop: nothing to report
        return {}
    values = metrics.compute()
    for key, value in values.items():
        value = value.reshape(-1)
        module.log(key, value.mean(), sync_dist=False)
        if len(names) > 1 and len(value) == len(names):
            for name, v in zip(names, value, strict=True):
                module.log(f"{key}_{name}", v, sync_dist=False)
    metrics.reset()
    return values
