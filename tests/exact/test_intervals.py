"""Intervals: LeastSquaresModule.predict_interval against statsmodels' get_prediction().summary_frame, the checkpoint
and its ONNX export (stderr output) through predict.py --interval, and the refusals."""

import csv
import io
import time

import numpy as np
import pytest
import statsmodels.api as sm

from lr_lightning import LeastSquaresModule, RegressionDataModule, RegressionModule
from lr_lightning.core.export import OnnxPredictor, export_main
from lr_lightning.core.intervals import design_rows
from lr_lightning.core.networks import LinearRegression
from lr_lightning.core.predict import predict_main

from ..conftest import make_trainer, one_error_line, run_main

RNG_SEED = 7


def _data(n=120, k=2, outputs=1):
    rng = np.random.default_rng(RNG_SEED)
    x = rng.normal(size=(n, k))
    noise = rng.normal(size=(n, outputs)) * (1 + np.abs(x[:, :1]))  # heteroscedastic: HC differs from classic
    y = 1.5 + x @ rng.normal(size=(k, outputs)) + noise
    return x, (y[:, 0] if outputs == 1 else y), rng.normal(size=(6, k))


def _fit(x, y, tmp_path=None, **kwargs):
    degree = kwargs.pop("polynomial_degree", None)
    dm = RegressionDataModule(x, y, val_fraction=0, dtype="float64", polynomial_degree=degree)
    module = LeastSquaresModule(**kwargs)
    trainer = make_trainer(max_epochs=20, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    return module, trainer


def _frame(x, y, x_new, degree=None, cov_type="nonrobust"):
    fit = sm.OLS(y, design_rows(x, degree, True)).fit(cov_type=cov_type, use_t=True)
    return fit.get_prediction(design_rows(x_new, degree, True)).summary_frame(alpha=0.05)


@pytest.mark.parametrize(("robust", "degree"), [(False, None), (True, None), (False, 2)])
@pytest.mark.parametrize(("kind", "prefix"), [("confidence", "mean_ci"), ("prediction", "obs_ci")])
def test_intervals_equal_statsmodels_get_prediction(robust, degree, kind, prefix):
    x, y, x_new = _data()
    module, _ = _fit(x, y, robust=robust, polynomial_degree=degree)
    out = module.predict_interval(x_new, level=0.95, kind=kind)
    frame = _frame(x, y, x_new, degree, "HC1" if robust else "nonrobust")
    assert set(out) == {"mean", "lower", "upper"} and out["lower"].shape == (6, 1)
    np.testing.assert_allclose(out["mean"][:, 0], frame["mean"], rtol=1e-10)
    np.testing.assert_allclose(out["lower"][:, 0], frame[f"{prefix}_lower"], rtol=1e-8)
    np.testing.assert_allclose(out["upper"][:, 0], frame[f"{prefix}_upper"], rtol=1e-8)


def test_intervals_on_columns_far_from_zero():
    """x0 = 1e6 + 0.01·z: in raw coordinates d C dᵀ cancelled (confidence half-widths 12-78% off statsmodels'); the
    covariance is now of the intercept at the columns' means, and the row is centred before the product."""
    rng = np.random.default_rng(1)
    n, firm = 400, rng.integers(0, 20, 400)
    z = rng.normal(size=(n, 2))
    x = np.column_stack([1e6 + 0.01 * z[:, 0], z[:, 1]])
    y = 3 + 100 * (x[:, 0] - 1e6) + 2 * x[:, 1] + rng.normal(size=n)
    x_new = np.column_stack([1e6 + 0.01 * rng.normal(size=4), rng.normal(size=4)])
    centred = lambda a: sm.add_constant(np.column_stack([a[:, 0] - 1e6, a[:, 1]]), has_constant="add")  # noqa: E731
    for options, fit_kw in (({}, {}), ({"robust": True}, {"cov_type": "HC1"}),
                            ({"cluster": True}, {"cov_type": "cluster", "cov_kwds": {"groups": firm}})):
        dm = RegressionDataModule(x, y, clusters=firm if options.get("cluster") else None, val_fraction=0,
                                  dtype="float64")
        module = LeastSquaresModule(**options)
        make_trainer(max_epochs=20).fit(module, datamodule=dm)
        frame = sm.OLS(y, centred(x)).fit(use_t=True, **fit_kw).get_prediction(centred(x_new)).summary_frame(
            alpha=0.05)
        for kind, prefix in (("confidence", "mean_ci"), ("prediction", "obs_ci")):
            out = module.predict_interval(x_new, 0.95, kind)
            half = (out["upper"][:, 0] - out["lower"][:, 0]) / 2
            want = (frame[f"{prefix}_upper"] - frame[f"{prefix}_lower"]).to_numpy() / 2
            assert np.max(np.abs(half - want) / want) < 1e-10  # measured 1.3e-14
            # The mean is the raw model's d·β, whose intercept (-1e8) cancels: 1.1e-8 here, as on statsmodels' raw
            # design.
            np.testing.assert_allclose(out["mean"][:, 0], frame["mean"], rtol=1e-7)


@pytest.mark.parametrize(("offset", "spread", "bound"), [(1e3, 0.1, 1e-6), (1e4, 1.0, 1e-6)])
def test_polynomial_intervals_away_from_zero(offset, spread, bound):
    """Degree 2 at x = 1e4 + z: in raw coordinates the confidence half-widths were 0 or 29% off; the covariance is
    now of the intercept at the powers of the input's centre. What is left is the raw powers' own cancellation
    (measured 1.6e-8 and 2.4e-8 here; 1.3e-4 at 1e6 + z, docs/intervals.md)."""
    rng = np.random.default_rng(4)
    u = spread * rng.normal(size=300)
    y = 1 + 2 * u - 0.3 * u**2 + 0.01 * rng.normal(size=300)
    u_new = spread * rng.normal(size=3)
    module, _ = _fit((offset + u)[:, None], y, polynomial_degree=2)
    out = module.predict_interval((offset + u_new)[:, None], 0.95, "confidence")
    frame = sm.OLS(y, np.column_stack([np.ones(300), u, u**2])).fit(use_t=True).get_prediction(
        np.column_stack([np.ones(3), u_new, u_new**2])).summary_frame(alpha=0.05)
    half = (out["upper"][:, 0] - out["lower"][:, 0]) / 2
    want = (frame["mean_ci_upper"] - frame["mean_ci_lower"]).to_numpy() / 2
    assert np.max(np.abs(half - want) / want) < bound


def test_text_in_x_is_one_line():
    x, y, _ = _data()
    module, _ = _fit(x, y)
    with pytest.raises(ValueError, match="predict_interval: x must be numbers, the 2 fitted input columns"):
        module.predict_interval([[1.0, "north"]])


def test_a_centred_spec_without_its_centre_is_refused(tmp_path):
    """A checkpoint whose centred covariance lost its centre read it as raw: intervals 3e7 times too wide."""
    import torch

    from lr_lightning.core.intervals import checkpoint_interval

    x, y, _ = _data()
    _, trainer = _fit(x + 1e6, y, tmp_path)
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    checkpoint = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert checkpoint["interval"]["coordinates"] == "centred"
    del checkpoint["interval"]["centre"]
    torch.save(checkpoint, tmp_path / "b.ckpt")
    with pytest.raises(ValueError, match="covariance is 'centred' with no centre"):
        checkpoint_interval(tmp_path / "b.ckpt", 2, 1)


def test_robust_cov_type_is_chosen_and_classic_differs():
    x, y, x_new = _data()
    module, _ = _fit(x, y, robust=True)
    hc3 = module.predict_interval(x_new, kind="confidence", cov_type="HC3")
    frame = _frame(x, y, x_new, cov_type="HC3")
    np.testing.assert_allclose(hc3["upper"][:, 0], frame["mean_ci_upper"], rtol=1e-8)
    classic = module.predict_interval(x_new, kind="confidence", cov_type="nonrobust")
    assert np.abs(classic["upper"] - hc3["upper"]).max() > 1e-3  # the covariance is really used
    with pytest.raises(ValueError, match="cov_type"):
        _fit(x, y)[0].predict_interval(x_new, cov_type="HC1")


def test_a_clustered_fit_takes_its_cr1_covariance_as_statsmodels_does():
    x, y, x_new = _data()
    groups = np.arange(len(y)) % 12
    dm = RegressionDataModule(x, y, clusters=groups, val_fraction=0, dtype="float64")
    module = LeastSquaresModule(cluster=True)
    make_trainer(max_epochs=20).fit(module, datamodule=dm)
    fit = sm.OLS(y, design_rows(x, None, True)).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    frame = fit.get_prediction(design_rows(x_new, None, True)).summary_frame(alpha=0.05)
    for kind, prefix in (("confidence", "mean_ci"), ("prediction", "obs_ci")):
        out = module.predict_interval(x_new, kind=kind)  # CR1 unless told otherwise
        np.testing.assert_allclose(out["lower"][:, 0], frame[f"{prefix}_lower"], rtol=1e-8)
        np.testing.assert_allclose(out["upper"][:, 0], frame[f"{prefix}_upper"], rtol=1e-8)
    classic = module.predict_interval(x_new, cov_type="nonrobust")
    assert np.abs(classic["upper"] - module.predict_interval(x_new)["upper"]).max() > 1e-3


def test_several_targets_have_their_own_intervals():
    x, y, x_new = _data(outputs=2)
    module, _ = _fit(x, y)
    out = module.predict_interval(x_new, level=0.9, kind="prediction")
    for t in range(2):
        fit = sm.OLS(y[:, t], sm.add_constant(x)).fit()
        frame = fit.get_prediction(sm.add_constant(x_new)).summary_frame(alpha=0.1)
        np.testing.assert_allclose(out["lower"][:, t], frame["obs_ci_lower"], rtol=1e-8)


def test_bad_level_or_kind_is_one_line():
    x, y, x_new = _data()
    module, _ = _fit(x, y)
    for kwargs, words in (({"level": 1.5}, "between 0 and 1"), ({"kind": "both"}, "confidence' or 'prediction")):
        with pytest.raises(ValueError, match=words):
            module.predict_interval(x_new, **kwargs)
    x_new[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"row 2 of x is not finite"):
        module.predict_interval(x_new)


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize(("kind", "degree"), [("confidence", 2), ("prediction", 2), ("confidence", None)])
def test_checkpoint_and_onnx_intervals_agree_and_equal_the_module(tmp_path, kind, degree):
    pytest.importorskip("onnxruntime")
    x, y, x_new = _data()
    if degree is None:  # raw columns far from zero: the spec carries the centre the covariance is taken about
        x, x_new = x + 1e3, x_new + 1e3
    module, trainer = _fit(x, y, tmp_path, polynomial_degree=degree)
    trainer.save_checkpoint(tmp_path / "ls.ckpt")
    result = run_main(export_main, "--ckpt", "ls.ckpt", "--out", "ls.onnx", "--interval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [o.name for o in OnnxPredictor(tmp_path / "ls.onnx").session.get_outputs()] == ["predictions", "stderr"]
    values = [str(v) for v in x_new.ravel()]
    flags = ("--x", *values, "--interval", "0.95", "--interval_kind", kind)
    by_ckpt = run_main(predict_main, "--ckpt", "ls.ckpt", *flags, cwd=tmp_path)
    start = time.perf_counter()
    by_onnx = run_main(predict_main, "--onnx", "ls.onnx", *flags, cwd=tmp_path)
    assert time.perf_counter() - start < 1.0
    assert by_ckpt.returncode == by_onnx.returncode == 0, by_ckpt.stderr + by_onnx.stderr
    ckpt_rows, onnx_rows = _rows(by_ckpt.stdout), _rows(by_onnx.stdout)
    assert list(ckpt_rows[0]) == ["x0", "x1", "predicted_y", "lower_y", "upper_y"]
    expected = module.predict_interval(x_new, 0.95, kind)
    for col, key in (("predicted_y", "mean"), ("lower_y", "lower"), ("upper_y", "upper")):
        got_ckpt = np.array([float(r[col]) for r in ckpt_rows])
        got_onnx = np.array([float(r[col]) for r in onnx_rows])
        np.testing.assert_allclose(got_ckpt, expected[key][:, 0], rtol=1e-12)
        np.testing.assert_allclose(got_onnx, got_ckpt, rtol=1e-6)


def test_intervals_without_a_covariance_are_refused_in_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    x, y, _ = _data()
    _, trainer = _fit(x, y, tmp_path)
    trainer.save_checkpoint(tmp_path / "ls.ckpt")
    assert run_main(export_main, "--ckpt", "ls.ckpt", "--out", "plain.onnx", cwd=tmp_path).returncode == 0
    one_error_line(run_main(predict_main, "--onnx", "plain.onnx", "--x", "1", "2", "--interval", "0.95",
                            cwd=tmp_path), "no stderr output", "--interval")
    one_error_line(run_main(predict_main, "--ckpt", "ls.ckpt", "--x", "1", "2", "--interval", "2", cwd=tmp_path),
                   "--interval", "between 0 and 1")
    one_error_line(run_main(export_main, "--ckpt", "ls.ckpt", "--out", "ls.pt2", "--interval", cwd=tmp_path),
                   "--interval", ".onnx")
    # A gradient-trained fit stores no covariance.
    dm = RegressionDataModule(x, y, val_fraction=0)
    sgd = RegressionModule(LinearRegression(2, 1), **dm.module_inputs())
    sgd_trainer = make_trainer(max_epochs=1, default_root_dir=tmp_path)
    sgd_trainer.fit(sgd, datamodule=dm)
    sgd_trainer.save_checkpoint(tmp_path / "sgd.ckpt")
    one_error_line(run_main(predict_main, "--ckpt", "sgd.ckpt", "--x", "1", "2", "--interval", "0.95", cwd=tmp_path),
                   "no coefficient covariance")
    one_error_line(run_main(export_main, "--ckpt", "sgd.ckpt", "--out", "sgd.onnx", "--interval", cwd=tmp_path),
                   "no coefficient covariance")
