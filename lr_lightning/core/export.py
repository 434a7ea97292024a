"""``scripts/export.py``: a checkpoint's network and its feature map as one file a serving stack runs without Lightning.

The file holds ``module(x_raw)`` whole: standardization and the polynomial basis, the network, and the map back to
the target's units, so raw inputs give predictions in original units. The suffix picks the format:

- ``.onnx``: ONNX (torch's ``torch.export``-based exporter), the format serving stacks take. ``predict.py --onnx``
  runs it with onnxruntime, importing neither torch nor Lightning (:class:`OnnxPredictor`).
- ``.pt2``: a ``torch.export`` program (``torch.export.load(path).module()``), for any op torch has.

Both keep the network's dtype (a float64 model takes and returns float64) and a free batch dimension, and carry the
feature and target names and the feature map as metadata (``lr_lightning``: JSON), which is how a file is known to be
ours. Before the file is written, the export is run on example rows and must reproduce ``module(x)``.

Only :func:`export` and its helpers import torch, inside the functions: this module is what the ``--onnx`` path of
``predict.py`` imports, and loading torch there would cost the seconds that path exists to save.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lr_lightning.core.commands import Parser, UsageError, command, entry_point, quiet, show

if TYPE_CHECKING:
    import torch

    from lr_lightning.core.regression_module import RegressionModule

# Suffix -> what the file is, as messages say it.
FORMATS = {".onnx": "ONNX", ".pt2": "torch.export"}
# The metadata key (an ONNX metadata_props entry; in a .pt2, an extra file of this name plus .json).
METADATA_KEY = "lr_lightning"
METADATA_VERSION = 1
# The self-check at export time: the exported file against module(x) on example rows. Not the precision claim (the
# tests hold 1e-5 relative); a bound that only a wrong graph exceeds, so float32 rounding never trips it.
CHECK_RTOL = 1e-4
ONNX_DTYPES = {"tensor(double)": "float64", "tensor(float)": "float32"}


# ------------------------------------------------------------------------------------------------ command line
def export_parser() -> Parser:
    p = Parser(prog="export.py", description="Export a checkpoint written by fit.py, network and feature map, as one "
               "file that predicts from raw inputs in original units: .onnx (ONNX, for serving; predict.py --onnx runs "
               "it without torch) or .pt2 (torch.export).")
    p.add_argument("--ckpt", type=str, required=True, help="a .ckpt file (e.g. .../checkpoints/last.ckpt)")
    p.add_argument("--out", type=str, required=True, help="the file to write; its suffix picks the format: .onnx or "
                   ".pt2")
    p.add_argument("--trust", type=str, nargs="+", action="extend", default=[], help="network classes of yours "
                   "(package.module.ClassName) that the checkpoint may rebuild, as for predict.py")
    p.add_argument("--interval", action="store_true", help="(.onnx) a second graph output, stderr: each prediction's "
                   "standard error of the mean, from the checkpoint's coefficient covariance (an exact least-squares "
                   "fit's), with the residual variance and df in the metadata: predict.py --onnx --interval")
    return p


@entry_point
def export_main(argv: list[str] | None = None) -> int:
    from lr_lightning.core.loading import import_class, load_checkpoint

    args = export_parser().parse_args(argv)
    quiet()
    out = Path(args.out)
    try:
        check_out(out)  # before the checkpoint's seconds of loading
        trusted = [import_class(name, "--trust") for name in args.trust]
        if args.interval and out.suffix != ".onnx":
            raise UsageError(f"--interval applies to an .onnx --out (its second output is the stderr), not {out}")
        module, features, targets, aliased = load_checkpoint(Path(args.ckpt), trusted)
        interval = None
        if args.interval:
            from lr_lightning.core.intervals import checkpoint_interval

            interval = checkpoint_interval(Path(args.ckpt), len(features), len(targets))
        export(module, out, features=features, targets=targets, aliased=aliased, interval=interval)
    except (UsageError, ValueError, FileNotFoundError, PermissionError) as e:
        message = str(e)
        print(f"error: {message if message.startswith('--') else '--out ' + message}", file=sys.stderr)
        return 2
    dtype = str(next(module.parameters()).dtype).removeprefix("torch.")
    print(f"Exported {type(module.model).__name__} ({dtype}; inputs {', '.join(features)}; outputs "
          f"{', '.join('predicted_' + t for t in targets)}) to {show(out)} ({FORMATS[out.suffix]}, any batch size)")
    if out.suffix == ".onnx":
        print(f"Predict without torch: {command('predict')} --onnx {show(out)} --x ...")
    return 0


def check_out(out: Path) -> None:
    """``out`` can be written as an export: a known suffix, in a directory that exists."""
    if out.suffix not in FORMATS:
        raise ValueError(f"{out}: the suffix picks the format, .onnx (ONNX) or .pt2 (torch.export); got "
                         f"{out.suffix or 'none'}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out}: no directory {out.parent}")
    if out.is_dir():
        raise ValueError(f"{out}: is a directory")
    import tempfile

    try:  # the export is written beside it: a folder it cannot write is said now, in the user's words
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise PermissionError(f"{out}: cannot write there ({e.strerror})") from None


# ------------------------------------------------------------------------------------------------ exporting
def export(module: RegressionModule, out: str | Path, *, features: list[str] | None = None,
           targets: list[str] | None = None, aliased: list[str] | None = None,
           interval: dict[str, Any] | None = None) -> Path:
    """Write ``module`` (its feature map and network, ``module(x_raw)``) to ``out``: ``.onnx`` or ``.pt2``.

    The batch dimension is free and the dtype is the network's. Before ``out`` is written (atomically: a failed
    export leaves no file), the export is run on example rows and must reproduce ``module(x)``.

    Args:
        module: the module, as :func:`~lr_lightning.core.loading.load_for_prediction` returns it.
        out: the file; the suffix picks the format.
        features: the input columns' names (default ``x0, x1, ...``).
        targets: the outputs' names (default ``y``, or ``y0, y1, ...``).
        aliased: the columns a solver's fit left aliased (:func:`~lr_lightning.core.loading.load_checkpoint`),
            kept in the metadata so that ``predict.py --onnx`` warns as ``--ckpt`` does.
        interval: (``.onnx`` only) a checkpoint's interval spec (:func:`~lr_lightning.core.intervals.
            checkpoint_interval`): the graph gets a second output, ``stderr`` (rows, targets), the standard error of
            each predicted mean, ``sqrt(d C dᵀ)``; the residual variance and df go into the metadata.

    Raises ValueError (one line) for a wrong suffix, a network ``torch.export`` cannot trace, or one with an op ONNX
    has no function for; FileNotFoundError when ``out``'s directory does not exist.
    """
    import torch

    out = Path(out)
    check_out(out)
    module.eval()
    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    n_in = len(features) if features is not None else _network_inputs(module)
    example = _example_rows(module, n_in, dtype)
    try:
        with torch.no_grad():
            expected = module(example).numpy()
    except Exception as e:  # e.g. `features` that do not match the network: torch says so over several lines
        raise ValueError(f"{out}: the network {type(module.model).__name__} fails on rows of {n_in} input(s) "
                         f"({_summary(e)})") from None
    if expected.ndim != 2 or expected.shape[0] != len(example):
        raise ValueError(f"{out}: the network returns shape {tuple(expected.shape)} for {len(example)} rows; expected "
                         f"(rows, outputs)")
    # Checked here, not left to the comparison below: with an inf prediction its tolerance (relative to the largest
    # one) is inf and would pass any file; with a NaN it fails saying only "largest difference nan".
    bad = [name for name, t in module.named_parameters() if not torch.isfinite(t).all()]
    if bad or not np.isfinite(expected).all():
        raise ValueError(f"{out}: " + (f"the weights are not finite ({', '.join(bad[:3])}): training diverged" if bad
                                       else "the module's predictions on example rows in the data's range are not "
                                            "finite") + "; nothing to export")
    n_out = expected.shape[1]
    targets = targets or (["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)])
    meta = {"version": METADATA_VERSION, "features": features or [f"x{i}" for i in range(n_in)], "targets": targets,
            "dtype": str(dtype).removeprefix("torch."), "network": type(module.model).__name__,
            "feature_map": module.feature_map.spec if module.feature_map is not None else None,
            "aliased": list(aliased or [])}
    traced = module
    if interval is not None:
        if out.suffix != ".onnx":
            raise ValueError(f"{out}: interval applies to an .onnx file")
        meta["interval"] = {k: interval[k] for k in ("cov_type", "residual_variance", "df_resid",
                                                     "polynomial_degree", "bias")}
        traced = _WithStderr(module, interval)
    program = _torch_export(traced, example, out)
    # Written beside `out` and renamed onto it (atomic): a failed export leaves no file, and no half of one.
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    try:
        if out.suffix == ".onnx":
            _write_onnx(program, tmp, meta, out)
            predictor = OnnxPredictor(tmp, what=str(out))
            got = predictor(example.numpy())
            if interval is not None:
                _check_same(predictor.with_stderr(example.numpy())[1], traced.stderr(example).numpy(), out)
        else:
            with _torch_quiet():
                torch.export.save(program, tmp, extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})
            got = load_pt2(tmp)[0](example).detach().numpy()
        _check_same(got, expected, out)
        os.replace(tmp, out)
    except OSError as e:  # (the temporary file is ours: the message names the user's path)
        raise PermissionError(f"{out}: cannot write there ({e.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _WithStderr(module: RegressionModule, interval: dict[str, Any]) -> torch.nn.Module:  # noqa: N802 - a class
    """``module`` with a second output: the predicted means' standard errors, from the interval spec's covariance."""
    import torch

    from lr_lightning.core.intervals import mean_stderr

    class WithStderr(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module
            dtype = next(module.parameters()).dtype
            self.register_buffer("covariance", interval["covariance"].to(dtype))
            centre = interval.get("centre")
            self.register_buffer("centre", None if centre is None else centre.to(dtype))

        def stderr(self, x: torch.Tensor) -> torch.Tensor:
            return mean_stderr(x, self.covariance, interval["polynomial_degree"], interval["bias"], self.centre)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.module(x), self.stderr(x)

    return WithStderr().eval()


def _network_inputs(module: RegressionModule) -> int:
    from lr_lightning.core.loading import network_inputs

    n = network_inputs(module)
    if n is None:
        raise ValueError(f"cannot tell how many inputs the network {type(module.model).__name__} takes (no feature "
                         "map, no in_features): pass features=[...]")
    return n


def _example_rows(module: RegressionModule, n_in: int, dtype: torch.dtype, n: int = 8) -> torch.Tensor:
    """``n`` seeded rows in the range the feature map was fitted on (standard normal without one): to trace with, and
    to compare the exported file with the module on. Eight rows, not one or two: torch.export would specialize a
    batch of size 1 (broadcasting) and the check should see more than one row."""
    import torch

    rng = np.random.default_rng(0)
    u = rng.uniform(-1.0, 1.0, size=(n, n_in))
    fm = module.feature_map
    if fm is None:
        x = u
    elif fm.degree is not None:  # the polynomial basis was scaled onto [-1, 1]: the training rows' range
        x = np.asarray(fm.spec["centre"]) + np.asarray(fm.spec["scale"]) * u
    else:  # standardization alone: features are the raw columns
        x = np.asarray(fm.spec["feature_mean"]) + np.asarray(fm.spec["feature_scale"]) * u
    return torch.as_tensor(x, dtype=dtype)


@contextlib.contextmanager
def _torch_quiet() -> Iterator[None]:
    """The exporter's chatter off: its warnings that torchvision's ops are not registered (logged, not ours to act on)
    and a deprecation inside torch.export's own pytree code."""
    # torch.onnx: warnings about torchvision's ops; torch.fx's symbolic shapes and torch.export: a warning ("Unable to
    # find user code corresponding to {u0}") and an error log for a network they cannot trace, which the one-line
    # error then says.
    levels = {"torch.onnx": logging.ERROR, "torch.fx.experimental.symbolic_shapes": logging.CRITICAL,
              "torch.export": logging.CRITICAL, "torch._export": logging.CRITICAL}
    loggers = [(logging.getLogger(name), logging.getLogger(name).level, level) for name, level in levels.items()]
    for logger, _, level in loggers:
        logger.setLevel(level)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)", FutureWarning)
            warnings.filterwarnings("ignore", r".*legacy TorchScript-based ONNX export", DeprecationWarning)
            yield
    finally:
        for logger, level, _ in loggers:
            logger.setLevel(level)


def _torch_export(module: RegressionModule, example: torch.Tensor, out: Path) -> Any:
    """``torch.export.export`` of ``module`` with a free batch dimension; a network it cannot trace is one line."""
    import torch

    try:
        # torch.export prints the partial graph of a network it cannot trace straight to stderr (print, not a log),
        # once per nested wrapper: dozens of lines before the one-line error that says why.
        with _torch_quiet(), contextlib.redirect_stderr(io.StringIO()):
            return torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as e:  # torch.export fails in many classes (UserError, Unsupported, ...), each over many lines
        raise ValueError(f"{out}: torch.export cannot trace the network {type(module.model).__name__} "
                         f"({_summary(e)})") from None


def _write_onnx(program: Any, path: Path, meta: dict[str, Any], out: Path) -> None:
    """Convert the ``torch.export`` program to ONNX and save it with the metadata; an op without an ONNX function
    is one line naming the op."""
    import torch

    network = meta["network"]
    try:
        with _torch_quiet():
            names = ["predictions", "stderr"] if "interval" in meta else ["predictions"]
            onnx_program = torch.onnx.export(program, dynamo=True, input_names=["x"], output_names=names,
                                             verbose=False)
    except ImportError as e:  # onnx or onnxscript missing: the optional extra
        raise ValueError(f"{out}: ONNX export needs the export extra, pip install -e '.[export]' in a clone "
                         f"({e})") from None
    except Exception as e:
        if m := re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", str(e)):
            raise ValueError(f"{out}: the network {network} uses {m.group(1)}, which has no ONNX function; export to "
                             ".pt2 (torch.export keeps every torch op) or replace that op") from None
        raise ValueError(f"{out}: ONNX cannot express the network {network} ({_summary(e)})") from None
    # Both axes named: serving stacks show the batch axis by this name.
    graph = onnx_program.model.graph
    for value, width in ((graph.inputs[0], len(meta["features"])),
                         *((output, len(meta["targets"])) for output in graph.outputs)):
        value.shape = type(value.shape)(["batch", width])
    onnx_program.model.metadata_props[METADATA_KEY] = json.dumps(meta)
    onnx_program.save(path)


def _summary(e: BaseException) -> str:
    """An exporter's error in one line: the first line of its exception summary (torch.onnx's), else its first line;
    terminal colours stripped."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    _, found, summary = text.partition("## Exception summary")
    lines = [line.strip() for line in (summary if found else text).splitlines() if line.strip()]
    first = re.sub(r"^<class '[\w.]+'>: ", "", lines[0]) if lines else type(e).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def _check_same(got: np.ndarray, expected: np.ndarray, out: Path) -> None:
    """The exported file's predictions against ``module(x)``: a wrong graph is refused before it is written."""
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=CHECK_RTOL, atol=CHECK_RTOL * scale):
        worst = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("nan")
        raise ValueError(f"{out}: the exported file does not reproduce the module's predictions (largest difference "
                         f"{worst:.3g} on example rows, shapes {got.shape} and {expected.shape}); not written")


# ------------------------------------------------------------------------------------------------ loading
def read_metadata(text: str | None, where: str) -> dict[str, Any]:
    """The ``lr_lightning`` metadata of an exported file, checked: names, dtype and feature map."""
    if text is None:
        raise ValueError(f"{where}: not a model written by export.py (no {METADATA_KEY} metadata: feature names and "
                         "feature map)")
    try:
        meta = json.loads(text)
    except ValueError:
        raise ValueError(f"{where}: its {METADATA_KEY} metadata is not JSON") from None
    if not isinstance(meta, dict) or not {"features", "targets", "dtype", "feature_map"} <= meta.keys():
        raise ValueError(f"{where}: its {METADATA_KEY} metadata lacks features, targets, dtype or feature_map")
    for key in ("features", "targets"):
        names = meta[key]
        if not (isinstance(names, list) and names and all(isinstance(v, str) and v.strip() for v in names)
                and len(set(names)) == len(names)):
            raise ValueError(f"{where}: its {METADATA_KEY} metadata's {key} must be unique non-empty names, got "
                             f"{names!r:.80}")
    if meta["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{where}: its {METADATA_KEY} metadata's dtype must be float32 or float64, got "
                         f"{meta['dtype']!r:.40}")
    # Files from before the key existed have none: nothing was recorded aliased.
    aliased = meta.setdefault("aliased", [])
    if not (isinstance(aliased, list) and all(isinstance(v, str) for v in aliased)):
        raise ValueError(f"{where}: its {METADATA_KEY} metadata's aliased must be a list of names, got "
                         f"{aliased!r:.80}")
    return meta


class OnnxPredictor:
    """An ONNX file written by :func:`export`, run by onnxruntime: ``predictor(x_raw)`` is ``module(x_raw)``.

    Imports onnxruntime and numpy only. Everything is checked when the file is opened, each problem one line: a
    file that is not ONNX, one without our metadata (``features``, ``targets``, ``dtype``, ``feature_map``), or a
    graph whose input and output do not match those names.

    Args:
        path: the ``.onnx`` file.
        what: how messages name the file (``predict.py`` says ``--onnx PATH``).
    """

    def __init__(self, path: str | Path, what: str | None = None) -> None:
        path = Path(path)
        where = what or str(path)
        if not path.is_file():
            reason = "is a directory" if path.is_dir() else "not a regular file" if path.exists() else "no such file"
            raise FileNotFoundError(f"{where}: {reason}")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError(f"{where}: running ONNX needs onnxruntime (pip install -e '.[export]' in a clone, "
                             "pip install onnxruntime elsewhere)") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about graph optimizations, not the user's input
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's InvalidProtobuf, Fail, NotImplemented, ...: each a multi-line text
            with open(path, "rb") as f:
                if f.read(2) == b"PK":  # a zip archive: what torch.export.save writes, not ONNX's protobuf
                    raise ValueError(f"{where}: a zip archive (a .pt2 from export.py?), not an ONNX file; a .pt2 is "
                                     "loaded with torch (lr_lightning.core.export.load_pt2)") from None
            raise ValueError(f"{where}: onnxruntime cannot load it ({_summary(e)})") from None
        meta = read_metadata(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), where)
        self.features: list[str] = meta["features"]
        self.targets: list[str] = meta["targets"]
        self.dtype: str = meta["dtype"]
        self.feature_map: dict[str, Any] | None = meta["feature_map"]
        self.aliased: list[str] = meta["aliased"]
        # An export with --interval: the residual variance, df and covariance kind beside a second output, stderr.
        self.interval: dict[str, Any] | None = None
        if meta.get("interval") is not None:
            from lr_lightning.core.intervals import check_interval_spec

            self.interval = check_interval_spec(meta["interval"], len(self.targets), f"{where}: metadata")
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 2 or inputs[0].shape[1] != len(self.features):
            shapes = ", ".join(str(tuple(i.shape)) for i in inputs)
            raise ValueError(f"{where}: expected one input of shape (batch, {len(self.features)}) for the features "
                             f"{', '.join(self.features)}; the graph takes {len(inputs)} ({shapes})")
        if ONNX_DTYPES.get(inputs[0].type) != self.dtype:
            raise ValueError(f"{where}: the graph's input is {inputs[0].type}, its metadata says {self.dtype}")
        n_outputs = 2 if self.interval is not None else 1
        if (len(outputs) != n_outputs or any(len(o.shape) != 2 or o.shape[1] != len(self.targets) for o in outputs)
                or (self.interval is not None and outputs[1].name != "stderr")):
            raise ValueError(f"{where}: expected one output of shape (batch, {len(self.targets)}) for the targets "
                             f"{', '.join(self.targets)}{' and one named stderr' if self.interval else ''}; the "
                             f"graph returns {len(outputs)}")
        self._input = inputs[0].name
        self._where = where

    def __call__(self, x: Any) -> np.ndarray:
        """Predictions ``(rows, targets)`` for raw inputs ``(rows, features)``, in the model's dtype."""
        return self._run(x)[0]

    def with_stderr(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(predictions, stderr)``, each ``(rows, targets)``: a file exported with ``interval`` only."""
        if self.interval is None:
            raise ValueError(f"{self._where}: has no stderr output (export it with export.py --interval)")
        preds, se = self._run(x)
        return preds, se

    def _run(self, x: Any) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"{self._where}: expected inputs of shape (rows, {len(self.features)}), got {x.shape}")
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):  # as predict.py refuses them: a NaN or inf input gives a prediction that means nothing
            row, col = (int(i) for i in bad[0])
            raise ValueError(f"{self._where}: input row {row + 1}, {self.features[col]!r}: {x[row, col]} is not a "
                             "finite number")
        return self.session.run(None, {self._input: x})


def load_pt2(path: str | Path, what: str | None = None) -> tuple[Callable[[torch.Tensor], torch.Tensor],
                                                                  dict[str, Any]]:
    """A ``.pt2`` written by :func:`export`: ``(module, metadata)``, with ``module(x_raw)`` the predictions.

    The archive's weights and constants are raw tensor bytes, but its format also allows pickled ones, which
    ``torch.export.load`` unpickles with ``weights_only=False`` (and its example inputs fall back to that): a crafted
    file would run code while loading. Here every unpickling is held to ``weights_only=True`` and a pickled object is
    refused (ValueError), so a file :func:`export` wrote loads and a crafted one runs nothing. For files from elsewhere,
    prefer ONNX (:class:`OnnxPredictor`): a ``.pt2`` is a program torch runs.
    """
    import torch

    path = Path(path)
    where = what or str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{where}: {'is a directory' if path.is_dir() else 'no such file'}")
    extra = {f"{METADATA_KEY}.json": ""}
    try:
        with _torch_quiet(), _tensors_only():
            program = torch.export.load(path, extra_files=extra)
    except _PickledObject as e:
        raise ValueError(f"{where}: refused: {e}") from None
    except Exception as e:
        if isinstance(e.__context__, _PickledObject) or "weights_only" in str(e.__context__ or ""):
            raise ValueError(f"{where}: refused: it holds a pickled object, which loading would run as code") from None
        raise ValueError(f"{where}: not a torch.export file ({_summary(e)})") from None
    meta = read_metadata(extra[f"{METADATA_KEY}.json"] or None, where)
    return program.module(), meta


class _PickledObject(ValueError):
    """A pickled object in a ``.pt2``, refused by :func:`_tensors_only`."""


@contextlib.contextmanager
def _tensors_only() -> Iterator[None]:
    """While ``torch.export.load`` reads an archive: every ``torch.load`` with ``weights_only=True`` (tensors and plain
    containers only, whatever the caller asked for), and its two other unpicklers (``pickle.loads`` for opaque
    constants, TorchScript's for custom objects) refused, so that no file can run code by being loaded."""
    import pickle
    from unittest import mock

    import torch
    from torch.export.pt2_archive import _package

    real_load = torch.load

    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        try:
            return real_load(*args, **kwargs)
        except pickle.UnpicklingError:  # weights_only's refusal: an object beyond tensors
            raise _PickledObject("it holds a pickled object, which loading would run as code") from None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _PickledObject("it holds a pickled object, which loading would run as code")

    with mock.patch.object(torch, "load", load), mock.patch.object(_package.pickle, "loads", refuse), \
            mock.patch.object(torch._C, "_pickle_load_obj", refuse), warnings.catch_warnings():
        # (weights_only's remark on a crafted pickle's protocol: the refusal says what matters)
        warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
        yield
