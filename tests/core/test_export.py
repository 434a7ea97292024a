"""Export for serving (``scripts/export.py``, ``lr_lightning/core/export.py``) and ``predict.py --onnx``.

The exported file must be ``module(x_raw)`` whole: feature map, network and the map back to original units, in the
network's dtype, for any batch size. Each kind of model is exported once per module (the first ONNX export pays
about 2 s of the exporter's set-up, later ones under a second).
"""

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
import torch
from onnx import TensorProto, helper
from torch import nn

from lr_lightning import LinearRegression, MLPRegressor, RegressionModule
from lr_lightning.core.cli import fit_main
from lr_lightning.core.export import OnnxPredictor, export, export_main, load_pt2
from lr_lightning.core.features import FeatureMap
from lr_lightning.core.predict import predict_main
from tests.conftest import ROOT, one_error_line, run_main


def _feature_map(k: int, n_out: int, *, degree: int | None, bias: bool = True) -> dict[str, Any]:
    """A feature map fitted on data far from zero and unit scale, so that every part of it changes the answer."""
    g = torch.Generator().manual_seed(1)
    x = 40.0 + 7.0 * torch.randn(64, k, generator=g, dtype=torch.float64)
    y = 300.0 + 25.0 * torch.randn(64, n_out, generator=g, dtype=torch.float64)
    return FeatureMap.fit(x, y, polynomial_degree=degree, standardize=True, bias=bias).spec


def _models() -> dict[str, RegressionModule]:
    torch.manual_seed(0)
    plain = RegressionModule(LinearRegression(3))  # float32, no feature map: raw in, raw out
    with torch.no_grad():
        plain.model.linear.bias.fill_(50.0)  # predictions away from 0, where a relative comparison means something
    return {
        "linear": plain,
        "mlp": RegressionModule(MLPRegressor(2, hidden=[16, 8], activation="tanh"),
                                normalization=_feature_map(2, 1, degree=None)),
        # float64 throughout, two targets: the dtype and the per-target map back to original units.
        "standardized": RegressionModule(LinearRegression(3, 2), normalization=_feature_map(3, 2, degree=None),
                                         weights_dtype="float64"),
        "polynomial": RegressionModule(LinearRegression(6), normalization=_feature_map(2, 1, degree=3),
                                       weights_dtype="float64"),
        # Without an intercept the basis is plain powers (another branch of FeatureMap.basis).
        "polynomial_no_bias": RegressionModule(LinearRegression(4, bias=False),
                                               normalization=_feature_map(2, 1, degree=2, bias=False),
                                               weights_dtype="float64"),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[RegressionModule, Path, Path]]:
    folder = tmp_path_factory.mktemp("exported")
    out = {}
    for kind, module in _models().items():
        onnx_path, pt2_path = folder / f"{kind}.onnx", folder / f"{kind}.pt2"
        export(module, onnx_path)
        export(module, pt2_path)
        out[kind] = (module.eval(), onnx_path, pt2_path)
    return out


def _raw_rows(module: RegressionModule, n: int) -> np.ndarray:
    """``n`` raw rows around the data the feature map was fitted on (other rows than the export's own check)."""
    k = len(module.feature_map.spec["centre"]) if module.feature_map is not None else module.model.in_features
    return 40.0 + 10.0 * np.random.default_rng(7).standard_normal((n, k))


@pytest.mark.parametrize("kind", ["linear", "mlp", "standardized", "polynomial", "polynomial_no_bias"])
def test_onnx_and_torch_export_predict_as_the_module(exported: dict[str, Any], kind: str) -> None:
    module, onnx_path, pt2_path = exported[kind]
    dtype = next(module.parameters()).dtype
    onnx_model = OnnxPredictor(onnx_path)
    pt2_model, meta = load_pt2(pt2_path)
    assert onnx_model.dtype == meta["dtype"] == str(dtype).removeprefix("torch.")
    # Batch sizes other than the 8 rows it was traced with, 1 included: the batch dimension is free.
    for n in (1, 13):
        x = _raw_rows(module, n)
        with torch.no_grad():
            expected = module(torch.as_tensor(x, dtype=dtype)).numpy()
        got_onnx = onnx_model(x)
        got_pt2 = pt2_model(torch.as_tensor(x, dtype=dtype)).detach().numpy()
        assert got_onnx.dtype == got_pt2.dtype == expected.dtype  # float64 stays float64
        assert got_onnx.shape == expected.shape == (n, len(onnx_model.targets))
        # Measured (13 rows): float64 within 4.4e-15, float32 within 1.2e-7 (one rounding; other kernels).
        np.testing.assert_allclose(got_onnx, expected, rtol=1e-5, atol=0)
        np.testing.assert_allclose(got_pt2, expected, rtol=1e-5, atol=0)
    # The feature map is inside the graph: without it, raw inputs would not give these numbers.
    if module.feature_map is not None:
        assert onnx_model.feature_map == module.feature_map.spec == meta["feature_map"]


def test_the_onnx_graph_has_a_dynamic_batch_dimension(exported: dict[str, Any]) -> None:
    for kind, (module, onnx_path, _) in exported.items():
        graph = onnx.load(onnx_path).graph
        (x,), (y,) = graph.input, graph.output
        n_in = len(_raw_rows(module, 1)[0])
        assert [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["batch", n_in], kind
        assert y.type.tensor_type.shape.dim[0].dim_param == "batch", kind
        assert x.type.tensor_type.elem_type == (TensorProto.DOUBLE if kind.startswith(("standardized", "polynomial"))
                                                else TensorProto.FLOAT), kind


class CummaxNet(nn.Module):
    """A user's network with an op ONNX has no function for (``aten.cummax``)."""

    def __init__(self, in_features: int = 2) -> None:
        super().__init__()
        self.in_features = in_features
        self.linear = nn.Linear(in_features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cummax(self.linear(x), dim=1).values[:, -1:]


def test_a_network_onnx_cannot_express_is_one_line_and_no_file(tmp_path: Path) -> None:
    module = RegressionModule(CummaxNet())
    with pytest.raises(ValueError, match=r"uses aten\.cummax, which has no ONNX function; export to \.pt2") as e:
        export(module, tmp_path / "net.onnx")
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the temporary file
    # torch.export keeps every torch op: the same network exports as .pt2 and predicts as the module does.
    export(module, tmp_path / "net.pt2")
    x = torch.randn(5, 2)
    np.testing.assert_allclose(load_pt2(tmp_path / "net.pt2")[0](x).detach(), module(x).detach(), rtol=1e-5)


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


def test_export_py_says_in_one_line_that_onnx_cannot_express_a_users_network(tmp_path: Path) -> None:
    module = RegressionModule(CummaxNet())
    # A checkpoint as Lightning writes one, reduced to what predict.py and export.py read.
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, tmp_path / "net.ckpt")
    trust = ["--trust", f"{CummaxNet.__module__}.CummaxNet"]
    one_error_line(run_main(export_main, "--ckpt", "net.ckpt", "--out", "net.onnx", *trust, cwd=tmp_path),
                    "error: --out net.onnx: the network CummaxNet uses aten.cummax, which has no ONNX function")
    assert not (tmp_path / "net.onnx").exists()
    assert run_main(export_main, "--ckpt", "net.ckpt", "--out", "net.pt2", *trust, cwd=tmp_path).returncode == 0


def test_a_file_that_does_not_reproduce_the_module_is_refused_and_not_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The self-check before the rename: an exported program whose predictions are off (here by 1e-3 relative, far
    beyond the check's tolerance) is a one-line ValueError, and neither the file nor its temporary twin is left."""
    from lr_lightning.core import export as export_module

    real = export_module.load_pt2
    monkeypatch.setattr(export_module, "load_pt2", lambda path: (lambda x: real(path)[0](x) * (1 + 1e-3), {}))
    module = _models()["linear"]
    out = tmp_path / "off.pt2"
    with pytest.raises(ValueError, match=r"off\.pt2: the exported file does not reproduce the module's predictions "
                                         r"\(largest difference .* on example rows, .*\); not written$"):
        export(module, out)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(export_module, "load_pt2", real)
    assert export(module, out) == out and out.is_file()  # the same module, checked honestly: written


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_an_unwritable_out_names_the_users_path_not_a_temporary_file(suffix: str, tmp_path: Path) -> None:
    out = Path("/proc") / f"x{suffix}"
    with pytest.raises(PermissionError, match=rf"^{out}: cannot write there") as raised:
        export(RegressionModule(LinearRegression(1)), out)
    assert ".tmp" not in str(raised.value)
    assert "Traceback" not in (result := run_main(export_main, "--ckpt", "none.ckpt", "--out", str(out),
                                                  cwd=tmp_path)).stderr
    one_error_line(result, f"--out {out}: cannot write there")
