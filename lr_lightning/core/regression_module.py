"""The LightningModule: loss, optimizer and metrics around any regression network.

``RegressionModule`` is stage 5 of the tutorial. It owns what the hand-written loop did (MSE loss, the
SGD update) plus what Lightning adds: metrics, logging, checkpoints that rebuild the network by
themselves. The network is passed in, so the same module trains a ``LinearRegression``, an MLP, or
your own ``nn.Module``.
"""

from __future__ import annotations

import inspect
import math
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics.regression import R2Score

from lr_lightning.core.features import FeatureMap
from lr_lightning.core.networks import LinearRegression, MLPRegressor
from lr_lightning.core.quiet import quiet_lightning

quiet_lightning()  # the Python API as quiet as the command line: see lr_lightning/quiet.py

Batch = tuple[torch.Tensor, torch.Tensor]
OPTIMIZERS = ("sgd", "adam", "lbfgs")
SCHEDULER_CLASSES = {"cosine": torch.optim.lr_scheduler.CosineAnnealingLR, "step": torch.optim.lr_scheduler.StepLR,
                     "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau}
SCHEDULERS = tuple(SCHEDULER_CLASSES)


# --------------------------------------------------------------------------- rebuilding the network
def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """How to rebuild ``model``: ``{"class_path": ..., "init_args": {...}}`` (LightningCLI's form), or ``None``.

    Lightning can only save a network's weights, not how to construct it (lightning#19906), so a checkpoint
    of a module that takes a network could not be loaded without passing the network again. We recover the
    init arguments the scikit-learn way, from attributes named like the ``__init__`` parameters, and keep
    them only if a rebuild from them has exactly the same parameter shapes.
    """
    cls = type(model)
    if "<locals>" in cls.__qualname__:
        return None  # a class defined inside a function cannot be imported again
    init_args: dict[str, Any] = {}
    for name, p in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = getattr(model, name, p.default)
        if value is p.empty or not _is_plain(value):
            return None
        init_args[name] = value
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            clone = cls(**init_args)
    except Exception:  # any failure just means the recipe is not trustworthy
        return None
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    if {k: v.shape for k, v in clone.state_dict().items()} != shapes:
        return None
    return {"class_path": class_path(cls), "init_args": init_args}


# The networks a checkpoint may name without being told: this package's own. Resolved from this table, never by
# importing a path read from a file: importing a module runs its code, and calling a class does too.
BUILTIN_MODELS: dict[str, type[nn.Module]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls for cls in (LinearRegression, MLPRegressor)
}


def class_path(cls: type) -> str:
    """The name :func:`model_spec` records for a class: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def trusted_models(trusted: Iterable[type[nn.Module]] = ()) -> dict[str, type[nn.Module]]:
    """The classes a recipe may name, by class path: the package's networks plus ``trusted``.

    Args:
        trusted: ``nn.Module`` classes the caller vouches for (their code will run when a recipe names them).

    Raises ValueError for anything in ``trusted`` that is not an ``nn.Module`` class: a string or a function there
    would widen trust to whatever it resolves to.
    """
    allowed = dict(BUILTIN_MODELS)
    for cls in trusted:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"trusted: expected nn.Module classes, got {cls!r}")
        allowed[class_path(cls)] = cls
    return allowed


def build_model(spec: Any, trusted: Iterable[type[nn.Module]] = ()) -> nn.Module:
    """Construct the network described by :func:`model_spec`, if its class is one the caller trusts.

    A recipe comes from a checkpoint, which may come from anyone, and ``weights_only`` loading does not protect
    it: it is plain data that names a class to call. So its ``class_path`` is looked up in an allow-list (this
    package's networks and ``trusted``) before anything is imported or called, its ``init_args`` must be plain
    data, and what the class returns must be an ``nn.Module``.

    Args:
        spec: ``{"class_path": "package.module.Class", "init_args": {...}}``.
        trusted: further ``nn.Module`` classes a recipe may name (matched by ``module.QualName``).

    Raises:
        ValueError: a malformed recipe, a class that is not trusted, or a constructor that fails.
    """
    if not isinstance(spec, Mapping) or set(spec) - {"class_path", "init_args"}:
        raise ValueError(f"model recipe: expected {{'class_path': ..., 'init_args': {{...}}}}, got {_short(spec)}")
    path, init_args = spec.get("class_path"), spec.get("init_args", {})
    if not isinstance(path, str) or not path:
        raise ValueError(f"model recipe: class_path must be a class name like 'package.module.Class', "
                         f"got {_short(path)}")
    allowed = trusted_models(trusted)
    if path not in allowed:
        # Checked before any import: naming a module is enough to run its code.
        name = path.rpartition(".")[2]
        raise ValueError(f"model class {path!r} is not trusted: loading builds only lr_lightning's networks and "
                         f"classes you name; if you trust its code, pass trusted=[{name}] "
                         f"(predict.py: --trust {path})")
    if not isinstance(init_args, Mapping) or not all(isinstance(k, str) for k in init_args) \
            or not _is_plain(dict(init_args)):
        raise ValueError(f"model recipe for {path}: init_args must be a mapping of names to plain values "
                         f"(numbers, strings, lists), got {_short(init_args)}")
    try:
        model = construct_network(allowed[path], dict(init_args))
    except ValueError as e:  # arguments that do not fit the class, or a network too large: a recipe from elsewhere
        raise ValueError(f"model recipe for {path}: cannot build it from init_args {_short(init_args)} ({e})") \
            from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model recipe for {path}: built a {type(model).__name__}, not an nn.Module")
    return model


def construct_network(cls: Any, init_args: dict[str, Any]) -> Any:
    """``cls(**init_args)``, built first on the meta device (shapes only, no memory) so that a network too large for
    this machine is a ValueError, not an allocation that takes minutes and then fails (or the machine's memory)."""
    from lr_lightning.core.data.datamodules import check_memory

    try:
        with torch.device("meta"):
            probe = cls(**init_args)
        if isinstance(probe, nn.Module):
            # Parameters, gradients and up to two optimizer states (Adam), in float32 at least.
            check_memory(4 * 4 * sum(p.numel() for p in probe.parameters()), "its parameters")
        return cls(**init_args)
    except (TypeError, OverflowError, RuntimeError) as e:
        raise ValueError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to one readable line: error messages quote what a file held, whatever its size."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_plain(value: Any) -> bool:
    """Values that a checkpoint can hold without pickling code (and that ``weights_only`` loading accepts)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _check_settings(lr: Any, optimizer: Any, momentum: Any, weight_decay: Any, scheduler: Any,
                    scheduler_options: Any, compile: Any) -> None:
    """Refuse bad settings when the module is built, in words that name the setting, before any training.

    ``bool`` is an ``int`` to Python, but ``lr=True`` is a mistake, not a learning rate of 1.
    """
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    # torch hands the rates to float32 kernels: beyond float32's range a step fails with an overflow deep inside.
    largest = torch.finfo(torch.float32).max
    if not (number(lr) and 0 < lr <= largest):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}" + (" (beyond float32's range)" if number(lr)
                                                                          and lr > 0 else ""))
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    for name, value in (("momentum", momentum), ("weight_decay", weight_decay)):
        if not (number(value) and 0 <= value <= largest):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if momentum and optimizer != "sgd":
        raise ValueError(f"momentum applies to sgd only; {optimizer} has its own (got momentum={momentum})")
    if weight_decay and optimizer == "lbfgs":
        raise ValueError(f"weight_decay does not apply to lbfgs (got weight_decay={weight_decay})")
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if scheduler_options is not None:
        if not (isinstance(scheduler_options, Mapping) and all(isinstance(k, str) for k in scheduler_options)):
            raise ValueError(f"scheduler_options must be a mapping of argument names to values, "
                             f"got {scheduler_options!r}")
        accepted = set(inspect.signature(SCHEDULER_CLASSES[scheduler]).parameters) - {"optimizer"} \
            if scheduler is not None else set()
        if unknown := sorted(set(scheduler_options) - accepted):
            raise ValueError(f"scheduler_options: {', '.join(unknown)} not accepted by "
                             f"{SCHEDULER_CLASSES[scheduler].__name__ if scheduler else 'no scheduler'}"
                             + (f" (it takes {', '.join(sorted(accepted))})" if accepted else ""))
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be true or false, got {compile!r}")


# ------------------------------------------------------------------------------------------- module
class RegressionModule(L.LightningModule):
    """Trains any regression ``nn.Module`` ``(N, in) -> (N, out)`` with MSE loss.

    The default optimizer is plain ``torch.optim.SGD`` with exactly ``lr`` (no momentum, no weight decay), so
    a full-batch fit reproduces the hand-written tutorial step for step. Logged: ``train/loss`` (per step and
    per epoch), ``val/loss``, ``val/mae``, ``val/r2`` and the same for ``test/``; with several outputs these
    average over the outputs, and ``val/loss_<target>`` etc. give each one.

    ``scheduler``: ``"cosine"`` (to 0 over ``max_epochs``), ``"step"`` (×0.1 every third of ``max_epochs``) or
    ``"plateau"`` (×0.5 after 5 epochs without a better ``val/loss``, or ``train/loss`` without validation);
    ``scheduler_options`` override those settings (the keyword arguments of the torch scheduler).
    ``compile=True`` runs the network through ``torch.compile``; checkpoints are unaffected.

    >>> from lr_lightning import LinearRegression
    >>> module = RegressionModule(LinearRegression(2), lr=0.1)
    >>> module(torch.zeros(5, 2)).shape
    torch.Size([5, 1])
    >>> module.hparams.model["class_path"]
    'lr_lightning.core.networks.LinearRegression'
    """

    def __init__(
        self,
        model: nn.Module | Mapping[str, Any] | None = None,
        lr: float = 0.01,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        normalization: dict[str, Any] | None = None,
        scheduler: str | None = None,
        scheduler_options: dict[str, Any] | None = None,
        compile: bool = False,
        trusted: Iterable[type[nn.Module]] = (),
    ) -> None:
        """
        Args:
            model: the network, or the recipe a checkpoint recorded for it (``{"class_path", "init_args"}``).
            lr: learning rate.
            optimizer: ``"sgd"``, ``"adam"`` or ``"lbfgs"``.
            momentum: SGD momentum.
            weight_decay: L2 penalty (sgd, adam).
            normalization: a :class:`~lr_lightning.core.features.FeatureMap` spec, applied in ``forward``.
            scheduler: ``"cosine"``, ``"step"``, ``"plateau"`` or None.
            scheduler_options: keyword arguments for the torch scheduler.
            compile: run the network through ``torch.compile``.
            trusted: classes besides this package's networks that a recipe may name; a recipe's class is called,
                so only classes whose code you trust (``load_from_checkpoint(path, trusted=[MyNet])``). Not saved
                in the hyperparameters: trust is the loader's decision, never the checkpoint's.
        """
        super().__init__()
        _check_settings(lr, optimizer, momentum, weight_decay, scheduler, scheduler_options, compile)
        if model is None:
            raise ValueError("model: no network given (a checkpoint that does not record how to build its network "
                             "needs it: RegressionModule.load_from_checkpoint(path, model=...))")
        # From a checkpoint, `model` is the recipe that was recorded below: built only if its class is trusted.
        trusted = tuple(trusted)
        trusted_models(trusted)  # refuses a string or a function in it, even when no recipe is to be built
        self.model = build_model(model, trusted) if isinstance(model, Mapping) else model
        if not isinstance(self.model, nn.Module):
            raise ValueError(f"model: expected an nn.Module or a recipe {{'class_path': ..., 'init_args': ...}}, "
                             f"got {_short(model)}")
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ValueError(f"the network {type(self.model).__name__} has no trainable parameters: nothing to train")
        spec = model_spec(self.model)
        if spec is None:
            rank_zero_warn(f"cannot record how to rebuild {type(self.model).__qualname__}: store each __init__ "
                           "argument as an attribute of the same name, or pass model= to load_from_checkpoint.")
        # The recipe, not the network, goes into hparams: checkpoints then rebuild it by themselves.
        self.save_hyperparameters({"model": spec, "lr": lr, "optimizer": optimizer, "momentum": momentum,
                                   "weight_decay": weight_decay, "normalization": normalization,
                                   "scheduler": scheduler, "scheduler_options": scheduler_options,
                                   "compile": compile})
        # The compiled network is a wrapper around the same parameters, kept outside the module tree so that
        # state_dict keys (and so checkpoints) are the same with or without compile.
        object.__setattr__(self, "network", torch.compile(self.model) if compile else self.model)
        # Raw inputs -> model features, and model outputs -> original units (None: the identity). Usually adopted
        # from the datamodule in `setup`; it lives in hparams so checkpoints rebuild it.
        self.feature_map = FeatureMap(normalization) if normalization else None
        self.loss_fn = nn.MSELoss()
        # The epoch's mean train loss, weighted by batch size and accumulated on the device. No NaN check: on a GPU
        # it is a host sync every step, and a NaN loss shows up in the mean anyway.
        self.train_loss = MeanMetric(nan_strategy="disable")
        metrics = MetricCollection({"loss": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Per output, when there are several (added in `setup`, where the data names them): val/loss_<target>, ...
        self.val_per_output, self.test_per_output = nn.ModuleList(), nn.ModuleList()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             strict: bool | None = None, weights_only: bool | None = None,
                             **kwargs: Any) -> RegressionModule:
        """Lightning's ``load_from_checkpoint``, after a look at the file: a missing file, another program's file or a
        checkpoint without our structure is one ValueError / FileNotFoundError naming the file, not an AttributeError
        from deep inside Lightning. ``trusted=[MyNet]`` names classes a recipe may build (:func:`build_model`)."""
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

        Weights from a checkpoint meet a network rebuilt from its recipe (or passed in): torch would report a
        mismatch as a many-line "size mismatch" RuntimeError, or with ``strict=False`` load what fits and skip
        the rest.
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

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self.trainer is not None else None
        self._match_the_data(dm)
        fm = getattr(dm, "feature_map", None)
        if fm is not None and self.feature_map is None:
            # The data's feature map (fitted on its training split) becomes part of the model.
            self.feature_map = FeatureMap(fm.spec).to(self.device)
            self.hparams["normalization"] = fm.spec
        elif fm is not None and fm.spec != self.feature_map.spec:
            raise ValueError("the datamodule's feature map (standardize/polynomial_degree statistics) differs from "
                             "the one this module was trained with; use the same data settings")
        optimum = getattr(self.trainer.datamodule, "optimum", None) if self.trainer is not None else None
        if optimum is not None and "excess_mse" not in self.val_metrics and self.trainer.datamodule.n_val:
            # How far from the best linear fit: the model's val MSE minus the least-squares fit's, both in
            # original units, the least-squares fit made on the same training split.
            self.val_metrics.add_metrics({"excess_mse": ExcessMSE(optimum()["mse"]["val"])})
        names = getattr(self.trainer.datamodule, "target_names", None) if self.trainer is not None else None
        if names and len(names) > 1 and not len(self.val_per_output):
            for per_output, stage in ((self.val_per_output, "val"), (self.test_per_output, "test")):
                per_output.extend(MetricCollection({"loss": MeanSquaredError(), "mae": MeanAbsoluteError(),
                                                    "r2": R2Score()}, prefix=f"{stage}/", postfix=f"_{name}")
                                  for name in names)

    def _match_the_data(self, dm: Any) -> None:
        """Refuse, or adapt to, data the network would silently train wrong on.

        - Float64 data trains a float64 network: a float32 network would round every batch (on NIST's Norris, LBFGS
          gets 4 digits instead of 13). Only float32 parameters are widened, and only for float64 data.
        - Data centred for a model with an intercept (``bias=True`` with a feature map), fed to a linear network
          without one, fits the wrong model (NIST's NoInt1: 0.3 correct digits); the reverse cannot map back to
          raw units. Either way the two ``bias`` settings must agree.
        """
        if dm is None:
            return
        dtype = getattr(dm, "dtype", None)
        params = list(self.model.parameters())
        if dtype == torch.float64 and params and all(p.dtype == torch.float32 for p in params):
            self.model.to(torch.float64)
        fm = getattr(dm, "feature_map", None)
        layer = single_linear(self.model)
        if fm is not None and fm.bias and layer is not None and layer.bias is None:
            raise ValueError("the data's feature map is centred for a model with an intercept (datamodule bias=True) "
                             "but the network has none (bias=False): pass bias=False to the datamodule too")
        if fm is not None and not fm.bias and layer is not None and layer.bias is not None:
            raise ValueError("the datamodule says the model has no intercept (bias=False) but the network has one: "
                             "build the network with bias=False too")

    def check_resumable(self, checkpoint: Mapping[str, Any], datamodule: Any = None) -> None:
        """Raise ValueError, naming what differs, if training cannot continue from ``checkpoint`` with this module
        (and ``datamodule``): another network, optimizer or feature map (standardization, polynomial degree), other
        features, or parameters of other shapes. Lightning would fail later with a size mismatch or a missing
        optimizer key, or worse, load weights trained on other features without a word."""
        saved = checkpoint.get("hyper_parameters") or {}
        differs = []
        for key, what in (("model", "network"), ("optimizer", "optimizer"), ("normalization", "feature map "
                                                                                 "(standardize/polynomial_degree)")):
            if key in saved and saved[key] != self.hparams.get(key):
                there, here = _describe(key, saved[key]), _describe(key, self.hparams.get(key))
                differs.append(f"the {what}: " + (f"{there} there, {here} here" if there != here else
                                                  f"{here}, but fitted to other data (its statistics differ)"))
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        names = getattr(datamodule, "feature_names", None)
        if data.get("feature_names") is not None and names is not None and list(data["feature_names"]) != list(names):
            differs.append(f"the features: {', '.join(map(str, data['feature_names']))} there, {', '.join(names)} here")
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
                             + " (resume with the flags of the first run)")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resuming `trainer.fit(..., ckpt_path=...)`: check before Lightning loads anything. (Not when a checkpoint
        # is loaded for use: load_from_checkpoint rebuilds the module from the checkpoint itself, or from
        # overrides the caller chose.)
        if self._trainer is not None and self.trainer.state.fn == "fit":
            self.check_resumable(checkpoint, self.trainer.datamodule)

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
        preds = self.network(x)
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
        self.train_loss.update(loss.detach().expand(len(batch[0])))
        if batch_idx == 0:
            self.log("train/loss", self.train_loss, on_step=False, on_epoch=True)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        if self.hparams.optimizer != "lbfgs":
            return
        # The strong-Wolfe line search compares loss values. Once the epoch's loss stops falling, the remaining
        # changes are below what the dtype resolves (on NIST's Wampler5 the loss is ~1 and moves by ~1e-22), and
        # the search drifts in rounding noise. From then on, unit quasi-Newton steps use the gradient alone,
        # which stays precise: measured on Wampler5 in float64, 6.5 correct digits instead of 1.6.
        loss = self.trainer.callback_metrics.get("train/loss")
        previous, self._last_lbfgs_loss = getattr(self, "_last_lbfgs_loss", None), loss
        if loss is not None and previous is not None and not loss < previous:
            for group in self.optimizers().optimizer.param_groups:
                group["line_search_fn"] = None

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, self.val_per_output)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, self.test_per_output)

    def _eval_step(self, batch: Batch, metrics: MetricCollection, per_output: nn.ModuleList) -> None:
        # Metric objects accumulate over the whole epoch (exact, whatever the batch sizes) and sync across
        # devices; Lightning computes and logs them once at the epoch's end.
        _, preds, y = self.model_step(batch)
        if self.feature_map is not None:  # report in the target's own units, not standardized ones
            preds, y = self.feature_map.untarget(preds), self.feature_map.untarget(y)
        # Over all outputs, R² is the average of each output's R² (torchmetrics' uniform_average); the MSE and
        # MAE average over all values, which is the average over outputs too (every output has n values).
        metrics.update(preds, y)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(y))
        for j, output_metrics in enumerate(per_output):
            output_metrics.update(preds[:, j], y[:, j])
            self.log_dict(output_metrics, on_step=False, on_epoch=True, batch_size=len(y))

    def predict_step(self, batch: Batch | torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def configure_optimizers(self) -> Any:
        optimizer = self._optimizer()
        hp = self.hparams
        if hp.scheduler is None:
            return optimizer
        # Stepped once per epoch (Lightning's default interval): schedules are stated in epochs.
        epochs = max(1, self.trainer.max_epochs) if self.trainer is not None and self.trainer.max_epochs else 100
        options = dict(hp.scheduler_options or {})
        config: dict[str, Any] = {}
        if hp.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **{"T_max": epochs, **options})
        elif hp.scheduler == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, **{"step_size": max(1, epochs // 3),
                                                                       "gamma": 0.1, **options})
        else:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **{"factor": 0.5, "patience": 5,
                                                                                  **options})
            has_val = self.trainer is not None and self.trainer.datamodule is not None and \
                getattr(self.trainer.datamodule, "n_val", 0)
            config["monitor"] = "val/loss" if has_val else "train/loss"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", **config}}

    def _optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.optimizer == "lbfgs":
            # Full batch (one step an epoch): the line search assumes the same loss every evaluation. Lightning
            # passes its closure (forward + backward) to step(), which LBFGS calls as often as it needs. It stops
            # when the gradient reaches the precision of the parameters' dtype, not when the loss stops falling
            # by eps: near the optimum the loss changes with the square of the weights' error, so that rule would
            # stop at sqrt(eps), half the digits. See on_train_epoch_end for the line search.
            eps = torch.finfo(next(self.parameters()).dtype).eps
            return torch.optim.LBFGS(self.parameters(), lr=hp.lr, line_search_fn="strong_wolfe", max_iter=20,
                                     history_size=20, tolerance_grad=100 * eps, tolerance_change=0.0)
        if hp.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        return torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

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


def _describe(key: str, value: Any) -> str:
    """A hyperparameter as a person reads it in a one-line message."""
    if key == "model" and isinstance(value, Mapping):
        args = ", ".join(f"{k}={v}" for k, v in (value.get("init_args") or {}).items())
        return f"{str(value.get('class_path', '?')).rpartition('.')[2]}({args})"
    if key == "normalization":
        if not value:
            return "none"
        standardized = any(v != 1.0 for v in value.get("feature_scale", []))
        return f"polynomial_degree={value.get('polynomial_degree')}, bias={value.get('bias')}, " + (
            "standardized" if standardized else "not standardized")
    return repr(value)


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a file that is not a checkpoint is a ValueError saying why.

    ``weights_only``: a file from elsewhere must not run code while it is unpickled. torch's own errors for a text
    file, a truncated one or a pickle with code in it are an IndexError, a zip-archive RuntimeError or a page of
    advice to load it unsafely.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError("it holds objects that only code could rebuild; refused unread") from None
    except Exception:  # noqa: BLE001 - whatever torch raises for a file that is not one of its own
        raise ValueError("not a torch checkpoint file, or a truncated one") from None


def unknown_hyperparameters(hparams: Mapping[str, Any]) -> list[str]:
    """The keys of a checkpoint's ``hyper_parameters`` that ``RegressionModule`` does not take, sorted. ``trusted`` is
    one of them: trust is the user's to give, never the file's."""
    accepted = set(inspect.signature(RegressionModule.__init__).parameters) - {"self", "trusted"}
    return sorted(map(str, set(hparams) - accepted))


def _structure_problem(checkpoint: Any) -> str:
    """What a loaded checkpoint lacks of the structure Lightning writes ('' if nothing)."""
    if not isinstance(checkpoint, Mapping):
        return f"a {type(checkpoint).__name__}, not a checkpoint dictionary"
    if not isinstance(checkpoint.get("state_dict"), Mapping):
        return "no state_dict of weights"
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        if key in checkpoint and not isinstance(checkpoint[key], Mapping):
            return f"{key} is a {type(checkpoint[key]).__name__}, not a mapping"
    return ""


def single_linear(model: nn.Module) -> nn.Linear | None:
    """The one ``nn.Linear`` that holds all of ``model``'s parameters, if there is such a layer: a network the
    package can read as coefficients (found without running it)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1 or {id(p) for p in model.parameters()} != {id(p) for p in linears[0].parameters()}:
        return None
    return linears[0]


class ExcessMSE(MeanSquaredError):
    """MSE minus a reference MSE (the least-squares optimum's on the same split): how far training is from it."""

    def __init__(self, reference: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reference = reference

    def compute(self) -> torch.Tensor:
        return super().compute() - self.reference
