"""The regression table: standard errors, t, p, confidence intervals, R², F, likelihood, AIC/BIC, as statsmodels'
``OLS(...).fit()`` reports them (its definitions, checked against it in the tests), from the exact solver's sums.

:func:`regression_statistics` builds one target's dict; :func:`format_table` prints it the way statsmodels users
read it; :func:`to_json` writes it as strict JSON (infinities as strings, undefined values as null).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from scipy import stats

KEYS = ("names", "coef", "stderr", "t", "p", "ci95", "n", "df_model", "df_resid", "residual_sd", "r2", "adj_r2",
        "f_stat", "f_pvalue", "log_likelihood", "aic", "bic", "condition_number", "rank")


def regression_statistics(*, names: list[str], coef: np.ndarray, keep: np.ndarray, unscaled_cov: np.ndarray,
                          sse: float, tss: float, n: int, bias: bool, robust: dict[str, np.ndarray] | None = None,
                          condition_number: float = math.nan, constant: bool | None = None,
                          log_weights: float | None = None, clustered: dict[str, Any] | None = None
                          ) -> dict[str, Any]:
    """One target's table. Aliased coefficients (``keep`` False) are None in every per-coefficient list.

    Args:
        names: coefficient names, the intercept first if ``bias``.
        coef: (p,) raw coefficients; ``keep``: (p,) which are estimated.
        unscaled_cov: (XᵀX)⁻¹ over the kept coefficients; times σ² it is the classic covariance (any float dtype:
            long double holds variances beyond float64's range).
        sse: residual sum of squares; ``tss``: total sum of squares, centred when the model has a constant,
            uncentred without (then R² is uncentred, as NIST and statsmodels report it).
        n: rows; ``bias``: the model has an intercept.
        constant: the model has a constant (default ``bias``): an intercept, or, without one, a constant in the
            columns' span (a column of ones given as data, dummies of every level), statsmodels' ``k_constant``.
            With one, R², adjusted R² and F are about the constant-only model and ``df_model`` leaves the constant
            out, as statsmodels reports them (R's ``lm(y ~ 0 + X)`` goes by the formula and stays uncentred).
        robust: ``{"HC0": (p_k, p_k), …}`` sandwich covariances over the kept coefficients.
        condition_number: statsmodels' ``sqrt(λmax/λmin)`` of XᵀX (the intercept's column included).
        log_weights: weighted least squares: ``Σ log w`` over the ``n`` rows of positive weight (``sse`` and ``tss``
            are then weighted sums, ``n`` counts those rows). The log-likelihood is statsmodels' ``WLS.loglike``,
            the OLS one plus ``Σ log w / 2``, and the dict gets ``"weighted": True``.
        clustered: ``{"CR1": (p_k, p_k), "n_clusters": [G] or [G_a, G_b], "names": the cluster columns}``, and
            ``"CR3": (p_k, p_k)`` where asked for: the dict gets ``stderr_cluster`` (``{"CR1": [...]}``, and
            ``"CR3"``), ``n_clusters`` (G; two-way ``[G_a, G_b]``),
            ``cluster_names``, ``df_cluster`` (``min G - 1``) and ``t_cluster``, ``p_cluster``, ``ci95_cluster``
            (CR1's) with ``df_cluster`` degrees of freedom, as statsmodels' ``fit(cov_type="cluster", use_t=True)``.
            A two-way variance that comes out negative (V_a + V_b - V_ab need not be PSD; statsmodels keeps it as
            it is) has a NaN (null) standard error.
    """
    constant = bias if constant is None else bool(constant)
    rank = int(keep.sum())
    df_resid, df_model = n - rank, rank - int(constant)
    sigma2 = sse / df_resid
    kept_coef = np.asarray(coef, dtype=np.float64)[keep]
    # The product and its root in the covariance's own dtype (long double from the solver): a variance beyond
    # float64's range has a standard error within it, and casting first would make it inf (t = 0, p = 1).
    stderr = np.sqrt(np.maximum(np.diag(unscaled_cov), 0.0) * sigma2).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = kept_coef / stderr
    p = 2 * stats.t.sf(np.abs(t), df_resid)
    half = stats.t.ppf(0.975, df_resid) * stderr
    r2 = 1 - sse / tss if tss > 0 else math.nan
    if df_model <= 0 or tss <= 0:
        f_stat = math.nan  # no regressor beside the intercept, or nothing to explain
    elif sse == 0:
        f_stat = math.inf  # an exact fit (NIST's Wampler1)
    else:
        f_stat = float(((tss - sse) / df_model) / (sse / df_resid))
    f_pvalue = float(stats.f.sf(f_stat, df_model, df_resid)) if not math.isnan(f_stat) else math.nan
    llf = -n / 2 * (math.log(2 * math.pi) + (math.log(sse / n) if sse > 0 else -math.inf) + 1)
    if log_weights is not None:
        llf += log_weights / 2
    out: dict[str, Any] = {
        "names": list(names),
        "coef": _spread(kept_coef, keep),
        "stderr": _spread(stderr, keep),
        "t": _spread(t, keep),
        "p": _spread(p, keep),
        "ci95": [None if v is None else [v[0], v[1]] for v in
                 _spread_pairs(kept_coef - half, kept_coef + half, keep)],
        "n": int(n),
        "df_model": int(df_model),
        "df_resid": int(df_resid),
        "residual_sd": math.sqrt(sigma2),
        "r2": float(r2),
        "adj_r2": float(1 - (n - int(constant)) / df_resid * (1 - r2)) if not math.isnan(r2) else math.nan,
        "f_stat": f_stat,
        "f_pvalue": f_pvalue,
        "log_likelihood": float(llf),
        "aic": float(-2 * llf + 2 * rank),
        "bic": float(-2 * llf + math.log(n) * rank),
        "condition_number": float(condition_number),
        "rank": rank,
    }
    if log_weights is not None:
        out["weighted"] = True
    if clustered is not None:
        out |= _clustered(kept_coef, keep, clustered)
    if robust is not None:
        out["stderr_hc"] = {key: _spread(np.sqrt(np.maximum(np.diag(cov), 0.0)).astype(np.float64), keep)
                            for key, cov in robust.items()}
    return out


def _clustered(coef: np.ndarray, keep: np.ndarray, clustered: dict[str, Any]) -> dict[str, Any]:
    """The cluster-robust keys (:func:`regression_statistics`'s ``clustered``)."""
    groups = [int(g) for g in clustered["n_clusters"]]
    df = min(groups) - 1
    variance = np.diag(clustered["CR1"]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        stderr = np.where(variance >= 0, np.sqrt(np.abs(variance)), math.nan)
        t = coef / stderr
        p = 2 * stats.t.sf(np.abs(t), df) if df > 0 else np.full_like(t, math.nan)
        half = stats.t.ppf(0.975, df) * stderr if df > 0 else np.full_like(t, math.nan)
    errors = {"CR1": _spread(stderr, keep)}
    if "CR3" in clustered:  # CR3's standard errors only: t, p and the intervals stay CR1's
        errors["CR3"] = _spread(np.sqrt(np.diag(clustered["CR3"]).astype(np.float64)), keep)
    return {"stderr_cluster": errors, "n_clusters": groups[0] if len(groups) == 1 else groups,
            "cluster_names": list(clustered["names"]), "df_cluster": int(df), "t_cluster": _spread(t, keep),
            "p_cluster": _spread(p, keep),
            "ci95_cluster": [None if v is None else [v[0], v[1]] for v in _spread_pairs(coef - half, coef + half,
                                                                                        keep)]}


def cluster_header(s: dict[str, Any]) -> str:
    """The table's line for a clustered fit, as statsmodels' summary says its covariance type.

    >>> cluster_header({"cluster_names": ["firm"], "n_clusters": 1000})
    'Std. errors: cluster-robust CR1, clustered by firm (G = 1,000)'
    >>> cluster_header({"cluster_names": ["firm", "year"], "n_clusters": [50, 10]})
    'Std. errors: cluster-robust CR1, two-way, clustered by firm and year (G = 50 and 10)'
    """
    names, groups = s["cluster_names"], np.atleast_1d(s["n_clusters"]).tolist()
    way = ", two-way" if len(names) > 1 else ""
    return (f"Std. errors: cluster-robust CR1{way}, clustered by {' and '.join(names)} "
            f"(G = {' and '.join(f'{g:,}' for g in groups)})")


def _spread(values: np.ndarray, keep: np.ndarray) -> list[float | None]:
    """Kept coefficients' values in their places, None for the aliased ones."""
    it = iter(np.asarray(values, dtype=np.float64).tolist())
    return [next(it) if k else None for k in keep]


def _spread_pairs(lo: np.ndarray, hi: np.ndarray, keep: np.ndarray) -> list[tuple[float, float] | None]:
    pairs = iter(zip(lo.tolist(), hi.tolist(), strict=True))
    return [next(pairs) if k else None for k in keep]


# ------------------------------------------------------------------------------------------------ output
def _cell(value: float | None, width: int, fmt: str = ".4g") -> str:
    if value is None:
        return f"{'—':>{width}}"
    if isinstance(value, float) and math.isinf(value):
        return f"{'inf' if value > 0 else '-inf':>{width}}"
    return f"{value:>{width}{fmt}}"


def format_table(s: dict[str, Any], target: str = "y") -> str:
    """The table statsmodels users know: one row per coefficient (coef, std err, t, P>|t|, [0.025, 0.975]; "—" for
    an aliased one), then R², adjusted R², F and its p-value, AIC, BIC, the row count and the condition number; with
    robust standard errors, a second block of HC0-HC3.

    >>> x = np.arange(10.0)
    >>> from lr_lightning.exact.solver import least_squares
    >>> s = least_squares(x, 2 * x + 1 + np.sin(x)).statistics["y"]
    >>> print(format_table(s).splitlines()[2])
    intercept           1.14      0.4315      2.643     0.02956      0.1455      2.135
    """
    width = max(12, *(len(n) for n in s["names"]))
    rule = "-" * (width + 72)
    header = ["Weighted least squares (WLS)"] if s.get("weighted") else []
    clustered = "stderr_cluster" in s
    if clustered:  # the table's columns are then the cluster-robust ones (t with df_cluster degrees of freedom)
        header.append(cluster_header(s))
        s = {**s, "stderr": s["stderr_cluster"]["CR1"], "t": s["t_cluster"], "p": s["p_cluster"],
             "ci95": s["ci95_cluster"]}
    lines = header + [f"{target:<{width}} {'coef':>11} {'std err':>11} {'t':>10} {'P>|t|':>11} {'[0.025':>11} "
             f"{'0.975]':>10}", rule]
    for i, name in enumerate(s["names"]):
        ci = s["ci95"][i] or (None, None)
        lines.append(f"{name:<{width}} {_cell(s['coef'][i], 11)} {_cell(s['stderr'][i], 11)} "
                     f"{_cell(s['t'][i], 10)} {_cell(s['p'][i], 11)} {_cell(ci[0], 11)} {_cell(ci[1], 10)}")
    lines.append(rule)
    # With a constant (an intercept, or one in the columns' span: statsmodels' k_constant) df_model leaves it out.
    r2_label = "R²" if constant_in(s) else "R² (uncentred)"
    lines.append(f"{r2_label}: {_cell(s['r2'], 0, '.6g')}   adj. R²: {_cell(s['adj_r2'], 0, '.6g')}   "
                 f"F({s['df_model']}, {s['df_resid']}): {_cell(s['f_stat'], 0)}   P(F): {_cell(s['f_pvalue'], 0)}")
    lines.append(f"AIC: {_cell(s['aic'], 0, '.6g')}   BIC: {_cell(s['bic'], 0, '.6g')}   log-likelihood: "
                 f"{_cell(s['log_likelihood'], 0, '.6g')}   n: {s['n']}   residual SD: "
                 f"{_cell(s['residual_sd'], 0, '.6g')}   condition number: {_cell(s['condition_number'], 0, '.3g')}")
    if "CR3" in s.get("stderr_cluster", {}):  # the table's columns are CR1's; CR3's errors beside them
        lines += ["", f"{'cluster std err':<{width}} {'CR1':>11} {'CR3':>11}", rule]
        for i, name in enumerate(s["names"]):
            lines.append(f"{name:<{width}} " + " ".join(_cell(s["stderr_cluster"][k][i], 11) for k in ("CR1", "CR3")))
    if "stderr_hc" in s:
        kinds = list(s["stderr_hc"])
        lines += ["", f"{'robust std err':<{width}} " + " ".join(f"{k:>11}" for k in kinds), rule]
        for i, name in enumerate(s["names"]):
            lines.append(f"{name:<{width}} " + " ".join(_cell(s["stderr_hc"][k][i], 11) for k in kinds))
    return "\n".join(lines)


def _strict(value: Any) -> Any:
    """JSON has no NaN or infinity: NaN (undefined) becomes null, ±inf the strings "Infinity"/"-Infinity"."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def to_json(statistics: dict[str, dict[str, Any]]) -> str:
    """Strict JSON (any parser reads it): per target name, the table's dict."""
    return json.dumps(_strict(statistics), indent=1, allow_nan=False)


def constant_in(s: dict[str, Any]) -> bool:
    """Whether a target's statistics are about a model with a constant (statsmodels' ``k_constant``): an intercept,
    or a constant in the columns' span. R², adjusted R² and F are then centred; it is what ``df_model`` leaves out
    of the ``rank`` (the statistics keep the issue's key set, so it is read from these two)."""
    return s["rank"] - s["df_model"] == 1
