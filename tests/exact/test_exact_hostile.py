"""What a hostile tester found in the exact solver's statistics and inputs, each pinned by a test: a constant among
the columns of a model without an intercept (statsmodels' ``k_constant``), ``least_squares``' pandas and masked
inputs, and the exact module served float32 rounding of data that holds more digits."""

import numpy as np
import pytest

from lr_lightning.exact.data import raw_dtype, raw_split
from lr_lightning.exact.solver import least_squares
from lr_lightning.exact.statistics import constant_in, format_table

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
    assert constant_in(s) == bool(ref.k_constant) == (columns != "none")
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
    assert not constant_in(s) and sm.OLS(y, design).fit().k_constant == 0
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


# ------------------------------------------------------------------------------------------ float64 stays float64
def _offset_data(n: int = 200, seed: int = 12) -> tuple[np.ndarray, np.ndarray]:
    # An offset: float32 keeps ~3 of u's digits at 1000 + u, so a fit of the float32 rounding is visibly off (1e-4).
    rng = np.random.default_rng(seed)
    x = 1000 + rng.normal(size=(n, 2))
    y = 0.25 + x @ [1.5, -2.0] + 0.01 * rng.normal(size=n)
    return x, y


def _exact(dm, **kwargs):
    from lr_lightning import LeastSquaresModule

    from ..conftest import make_trainer

    module = LeastSquaresModule(bias=dm.bias, **kwargs)
    make_trainer(max_epochs=20).fit(module, datamodule=dm)
    return module


def _served_dtypes(module) -> set:
    return {t.dtype for batch in module.trainer.datamodule.train_dataloader() for t in batch}


def test_the_exact_module_is_served_a_csv_s_float64_numbers_not_their_float32_rounding(tmp_path):
    import torch

    from lr_lightning import CSVDataModule

    x, y = _offset_data()
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n" + "\n".join(f"{a!r},{b!r},{c!r}" for (a, b), c in zip(x.tolist(), y.tolist(),
                                                                                     strict=True)))
    dm = CSVDataModule(path, val_fraction=0.1)  # float32 for training, as documented; a split: rows gathered
    assert dm.dtype == torch.float32 and raw_dtype(dm) == torch.float64
    module = _exact(dm, robust=True)
    assert _served_dtypes(module) == {torch.float64}
    # The training rows as served are the file's very numbers: each is found, exactly, among x's rows.
    served = raw_split(dm, "train")[0].numpy()
    train = np.array([np.flatnonzero((x == row).all(axis=1))[0] for row in served])
    assert len(train) == dm.n_train == 180
    ref = sm.OLS(y[train], sm.add_constant(x[train])).fit()
    s = module.statistics["y"]
    np.testing.assert_allclose(s["coef"], ref.params, rtol=1e-9)  # float32 rounding: 1e-4 off
    np.testing.assert_allclose(s["stderr"], ref.bse, rtol=1e-7)
    np.testing.assert_allclose(s["stderr_hc"]["HC3"], ref.HC3_se, rtol=1e-7)
    # Prediction, like the fit, from the file's numbers, every row in file order.
    with torch.no_grad():
        predicted = torch.cat([module(batch[0]) for batch in dm.predict_dataloader()]).numpy()[:, 0]
    np.testing.assert_allclose(predicted, ref.predict(sm.add_constant(x)), rtol=1e-11)  # float32 inputs: 1e-7
    # Training on the same data module is still served float32 (a Trainer's fit runs setup first).
    dm.trainer = None
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))[0].dtype == torch.float32


@pytest.mark.parametrize("source", ["parquet", "list", "array"])
def test_float64_data_served_as_float32_for_training_reaches_the_exact_module_in_float64(tmp_path, source):
    import torch

    from lr_lightning import ParquetDataModule, RegressionDataModule

    x, y = _offset_data()
    if source == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "y": y}), tmp_path / "d.parquet", row_group_size=64)
        dm = ParquetDataModule(tmp_path / "d.parquet", dtype="float32", val_fraction=0, batch_size=50)  # streamed
    elif source == "list":
        dm = RegressionDataModule(x.tolist(), y.tolist(), val_fraction=0)  # Python floats: float32 by default
    else:
        dm = RegressionDataModule(x, y, val_fraction=0, dtype="float32")
    assert dm.dtype == torch.float32
    module = _exact(dm)
    assert _served_dtypes(module) == {torch.float64}
    np.testing.assert_allclose(module.statistics["y"]["coef"], sm.OLS(y, sm.add_constant(x)).fit().params, rtol=1e-9)
    if source == "array":
        # One copy of the data: the table is the caller's float64 array itself, and the exact fit made no float32
        # copy (training makes it when it needs it).
        assert np.shares_memory(dm.table.x, x) and dm._rows is None
        assert dm.x.dtype == torch.float32 and dm.x.numpy().tolist() == x.astype(np.float32).tolist()


def test_float32_data_is_served_as_float32_and_solved_in_float64(tmp_path):
    import torch

    from lr_lightning import NpyDataModule

    x, y = _offset_data()
    data = np.column_stack([x, y]).astype(np.float32)
    np.save(tmp_path / "d.npy", data)
    dm = NpyDataModule(tmp_path / "d.npy", val_fraction=0, batch_size=64)
    module = _exact(dm)
    assert raw_dtype(dm) == torch.float32 and _served_dtypes(module) == {torch.float32}  # no copy: widened where used
    wide = data.astype(np.float64)  # exact: the float32 values themselves
    np.testing.assert_allclose(module.coefficients()[0], least_squares(wide[:, :2], wide[:, 2]).weight,
                               rtol=1e-12)  # measured: 1e-15
    (table,) = module.statistics.values()  # one target, named after its column of the .npy
    np.testing.assert_allclose(table["coef"], sm.OLS(wide[:, 2], sm.add_constant(wide[:, :2])).fit().params, rtol=1e-8)


def test_a_column_constant_only_in_float32_is_no_constant_column_to_the_exact_module(tmp_path):
    from lr_lightning import CSVDataModule, LeastSquaresModule

    k = np.arange(40) % 7
    x = 1 + 1e-9 * k  # all 1.0 in float32
    y = 3e9 * (x - 1) + 0.5 * np.sin(np.arange(40))
    (tmp_path / "d.csv").write_text("x,y\n" + "\n".join(f"{a!r},{b!r}" for a, b in zip(x.tolist(), y.tolist(),
                                                                                       strict=True)))
    # The command line's check, with no Trainer attached yet: it was "every column ... is constant".
    LeastSquaresModule().check_data(CSVDataModule(tmp_path / "d.csv", val_fraction=0))
    module = _exact(CSVDataModule(tmp_path / "d.csv", val_fraction=0))
    assert module.statistics["y"]["coef"] == pytest.approx(sm.OLS(y, sm.add_constant(x)).fit().params, rel=1e-6)


def test_a_float64_value_beyond_float32_is_refused_when_served_as_float32():
    from lr_lightning import RegressionDataModule

    with pytest.raises(ValueError, match=r"^x: 1e\+39 at row 2 \(1-based\) is beyond ±3\.40282e\+38, the range of "
                                         r"float32; pass dtype='float64'$"):
        RegressionDataModule(np.array([1.0, 1e39, 2.0]), np.zeros(3), val_fraction=0, dtype="float32")
    assert RegressionDataModule(np.array([1.0, 1e39, 2.0]), np.zeros(3), val_fraction=0).dtype.is_floating_point
