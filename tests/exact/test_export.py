"""Export of an exact-solver checkpoint and predict.py --onnx on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lr_lightning.core.cli import fit_main
from lr_lightning.core.export import OnnxPredictor, export_main
from lr_lightning.core.predict import predict_main
from tests.conftest import ROOT, one_error_line, run_main


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A checkpoint of `fit.py --solver exact` (float64, polynomial, standardized: every part of the map), exported
    to ONNX by the command line."""
    folder = tmp_path_factory.mktemp("exact")
    fit = run_main(fit_main, "--data", "synthetic", "--data.n_features", "2", "--data.n_samples", "200",
                   "--data.polynomial_degree", "3", "--data.standardize", "true", "--solver", "exact",
                   "--figures", "0", cwd=folder)
    assert fit.returncode == 0, fit.stderr
    ckpt = folder / "lightning_logs/version_0/checkpoints/last.ckpt"
    result = run_main(export_main, "--ckpt", str(ckpt), "--out", "model.onnx", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "Exported LinearRegression (float64" in result.stdout
    return folder, ckpt


def test_predict_onnx_prints_what_predict_ckpt_prints_without_torch(exact_run: tuple[Path, Path]) -> None:
    folder, ckpt = exact_run
    (folder / "rows.csv").write_text("x1,x0\n2,0.5\n-1,3\n")  # by name, in another order
    code = ("import sys; from lr_lightning.core.predict import predict_main; code = predict_main(sys.argv[1:]); "
            "sys.stderr.write(' '.join(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'lightning', 'pytorch_lightning', 'torchmetrics'))); sys.exit(code)")
    for inputs in (["--x", "0.5", "1", "-1", "2", "3", "0"], ["--csv", "rows.csv"]):
        by_ckpt = run_main(predict_main, "--ckpt", str(ckpt), *inputs, cwd=folder)
        assert by_ckpt.returncode == 0, by_ckpt.stderr
        # A new Python, as a server runs it: whether torch gets imported is what is tested.
        by_onnx = subprocess.run([sys.executable, "-c", code, "--onnx", "model.onnx", *inputs], cwd=folder, text=True,
                                 capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert by_onnx.returncode == 0, by_onnx.stderr
        assert by_onnx.stderr == ""  # no torch, Lightning or torchmetrics module was imported
        # The same formatting function: the same header and layout. Every digit of the float64 model is printed, and
        # onnxruntime's kernels may order the sums differently from torch's, so the last digit can differ.
        onnx_lines, ckpt_lines = by_onnx.stdout.splitlines(), by_ckpt.stdout.splitlines()
        assert onnx_lines[0] == ckpt_lines[0] and len(onnx_lines) == len(ckpt_lines)
        assert np.allclose(np.loadtxt(onnx_lines[1:], delimiter=","), np.loadtxt(ckpt_lines[1:], delimiter=","),
                           rtol=1e-12, atol=0)
        assert len(by_onnx.stdout.splitlines()) == (4 if inputs[0] == "--x" else 3)


def test_onnx_predictor_refuses_what_predict_py_refuses(exact_run: tuple[Path, Path], tmp_path: Path) -> None:
    """From Python as from the command line: a non-finite input is refused, naming its row and feature, and a .pt2
    handed over as ONNX is named for what it is."""
    folder, ckpt = exact_run
    predictor = OnnxPredictor(folder / "model.onnx")
    with pytest.raises(ValueError, match=r"input row 2, 'x1': nan is not a finite number"):
        predictor(np.array([[1.0, 2.0], [3.0, np.nan]]))
    result = run_main(export_main, "--ckpt", str(ckpt), "--out", str(tmp_path / "model.pt2"), cwd=folder)
    assert result.returncode == 0, result.stderr
    one_error_line(run_main(predict_main, "--onnx", str(tmp_path / "model.pt2"), "--x", "1", "2", cwd=folder),
                   "a zip archive (a .pt2 from export.py?), not an ONNX file")


def _onnx_file(path: Path, n_inputs: int, metadata: dict[str, Any] | None) -> Path:
    """A small valid ONNX model not written by export.py: ``n_inputs`` (batch, 2) inputs summed."""
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.DOUBLE, ["batch", 2]) for i in range(n_inputs)]
    out = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", 2])
    node = helper.make_node("Sum", [v.name for v in inputs], ["y"])
    model = helper.make_model(helper.make_graph([node], "foreign", inputs, [out]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata is not None:
        helper.set_model_props(model, {"lr_lightning": json.dumps(metadata)})
    onnx.save(model, path)
    return path


def test_command_line_errors_are_one_line(exact_run: tuple[Path, Path], tmp_path: Path) -> None:
    folder, ckpt = exact_run
    one_error_line(run_main(export_main, "--ckpt", str(ckpt), "--out", "model.txt", cwd=tmp_path),
                    "error: --out model.txt: the suffix picks the format, .onnx (ONNX) or .pt2 (torch.export)")
    one_error_line(run_main(export_main, "--ckpt", "nope.ckpt", "--out", "model.onnx", cwd=tmp_path),
                    "error: --ckpt nope.ckpt: no such file")
    one_error_line(run_main(export_main, "--ckpt", str(ckpt), "--out", "no/dir/model.onnx", cwd=tmp_path),
                    "error: --out no/dir/model.onnx: no directory no/dir")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    one_error_line(run_main(export_main, "--ckpt", "junk.ckpt", "--out", "model.pt2", cwd=tmp_path),
                    "error: --ckpt junk.ckpt: not a checkpoint written by fit.py")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.ckpt"]

    onnx_path = str(folder / "model.onnx")
    one_error_line(run_main(predict_main, "--onnx", onnx_path, "--ckpt", str(ckpt), "--x", "1", "2", cwd=tmp_path),
                    "give the model either as --ckpt (a checkpoint) or as --onnx")
    one_error_line(run_main(predict_main, "--onnx", onnx_path, "--x", "1", "2", "--trust", "a.B", cwd=tmp_path),
                    "--trust applies to --ckpt")
    one_error_line(run_main(predict_main, "--onnx", onnx_path, "--x", "1", "2", "3", cwd=tmp_path),
                    "--x: 3 values do not make rows of 2 features (x0, x1)")
    one_error_line(run_main(predict_main, "--onnx", "nope.onnx", "--x", "1", cwd=tmp_path),
                    "error: --onnx nope.onnx: no such file")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    one_error_line(run_main(predict_main, "--onnx", "junk.onnx", "--x", "1", cwd=tmp_path),
                    "error: --onnx junk.onnx: onnxruntime cannot load it")
    _onnx_file(tmp_path / "foreign.onnx", 1, None)
    one_error_line(run_main(predict_main, "--onnx", "foreign.onnx", "--x", "1", "2", cwd=tmp_path),
                    "error: --onnx foreign.onnx: not a model written by export.py (no lr_lightning metadata")
    meta = {"version": 1, "features": ["a", "b"], "targets": ["c", "d"], "dtype": "float64", "feature_map": None}
    _onnx_file(tmp_path / "two.onnx", 2, meta)
    one_error_line(run_main(predict_main, "--onnx", "two.onnx", "--x", "1", "2", cwd=tmp_path),
                    "error: --onnx two.onnx: expected one input of shape (batch, 2) for the features a, b; the graph "
                    "takes 2")
    # Our metadata on a graph that fits it: it runs (the checks above refuse the file, not the format).
    _onnx_file(tmp_path / "one.onnx", 1, meta)
    ok = run_main(predict_main, "--onnx", "one.onnx", "--x", "1", "2", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout == "a,b,predicted_c,predicted_d\n1.0,2.0,1.0,2.0\n", ok.stderr
