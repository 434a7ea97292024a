"""Weighted least squares (issue #23): the exact fit and every statistic against statsmodels' WLS."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import statsmodels.api as sm
import torch

from lr_lightning import RegressionDataModule
from lr_lightning.exact.least_squares_module import LeastSquaresModule
from lr_lightning.exact.solver import least_squares

TOL = 1e-8


def _data(n: int = 240, seed: int = 0, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) + offset
    w = rng.uniform(0.2, 3.0, size=n)
    w[:6] = 0.0  # rows of weight zero: left out of n
    y = x @ [1.0, 2.0, -1.0] + 0.5 + rng.normal(size=n) / np.sqrt(np.maximum(w, 0.1))
    return x, y, w


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _check(s: dict, fit, n: int) -> None:
    assert s["weighted"] is True
    assert s["n"] == n == int(fit.nobs)
    assert _rel(s["coef"], fit.params) < TOL
    assert _rel(s["stderr"], fit.bse) < TOL
    assert _rel(s["t"], fit.tvalues) < TOL
    assert _rel(s["p"], fit.pvalues) < TOL
    assert _rel([c[0] for c in s["ci95"]], fit.conf_int()[:, 0]) < TOL
    for key in ("HC0", "HC1", "HC2", "HC3"):
        assert _rel(s["stderr_hc"][key], np.sqrt(np.diag(getattr(fit, f"cov_{key}")))) < TOL, key
    for key, ref in (("log_likelihood", fit.llf), ("aic", fit.aic), ("bic", fit.bic), ("r2", fit.rsquared),
                     ("adj_r2", fit.rsquared_adj), ("f_stat", fit.fvalue), ("f_pvalue", fit.f_pvalue),
                     ("residual_sd", np.sqrt(fit.scale)), ("condition_number", fit.condition_number)):
        assert _rel(s[key], ref) < TOL, key
    assert s["df_resid"] == fit.df_resid and s["df_model"] == fit.df_model


@pytest.mark.parametrize("degree", [None, 2])
def test_least_squares_weights_match_statsmodels_wls(degree) -> None:
    x, y, w = _data()
    s = least_squares(x, y, weights=w, robust=True, polynomial_degree=degree).statistics["y"]
    design = x if degree is None else np.column_stack([x[:, j] ** p for j in range(3) for p in (1, 2)])
    keep = w > 0  # statsmodels keeps zero-weight rows in nobs (its llf is then -inf): compared on the rest
    fit = sm.WLS(y[keep], sm.add_constant(design[keep]), weights=w[keep]).fit()
    _check(s, fit, int(keep.sum()))


def test_without_intercept_matches_statsmodels_wls() -> None:
    x, y, w = _data(seed=1)
    s = least_squares(x, y, weights=w, bias=False, robust=True).statistics["y"]
    keep = w > 0
    _check(s, sm.WLS(y[keep], x[keep], weights=w[keep]).fit(), int(keep.sum()))


def test_offset_data_refines_to_the_weighted_solution() -> None:
    # An offset far beyond the spread takes the refinement passes, which must use the weights too.
    x, y, w = _data(seed=2, offset=1e4)
    s = least_squares(x, y, weights=w).statistics["y"]
    keep = w > 0
    fit = sm.WLS(y[keep], sm.add_constant(x[keep]), weights=w[keep]).fit()
    assert _rel(s["coef"][1:], fit.params[1:]) < 1e-7  # statsmodels' own pinv loses digits at this offset


def test_weights_scale_free_and_zero_weight_rows_dropped() -> None:
    x, y, w = _data(seed=3)
    a = least_squares(x, y, weights=w).statistics["y"]
    b = least_squares(x, y, weights=3 * w).statistics["y"]
    keep = w > 0
    c = least_squares(x[keep], y[keep], weights=w[keep]).statistics["y"]
    assert _rel(a["coef"], b["coef"]) < 1e-12 and _rel(a["stderr"], b["stderr"]) < 1e-12
    assert _rel(a["coef"], c["coef"]) < 1e-12 and a["n"] == c["n"] == keep.sum()
    # Unit weights are ordinary least squares (with the OLS log-likelihood: Σ log 1 = 0).
    ols = least_squares(x, y).statistics["y"]
    ones = least_squares(x, y, weights=np.ones(len(y))).statistics["y"]
    assert _rel(ones["coef"], ols["coef"]) < 1e-12 and _rel(ones["aic"], ols["aic"]) < 1e-12


def test_chunks_do_not_change_the_weighted_fit() -> None:
    x, y, w = _data(seed=4)
    a = least_squares(x, y, weights=w, robust=True).statistics["y"]
    b = least_squares(x, y, weights=w, robust=True, chunk_rows=17).statistics["y"]
    assert _rel(a["coef"], b["coef"]) < 1e-12 and _rel(a["stderr_hc"]["HC3"], b["stderr_hc"]["HC3"]) < 1e-12


@pytest.mark.parametrize(("w", "message"), [
    ([1.0, -1.0, 1.0, 1.0, 1.0], r"row 2 \(1-based\) has weight -1.0"),
    ([1.0, 1.0, np.nan, 1.0, 1.0], r"row 3 \(1-based\) has weight nan"),
    ([0.0] * 5, "every weight is zero"),
    ([1.0] * 4, r"shape \(4,\) for 5 rows"),
    ([[1.0, 2.0]] * 5, r"shape \(5, 2\) for 5 rows"),
    ([1.0 + 1j] * 5, "not real numbers"),
    ([1.0, 1e160, 1.0, 1.0, 1.0], r"row 2 \(1-based\) has weight 1e\+160; positive weights must lie in \[1e-150"),
    ([1.0, 1.0, 1e-200, 1.0, 1.0], r"row 3 \(1-based\) has weight 1e-200"),
])
def test_bad_weights_are_one_line(w, message) -> None:
    x = np.arange(5.0)
    with pytest.raises(ValueError, match=message):
        least_squares(x, 2 * x + np.sin(x), weights=w)
    with pytest.raises(ValueError, match=message):
        RegressionDataModule(x, 2 * x, weights=w)


def test_too_few_positive_weights() -> None:
    x = np.arange(6.0)
    with pytest.raises(ValueError, match="2 rows of positive weight for 2 coefficients"):
        least_squares(x, np.sin(x), weights=[1, 1, 0, 0, 0, 0])


def _trainer() -> L.Trainer:
    return L.Trainer(max_epochs=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", devices=1)


def test_least_squares_module_with_a_weight_column_matches_statsmodels() -> None:
    x, y, w = _data(seed=5)
    dm = RegressionDataModule(x, y, weights=w, val_fraction=0.2, dtype="float64", batch_size=16)
    module = LeastSquaresModule(robust=True)
    _trainer().fit(module, datamodule=dm)
    xt, yt, wt = dm.raw_split("train", ordered=True)
    xt, yt, wt = xt.numpy(), yt.numpy()[:, 0], wt.numpy()[:, 0]
    keep = wt > 0
    fit = sm.WLS(yt[keep], sm.add_constant(xt[keep]), weights=wt[keep]).fit()
    _check(module.statistics["y"], fit, int(keep.sum()))


@pytest.mark.parametrize("cluster", [False, True], ids=["plain", "clustered"])
def test_float32_data_keeps_float64_weights(cluster) -> None:
    """dtype="float32" over float32 x and y: the exact fit reads them as they are, and the weights (float64, not
    float32-exact) as given too; rounded to float32 they made the coefficients 1e-8 off statsmodels' WLS."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    y = (x @ [1.0, 2.0] + rng.normal(size=400)).astype(np.float32)
    w, firm = rng.uniform(0.1, 3.0, 400), rng.integers(0, 20, 400)
    dm = RegressionDataModule(x, y, weights=w, clusters=firm if cluster else None, val_fraction=0, dtype="float32")
    module = LeastSquaresModule(cluster=cluster)
    _trainer().fit(module, datamodule=dm)
    assert dm.raw_split("train", dtype=torch.float32)[2].dtype == torch.float64
    model = sm.WLS(y.astype(np.float64), sm.add_constant(x.astype(np.float64)), weights=w)
    fit = model.fit(cov_type="cluster", cov_kwds={"groups": firm}) if cluster else model.fit()
    s = module.statistics["y"]
    assert np.max(np.abs(np.array(s["coef"]) - fit.params) / np.abs(fit.params)) < 1e-12  # measured 2e-14
    errors = s["stderr_cluster"]["CR1"] if cluster else s["stderr"]
    assert np.max(np.abs(np.array(errors) - fit.bse) / fit.bse) < 1e-12


def _exact_wls(x, y, w):
    """Coefficients and classic standard errors of WLS in rational arithmetic (the floats' exact values)."""
    from fractions import Fraction

    rows = [[Fraction(1)] + [Fraction(float(v)) for v in r] for r in x]
    ys, ws = [Fraction(float(v)) for v in y], [Fraction(float(v)) for v in w]
    p = len(rows[0])
    a = [[sum(wi * r[i] * r[j] for wi, r in zip(ws, rows, strict=True)) for j in range(p)] for i in range(p)]
    m = [a[i] + [Fraction(int(i == j)) for j in range(p)] for i in range(p)]
    for c in range(p):  # Gauss-Jordan: the inverse of XᵀWX
        m[c] = [v / m[c][c] for v in m[c]]
        for r in range(p):
            if r != c:
                m[r] = [u - m[r][c] * v for u, v in zip(m[r], m[c], strict=True)]
    inv = [row[p:] for row in m]
    b = [sum(wi * r[i] * yi for wi, r, yi in zip(ws, rows, ys, strict=True)) for i in range(p)]
    beta = [sum(inv[i][j] * b[j] for j in range(p)) for i in range(p)]
    sse = sum(wi * (yi - sum(r[j] * beta[j] for j in range(p))) ** 2 for wi, r, yi in zip(ws, rows, ys, strict=True))
    s2 = sse / (sum(1 for v in ws if v > 0) - p)
    return np.array([float(v) for v in beta]), np.sqrt([float(s2 * inv[i][i]) for i in range(p)])


@pytest.mark.parametrize("scale", [1.0, 1e-30], ids=["one_heavy_row", "the_rest_light"])
def test_one_row_far_heavier_than_the_rest(scale) -> None:
    """One weight 1e30 times the others: the constant-column check counted the rows at the total weight, and every
    column looked constant (a false refusal). The fit equals rational arithmetic to float64's precision."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 2))
    y = 2 + x @ [0.3, -0.1] + rng.normal(size=50)
    w = np.ones(50) * scale
    w[7] = 1e30 * scale
    s = least_squares(x, y, weights=w).statistics["y"]
    coef, stderr = _exact_wls(x, y, w)
    assert _rel(s["coef"], coef) < 1e-13 and _rel(s["stderr"], stderr) < 1e-13  # measured 4e-16
    with pytest.raises(ValueError, match="every column .* is constant"):  # truly constant columns still are
        least_squares(np.ones((50, 2)) * [3.0, -1.5], y, weights=w)


def _csv(path, n: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, w = _data(n, seed=6)
    rows = [",".join(repr(float(c)) for c in (*r, v, t)) for r, v, t in zip(x, w, y, strict=True)]
    path.write_text("a,b,c,w,y\n" + "\n".join(rows) + "\n")
    return x, y, w


def test_cli_exact_fit_with_a_weight_column(tmp_path) -> None:
    import json

    from lr_lightning.core.cli import fit_main

    from ..conftest import one_error_line, run_main

    x, y, w = _csv(tmp_path / "d.csv")
    result = run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--data.weights", "w",
                      "--data.val_fraction", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Weighted least squares (WLS)" in result.stdout
    s = json.loads(next(tmp_path.glob("lightning_logs/*/statistics.json")).read_text())["y"]
    keep = w > 0
    fit = sm.WLS(y[keep], sm.add_constant(x[keep]), weights=w[keep]).fit()
    assert s["weighted"] is True and s["names"] == ["intercept", "a", "b", "c"] and s["n"] == keep.sum()
    assert _rel(s["stderr"], fit.bse) < 1e-8 and _rel(s["aic"], fit.aic) < 1e-8
    bad = run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--data.weights", "v", cwd=tmp_path)
    one_error_line(bad, "no weights column 'v'")
