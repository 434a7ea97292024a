"""``scripts/predict.py``: predictions from a checkpoint for raw input rows (``--x`` values or a ``--csv`` file).

With ``--onnx FILE`` instead of ``--ckpt``, an ONNX file written by ``export.py`` predicts, run by onnxruntime: that
path imports neither torch nor Lightning (their import is most of ``--ckpt``'s seconds), and prints the same text.

The serving side of the template: everything read from the checkpoint is checked before it is used (its network's
class must be trusted, its weights must fit and be finite, its names must match the network), and the output is CSV,
the inputs and one ``predicted_<target>`` column per target.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lr_lightning.core.commands import Parser, UsageError, entry_point, quiet

if TYPE_CHECKING:
    from jsonargparse import Namespace

    from lr_lightning.core.regression_module import RegressionModule


def predict_parser() -> Parser:
    p = Parser(prog="predict.py", description="Predict with a checkpoint written by fit.py (--ckpt), or with its "
               "export (--onnx, see export.py). Prints CSV: the inputs and one predicted_<target> column per output.")
    p.add_argument("--ckpt", type=str, help="a .ckpt file (e.g. .../checkpoints/last.ckpt)")
    p.add_argument("--onnx", type=str, help="instead of --ckpt, an .onnx file written by export.py: run by onnxruntime "
                   "without importing torch or Lightning (well under a second), same output")
    p.add_argument("--x", type=str, nargs="+", help="input values, row after row, in the checkpoint's feature "
                   "order; finite numbers")
    p.add_argument("--csv", type=str, help="a CSV with a header row naming the feature columns: matched by name, in "
                   "any order; other columns are ignored")
    p.add_argument("--no_header", type=bool, default=False, help="--csv has no header row: its columns are the "
                   "checkpoint's features, in the checkpoint's order (a first row of numbers is refused without it)")
    p.add_argument("--trust", type=str, nargs="+", default=[], help="network classes of yours "
                   "(package.module.ClassName) that the checkpoint may rebuild. Only this package's networks are "
                   "trusted otherwise; importing your module runs its code, so name only your own")
    return p


@entry_point
def predict_main(argv: list[str] | None = None) -> int:
    args = predict_parser().parse_args(argv)
    try:
        if (args.ckpt is None) == (args.onnx is None):
            raise UsageError("give the model either as --ckpt (a checkpoint) or as --onnx (written by export.py)")
        if (args.x is None) == (args.csv is None):
            raise UsageError("give the inputs either as --x values or as a --csv file")
        if args.no_header and args.csv is None:
            raise UsageError("--no_header applies to --csv (a CSV file without a header row)")
        if args.onnx is not None:
            if args.trust:
                raise UsageError("--trust applies to --ckpt (an ONNX file runs no code of yours)")
            # No torch, no Lightning on this path: their import is the seconds it exists to save.
            from lr_lightning.core.export import OnnxPredictor

            predictor = OnnxPredictor(args.onnx, what=f"--onnx {args.onnx}")
            features, targets, dtype = predictor.features, predictor.targets, predictor.dtype
            warn_if_rank_deficient(f"--onnx {args.onnx}", predictor.aliased)
            x = _predict_inputs(args, features, dtype)
            preds = predictor(x)
        else:
            quiet()
            trusted = [_import_class(name, "--trust") for name in args.trust]
            module, features, targets = load_for_prediction(Path(args.ckpt), trusted)
            dtype = str(next(module.parameters()).dtype).removeprefix("torch.")
            x = _predict_inputs(args, features, dtype)
            preds = _predictions(module, x)
        refuse_non_finite(preds)
    except (UsageError, ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in prediction_csv(features, targets, x, preds):
        print(line)
    return 0


def prediction_csv(features: list[str], targets: list[str], x: Any, preds: Any) -> Iterator[str]:
    """predict.py's output, line by line: a header, then each row's inputs and predictions.

    The one formatting of predictions, shared by the checkpoint and the ONNX paths (so their outputs are the same
    text). ``preds``: a numpy array in the model's dtype; the inputs are printed in that dtype too (:func:`format_row`).
    """
    import numpy as np

    yield ",".join(features + [f"predicted_{t}" for t in targets])
    for row in np.hstack([np.asarray(x, dtype=preds.dtype), preds]):
        yield format_row(row)


def format_row(values: Any) -> str:
    """Comma-separated numbers, each the shortest text that reads back to the same value *in its dtype* (numpy's
    ``str`` of a float32 or float64 scalar): a float64 model's predictions round-trip exactly, and a float32 one's
    don't print float64 noise (2.3, not 2.299999952316284)."""
    return ",".join(str(v) for v in values)


def refuse_non_finite(preds: Any) -> None:
    """Refuse predictions that are not all finite (finite inputs can still overflow): one line naming the row."""
    import numpy as np

    bad = np.argwhere(~np.isfinite(preds))
    if len(bad):
        row, col = (int(i) for i in bad[0])
        raise UsageError(f"the prediction for input row {row + 1} is {preds[row, col].item()}: the inputs are beyond "
                         f"what the model's {preds.dtype} arithmetic holds")


def _import_class(path: str, flag: str) -> type:
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


def load_for_prediction(path: Path, trusted: list[type] | None = None) -> tuple[RegressionModule, list[str], list[str]]:
    """The module from a checkpoint, and the feature and target names of the data it was trained on; a warning line
    when it is an exact fit with aliased columns (see :func:`load_checkpoint`, which says the same without printing).
    """
    module, features, targets, aliased = load_checkpoint(path, trusted)
    warn_if_rank_deficient(f"--ckpt {path}", aliased)
    return module, features, targets


def load_checkpoint(path: Path, trusted: list[type] | None = None
                    ) -> tuple[RegressionModule, list[str], list[str], list[str]]:
    """The module from a checkpoint, the feature and target names of the data it was trained on, and the columns an
    exact fit found aliased (not estimated; empty for anything else).

    Everything read from the file is checked before it is used, with one line naming what is wrong: the network's
    class must be trusted (this package's networks, or ``trusted``), the weights must fit it and be finite, and the
    names must be unique strings, as many as the network has inputs and outputs.

    Args:
        path: the checkpoint.
        trusted: further network classes the checkpoint may rebuild (``--trust``).
    """

    import torch

    from lr_lightning.core.checkpoints import read_checkpoint, unsolved_exact_fit
    from lr_lightning.core.regression_module import RegressionModule, unknown_hyperparameters

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
    if problem := unsolved_exact_fit(ckpt):
        raise UsageError(f"--ckpt {path}: {problem}")
    hparams = ckpt["hyper_parameters"]
    unknown = unknown_hyperparameters(hparams)
    if unknown:
        raise UsageError(f"--ckpt {path}: not a checkpoint written by fit.py (unknown hyperparameters "
                         f"{', '.join(unknown)})")
    try:
        module = RegressionModule(**hparams, trusted=trusted or ())
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
    n_in = _network_inputs(module)
    features = _checkpoint_names(path, data.get("feature_names"), "feature_names", n_in, "input(s)")
    n_in = len(features) if features is not None else n_in
    if n_in is None:
        raise UsageError(f"--ckpt {path}: cannot tell how many inputs the network {type(module.model).__name__} "
                         "takes (no feature_names, no in_features)")
    n_out = _network_outputs(path, module, n_in)
    targets = _checkpoint_names(path, data.get("target_names"), "target_names", n_out, "output(s)")
    features = features or [f"x{i}" for i in range(n_in)]
    targets = targets or (["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)])
    return module, features, targets, aliased_columns(ckpt.get("least_squares"))


def aliased_columns(solved: Any) -> list[str]:
    """The columns an exact fit (a checkpoint's ``least_squares`` entry) left aliased: their coefficients are null in
    its statistics and 0 in its network."""
    if not isinstance(solved, dict) or not isinstance(solved.get("statistics"), dict):
        return []
    return sorted({str(name) for s in solved["statistics"].values() if isinstance(s, dict)
                   for name, c in zip(s.get("names") or [], s.get("coef") or [], strict=False) if c is None})


def warn_if_rank_deficient(where: str, aliased: list[str]) -> None:
    """One warning line, as R's predict.lm gives one, when an exact fit had aliased columns: their coefficients are
    0 in the model, so a new row whose aliased column doesn't follow the training data's dependence is mispredicted.
    Said by every path that predicts with such a fit: ``predict.py --ckpt`` and ``--onnx``, ``evaluate.py``."""
    if aliased:
        print(f"warning: {where}: prediction from a rank-deficient fit may be misleading (aliased, not "
              f"estimated: {', '.join(aliased)})", file=sys.stderr)


def _network_inputs(module: RegressionModule) -> int | None:
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


def _predict_inputs(args: Namespace, features: list[str], dtype: str) -> Any:
    """The input rows, columns in the model's feature order; every value finite in the model's dtype (``float32`` or
    ``float64``). numpy only: the ``--onnx`` path must not import torch."""
    import numpy as np

    from lr_lightning.core.data.csv_table import MissingHeaderError, parse_number, read_csv_table

    # A value beyond the dtype's range becomes inf when cast to it: refused as inf is.
    max_abs = float(np.finfo(dtype).max)
    if args.csv is not None:
        try:
            _, data = read_csv_table(args.csv, features, header=not args.no_header, max_abs=max_abs)
        except MissingHeaderError as e:
            raise UsageError(f"{e}, or pass --no_header true to take its columns as the checkpoint's features in order "
                             f"({', '.join(features)})") from None
        return data
    n = len(features)
    values = []
    for i, text in enumerate(args.x):
        where = f"--x value {i + 1} ({text!r}"
        where += f", row {i // n + 1}, feature {features[i % n]!r})" if n > 1 else ")"
        try:
            v = parse_number(text)
        except ValueError:
            raise UsageError(f"{where}: not a number") from None
        if not math.isfinite(v):
            raise UsageError(f"{where}: not a finite number")
        if abs(v) > max_abs:
            raise UsageError(f"{where}: beyond ±{max_abs:.6g}, the range of the model's {dtype}")
        values.append(v)
    if len(values) % n:
        raise UsageError(f"--x: {len(values)} values do not make rows of {n} features ({', '.join(features)})")
    return np.asarray(values, dtype=np.float64).reshape(-1, n)


def _predictions(module: RegressionModule, x: Any) -> Any:
    """The module's predictions for ``x``, as a numpy array in the network's dtype."""
    import torch

    with torch.no_grad():
        return module(torch.as_tensor(x, dtype=next(module.parameters()).dtype)).numpy()
