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
from lr_lightning.core.features import FeatureMap
from lr_lightning.core.networks import single_linear
from lr_lightning.core.quiet import quiet_lightning

quiet_lightning()  # the Python API as quiet as the command line: see lr_lightning/core/quiet.py

Batch = tuple[torch.Tensor, torch.Tensor]
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
                                   "reference_mse": reference_mse, "compile": compile})
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
            unknown = [] if problem else unknown_hyperparameters(checkpoint.get("hyper_parameters") or {}, cls)
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

    def on_train_start(self) -> None:
        self._counted = None  # (global_step, batch_idx) whose loss is already counted; see training_step
        self._loss_logged = None  # (trainer, epoch) whose train/loss is logged; see _first_call_of_epoch

    def __getstate__(self) -> dict[str, Any]:
        # A copy or pickle of the module leaves its Trainer behind (Lightning's __getstate__ drops _trainer): so does
        # the per-fit note kept with (a weak reference to) it, which a weak reference could not be pickled as.
        state = super().__getstate__()
        state.pop("_loss_logged", None)
        return state

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
        """Adds one step's loss, weighted by its ``rows``, to the epoch's mean (``train/loss``)."""
        self.train_loss.update(loss.expand(rows))

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
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

    def on_train_epoch_end(self) -> None:
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
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.hparams.monitor
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


def unknown_hyperparameters(hparams: Mapping[str, Any], cls: type | None = None) -> list[str]:
    """The keys of a checkpoint's ``hyper_parameters`` that ``cls`` (default ``RegressionModule``) does not take,
    sorted: its ``__init__``'s arguments, and its bases' where it passes ``**kwargs`` on. ``trusted`` is one of them:
    trust is the user's to give, never the file's. ``steps_per_call`` (:mod:`lr_lightning.core.steps_per_call`'s
    setting) is accepted from any checkpoint: it says how the weights were trained, not how to rebuild them."""
    accepted = {"steps_per_call"}
    for klass in (cls or RegressionModule).__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        accepted |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if klass is RegressionModule or not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return sorted(map(str, set(hparams) - accepted - {"self", "trusted"}))
