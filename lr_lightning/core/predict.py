"""``scripts/predict.py``: predictions from a checkpoint for raw input rows (``--x`` values or a ``--csv`` file).

With ``--onnx FILE`` instead of ``--ckpt``, an ONNX file written by ``export.py`` predicts, run by onnxruntime: that
path imports neither torch nor Lightning (their import is most of ``--ckpt``'s seconds), and prints the same text.

The serving side of the template: everything read from the checkpoint is checked before it is used (its network's
class must be trusted, its weights must fit and be finite, its names must match the network), and the output is CSV,
the inputs and one ``predicted_<target>`` column per target.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lr_lightning.core.commands import Parser, UsageError, entry_point, quiet
from lr_lightning.core.loading import (  # noqa: F401 - load_checkpoint: also importable from here, as it was
    import_class,
    load_checkpoint,
    load_for_prediction,
    warn_if_rank_deficient,
)

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
                   "order; finite numbers (a model with category columns: its raw inputs, levels as text)")
    p.add_argument("--csv", type=str, help="a CSV with a header row naming the feature columns: matched by name, in "
                   "any order; other columns are ignored")
    p.add_argument("--no_header", type=bool, default=False, help="--csv has no header row: its columns are the "
                   "checkpoint's features, in the checkpoint's order (a first row of numbers is refused without it)")
    p.add_argument("--trust", type=str, nargs="+", action="extend", default=[], help="network classes of yours "
                   "(package.module.ClassName) that the checkpoint may rebuild. Only this package's networks are "
                   "trusted otherwise; importing your module runs its code, so name only your own")
    p.add_argument("--interval", type=float, help="a level such as 0.95: print lower_<target> and upper_<target> "
                   "beside each prediction (a checkpoint of an exact least-squares fit, or an ONNX file exported with "
                   "--interval)")
    p.add_argument("--interval_kind", type=Literal["confidence", "prediction"], default="confidence",
                   help="with --interval: of the mean (confidence) or of a new observation (prediction)")
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
        if args.interval is not None:
            from lr_lightning.core.intervals import check_level

            try:
                check_level(args.interval)
            except ValueError as e:
                raise UsageError(f"--interval: {e}") from None
        interval = None
        if args.onnx is not None:
            if args.trust:
                raise UsageError("--trust applies to --ckpt (an ONNX file runs no code of yours)")
            # No torch, no Lightning on this path: their import is the seconds it exists to save.
            from lr_lightning.core.export import OnnxPredictor

            predictor = OnnxPredictor(args.onnx, what=f"--onnx {args.onnx}")
            features, targets, dtype = predictor.features, predictor.targets, predictor.dtype
            warn_if_rank_deficient(f"--onnx {args.onnx}", predictor.aliased)
            if args.interval is not None and predictor.interval is None:
                raise UsageError(f"--onnx {args.onnx}: has no stderr output, so no intervals (export it with "
                                 "export.py --interval, from an exact least-squares fit's checkpoint)")
            x = _predict_inputs(args, features, dtype)
            if args.interval is not None:
                preds, se = predictor.with_stderr(x)
                interval = _bounds(preds, se, predictor.interval, args)
            else:
                preds = predictor(x)
        else:
            quiet()
            trusted = [import_class(name, "--trust") for name in args.trust]
            module, features, targets = load_for_prediction(Path(args.ckpt), trusted)
            categories = _checkpoint_categories(Path(args.ckpt), features)
            spec = None
            if args.interval is not None:
                from lr_lightning.core.intervals import checkpoint_interval

                spec = checkpoint_interval(Path(args.ckpt), len(features), len(targets))
            dtype = str(next(module.parameters()).dtype).removeprefix("torch.")
            x = _predict_inputs(args, features, dtype, categories)
            preds = _predictions(module, x)
            if spec is not None:
                from lr_lightning.core.intervals import mean_stderr

                centre = spec.get("centre")
                se = mean_stderr(x, spec["covariance"].double().numpy(), spec["polynomial_degree"], spec["bias"],
                                 None if centre is None else centre.double().numpy())
                interval = _bounds(preds, se, spec, args)
        refuse_non_finite(preds)
    except (UsageError, ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in prediction_csv(features, targets, x, preds, interval):
        print(line)
    return 0


def _bounds(preds: Any, se: Any, spec: dict[str, Any], args: Namespace) -> tuple[Any, Any]:
    """``(lower, upper)`` at ``--interval`` of ``--interval_kind``, from the means' standard errors and the stored
    residual variance and df."""
    from lr_lightning.core.intervals import bounds

    b = bounds(preds, se, spec["residual_variance"], spec["df_resid"], args.interval, args.interval_kind)
    return b["lower"], b["upper"]


def prediction_csv(features: list[str], targets: list[str], x: Any, preds: Any,
                   interval: tuple[Any, Any] | None = None) -> Iterator[str]:
    """predict.py's output, line by line: a header, then each row's inputs and predictions.

    The one formatting of predictions, shared by the checkpoint and the ONNX paths (so their outputs are the same
    text). ``preds``: a numpy array in the model's dtype; the inputs are printed in that dtype too (:func:`format_row`).
    ``interval``: ``(lower, upper)`` arrays like ``preds``, printed as ``lower_<target>``, ``upper_<target>`` beside
    each ``predicted_<target>``.
    """
    import numpy as np

    columns, names = [preds[:, [j]] for j in range(preds.shape[1])], [f"predicted_{t}" for t in targets]
    if interval is not None:
        lower, upper = (np.asarray(a, dtype=preds.dtype) for a in interval)
        columns = [c for j in range(preds.shape[1]) for c in (preds[:, [j]], lower[:, [j]], upper[:, [j]])]
        names = [n for t in targets for n in (f"predicted_{t}", f"lower_{t}", f"upper_{t}")]
    yield ",".join(features + names)
    for row in np.hstack([np.asarray(x, dtype=preds.dtype), *columns]):
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


def _checkpoint_categories(path: Path, features: list[str]) -> Any:
    """The checkpoint's :class:`~lr_lightning.core.data.categories.Categories` (a fit on category columns), or None;
    checked: its encoded names must be the checkpoint's features."""
    from lr_lightning.core.checkpoints import read_checkpoint
    from lr_lightning.core.data.categories import Categories

    spec = (read_checkpoint(path).get("datamodule_hyper_parameters") or {}).get("categories")
    if spec is None:
        return None
    try:
        categories = Categories.from_spec(spec, f"--ckpt {path}: categories")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if categories.names != features:
        raise UsageError(f"--ckpt {path}: categories encode {', '.join(categories.names)}, but the features are "
                         f"{', '.join(features)}")
    return categories


def _categorical_inputs(args: Namespace, categories: Any, max_abs: float) -> Any:
    """Rows of raw inputs (numbers, and levels for the category columns) encoded as the checkpoint's features. A
    level not seen in training is refused: one line naming the file (or --x), the row, the column and the level."""
    import numpy as np

    from lr_lightning.core.data.csv_table import parse_number, read_csv_table, read_text_columns

    inputs, numeric = categories.inputs, categories.numeric
    if args.csv is not None:
        if args.no_header:
            raise UsageError(f"--csv {args.csv}: --no_header: a model with category columns reads them by name "
                             f"({', '.join(inputs)}); give the file a header row")
        _, data = read_csv_table(args.csv, numeric, max_abs=max_abs)
        columns = {**{c: data[:, j] for j, c in enumerate(numeric)},
                   **read_text_columns(args.csv, categories.categorical)}
        return categories.encode(columns, where=lambda r: f"--csv {args.csv}: data row {r + 1} (1-based, header "
                                                           "excluded)")
    n = len(inputs)
    if len(args.x) % n:
        raise UsageError(f"--x: {len(args.x)} values do not make rows of {n} inputs ({', '.join(inputs)})")
    rows = [args.x[i:i + n] for i in range(0, len(args.x), n)]
    columns = {}
    for j, c in enumerate(inputs):
        if c in categories.levels:
            columns[c] = np.array([row[j] for row in rows], dtype=object)
            continue
        values = []
        for r, row in enumerate(rows):
            try:
                v = parse_number(row[j])
            except ValueError:
                raise UsageError(f"--x row {r + 1}, input {c!r}: {row[j]!r} is not a number") from None
            if not (math.isfinite(v) and abs(v) <= max_abs):
                raise UsageError(f"--x row {r + 1}, input {c!r}: {row[j]!r} is not a finite number in range")
            values.append(v)
        columns[c] = np.asarray(values, dtype=np.float64)
    return categories.encode(columns, where=lambda r: f"--x row {r + 1}")


def _predict_inputs(args: Namespace, features: list[str], dtype: str, categories: Any = None) -> Any:
    """The input rows, columns in the model's feature order; every value finite in the model's dtype (``float32`` or
    ``float64``). ``categories``: a model with category columns takes raw inputs, levels as text, and encodes them.
    numpy only: the ``--onnx`` path must not import torch."""
    import numpy as np

    from lr_lightning.core.data.csv_table import MissingHeaderError, parse_number, read_csv_table

    # A value beyond the dtype's range becomes inf when cast to it: refused as inf is.
    max_abs = float(np.finfo(dtype).max)
    if categories is not None:
        return _categorical_inputs(args, categories, max_abs)
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
