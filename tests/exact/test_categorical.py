"""Categorical columns in the exact fit (issue #23): names and values equal statsmodels' formula fit, in memory and
through fit.py --solver exact on a CSV."""

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from lr_lightning import LeastSquaresModule
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data.csv_file import CSVDataModule

from ..conftest import make_trainer, run_main


def _houses(path, n=200, seed=3):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"size": rng.normal(100, 20, n).round(2), "age": rng.integers(0, 40, n),
                          "region": rng.choice(["north", "east", "south", "west"], n),
                          "rooms": rng.choice([1, 2, 3, 10], n)})
    effect = frame["region"].map({"north": 12.0, "east": 0.0, "south": -5.0, "west": 3.0})
    frame["price"] = (50 + 1.5 * frame["size"] - 0.7 * frame["age"] + effect + 2.0 * frame["rooms"]
                      + rng.normal(0, 8, n) * (1 + (frame["region"] == "west"))).round(3)
    frame.to_csv(path, index=False)
    return frame


def _by_name(stats):
    return {("Intercept" if n == "intercept" else n): i for i, n in enumerate(stats["names"])}


def _assert_equal(stats, reference):
    names = _by_name(stats)
    assert set(names) == set(reference.params.index)
    order = [names[n] for n in reference.params.index]
    for ours, theirs in (("coef", reference.params), ("stderr", reference.bse), ("p", reference.pvalues)):
        np.testing.assert_allclose(np.asarray(stats[ours])[order], theirs.to_numpy(), rtol=1e-8, atol=1e-300)


@pytest.mark.parametrize(("formula", "kwargs"), [
    ("price ~ size + age + C(region)", {"formula": "price ~ size + age + C(region)"}),
    ("price ~ size + age + region", {"categorical": None}),
    ("price ~ size + age + C(region) + C(rooms)", {"formula": "price ~ size + age + C(region) + C(rooms)"}),
])
def test_exact_fit_equals_statsmodels_ols_formula(tmp_path, formula, kwargs):
    frame = _houses(tmp_path / "houses.csv")
    if "formula" not in kwargs:  # the file's columns: rooms is numeric unless named
        frame = frame.drop(columns="rooms")
        frame.to_csv(tmp_path / "houses.csv", index=False)
    dm = CSVDataModule(tmp_path / "houses.csv", val_fraction=0, dtype="float64", **kwargs)
    module = LeastSquaresModule()
    make_trainer(max_epochs=20).fit(module, datamodule=dm)
    reference = smf.ols(formula, frame).fit()
    _assert_equal(module.statistics["price"], reference)


def test_robust_errors_on_dummies_equal_statsmodels_hc(tmp_path):
    frame = _houses(tmp_path / "houses.csv")
    dm = CSVDataModule(tmp_path / "houses.csv", formula="price ~ size + C(region)", val_fraction=0, dtype="float64")
    module = LeastSquaresModule(robust=True)
    make_trainer(max_epochs=20).fit(module, datamodule=dm)
    stats = module.statistics["price"]
    names = _by_name(stats)
    for kind in ("HC0", "HC1", "HC2", "HC3"):
        reference = smf.ols("price ~ size + C(region)", frame).fit(cov_type=kind)
        order = [names[n] for n in reference.params.index]
        np.testing.assert_allclose(np.asarray(stats["stderr_hc"][kind])[order], reference.bse.to_numpy(), rtol=1e-8)


def test_fit_py_solver_exact_on_a_csv_with_a_formula(tmp_path):
    frame = _houses(tmp_path / "houses.csv")
    result = run_main(fit_main, "--data", "houses.csv", "--data.formula", "price ~ size + age + C(region)",
                      "--data.val_fraction", "0", "--solver", "exact", "--log_dir", "logs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "C(region)[T.north]" in result.stdout and "C(region)[T.west]" in result.stdout
    stats = json.loads(next(tmp_path.rglob("statistics.json")).read_text())["price"]
    _assert_equal(stats, smf.ols("price ~ size + age + C(region)", frame).fit())


def test_streamed_parquet_shards_find_every_level_and_equal_statsmodels(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    frame = _houses(tmp_path / "houses.csv").drop(columns="rooms")
    (tmp_path / "shards").mkdir()
    # The first shard lacks "west": the levels come from every shard's row groups, not the first one's.
    first, rest = frame[frame["region"] != "west"].iloc[:60], frame.drop(frame[frame["region"] != "west"].index[:60])
    pq.write_table(pa.Table.from_pandas(first, preserve_index=False), tmp_path / "shards" / "a.parquet",
                   row_group_size=16)
    pq.write_table(pa.Table.from_pandas(rest, preserve_index=False), tmp_path / "shards" / "b.parquet",
                   row_group_size=16)
    from lr_lightning.core.data.parquet import ParquetDataModule

    dm = ParquetDataModule(tmp_path / "shards", val_fraction=0, dtype="float64")
    assert dm.table.streamed and dm.feature_names[2:] == ["region[T.north]", "region[T.south]", "region[T.west]"]
    module = LeastSquaresModule()
    make_trainer(max_epochs=20).fit(module, datamodule=dm)
    _assert_equal(module.statistics["price"], smf.ols("price ~ size + age + region", pd.concat([first, rest])).fit())


def test_csv_text_clusters_beside_a_text_category_equal_statsmodels_cluster_errors(tmp_path):
    """A text cluster column is no feature and no category; the other text column is (found, not named)."""
    frame = _houses(tmp_path / "houses.csv").drop(columns="rooms")
    codes = np.random.default_rng(5).integers(0, 30, len(frame))
    frame.insert(2, "firm", [f"firm {c:02d}" for c in codes])  # text ids, between the inputs
    frame["price"] += np.random.default_rng(6).normal(0, 6, 30)[codes]  # a firm effect: clustering matters
    frame.to_csv(tmp_path / "houses.csv", index=False)
    dm = CSVDataModule(tmp_path / "houses.csv", clusters="firm", val_fraction=0, dtype="float64")
    assert dm.feature_names == ["size", "age", "region[T.north]", "region[T.south]", "region[T.west]"]
    assert dm.hparams["categories"]["inputs"] == ["size", "age", "region"]
    module = LeastSquaresModule(cluster=True)
    make_trainer(max_epochs=20).fit(module, datamodule=dm)
    stats = module.statistics["price"]
    reference = smf.ols("price ~ size + age + C(region)", frame).fit(cov_type="cluster", cov_kwds={"groups": codes},
                                                                     use_t=True)
    names = {n.replace("region[", "C(region)["): i for n, i in _by_name(stats).items()}
    order = [names[n] for n in reference.params.index]
    assert stats["n_clusters"] == 30
    np.testing.assert_allclose(np.asarray(stats["coef"])[order], reference.params.to_numpy(), rtol=1e-8, atol=0)
    np.testing.assert_allclose(np.asarray(stats["stderr_cluster"]["CR1"])[order], reference.bse.to_numpy(),
                               rtol=1e-8, atol=0)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_formula_with_weights_and_clusters_equals_statsmodels(tmp_path, suffix):
    """Weights and clusters are columns of the file beside the formula's (issue #23: the weight column was looked up
    among the formula's inputs): smf.wls(formula, data, weights=data.w), and smf.ols's CR1 by data.firm."""
    frame = _houses(tmp_path / "houses.csv")
    rng = np.random.default_rng(4)
    frame["w"] = rng.uniform(0.2, 3.0, len(frame)).round(3)
    frame["firm"] = rng.choice(["a", "b", "c", "d", "e", "f", "g", "h"], len(frame))
    frame.to_csv(tmp_path / "houses.csv", index=False)
    frame.to_parquet(tmp_path / "houses.parquet", row_group_size=64)  # streamed: 4 row groups
    from lr_lightning.core.data.parquet import ParquetDataModule

    source = CSVDataModule if suffix == "csv" else ParquetDataModule
    formula = "price ~ size + C(region)"
    for kwargs, module, reference, stderr in (
            ({"weights": "w"}, {}, smf.wls(formula, frame, weights=frame["w"]).fit(), "stderr"),
            ({"clusters": "firm"}, {"cluster": True},
             smf.ols(formula, frame).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(frame["firm"])[0]},
                                         use_t=True), "stderr_cluster")):
        dm = source(tmp_path / f"houses.{suffix}", formula=formula, val_fraction=0, dtype="float64", **kwargs)
        assert dm.feature_names == ["size", "C(region)[T.north]", "C(region)[T.south]", "C(region)[T.west]"]
        assert dm.hparams["categories"]["inputs"] == ["size", "region"]  # predict.py needs no weight column
        fitted = LeastSquaresModule(**module)
        make_trainer(max_epochs=20).fit(fitted, datamodule=dm)
        stats = fitted.statistics["price"]
        order = [_by_name(stats)[n] for n in reference.params.index]
        np.testing.assert_allclose(np.asarray(stats["coef"])[order], reference.params.to_numpy(), rtol=1e-8)
        errors = stats[stderr]["CR1"] if stderr == "stderr_cluster" else stats[stderr]
        np.testing.assert_allclose(np.asarray(errors)[order], reference.bse.to_numpy(), rtol=1e-8)


def test_a_category_of_decimals_takes_the_smallest_number_as_reference_as_statsmodels(tmp_path):
    """A CSV column written 9.0, 12.0, 14.0 in C(): levels by value, as patsy sorts pandas' floats (lexicographic
    order made 12.0 the reference and every dummy differ); at predict time 9 is the level 9.0."""
    frame = _houses(tmp_path / "houses.csv")
    frame["educ"] = np.random.default_rng(5).choice([9.0, 12.0, 14.0, 20.0], len(frame))
    frame["price"] += frame["educ"].map({9.0: 0.0, 12.0: 4.0, 14.0: 9.0, 20.0: 1.0})
    frame.to_csv(tmp_path / "houses.csv", index=False)
    formula = "price ~ size + C(educ)"
    dm = CSVDataModule(tmp_path / "houses.csv", val_fraction=0, dtype="float64", formula=formula)
    module = LeastSquaresModule()
    make_trainer(max_epochs=20).fit(module, datamodule=dm)
    reference = smf.ols(formula, pd.read_csv(tmp_path / "houses.csv")).fit()
    assert [n for n in reference.params.index if "educ" in n] == ["C(educ)[T.12.0]", "C(educ)[T.14.0]",
                                                                   "C(educ)[T.20.0]"]
    _assert_equal(module.statistics["price"], reference)
    cats = dm.categories
    encoded = cats.encode({"size": np.array([100.0, 100.0]), "educ": np.array(["9", "9.0"], dtype=object)})
    np.testing.assert_array_equal(encoded[:, 1:], 0.0)  # both the reference level
