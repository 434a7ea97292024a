"""One column, one role (issue #23): a weight or cluster column that is also the target, a category column, a term
of the formula or the other side column is refused in one line naming the argument, the column and the real reason
(the refusals said "no weights column"); the target on both sides of a formula too; and missing cluster ids (None,
NaN, empty text, a Parquet null) are refused naming their row instead of a TypeError or one more cluster."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lr_lightning.core.cli import fit_main
from lr_lightning.core.data.csv_file import CSVDataModule
from lr_lightning.core.data.datamodule import RegressionDataModule
from lr_lightning.core.data.parquet import ParquetDataModule

from ...conftest import one_error_line, run_main


def _frame(n=12):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=n).round(3), "region": rng.choice(["n", "s"], n),
                          "w": rng.uniform(0.5, 2, n).round(3), "g": rng.integers(0, 3, n)})
    frame["y"] = (1 + 2 * frame["a"] + rng.normal(size=n)).round(3)
    return frame


@pytest.fixture
def files(tmp_path):
    frame = _frame()
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    return tmp_path


def _refused(make, *words):
    with pytest.raises(ValueError) as e:
        make()
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in words), message


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
@pytest.mark.parametrize(("kwargs", "words"), [
    ({"weights": "y"}, ("weights='y' is the target column",)),
    ({"clusters": "y"}, ("'y' is the target", "clusters=")),
    ({"weights": "w", "clusters": "w"}, ("'w' is both the weights (weights=) and a cluster column (clusters=)",)),
    ({"weights": "g", "categorical": ["g"]}, ("weights='g' is a categorical column",)),
    ({"weights": "region"}, ("weights='region' is a categorical column",)),  # a text column: categorical
    ({"clusters": ["g", "g"]}, ("clusters=['g', 'g']", "two different ones")),
])
def test_a_column_in_two_roles_is_refused_naming_both(files, suffix, kwargs, words):
    source = CSVDataModule if suffix == "csv" else ParquetDataModule
    _refused(lambda: source(files / f"d.{suffix}", val_fraction=0, **kwargs), *words)


def test_formula_roles(files):
    path = files / "d.csv"
    _refused(lambda: CSVDataModule(path, formula="y ~ a + y"),
             "formula 'y ~ a + y': the target 'y' is also on the right-hand side")
    _refused(lambda: CSVDataModule(path, formula="y ~ a + C(y)"), "the target 'y' is also on the right-hand side")
    # A term that is the weight column was dropped silently from the features.
    _refused(lambda: CSVDataModule(path, formula="y ~ a + w", weights="w"),
             "column 'w' is an input of the formula and the weights (weights=)")
    _refused(lambda: CSVDataModule(path, formula="y ~ a + g", clusters="g"),
             "column 'g' is an input of the formula and a cluster column (clusters=)")
    _refused(lambda: CSVDataModule(path, formula="y ~ a", weights="y"), "weights='y' is the target column")
    _refused(lambda: CSVDataModule(path, formula="y ~ a", weights="zz"),
             "no weights column 'zz'; the columns are a, region, w, g, y")
    for source in (CSVDataModule, lambda *a, **k: ParquetDataModule(*a, in_memory=True, **k)):
        dm = source(path, formula="y ~ a + C(region)", weights="w", clusters="g", val_fraction=0)
        assert dm.feature_names == ["a", "C(region)[T.s]"] and dm.weights_column == "w"
        assert dm.clusters.shape == (12, 1) and dm.hparams["formula"] == "y ~ a + C(region)"
        np.testing.assert_allclose(dm.weights.ravel(), _frame()["w"])
        path = files / "d.parquet"
    _refused(lambda: ParquetDataModule(path, formula="y ~ a + y"), "the target 'y' is also on the right-hand side")
    _refused(lambda: ParquetDataModule(path, formula="y ~ a + w", weights="w"), "'w' is an input of the formula")
    _refused(lambda: ParquetDataModule(path, formula="y ~ a", weights="y"), "weights='y' is the target column")


def test_arrays_name_the_target_role():
    x, y = np.zeros((4, 2)), np.arange(4.0)
    _refused(lambda: RegressionDataModule(x, y, weights="y"), "weights='y' is the target column")
    _refused(lambda: RegressionDataModule(x, y, clusters="y"), "clusters='y' is the target column")


@pytest.mark.parametrize(("ids", "words"), [
    (np.array(["a", None, "b", "a"], dtype=object), "row 2 (1-based) has no cluster id (None)"),
    (pd.Series(["a", "b", None, "a"]), "row 3 (1-based) has no cluster id"),
    (pd.Series(["a", "b", "a", pd.NA], dtype=object), "row 4 (1-based) has no cluster id"),
    (np.array(["a", "b", " ", "a"]), "row 3 (1-based) has no cluster id (' ')"),
    (np.array([1.0, 2.0, np.nan, 1.0]), "row 3 (1-based) has cluster id [nan]; ids must be finite"),
    (np.array([1, "a", 2, 1], dtype=object), "row 2 (1-based) has cluster id 'a' but row 1 has 1"),
    (np.array([1, 2, (3,), 1], dtype=object), "row 3 (1-based) has cluster id (3,)"),
])
def test_missing_or_mixed_cluster_ids_are_refused_naming_the_row(ids, words):
    _refused(lambda: RegressionDataModule(np.zeros((4, 1)), np.zeros(4), clusters=ids), "clusters", words)


def test_text_and_number_ids_in_objects_still_cluster():
    dm = RegressionDataModule(np.zeros((4, 1)), np.zeros(4), clusters=pd.Series(["b", "a", "b", "c"]),
                              val_fraction=0)
    assert dm.clusters.ravel().tolist() == [1, 0, 1, 2]
    dm = RegressionDataModule(np.zeros((4, 1)), np.zeros(4), clusters=np.array([7, 3, 7, 2.0], dtype=object),
                              val_fraction=0)
    assert dm.clusters.ravel().tolist() == [2, 1, 2, 0]


@pytest.mark.parametrize("in_memory", [False, True])
def test_a_null_text_cluster_id_in_parquet_is_refused_naming_its_row(tmp_path, in_memory):
    frame = _frame()
    frame.loc[5, "region"] = None  # was read as the id "None": one more cluster
    frame.to_parquet(tmp_path / "d.parquet")
    dm = lambda: ParquetDataModule(tmp_path / "d.parquet", clusters="region", in_memory=in_memory,  # noqa: E731
                                   val_fraction=0)
    _refused(lambda: dm().setup("fit"), "d.parquet: row 6 (1-based), column 'region': empty (null) cluster id")


@pytest.mark.skipif(not (Path(__file__).parents[3] / "lr_lightning" / "exact").is_dir(),
                    reason="fit.py --solver exact comes with lr_lightning/exact (deleted in this copy)")
@pytest.mark.parametrize(("argv", "words"), [
    (["--data.weights", "y"], ("--data", "weights='y' is the target column")),
    (["--data.weights", "w", "--data.clusters", "w"], ("'w' is both the weights",)),
    (["--data.formula", "y ~ a + y"], ("the target 'y' is also on the right-hand side",)),
    (["--data.formula", "y ~ a + w", "--data.weights", "w"], ("'w' is an input of the formula and the weights",)),
])
def test_fit_py_refuses_a_column_in_two_roles_in_one_line(files, argv, words):
    result = run_main(fit_main, "--data", "d.csv", *argv, "--solver", "exact", "--log_dir", "logs", cwd=files)
    one_error_line(result, *words)
    assert not (files / "logs").exists()  # nothing written
