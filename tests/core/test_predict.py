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

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lr_lightning import RegressionModule
from lr_lightning.core.cli import fit_main
from lr_lightning.core.predict import predict_main
from tests.conftest import assert_clean, assert_one_line_error, hostile_csv, numbers, run, run_main


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


@pytest.mark.parametrize(("content", "words"), [
    (b'{"state_dict": {}}\n',
     "not a checkpoint written by fit.py (it is a JSON file; torch.save writes a zip archive)"),
    (b"", "not a checkpoint written by fit.py (it is an empty file; torch.save writes a zip archive)"),
    (b"a,b\n1,2\n", "not a checkpoint written by fit.py (it is a text file; torch.save writes a zip archive)"),
])
def test_predict_on_a_file_that_is_no_checkpoint_says_so(tmp_path, content, words):
    # A JSON file was "objects that only code could rebuild; refused unread": words for a malicious pickle.
    from lr_lightning.core.predict import predict_main

    (tmp_path / "model.json").write_bytes(content)
    done = run_main(predict_main, "--ckpt", "model.json", "--x", "1", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.splitlines() == [f"error: --ckpt model.json: {words}"], done.stderr
