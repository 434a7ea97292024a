"""Hostile input, generated: every input trains or predicts correctly, or is refused with one line.

Property-based (hypothesis, the field's library for it) over the four doors data comes in by: the CSV and ``.npy``
readers, the flag space of ``fit.py``, ``predict.py``'s inputs, and the contents of a checkpoint. The promise under
test is the package's: the CLI exits 0 with a result, or exits 2 with exactly one line ``error: ...`` and no
traceback; the API returns, or raises ValueError / FileNotFoundError with a one-line message. Nothing read from a
file runs code.

Runs are derandomized (the same examples on every machine) and bounded: the default profile ("ci") keeps the whole
file under a minute on a 2-core machine. ``HYPOTHESIS_PROFILE=hostile pytest tests/test_hostile.py`` searches
longer, with fresh random examples.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lr_lightning import RegressionModule
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import CSVDataModule
from lr_lightning.core.predict import predict_main

from .conftest import LBFGS

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("hostile", max_examples=300, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def run(main: Any, argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit status, stdout, stderr); the commands return their status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return int(code or 0), out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str, ok: tuple[int, ...] = (0,)) -> None:
    """Exit 0 (or ``ok``), or exit 2 with one ``error:`` line; never a traceback."""
    assert "Traceback" not in err, err
    if code == 2:
        lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    else:
        assert code in ok, (code, err)


def assert_one_line_error(e: BaseException, *words: str) -> None:
    assert isinstance(e, (ValueError, FileNotFoundError)), repr(e)
    text = str(e)
    assert text and "\n" not in text, repr(text)
    for w in words:
        assert w in text, (w, text)


# ------------------------------------------------------------------------------------------------- CSV
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=6)
cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e400", "NaN", "n/a", "1,5", "0x10", "1_000", "٣", "\x00",
                     '"1"', '"2,3"', "True", "١٢", "1e-400", "  7  "]),
    st.text(max_size=4),
)


@st.composite
def hostile_csv(draw: Any) -> bytes:
    n_cols = draw(st.integers(1, 4))
    header = draw(st.lists(names, min_size=n_cols, max_size=n_cols))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=n_cols + 1), max_size=6))
    lines = [",".join(header)] + [",".join(r) for r in rows]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "# a comment", "   ", ",,"])))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))
    data = text.encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data  # a UTF-8 byte-order mark, as spreadsheet programs write
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=4))
    return data


@given(hostile_csv())
def test_any_csv_reads_correctly_or_is_one_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.csv"
        path.write_bytes(data)
        try:
            dm = CSVDataModule(path)
        except Exception as e:  # noqa: BLE001 - the property: only these two, in one line, naming the file
            assert_one_line_error(e, "data.csv")
            return
        # Read: every value finite, shapes consistent, names unique and non-empty, as the file says.
        assert torch.isfinite(dm.x).all() and torch.isfinite(dm.y).all()
        assert dm.x.shape[0] == dm.y.shape[0] >= 1 and dm.x.shape[1] == len(dm.feature_names) >= 1
        all_names = [*dm.feature_names, *dm.target_names]
        assert len(set(all_names)) == len(all_names) and all(n.strip() == n and n for n in all_names)
        assert not any(n.startswith("\ufeff") for n in all_names)


@given(st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=3, max_size=3), min_size=1,
                max_size=8), st.booleans(), st.booleans())
def test_a_valid_csv_gives_exactly_its_numbers(rows: list[list[float]], bom: bool, comment: bool) -> None:
    text = ("# written by a test\n" if comment else "") + "a,b,y\n" + "".join(
        ",".join(repr(v) for v in r) + "\n" for r in rows)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ok.csv"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
        dm = CSVDataModule(path, val_fraction=0.0, dtype="float64")
    expected = np.asarray(rows)
    assert dm.feature_names == ["a", "b"] and dm.target_names == ["y"]
    np.testing.assert_array_equal(dm.x.numpy(), expected[:, :2])
    np.testing.assert_array_equal(dm.y.numpy(), expected[:, 2:])


# ------------------------------------------------------------------------------------------------- NPY
dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.int64, np.uint8, np.bool_, np.complex64,
                          "U3", object])


@st.composite
def hostile_npy(draw: Any) -> tuple[bytes, str]:
    shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple))
    dtype = draw(dtypes)
    n = math.prod(shape)
    if dtype == "U3":
        a = np.array(draw(st.lists(st.text(max_size=3), min_size=n, max_size=n)) or [""], dtype="U3")[:n]
    elif dtype is object:
        a = np.array([None] * n, dtype=object)
    else:
        values = draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n))
        a = np.asarray(values).astype(dtype)
    a = a.reshape(shape)
    if n and draw(st.booleans()) and np.issubdtype(a.dtype, np.floating):
        a.flat[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    data = buf.getvalue()
    if draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]  # truncated
    return data, draw(st.sampled_from(["memory-mapped", "in-memory"]))


@given(hostile_npy())
def test_any_npy_reads_correctly_or_is_one_clear_error(case: tuple[bytes, str]) -> None:
    from lr_lightning.core.data import NpyDataModule  # here: the file's other tests do not need .npy support

    data, mode = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.npy"
        path.write_bytes(data)
        try:
            dm = NpyDataModule(path, in_memory=mode == "in-memory", val_fraction=0.0)
            dm.setup("fit")
            x, y = next(iter(dm.train_dataloader()))
        except Exception as e:  # noqa: BLE001
            assert_one_line_error(e, "data.npy")
            return
        assert torch.isfinite(x).all() and torch.isfinite(y).all() and len(x) == len(y) >= 1


# ------------------------------------------------------------------------------------------ fit.py flags
numbers = st.one_of(st.sampled_from(["0", "-1", "1", "nan", "inf", "-inf", "1e400", "0.5", "1e-12", "2", "3.7",
                                     "abc", "", "1,2", "0,0", "-0", "4294967296", "99999999999999999999"]),
                    st.integers(-5, 5).map(str), st.floats(-10, 10).map(repr))
FLAGS = ["--optimizer.lr", "--optimizer.momentum", "--optimizer.weight_decay", "--data.batch_size",
         "--data.val_fraction", "--data.test_fraction", "--seed", "--data.polynomial_degree", "--stop_below",
         "--checkpoint_every", "--figures", "--devices", "--data.n_samples", "--data.n_features", "--data.noise",
         "--num_nodes", "--max_epochs", "--model.hidden", "--precision", "--accelerator"]


@given(st.lists(st.tuples(st.sampled_from(FLAGS), numbers), min_size=1, max_size=3),
       st.sampled_from(["tutorial", "synthetic"]),
       st.sampled_from([[], ["--optimizer", "Adam"], [*LBFGS], ["--model", "MLPRegressor"],
                        ["--data.standardize", "true"], ["--data.bias", "false"]]))
def test_any_flag_values_train_or_give_one_error_line(flags: list[tuple[str, str]], data: str,
                                                      extra: list[str]) -> None:
    argv = ["--data", data, *extra]
    for flag, value in flags:
        argv += [flag, value] if not value.startswith("-") else [f"{flag}={value}"]
    given_flags = {f for f, _ in flags}
    if "--max_epochs" not in given_flags:
        argv += ["--max_epochs", "2"]
    if "--data.n_samples" not in given_flags and data == "synthetic":
        argv += ["--data.n_samples", "64"]
    argv += ["--figures", "0"] if "--figures" not in given_flags else []
    devices = dict(flags).get("--devices", "1")
    if devices.isdigit() and int(devices) > 1 or devices.count(",") and len(set(devices.split(","))) > 1:
        return  # several devices start DDP processes that re-run this process's command: pytest (test_scale runs DDP)
    epochs = dict(flags).get("--max_epochs")
    if epochs is not None and epochs.lstrip("-").isdigit() and int(epochs) > 3:
        return  # keep each example short; large epoch counts are not what this searches for
    with tempfile.TemporaryDirectory() as d:
        code, out, err = run(fit_main, [*argv, "--log_dir", str(Path(d) / "logs")])
        event(f"exit {code}")
        # 1: training diverged (a learning rate too large), reported in one line with the last finite weights.
        assert_clean(code, err, ok=(0, 1))
        if code == 1:
            assert err.strip().splitlines()[-1].startswith("error: loss became inf/nan"), err
        if code == 0:
            assert "Trained " in out and "Checkpoints: last " in out, out
        if code == 2:
            assert not (Path(d) / "logs").exists() or not any((Path(d) / "logs").iterdir()), \
                "a refused run leaves nothing behind"


# -------------------------------------------------------------------------------------- predict inputs
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ckpt")
    (d / "train.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 5},{2 * i - (i % 5)}\n" for i in range(40)))
    code, _, err = run(fit_main, ["--data", str(d / "train.csv"), "--max_epochs", "2", "--data.standardize", "true",
                                  "--figures", "0", "--log_dir", str(d / "logs")])
    assert code == 0, err
    return next((d / "logs").glob("*/checkpoints/last.ckpt"))


@given(st.lists(numbers, min_size=0, max_size=6))
def test_any_predict_values_predict_or_give_one_error_line(checkpoint: Path, values: list[str]) -> None:
    argv = ["--ckpt", str(checkpoint)]
    argv += [f"--x={v}" if i == 0 else v for i, v in enumerate(values)] if values else ["--x"]
    argv = [a if not (a.startswith("-") and a[1:2].isdigit()) else a for a in argv]
    code, out, err = run(predict_main, argv)
    assert_clean(code, err)
    if code == 0:
        lines = out.strip().splitlines()
        assert lines[0] == "a,b,predicted_y"
        assert all(math.isfinite(float(v)) for line in lines[1:] for v in line.split(","))


@given(hostile_csv())
def test_any_predict_csv_predicts_or_gives_one_error_line(checkpoint: Path, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rows.csv"
        path.write_bytes(data)
        code, out, err = run(predict_main, ["--ckpt", str(checkpoint), "--csv", str(path)])
    assert_clean(code, err)
    if code == 0:
        lines = out.strip().splitlines()
        assert lines[0] == "a,b,predicted_y" and len(lines) >= 2
        assert all(math.isfinite(float(v)) for line in lines[1:] for v in line.split(","))


# --------------------------------------------------------------------------------- checkpoint contents
plain = st.recursive(st.none() | st.booleans() | st.integers(-3, 100) | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=3), max_leaves=8)
CLASS_PATHS = ["subprocess.Popen", "builtins.open", "os.system", "builtins.eval",
               "lr_lightning.core.networks.LinearRegression", "lr_lightning.core.networks.MLPRegressor",
               "torch.nn.Linear", "collections.OrderedDict", "", ".", "a.b.c",
               "lr_lightning.core.cli.fit_main", "pathlib.Path", "torch.nn.Identity"]


@st.composite
def tampered(draw: Any) -> tuple[str, Any]:
    field = draw(st.sampled_from(["model", "class_path", "init_args", "normalization", "feature_names",
                                  "target_names", "state_dict", "hyper_parameters"]))
    if field == "class_path":
        return field, draw(st.sampled_from(CLASS_PATHS))
    if field == "init_args":
        return field, draw(st.dictionaries(st.sampled_from(["in_features", "out_features", "bias", "hidden", "args",
                                                            "file", "mode", "x"]), plain, max_size=3))
    if field == "feature_names":
        return field, draw(st.one_of(plain, st.lists(st.text(max_size=3), max_size=4)))
    return field, draw(plain)


@given(tampered())
def test_a_tampered_checkpoint_predicts_correctly_or_gives_one_error_line(checkpoint: Path,
                                                                          change: tuple[str, Any]) -> None:
    field, value = change
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hp, data = ckpt["hyper_parameters"], ckpt["datamodule_hyper_parameters"]
    if field in ("class_path", "init_args"):
        hp["model"] = {**hp["model"], field: value}
    elif field in ("model", "normalization"):
        hp[field] = value
    elif field in ("feature_names", "target_names"):
        data[field] = value
    else:
        ckpt[field] = value
    with tempfile.TemporaryDirectory() as d:
        marker = Path(d) / "ran"
        if field == "init_args" and isinstance(value, dict):
            value.setdefault("args", ["touch", str(marker)])  # what Popen would run
        path = Path(d) / "tampered.ckpt"
        torch.save(ckpt, path)
        code, out, err = run(predict_main, ["--ckpt", str(path), "--x", "1", "2"])
        assert not marker.exists(), "a checkpoint ran code"
        assert_clean(code, err)
        try:
            RegressionModule.load_from_checkpoint(path, weights_only=True)
        except Exception as e:  # noqa: BLE001
            assert_one_line_error(e)
        assert not marker.exists(), "a checkpoint ran code"
