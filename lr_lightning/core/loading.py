"""Reading a checkpoint into a module: the one room that loads what ``fit.py`` wrote, for ``predict.py``,
``evaluate.py`` and ``export.py`` (:mod:`~lr_lightning.core.checkpoints` holds the recipes, the allow-list and
:func:`~lr_lightning.core.checkpoints.read_checkpoint`, the file read that runs no code).

Everything read from the file is checked before it is used, with one line naming the flag and what is wrong. Nothing
heavy is imported at module level: ``predict.py --onnx`` imports this module and must not load torch.

>>> from pathlib import Path
>>> load_checkpoint(Path("no/such.ckpt"))
Traceback (most recent call last):
...
FileNotFoundError: --ckpt no/such.ckpt: no such file
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lr_lightning.core import solvers
from lr_lightning.core.commands import UsageError

if TYPE_CHECKING:
    from lr_lightning.core.regression_module import RegressionModule


def import_class(path: str, flag: str) -> type:
    """The ``nn.Module`` class ``package.module.ClassName`` that the user named on the command line.

    Importing it runs the module's code, which is the user's decision when they name it. As with ``python -m``, the
    directory the command runs from is importable.
    """
    import importlib

    from torch import nn

    module_name, _, name = path.rpartition(".")
    if not module_name or not name:
        raise UsageError(f"{flag} {path}: expected package.module.ClassName")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"{flag} {path}: cannot import it ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UsageError(f"{flag} {path}: not an nn.Module class")
    return cls


def module_class(checkpoint: dict[str, Any], trusted: list[type] | None = None, flag: str = "--ckpt") -> type:
    """The ``RegressionModule`` class a checkpoint records (``module_class``): this package's own, or one of
    ``trusted`` (``--trust my_pkg.HuberModule``); a checkpoint that records none rebuilds the module for its network
    (:class:`~lr_lightning.core.linear.LinearRegressionModule` for ``LinearRegression``)."""
    from lr_lightning.core.checkpoints import class_path
    from lr_lightning.core.linear import LinearRegressionModule
    from lr_lightning.core.regression_module import RegressionModule
    from lr_lightning.core.steps_per_call import StepsPerCallModule

    path = checkpoint.get("module_class")
    if path is None:
        model = checkpoint["hyper_parameters"].get("model")  # read from the file: anything, checked later
        network = str(model.get("class_path", "")) if isinstance(model, dict) else ""
        return LinearRegressionModule if network.endswith(".LinearRegression") else RegressionModule
    if not isinstance(path, str):
        raise UsageError(f"{flag}: module_class: expected a class path, got {type(path).__name__}")
    allowed = {class_path(c): c for c in (RegressionModule, LinearRegressionModule, StepsPerCallModule)}
    allowed |= {class_path(c): c for c in trusted or () if issubclass(c, RegressionModule)}
    if path not in allowed:
        raise UsageError(f"{flag}: the module class {path!r} is not trusted: if you trust its code, "
                         f"--trust {path}")
    return allowed[path]


def load_for_prediction(path: Path, trusted: list[type] | None = None) -> tuple[RegressionModule, list[str], list[str]]:
    """The module from a checkpoint, and the feature and target names of the data it was trained on; a warning line
    when it is a solver's fit with aliased columns (see :func:`load_checkpoint`, which says the same without printing).
    """
    module, features, targets, aliased = load_checkpoint(path, trusted)
    warn_if_rank_deficient(f"--ckpt {path}", aliased)
    return module, features, targets


def load_checkpoint(path: Path, trusted: list[type] | None = None
                    ) -> tuple[RegressionModule, list[str], list[str], list[str]]:
    """The module from a checkpoint, the feature and target names of the data it was trained on, and the columns a
    solver's fit found aliased (not estimated; empty for anything else).

    Everything read from the file is checked before it is used, with one line naming what is wrong: the network's
    class must be trusted (this package's networks, or ``trusted``), the weights must fit it and be finite, and the
    names must be unique strings, as many as the network has inputs and outputs.

    Args:
        path: the checkpoint.
        trusted: further network classes the checkpoint may rebuild (``--trust``).
    """

    import torch

    from lr_lightning.core.checkpoints import init_arguments, read_checkpoint, unknown_hyperparameters

    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not a regular file" if path.exists() else "no such file"
        raise FileNotFoundError(f"--ckpt {path}: {what}")
    try:
        ckpt = read_checkpoint(path)  # weights_only: a checkpoint from someone else must not run code
    except ValueError as e:
        raise UsageError(f"--ckpt {path}: not a checkpoint written by fit.py ({e})") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("hyper_parameters"), dict)
            and isinstance(ckpt.get("state_dict"), dict)):
        raise UsageError(f"--ckpt {path}: not a checkpoint written by fit.py (no hyper_parameters and state_dict)")
    if problem := solvers.checkpoint_problem(ckpt):
        raise UsageError(f"--ckpt {path}: {problem}")
    hparams = ckpt["hyper_parameters"]
    cls = module_class(ckpt, trusted, f"--ckpt {path}")
    unknown = unknown_hyperparameters(hparams, cls)
    if unknown:
        raise UsageError(f"--ckpt {path}: not a checkpoint written by fit.py (unknown hyperparameters "
                         f"{', '.join(unknown)})")
    try:
        module = cls(**init_arguments(hparams, cls), trusted=trusted or ())
        module.load_state_dict(ckpt["state_dict"])
    except (ValueError, TypeError) as e:
        raise UsageError(f"--ckpt {path}: {e}") from None
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise UsageError(f"--ckpt {path}: {key!r} holds non-finite values (nan or inf); the run that wrote it "
                             "diverged")
    module.eval()
    data = ckpt.get("datamodule_hyper_parameters", {})
    if not isinstance(data, dict):
        raise UsageError(f"--ckpt {path}: datamodule_hyper_parameters is a {type(data).__name__}, not a mapping")
    n_in = network_inputs(module)
    features = _checkpoint_names(path, data.get("feature_names"), "feature_names", n_in, "input(s)")
    n_in = len(features) if features is not None else n_in
    if n_in is None:
        raise UsageError(f"--ckpt {path}: cannot tell how many inputs the network {type(module.model).__name__} "
                         "takes (no feature_names, no in_features)")
    n_out = _network_outputs(path, module, n_in)
    targets = _checkpoint_names(path, data.get("target_names"), "target_names", n_out, "output(s)")
    features = features or [f"x{i}" for i in range(n_in)]
    targets = targets or (["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)])
    return module, features, targets, solvers.aliased_columns(ckpt)


def warn_if_rank_deficient(where: str, aliased: list[str]) -> None:
    """One warning line, as R's predict.lm gives one, when a solver's fit had aliased columns: their coefficients are
    0 in the model, so a new row whose aliased column doesn't follow the training data's dependence is mispredicted.
    Said by every path that predicts with such a fit: ``predict.py --ckpt`` and ``--onnx``, ``evaluate.py``."""
    if aliased:
        print(f"warning: {where}: prediction from a rank-deficient fit may be misleading (aliased, not "
              f"estimated: {', '.join(aliased)})", file=sys.stderr)


def network_inputs(module: RegressionModule) -> int | None:
    """How many raw input columns the module takes, as far as it says: the feature map's, or ``in_features``."""
    if module.feature_map is not None:
        return len(module.feature_map.spec["centre"])
    n = getattr(module.model, "in_features", None)
    if isinstance(n, int) and not isinstance(n, bool):
        return n
    first = next(module.model.parameters(), None)  # the first layer's (out, in) weight, for other networks
    return first.shape[-1] if first is not None and first.ndim == 2 else None


def _network_outputs(path: Path, module: RegressionModule, n_in: int) -> int:
    """Run the module on one row of zeros: it must take ``n_in`` columns and return ``(1, n_outputs)``."""
    import torch

    try:
        with torch.no_grad():
            out = module(torch.zeros(1, n_in, dtype=next(module.parameters()).dtype))
    except Exception as e:  # a network that does not take n_in columns: torch says so in a multi-line error
        raise UsageError(f"--ckpt {path}: the network {type(module.model).__name__} fails on one row of {n_in} "
                         f"input(s) ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"--ckpt {path}: the network returns {shape} for one row of inputs; expected (1, outputs)")
    return out.shape[1]


def _checkpoint_names(path: Path, names: Any, key: str, n: int | None, what: str) -> list[str] | None:
    """``names`` from the checkpoint, checked: None, or ``n`` unique non-empty strings."""
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in names):
        raise UsageError(f"--ckpt {path}: {key} must be a list of non-empty strings, got {names!r:.80}")
    if len(set(names)) != len(names):
        twice = next(v for v in names if names.count(v) > 1)
        raise UsageError(f"--ckpt {path}: {key} names {twice!r} twice")
    if n is not None and len(names) != n:
        raise UsageError(f"--ckpt {path}: {key} has {len(names)} name(s) ({', '.join(names)}), but the network has "
                         f"{n} {what}")
    return list(names)
