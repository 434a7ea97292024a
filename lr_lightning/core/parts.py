"""A run's parts from its parsed config: the data, the network and the module around them (``fit.py`` and
``evaluate.py`` build them alike)."""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from lr_lightning.core import solvers
from lr_lightning.core.commands import Parser, UsageError

if TYPE_CHECKING:
    from jsonargparse import Namespace

    from lr_lightning.core.data import RegressionDataModule
    from lr_lightning.core.regression_module import RegressionModule

# What the network takes from the data (jsonargparse links them; the recipe in the checkpoint records them).
LINKED = {"in_features": lambda dm: dm.n_features, "out_features": lambda dm: dm.n_outputs}


def instantiate(parser: Parser, cfg: Namespace) -> Namespace:
    """The config's objects (data first: the network's sizes are linked from it); a constructor's complaint is one
    line."""
    from torch import nn

    from lr_lightning.core.checkpoints import construct_network
    from lr_lightning.core.commands import one_line

    # Networks are built as checkpoints build them: on the meta device first, so one too large for this machine is a
    # one-line error instead of minutes of allocation.
    network = (lambda cls, *args, **kwargs: construct_network(cls, kwargs), nn.Module, True)
    try:
        return parser.instantiate(cfg, instantiators=[network])
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        # Which part complained: the class named in the message (jsonargparse quotes the part's config).
        part = next((k for k in ("data", "model") if cfg[k] is not None and f"'{cfg[k].class_path}'" in str(e)), None)
        raise UsageError((f"--{part}: " if part else "") + one_line(str(e))) from None
    except TypeError as e:  # a network class whose constructor does not take what the config gives
        raise UsageError(f"--model {cfg.model.class_path}: {str(e).splitlines()[0]}") from None


def build_parts(cfg: Namespace, init: Namespace, with_reference: bool = True) -> tuple[RegressionDataModule,
                                                                                       RegressionModule, Any]:
    """The module around the network, optimizer and scheduler the config names, given what the data declares."""
    import inspect

    from lr_lightning.core.checkpoints import class_path, unwrap_factory
    from lr_lightning.core.linear import LinearRegressionModule
    from lr_lightning.core.steps_per_call import StepsPerCallModule

    dm, network = init.data, init.model
    # (evaluate.py reads a solver's checkpoint as the RegressionModule it holds: only fit.py solves.)
    if with_reference and (solver := solvers.solver(cfg.get("solver", solvers.GRADIENT))) is not None:
        return dm, solver.build_module(cfg, dm), None
    inputs = dm.module_inputs()  # fits the feature map (if any) on the training split
    # The recipe the checkpoint records: the config's, with the sizes the data gave.
    accepted = inspect.signature(type(network)).parameters
    recipe = {"class_path": class_path(type(network)),
              "init_args": {**(cfg.model.get("init_args") or {}), **{k: fn(dm) for k, fn in LINKED.items()
                                                                if k in accepted}}}
    optimizer = cfg.optimizer.as_dict()
    if optimizer["class_path"].endswith("LBFGS") and cfg.data.init_args.batch_size == _default(cfg, "batch_size"):
        # LBFGS's line search needs the same (full-batch) loss at every evaluation; hparams record what ran.
        dm.batch_size = dm.hparams["batch_size"] = dm.n_samples
    reference = _reference(dm, network) if with_reference else None
    trusted = [type(network), *(unwrap_factory(init.optimizer)[0], unwrap_factory(init.lr_scheduler)[0])]
    loss = cfg.get("loss") and cfg.loss.as_dict()
    trusted.append(type(init.get("loss")) if init.get("loss") is not None else None)
    cls, extra = module_class(cfg, network)
    if issubclass(cls, LinearRegressionModule):
        extra["reference_mse"] = reference and reference["mse"]
    if issubclass(cls, StepsPerCallModule):
        extra["steps_per_call"] = cfg.get("steps_per_call", "auto")
    if loss:  # (a --module that fixes its own loss gets none it did not ask for)
        extra["loss"] = loss
    module = cls(recipe, optimizer=optimizer, lr_scheduler=cfg.lr_scheduler and cfg.lr_scheduler.as_dict(),
                 monitor="val/loss" if dm.n_val else "train/loss", compile=cfg.compile,
                 trusted=[c for c in trusted if c is not None], **extra, **inputs)
    return dm, module, reference


def module_class(cfg: Namespace, network: Any) -> tuple[type, dict[str, Any]]:
    """The module class for a run and its own arguments: ``--module``'s, else the fast path
    (:class:`~lr_lightning.core.steps_per_call.StepsPerCallModule`) for the linear model, whose steps cost about what
    Lightning's per-call work does, and for another network when ``--steps_per_call`` names a number; else the plain
    :class:`~lr_lightning.core.regression_module.RegressionModule`, Lightning's own loop."""
    from lr_lightning.core.loading import import_class
    from lr_lightning.core.networks import LinearRegression
    from lr_lightning.core.regression_module import RegressionModule
    from lr_lightning.core.steps_per_call import StepsPerCallModule

    chosen = cfg.get("module")
    if chosen is not None:
        cls = import_class(chosen.class_path, "--module")
        if not issubclass(cls, RegressionModule):
            raise UsageError(f"--module {chosen.class_path}: not a RegressionModule subclass")
        if cfg.get("steps_per_call", "auto") != "auto" and not issubclass(cls, StepsPerCallModule):
            raise UsageError(f"--steps_per_call {cfg.steps_per_call}: --module {chosen.class_path} is not a "
                             "StepsPerCallModule (lr_lightning.core.steps_per_call); subclass that for the fast path")
        return cls, dict(chosen.get("init_args") or {})
    if isinstance(network, LinearRegression) or cfg.get("steps_per_call", "auto") != "auto":
        return StepsPerCallModule, {}
    return RegressionModule, {}


def _default(cfg: Namespace, key: str) -> Any:
    """The default of the data class's ``key`` argument (to tell a value the user chose from one they did not)."""
    import inspect

    module, _, name = cfg.data.class_path.rpartition(".")
    for cls in getattr(importlib.import_module(module), name).__mro__:  # a source passes the shared ones as **kwargs
        parameter = inspect.signature(cls.__init__).parameters.get(key)
        if parameter is not None:
            return parameter.default
    raise KeyError(key)


def _reference(dm: RegressionDataModule, network: Any) -> dict[str, Any] | None:
    """The least-squares fit on the training split (from a registered solver, if this copy has one), for
    ``val/excess_mse`` and the summary; computed once, before training, so what it cannot solve is bad input now."""
    from lr_lightning.core.networks import single_linear

    if not (dm.n_val or single_linear(network) is not None):
        return None
    if getattr(getattr(dm, "table", None), "streamed", False):
        return None  # the solver needs the rows at hand: data read block by block has no reference (README)
    from lightning.pytorch.utilities import rank_zero_only

    try:
        with warnings.catch_warnings():
            if rank_zero_only.rank:  # under DDP every process computes it: rank 0 names aliased columns, once
                warnings.filterwarnings("ignore", r"least squares: .* aliased", UserWarning)
            return solvers.reference(dm)
    except ValueError as e:
        raise UsageError(f"--data: the least-squares reference on the training split: {e}") from None
