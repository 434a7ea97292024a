"""Export for serving (``scripts/export.py``, ``lr_lightning/core/export.py``) and ``predict.py --onnx``.

The exported file must be ``module(x_raw)`` whole: feature map, network and the map back to original units, in the
network's dtype, for any batch size. Each kind of model is exported once per module (the first ONNX export pays
about 2 s of the exporter's set-up, later ones under a second).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto
from torch import nn

from lr_lightning import LinearRegression, MLPRegressor, RegressionModule, StepsPerCallModule
from lr_lightning.core.export import OnnxPredictor, export, export_main, load_pt2
from lr_lightning.core.features import FeatureMap
from tests.conftest import one_error_line, run_main


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


@pytest.mark.parametrize("value, words", [(float("nan"), "the weights are not finite (model.linear.weight): "
                                                           "training diverged"),
                                          (3e38, "the module's predictions on example rows in the data's range are "
                                                 "not finite")])
def test_exporting_a_module_with_non_finite_weights_or_predictions_is_one_line(tmp_path: Path, value: float,
                                                                              words: str) -> None:
    from lr_lightning.core.export import export

    module = StepsPerCallModule(LinearRegression(2))
    with torch.no_grad():
        module.model.linear.weight.fill_(value)  # 3e38 is finite, but two of them summed overflow float32
    out = tmp_path / "m.onnx"
    # Before: an inf prediction made the self-check's tolerance inf, and the file was written; NaN said only
    # "largest difference nan".
    with pytest.raises(ValueError, match=f"^{re.escape(f'{out}: {words}; nothing to export')}$"):
        export(module, out)
    assert not out.exists()


class DataDependent(torch.nn.Module):
    """A branch on the data's values: torch.export cannot trace it (it guards on a data-dependent expression)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features  # so the module can record how to rebuild it
        self.linear = torch.nn.Linear(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) if x.sum() > 0 else -self.linear(x)


def test_a_network_torch_export_cannot_trace_is_one_line_and_nothing_else_on_stderr(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from lr_lightning.core.export import export

    module = StepsPerCallModule(DataDependent(2))
    capfd.readouterr()
    with pytest.raises(ValueError, match=r"m\.pt2: torch\.export cannot trace the network DataDependent \(Could not "
                                         r"guard on data-dependent expression"):
        export(module, tmp_path / "m.pt2", features=["a", "b"])
    # Before: torch's warning ("Unable to find user code corresponding to {u0}") and the partial graph, printed twice.
    assert capfd.readouterr().err == ""


class _RunsCode:
    def __reduce__(self) -> tuple[Any, ...]:

        return (os.system, ("touch pwned",))  # (relative: the test's cwd is tmp_path)


def test_a_pt2_with_a_pickled_weight_runs_no_code_when_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    import pickle
    import zipfile

    from lr_lightning.core.export import export, load_pt2

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    module = StepsPerCallModule(LinearRegression(2))
    export(module, tmp_path / "m.pt2")
    assert torch.equal(load_pt2(tmp_path / "m.pt2")[0](torch.ones(3, 2)), module(torch.ones(3, 2)))  # ours loads
    # The archive's format lets a weight be a pickle, which torch.export.load unpickles with weights_only=False.
    with zipfile.ZipFile(tmp_path / "m.pt2") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config_name = next(name for name in files if name.endswith("data/weights/model_weights_config.json"))
    config = json.loads(files[config_name])
    entry = next(iter(config["config"].values()))
    entry["use_pickle"] = True
    files[config_name] = json.dumps(config).encode()
    files[config_name.replace("model_weights_config.json", entry["path_name"])] = pickle.dumps(_RunsCode())
    with zipfile.ZipFile(tmp_path / "evil.pt2", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    capfd.readouterr()
    with pytest.raises(ValueError, match=r"evil\.pt2: refused: it holds a pickled object, which loading would run as "
                                         "code$"):
        load_pt2(tmp_path / "evil.pt2")
    assert not (tmp_path / "pwned").exists()  # before the fix: os.system ran while loading
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("args, missing", [((), "--ckpt, --out are"), (("--out", "m.onnx"), "--ckpt is")])
def test_export_without_its_required_flags_names_them_as_flags(tmp_path: Path, args: tuple[str, ...],
                                                               missing: str) -> None:
    from lr_lightning.core.export import export_main

    result = run_main(export_main, *args, cwd=tmp_path)
    # Before: "the following arguments are required: ckpt, out", the destinations' names, not the flags.
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: {missing} required (see --help)\n"
