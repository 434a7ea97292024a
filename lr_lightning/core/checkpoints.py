"""Checkpoints and configs name classes: which ones may be built, and reading files without running code.

A checkpoint (or a config) holds a network's recipe, ``{"class_path": "package.module.Class", "init_args": {...}}``:
jsonargparse's form, so the command line, the configs and the checkpoints describe a network the same way. A recipe
read from a file may come from anyone, and building it calls the class it names, so its ``class_path`` is looked up
in an allow-list (this package's networks and the classes the caller trusts) before anything is imported.
Optimizers and schedulers are named the same way and resolved only within ``torch.optim``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lr_lightning.core.data.inputs import check_memory
from lr_lightning.core.networks import LinearRegression, MLPRegressor


# --------------------------------------------------------------------------- rebuilding the network
def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """How to rebuild ``model``: ``{"class_path": ..., "init_args": {...}}`` (LightningCLI's form), or ``None``.

    Lightning can only save a network's weights, not how to construct it (lightning#19906), so a checkpoint
    of a module that takes a network could not be loaded without passing the network again. We take the
    init arguments the network recorded itself, a dict ``self.init_args`` (as ``save_hyperparameters`` records a
    LightningModule's), else recover them the scikit-learn way, from attributes named like the ``__init__``
    parameters; and keep them only if a rebuild from them has exactly the same parameter shapes.

    >>> from torch import nn
    >>> class Net(nn.Module):  # its arguments are not attributes of the same name: it records them
    ...     def __init__(self, n_in: int, width: int = 8) -> None:
    ...         super().__init__()
    ...         self.init_args = {"n_in": n_in, "width": width}
    ...         self.body = nn.Sequential(nn.Linear(n_in, width), nn.Tanh(), nn.Linear(width, 1))
    >>> model_spec(Net(3, width=4))  # doctest: +ELLIPSIS
    {'class_path': '...Net', 'init_args': {'n_in': 3, 'width': 4}}
    """
    cls = type(model)
    if "<locals>" in cls.__qualname__:
        return None  # a class defined inside a function cannot be imported again
    recorded = getattr(model, "init_args", None)
    init_args: dict[str, Any] = {}
    parameters = list(inspect.signature(cls.__init__).parameters.items())[1:]
    if isinstance(recorded, dict) and all(isinstance(k, str) and _is_plain(v) for k, v in recorded.items()):
        init_args, parameters = dict(recorded), []
    for name, p in parameters:
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


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a file that is not a checkpoint is a ValueError saying why.

    ``weights_only``: a file from elsewhere must not run code while it is unpickled. torch's own errors for a text
    file, a truncated one or a pickle with code in it are an IndexError, a zip-archive RuntimeError or a page of
    advice to load it unsafely.
    """
    # torch.save writes a zip archive (a pickle before torch 1.6): anything else is no checkpoint at all, and torch's
    # unpickler would call a JSON file's first byte "objects that only code could rebuild".
    with contextlib.suppress(OSError), open(path, "rb") as f:
        head = f.read(512)
        if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
            try:
                text = head.decode("utf-8").lstrip("\ufeff \t\r\n")
            except UnicodeDecodeError:
                text = None
            kind = "an empty file" if not head else "a JSON file" if text and text[:1] in "{[" else \
                "a text file" if text is not None else "neither a zip archive nor a pickle"
            raise ValueError(f"it is {kind}; torch.save writes a zip archive")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError("it holds objects that only code could rebuild; refused unread") from None
    except Exception:  # noqa: BLE001 - whatever torch raises for a file that is not one of its own
        raise ValueError("not a torch checkpoint file, or a truncated one") from None


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


# ------------------------------------------------------------------------------- optimizers and schedulers
def _torch_optim_classes() -> dict[str, type]:
    """torch's optimizers and schedulers by every name a config may use: ``AdamW``, ``torch.optim.AdamW``,
    ``torch.optim.adamw.AdamW``. Only classes torch itself defines, so a recipe cannot name anything else."""
    bases = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    names: dict[str, type] = {}
    for namespace, prefix in ((torch.optim, "torch.optim"), (torch.optim.lr_scheduler, "torch.optim.lr_scheduler")):
        for name, value in vars(namespace).items():
            if isinstance(value, type) and issubclass(value, bases) and value.__module__.startswith("torch.optim"):
                names.update({name: value, f"{prefix}.{name}": value, class_path(value): value})
    return names


def factory_recipe(factory: Any) -> dict[str, Any] | None:
    """The recipe (``{"class_path", "init_args"}``) of an optimizer or scheduler factory, or None if it has none.

    A factory is what the module is given: a recipe already, a class (``torch.optim.Adam``), or a
    ``functools.partial`` of one (``partial(torch.optim.SGD, lr=0.1)``, and jsonargparse's own partials, which put the
    class among the positional arguments). A lambda has no recipe: it works, but a checkpoint cannot say what it was.
    """
    if factory is None or isinstance(factory, Mapping):
        return dict(factory) if factory is not None else None
    cls, keywords = unwrap_factory(factory)
    if cls is None:
        return None
    plain = {k: v for k, v in keywords.items() if _is_plain(v)}
    return {"class_path": class_path(cls), "init_args": plain} if len(plain) == len(keywords) else None


def unwrap_factory(factory: Any) -> tuple[type | None, dict[str, Any]]:
    """The class a factory builds and the keyword arguments it passes: ``partial(torch.optim.SGD, lr=0.1)`` is
    ``(SGD, {"lr": 0.1})``; jsonargparse's partials put the class among the positional arguments. A lambda: None."""
    keywords: dict[str, Any] = {}
    while isinstance(factory, functools.partial):
        keywords = {**factory.keywords, **keywords}
        classes = [a for a in (factory.func, *factory.args) if isinstance(a, type)]
        if classes:
            return classes[-1], keywords
        factory = factory.func
    return (factory, keywords) if isinstance(factory, type) else (None, keywords)


def build_factory(recipe: Mapping[str, Any], what: str, trusted: Iterable[type] = ()) -> Any:
    """The callable a recipe describes (``params -> optimizer`` or ``optimizer -> scheduler``), resolved only among
    torch's own classes and ``trusted``; nothing is imported. Raises ValueError naming ``what`` otherwise."""
    import functools

    if not isinstance(recipe, Mapping) or set(recipe) - {"class_path", "init_args"}:
        raise ValueError(f"{what}: expected {{'class_path': ..., 'init_args': {{...}}}}, got {_short(recipe)}")
    path, init_args = recipe.get("class_path"), recipe.get("init_args") or {}
    allowed = {**_torch_optim_classes(), **{class_path(c): c for c in trusted}}
    if not isinstance(path, str) or path not in allowed:
        raise ValueError(f"{what}: {_short(path)} is not one of torch.optim's classes (by name, e.g. AdamW, or "
                         f"class path, e.g. torch.optim.AdamW)")
    if not isinstance(init_args, Mapping) or not _is_plain(dict(init_args)):
        raise ValueError(f"{what} {path}: init_args must be a mapping of names to plain values, got "
                         f"{_short(init_args)}")
    return functools.partial(allowed[path], **init_args)


# ------------------------------------------------------------------------- what a module class takes
# Keys that checkpoints of earlier versions hold and that say how the weights were trained, not how to rebuild them.
LEGACY_KEYS = ("steps_per_call", "reference_mse")


def accepted_keys(cls: type) -> set[str]:
    """The arguments ``cls.__init__`` takes by name, and its bases' where it passes ``**kwargs`` on."""
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        accepted |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return accepted - {"self", "trusted"}


def unknown_hyperparameters(hparams: Mapping[str, Any], cls: type) -> list[str]:
    """The keys of a checkpoint's ``hyper_parameters`` that ``cls`` (a ``RegressionModule`` class) does not take,
    sorted (:func:`accepted_keys`). ``trusted`` is one of them: trust is the user's to give, never the file's.
    :data:`LEGACY_KEYS` are accepted from any checkpoint."""
    return sorted(map(str, set(hparams) - accepted_keys(cls) - set(LEGACY_KEYS)))


def init_arguments(hparams: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """``hparams`` without the :data:`LEGACY_KEYS` that ``cls`` does not take: what ``cls(**...)`` is called with."""
    accepted = accepted_keys(cls)
    return {k: v for k, v in hparams.items() if k not in LEGACY_KEYS or k in accepted}


def check_checkpoint_file(path: Path, cls: type) -> dict[str, Any]:
    """The checkpoint at ``path``, read without running code, if ``cls`` can be rebuilt from it; else one
    ValueError / FileNotFoundError naming the file (a missing file, another program's file, a checkpoint without
    Lightning's structure, hyperparameters ``cls`` does not take). ``RegressionModule.load_from_checkpoint`` calls it.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        checkpoint = read_checkpoint(path)
    except ValueError as e:
        raise ValueError(f"{path}: not a checkpoint written by lr_lightning ({e})") from None
    problem = _structure_problem(checkpoint)
    unknown = [] if problem else unknown_hyperparameters(checkpoint.get("hyper_parameters") or {}, cls)
    if unknown:
        written = str(checkpoint.get("module_class", "")).rpartition(".")[2]
        problem = f"unknown hyperparameters {', '.join(unknown)}" + (
            f"; it was written by {written}: load it with {written}.load_from_checkpoint" if written and
            written != cls.__name__ else "")
    if problem:
        raise ValueError(f"{path}: not a checkpoint written by lr_lightning ({problem})")
    return checkpoint
