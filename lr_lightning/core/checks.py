"""The checks behind :class:`~lr_lightning.core.regression_module.RegressionModule`, each one line when it fails.

The module calls each in one line, so that it reads as Lightning code; the checks live here, where a reader looks
for why a setting was refused:

- :func:`trusted_classes`, :func:`factory`, :func:`check_factories`: what the module is built from;
- :func:`build_loss`: the injected loss, under the same trust rule as the network;
- :func:`check_intercept` and :func:`check_handoff`: the module and its data agree (``**dm.module_inputs()``);
- :func:`check_state_dict`, :func:`check_resumable`, :func:`warn_unrecorded`: checkpoints (the file:
  :mod:`~lr_lightning.core.checkpoints`).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from lr_lightning.core.checkpoints import _short, build_factory, build_model, unwrap_factory
from lr_lightning.core.networks import single_linear

KINDS = (nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler,
         torch.optim.lr_scheduler.ReduceLROnPlateau)
# The losses a recipe may name without being told: torch.nn's own (nn.MSELoss, nn.HuberLoss, nn.L1Loss, ...).
TORCH_LOSSES = tuple(cls for name, cls in vars(nn).items()
                     if name.endswith("Loss") and isinstance(cls, type) and issubclass(cls, nn.Module))


def trusted_classes(trusted: Iterable[type]) -> tuple[type, ...]:
    """``trusted`` as a tuple of classes; a string or a function would widen trust to whatever it resolves to."""
    trusted = tuple(trusted)
    if strays := [c for c in trusted if not (isinstance(c, type) and issubclass(c, KINDS))]:
        raise ValueError(f"trusted: expected nn.Module, optimizer or scheduler classes, got {strays[0]!r}")
    return trusted


def build_loss(loss: Any, trusted: tuple[type, ...]) -> nn.Module:
    """The loss module: ``None`` is ``nn.MSELoss()``; an ``nn.Module`` is used as it is; a recipe
    ``{"class_path": "torch.nn.HuberLoss", "init_args": {"delta": 0.5}}`` is built if its class is torch.nn's or
    trusted.

    >>> build_loss({"class_path": "torch.nn.modules.loss.HuberLoss", "init_args": {"delta": 0.5}}, ()).delta
    0.5
    """
    if loss is None:
        return nn.MSELoss()
    if isinstance(loss, Mapping):
        try:
            return build_model(canonical_loss(loss), [*TORCH_LOSSES, *(c for c in trusted if issubclass(c, nn.Module))])
        except ValueError as e:
            raise ValueError(f"loss: {str(e).removeprefix('model ')}") from None
    if not isinstance(loss, nn.Module):
        raise ValueError(f"loss: expected an nn.Module such as nn.HuberLoss() or a recipe, got {_short(loss)}")
    return loss


def check_loss(loss: nn.Module) -> None:
    """The loss, tried once on two rows: a setting torch refuses only in the first step (``HuberLoss(delta=-1)``) or a
    loss that is not one number (``reduction="none"``) is one line now, not a traceback after start-up."""
    try:
        value = loss(torch.zeros(2, 1), torch.ones(2, 1))
    except (RuntimeError, ValueError, TypeError) as e:
        raise ValueError(f"loss {type(loss).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"loss {type(loss).__name__}: must return one number (reduction 'mean' or 'sum'), got "
                         f"{shape}")


def canonical_loss(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """A loss recipe with torch.nn's short names (``HuberLoss``, ``torch.nn.HuberLoss``) spelled as recorded
    (``torch.nn.modules.loss.HuberLoss``)."""
    name = str(recipe.get("class_path", ""))
    short = {cls.__name__: cls for cls in TORCH_LOSSES}
    cls = short.get(name.removeprefix("torch.nn.")) if name.count(".") in (0, 2) else None
    if cls is None:
        return dict(recipe)
    return {**recipe, "class_path": f"{cls.__module__}.{cls.__qualname__}"}


def check_factories(model: nn.Module, factories: Mapping[str, Any]) -> None:
    """Build the optimizer and scheduler once on a copy of the parameters, so that a bad setting (a negative or
    infinite lr, an argument the class does not take) is one line now, not an exception after start-up."""
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    _check_numbers(factories["optimizer"], "optimizer")
    try:
        optimizer = factories["optimizer"](params)
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
    if factories["lr_scheduler"] is not None:
        try:
            factories["lr_scheduler"](optimizer)
        except (TypeError, ValueError, ZeroDivisionError) as e:
            raise ValueError(f"lr_scheduler: {str(e).splitlines()[0]}") from None


def check_intercept(feature_map: Any, model: nn.Module) -> None:
    """Data centred for a model with an intercept, fed to a linear network without one, fits the wrong model
    (NIST's NoInt1: 0.3 correct digits); the reverse cannot map back to raw units. The two must agree."""
    layer = single_linear(model)
    if feature_map is None or layer is None:
        return
    if feature_map.bias and layer.bias is None:
        raise ValueError("the data's feature map is centred for a model with an intercept (datamodule bias=True) "
                         "but the network has none (bias=False): pass bias=False to the datamodule too")
    if not feature_map.bias and layer.bias is not None:
        raise ValueError("the datamodule says the model has no intercept (bias=False) but the network has one: "
                         "build the network with bias=False too")


def subclass_arguments(module: nn.Module, recorded: Iterable[str]) -> dict[str, Any]:
    """The arguments a subclass's ``__init__`` was called with that are not in ``recorded`` (its own
    hyperparameters, as Lightning's ``save_hyperparameters()`` collects them), plain values only: a checkpoint holds
    no objects. Read from the calling ``__init__`` frames of ``module``."""
    from lr_lightning.core.checkpoints import _is_plain

    found: dict[str, Any] = {}
    frame = inspect.currentframe()
    frame = frame.f_back.f_back if frame is not None and frame.f_back is not None else None  # RegressionModule's caller
    while frame is not None and frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is module:
        code = frame.f_code
        for name in code.co_varnames[1:code.co_argcount + code.co_kwonlyargcount]:
            value = frame.f_locals.get(name)
            if name not in recorded and name not in found and name not in ("trusted", "kwargs") and _is_plain(value):
                found[name] = value
        frame = frame.f_back
    return found


_WARNED_UNRECORDED: set[tuple[type, str]] = set()


def warn_unrecorded(module: nn.Module, recorded: Iterable[str]) -> None:
    """Warn once per argument (at the first checkpoint saved) about each argument of a subclass's ``__init__`` that
    is not in ``recorded`` (its hyperparameters): a tensor, an array or an object, which a checkpoint cannot hold
    as plain data, so that ``load_from_checkpoint`` will need it given again."""
    recorded = set(recorded)
    for cls in type(module).__mro__:
        if cls.__module__ == "lr_lightning.core.regression_module":
            break  # RegressionModule's own arguments are all recorded (as recipes)
        if "__init__" not in cls.__dict__:
            continue
        for name, p in list(inspect.signature(cls.__init__).parameters.items())[1:]:
            key = (type(module), name)
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in recorded or name == "trusted" \
                    or key in _WARNED_UNRECORDED:
                continue
            _WARNED_UNRECORDED.add(key)
            warnings.warn(f"{type(module).__name__}: the argument {name!r} is not saved in the checkpoint (it holds "
                          f"plain values only: numbers, strings, lists; not a tensor, an array or an object): load it "
                          f"with {type(module).__name__}.load_from_checkpoint(path, {name}=...), or take it as a "
                          "list", UserWarning, stacklevel=2)


def first_linear(model: nn.Module) -> nn.Linear | None:
    """The network's first ``nn.Linear`` (whose ``in_features`` the data must give), if it has one."""
    return next((m for m in model.modules() if isinstance(m, nn.Linear)), None)


def check_handoff(module: Any, datamodule: Any, stage: str) -> None:
    """A ValueError if ``module`` was not built for ``datamodule``: ``RegressionModule(net, **dm.module_inputs())``
    hands it the feature map, the target names and the dtype, and forgetting it trains a model that predicts in other
    units (a standardized target) or fails deep inside torch. ``stage``: Lightning's (predict serves raw rows, which
    the module maps itself, so there the feature maps need not be the same fit)."""
    if not callable(getattr(datamodule, "module_inputs", None)):
        return  # not one of ours (a plain LightningDataModule): nothing declared to compare
    theirs, hint = datamodule.module_inputs(), f"build the module as {type(module).__name__}(net, **dm.module_inputs())"
    ours = module.hparams
    differs = []
    mine, data = ours.get("normalization"), theirs.get("normalization")
    if bool(mine) != bool(data):
        differs.append("the datamodule maps its features (standardize or polynomial_degree), the module has no "
                       "feature map" if data else "the module has a feature map, the datamodule serves raw features")
    elif data and stage != "predict" and mine != data:
        differs.append("the module's feature map was fitted on other data than the datamodule's")
    names = theirs.get("output_names")
    if ours.get("output_names") is not None and names is not None and list(ours["output_names"]) != list(names):
        differs.append(f"the targets: {', '.join(map(str, ours['output_names']))} in the module, "
                       f"{', '.join(map(str, names))} in the data")
    elif ours.get("output_names") is None and names is not None and len(names) > 1:
        differs.append(f"the data has {len(names)} targets, the module was given no target names")
    param = next(module.model.parameters(), None)
    dtype = theirs.get("weights_dtype")
    if param is not None and dtype in ("float32", "float64") and param.dtype != getattr(torch, dtype):
        differs.append(f"the data is {dtype}, the network {str(param.dtype).removeprefix('torch.')}")
    layer, n = first_linear(module.model), getattr(datamodule, "n_features", None)
    if layer is not None and isinstance(n, int) and layer.in_features != n and not differs:
        hint = f"build the network with dm.n_features = {n} inputs"
        differs.append(f"the network takes {layer.in_features} input(s), the data has {n} feature(s)")
    if differs:
        raise ValueError(f"the module does not fit its datamodule: {'; '.join(differs)}: {hint}")


def check_state_dict(module: nn.Module, state_dict: Any, strict: bool) -> None:
    """That ``state_dict`` fits ``module``, with one clear line if not: torch would report a mismatch as a many-line
    "size mismatch" RuntimeError, or with ``strict=False`` load what fits and skip the rest."""
    name = type(getattr(module, "model", module)).__name__
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict: expected a mapping of parameter names to tensors, got "
                         f"{type(state_dict).__name__}")
    own = module.state_dict()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state_dict: {key!r} is a {type(value).__name__}, not a tensor")
        if key in own and value.shape != own[key].shape:
            raise ValueError(f"state_dict: {key!r} has shape {tuple(value.shape)} in the checkpoint, "
                             f"{tuple(own[key].shape)} in the network {name} rebuilt here")
    if strict:
        missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
        if missing or unexpected:
            raise ValueError(f"state_dict does not fit the network {name}: "
                             + "; ".join(f"{what} {', '.join(map(repr, keys[:5]))}"
                                         + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
                                         for what, keys in (("missing", missing), ("unexpected", unexpected))
                                         if keys))


def check_resumable(module: Any, checkpoint: Mapping[str, Any], feature_names: list[str] | None = None) -> None:
    """Raise ValueError, naming what differs, if training cannot continue from ``checkpoint`` with ``module``:
    another network, loss, optimizer or feature map (standardization, polynomial degree), other features
    (``feature_names``: the data's, compared with the checkpoint's datamodule's), or parameters of other shapes.
    Lightning would fail later with a size mismatch or a missing optimizer key, or worse, load weights trained on
    other features without a word."""
    saved, hparams = checkpoint.get("hyper_parameters") or {}, module.hparams
    differs = []
    for key, what in (("model", "network"), ("loss", "loss"), ("optimizer", "optimizer"), ("lr_scheduler",
                      "lr_scheduler"), ("normalization", "feature map (standardize/polynomial_degree)")):
        if key in saved and saved[key] != hparams.get(key):
            there, here = describe(key, saved[key], hparams.get(key)), describe(key, hparams.get(key), saved[key])
            differs.append(f"the {what}: " + (f"{there} there, {here} here" if there != here else
                                              f"{here}, but fitted to other data (its statistics differ)"))
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    if data.get("feature_names") is not None and feature_names is not None \
            and list(data["feature_names"]) != list(feature_names):
        differs.append(f"the features: {', '.join(map(str, data['feature_names']))} there, "
                       f"{', '.join(feature_names)} here")
    state = checkpoint.get("state_dict")
    if not differs and isinstance(state, Mapping):
        ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        theirs = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
        if ours != theirs:
            key = next(k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k))
            differs.append(f"the parameters: {key} is {theirs.get(key, 'missing')} there, "
                           f"{ours.get(key, 'missing')} here")
    if differs:
        raise ValueError("cannot resume: the checkpoint was trained with another setting; " + "; ".join(differs)
                         + " (resume with the settings of the first run)")


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


def factory(value: Any, what: str, trusted: tuple[type, ...]) -> Any:
    """An optimizer or scheduler factory from what the module was given: a recipe (built under the trust rule), or a
    callable used as is."""
    if value is None or callable(value) and not isinstance(value, Mapping):
        return value
    if isinstance(value, Mapping):
        return build_factory(value, what, trusted)
    raise ValueError(f"{what}: expected a class, a callable or a recipe {{'class_path': ..., 'init_args': ...}}, "
                     f"got {_short(value)}")


def describe(key: str, value: Any, other: Any = None) -> str:
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
