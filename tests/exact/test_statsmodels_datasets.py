"""The exact fit against statsmodels on its bundled datasets (they load without internet): grunfeld's firm/year
panel clustered one- and two-way and weighted, and longley, stackloss, ccard for OLS, WLS, HC0-HC3, p-values,
AIC/BIC and ``get_prediction().summary_frame()`` bounds, all to 1e-8 relative (issue #23)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from lr_lightning import LeastSquaresModule, RegressionDataModule

from ..conftest import make_trainer

TOL = 1e-8
TARGETS = {"grunfeld": "invest", "longley": "TOTEMP", "stackloss": "STACKLOSS", "ccard": "AVGEXP"}


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _load(name: str) -> tuple[np.ndarray, np.ndarray, list[str], object]:
    frame = getattr(sm.datasets, name).load_pandas().data
    if name == "grunfeld":
        frame = frame.assign(year=frame["year"].astype(int))
    columns = {"grunfeld": ["value", "capital"]}.get(name, [c for c in frame.columns if c != TARGETS[name]])
    x = frame[columns].to_numpy(dtype=np.float64)
    return x, frame[TARGETS[name]].to_numpy(dtype=np.float64), columns, frame


def _fit(x, y, names, **kwargs):
    data = {key: kwargs.pop(key) for key in ("weights", "clusters") if key in kwargs}
    dm = RegressionDataModule(x, y, val_fraction=0, dtype="float64", feature_names=names, **data)
    module = LeastSquaresModule(**kwargs)
    make_trainer(max_epochs=20).fit(module, datamodule=dm)
    return module, module.statistics["y"]


def _check_table(s: dict, fit) -> None:
    assert s["n"] == int(fit.nobs) and s["df_resid"] == fit.df_resid
    for key, ours, ref in (("coef", s["coef"], fit.params), ("stderr", s["stderr"], fit.bse),
                           ("t", s["t"], fit.tvalues), ("p", s["p"], fit.pvalues),
                           ("ci95", s["ci95"], fit.conf_int()), ("aic", s["aic"], fit.aic),
                           ("bic", s["bic"], fit.bic), ("log_likelihood", s["log_likelihood"], fit.llf),
                           ("r2", s["r2"], fit.rsquared), ("f_stat", s["f_stat"], fit.fvalue)):
        assert _rel(ours, ref) < TOL, key
    for key in ("HC0", "HC1", "HC2", "HC3"):
        assert _rel(s["stderr_hc"][key], np.sqrt(np.diag(getattr(fit, f"cov_{key}")))) < TOL, key


@pytest.mark.parametrize("name", ["longley", "stackloss", "ccard"])
def test_ols_table_and_hc_errors_match_statsmodels(name) -> None:
    x, y, names, _ = _load(name)
    _, s = _fit(x, y, names, robust=True)
    assert s["names"] == ["intercept", *names]
    _check_table(s, sm.OLS(y, sm.add_constant(x)).fit())


@pytest.mark.parametrize(("name", "weight_of"), [("ccard", "INCOME"), ("grunfeld", "capital")])
def test_wls_table_and_hc_errors_match_statsmodels(name, weight_of) -> None:
    # Variance growing with income (ccard; statsmodels' own WLS example) or with the capital stock (grunfeld).
    x, y, names, frame = _load(name)
    w = 1.0 / frame[weight_of].to_numpy(dtype=np.float64)
    _, s = _fit(x, y, names, robust=True, weights=w)
    assert s["weighted"] is True
    fit = sm.WLS(y, sm.add_constant(x), weights=w).fit()
    _check_table(s, fit)
    assert _rel(s["stderr"], sm.OLS(y, sm.add_constant(x)).fit().bse) > 0.01  # the weights changed the answer


@pytest.mark.parametrize("weighted", [False, True], ids=["ols", "wls"])
@pytest.mark.parametrize("two_way", [False, True], ids=["firm", "firm_year"])
def test_grunfeld_clustered_errors_match_statsmodels(two_way, weighted) -> None:
    x, y, names, frame = _load("grunfeld")
    firm = frame["firm"].to_numpy()  # strings: "General Motors", ...
    codes = np.unique(firm, return_inverse=True)[1]
    year = frame["year"].to_numpy()
    groups = np.stack([codes, year], axis=1) if two_way else codes
    w = 1.0 / frame["capital"].to_numpy(dtype=np.float64) if weighted else None
    _, s = _fit(x, y, names, cluster=True, clusters=groups if two_way else firm, weights=w)
    model = sm.WLS(y, sm.add_constant(x), weights=w) if weighted else sm.OLS(y, sm.add_constant(x))
    reference = model.fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    assert s["n_clusters"] == ([11, 20] if two_way else 11)  # statsmodels' panel: 11 firms over 1935-1954
    for key, ref in (("stderr_cluster", reference.bse), ("t_cluster", reference.tvalues),
                     ("p_cluster", reference.pvalues), ("ci95_cluster", reference.conf_int())):
        ours = s[key]["CR1"] if key == "stderr_cluster" else s[key]
        assert _rel(ours, ref) < TOL, key
    assert s["df_cluster"] == reference.df_resid_inference == 10
    assert _rel(s["stderr_cluster"]["CR1"], s["stderr"]) > 0.1  # clustering matters on this panel


@pytest.mark.parametrize("name", ["longley", "stackloss", "ccard"])
@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0", "HC3"])
def test_prediction_bounds_match_summary_frame(name, cov_type) -> None:
    x, y, names, _ = _load(name)
    module, _ = _fit(x, y, names, robust=cov_type != "nonrobust")
    # New rows around the data: its first rows, its mean, and beyond its range (wider intervals).
    x_new = np.vstack([x[:3], x.mean(axis=0), x.max(axis=0) * 1.1])
    # The bounds don't depend on how the columns are parametrized: statsmodels fits the standardized columns, as
    # on longley's raw ones (condition number 5e9) its own HC3 bounds are 1.4e-8 off.
    centre, scale = x.mean(axis=0), x.std(axis=0)
    frame = sm.OLS(y, sm.add_constant((x - centre) / scale)).fit(cov_type=cov_type, use_t=True).get_prediction(
        sm.add_constant((x_new - centre) / scale, has_constant="add")).summary_frame(alpha=0.05)
    for kind, prefix in (("confidence", "mean_ci"), ("prediction", "obs_ci")):
        out = module.predict_interval(x_new, level=0.95, kind=kind, cov_type=cov_type)
        assert _rel(out["mean"][:, 0], frame["mean"]) < TOL
        assert _rel(out["lower"][:, 0], frame[f"{prefix}_lower"]) < TOL, kind
        assert _rel(out["upper"][:, 0], frame[f"{prefix}_upper"]) < TOL, kind
