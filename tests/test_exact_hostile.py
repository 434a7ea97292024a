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


# ------------------------------------------------------------------------------------------ inputs
@pytest.mark.filterwarnings("error")  # a read-only pandas array shared with torch would warn
def test_least_squares_takes_pandas_names_and_refuses_masked_values():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"size": rng.normal(size=30), "age": rng.normal(size=30)})
    price = pd.Series(1 + frame["size"] - frame["age"] + 0.1 * rng.normal(size=30), name="price")
    fit = least_squares(frame, price)
    assert list(fit.statistics) == ["price"] and fit.statistics["price"]["names"] == ["intercept", "size", "age"]
    assert least_squares(frame, price, names=["a", "b"]).statistics["price"]["names"][1:] == ["a", "b"]  # given wins
    two = least_squares(frame, pd.DataFrame({"p": price, "q": -price}))
    assert list(two.statistics) == ["p", "q"]
    assert list(least_squares(frame.to_numpy(), price.to_numpy()).statistics) == ["y"]  # no names: the default

    x = np.ma.masked_array(frame.to_numpy(), mask=np.zeros((30, 2), bool))
    unmasked = least_squares(x, price.to_numpy())  # nothing masked: the values are the data
    np.testing.assert_array_equal(unmasked.weight, fit.weight)
    x.mask[4, 1] = True
    with pytest.raises(ValueError, match=r"^x: a masked array with masked values, which would be used as if they "
                                         r"were data; drop those rows or fill them first$"):
        least_squares(x, price.to_numpy())
    with pytest.raises(ValueError, match=r"^y: a masked array with masked values"):
        least_squares(frame.to_numpy(), np.ma.masked_invalid(np.where(np.arange(30) == 2, np.nan, 1.0)))


def test_the_data_module_refuses_masked_values_and_takes_an_unmasked_masked_array():
    from lr_lightning import RegressionDataModule

    x = np.ma.masked_array(np.arange(10.0), mask=np.arange(10) == 3)
    with pytest.raises(ValueError, match=r"^x: a masked array with masked values"):
        RegressionDataModule(x, np.arange(10.0))
    x.mask[:] = False
    assert RegressionDataModule(x, np.arange(10.0)).x[:, 0].tolist() == list(range(10))
