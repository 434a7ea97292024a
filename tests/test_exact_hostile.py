"""What a hostile tester found in the exact solver's statistics and inputs, each pinned by a test: a constant among
the columns of a model without an intercept (statsmodels' ``k_constant``), ``least_squares``' pandas and masked
inputs, and the exact module served float32 rounding of data that holds more digits."""

import numpy as np
import pytest

from lr_lightning.exact.solver import least_squares
from lr_lightning.exact.statistics import format_table

sm = pytest.importorskip("statsmodels.api", reason="statsmodels is the reference for the statistics (dev extra)")


# ------------------------------------------------------------------------------------------ the table
@pytest.mark.parametrize("columns", ["ones", "dummies", "none"])
def test_without_an_intercept_a_constant_in_the_columns_is_found_as_statsmodels_finds_it(columns):
    rng = np.random.default_rng(6)
    n = 50
    x = rng.normal(size=n)
    level = rng.integers(0, 2, size=n).astype(float)
    # A column of ones, or dummies of both levels (no column constant, but their sum is): a constant either way.
    extra = {"ones": [np.ones(n)], "dummies": [level, 1 - level], "none": []}[columns]
    design = np.column_stack([x, *extra])
    y = 2 + 0.5 * x + rng.normal(size=n)
    s = least_squares(design, y, bias=False).statistics["y"]
    ref = sm.OLS(y, design).fit()
    assert s["k_constant"] == ref.k_constant == (columns != "none")
    assert (s["df_model"], s["df_resid"]) == (ref.df_model, ref.df_resid)
    for key, theirs in (("r2", ref.rsquared), ("adj_r2", ref.rsquared_adj), ("f_stat", ref.fvalue),
                        ("f_pvalue", ref.f_pvalue), ("aic", ref.aic), ("bic", ref.bic)):
        assert s[key] == pytest.approx(theirs, rel=1e-9), key  # measured: 1e-14
    np.testing.assert_allclose(s["stderr"], ref.bse, rtol=1e-9)
    assert format_table(s).count("R² (uncentred)") == (columns == "none")
    if columns != "none":  # not idle: the uncentred R² (y's mean counted as explained) is far from the centred one
        assert abs(s["r2"] - (1 - ref.ssr / np.sum(y**2))) > 0.1


def test_a_column_near_a_constant_is_no_constant():
    # 1 + 1e-3·noise is nearly constant but varies far beyond its rounding: statsmodels finds no constant, nor do we.
    rng = np.random.default_rng(7)
    n = 40
    design = np.column_stack([rng.normal(size=n), 1 + 1e-3 * rng.normal(size=n)])
    y = design @ [1.0, 2.0] + rng.normal(size=n)
    s = least_squares(design, y, bias=False).statistics["y"]
    assert s["k_constant"] == sm.OLS(y, design).fit().k_constant == 0
    assert s["df_model"] == 2
