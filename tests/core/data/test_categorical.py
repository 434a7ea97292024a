"""Categorical columns (issue #23): levels, dummy names, the one-line refusals, the encoding in the checkpoint, and
predict.py encoding new rows with it (refusing an unseen level)."""

import numpy as np
import pytest
import torch

from lr_lightning.core.cli import fit_main
from lr_lightning.core.data.categories import Categories, find_levels, merge_levels, parse_formula
from lr_lightning.core.data.csv_file import CSVDataModule
from lr_lightning.core.predict import predict_main

from ...conftest import one_error_line, run_main

HOUSES = """size,age,region,price
1.0,3,south,10.5
2.0,1,north,14.0
1.5,7,east,9.0
3.0,2,north,18.5
2.5,4,south,14.0
1.2,9,east,7.5
"""


@pytest.fixture
def houses(tmp_path):
    path = tmp_path / "houses.csv"
    path.write_text(HOUSES)
    return path


def test_levels_are_sorted_as_patsy_sorts_them_first_is_reference():
    assert find_levels(np.array(["b", "a", "B", "b"], dtype=object), "g") == ["B", "a", "b"]
    assert find_levels(np.array([10, 2, 1, 2]), "g") == [1, 2, 10]  # numeric, not "1" < "10" < "2"
    assert merge_levels(["b", "c"], ["a", "b"]) == ["a", "b", "c"]
    c = Categories(["g"], {"g": [1, 2, 10]})
    assert c.names == ["g[T.2]", "g[T.10]"]
    assert c.encode({"g": np.array([1, 10, 2])}).tolist() == [[0, 0], [0, 1], [1, 0]]


def test_text_columns_become_dummies_in_place_named_as_statsmodels_names_them(houses):
    dm = CSVDataModule(houses, val_fraction=0, dtype="float64")
    assert dm.feature_names == ["size", "age", "region[T.north]", "region[T.south]"]
    assert dm.x[:3].tolist() == [[1.0, 3.0, 0.0, 1.0], [2.0, 1.0, 1.0, 0.0], [1.5, 7.0, 0.0, 0.0]]
    assert dm.hparams["categories"] == {"inputs": ["size", "age", "region"],
                                        "levels": {"region": ["east", "north", "south"]},
                                        "terms": {"region": "region"}}


def test_integer_column_is_categorical_only_when_named(houses):
    assert CSVDataModule(houses, val_fraction=0).feature_names[1] == "age"
    dm = CSVDataModule(houses, categorical=["age", "region"], val_fraction=0)
    assert dm.feature_names[1:6] == ["age[T.2]", "age[T.3]", "age[T.4]", "age[T.7]", "age[T.9]"]
    assert dm.hparams["categories"]["levels"]["age"] == [1, 2, 3, 4, 7, 9]
    # Naming one column does not turn the text column numeric: it is found as well.
    assert CSVDataModule(houses, categorical=["age"], val_fraction=0).feature_names[-2:] == \
        ["region[T.north]", "region[T.south]"]


def test_formula_picks_target_inputs_and_c_terms(houses):
    dm = CSVDataModule(houses, formula="price ~ size + C(region)", val_fraction=0)
    assert dm.feature_names == ["size", "C(region)[T.north]", "C(region)[T.south]"]
    assert dm.target_names == ["price"]
    assert parse_formula("y ~ a + b - 1") == ("y", ["a", "b"], {}, False)
    assert CSVDataModule(houses, formula="price ~ size + age + 0", val_fraction=0).bias is False


@pytest.mark.parametrize(("formula", "words"), [
    ("price ~ np.log(size)", "np.log(size)"),
    ("price ~ size:age", "size:age"),
    ("price ~ C(region, Treatment('north'))", "not supported"),
    ("price ~ size + C(region) - 1", "no intercept"),
    ("price + age ~ size", "one target"),
    ("price size", "expected"),
])
def test_unsupported_formulas_are_refused_in_one_line(houses, formula, words):
    with pytest.raises(ValueError, match="formula") as e:
        CSVDataModule(houses, formula=formula, val_fraction=0)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_empty_level_is_refused_naming_file_row_and_column(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("size,region,price\n1,north,2\n2,,3\n3,south,4\n")
    with pytest.raises(ValueError, match=r"gap.csv: data row 2 .*column 'region': empty") as e:
        CSVDataModule(path, categorical=["region"], val_fraction=0)
    assert "\n" not in str(e.value)


def test_a_numeric_column_with_a_bad_cell_keeps_its_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("size,price\n1,2\n,3\n3,4\n")
    with pytest.raises(ValueError, match=r"line 3, column 'size': '' is not a number"):
        CSVDataModule(path, val_fraction=0)
    # A stray word among numbers ('n/a', '?') is a bad cell, not a category column of every value seen.
    rows = "".join(f"{i},{2 * i if i != 7 else 'n/a'},{3 * i}\n" for i in range(20))
    path.write_text("a,b,y\n" + rows)
    with pytest.raises(ValueError, match=r"line 9, column 'b': 'n/a' is not a number"):
        CSVDataModule(path, val_fraction=0)


def test_unknown_or_target_categorical_column_is_refused(houses):
    with pytest.raises(ValueError, match="no column 'town'"):
        CSVDataModule(houses, categorical=["town"], val_fraction=0)
    with pytest.raises(ValueError, match="'price' is not an input"):
        CSVDataModule(houses, categorical=["price"], val_fraction=0)


def test_unseen_level_is_one_line_naming_row_column_and_level():
    c = Categories(["size", "region"], {"region": ["east", "north"]})
    with pytest.raises(ValueError, match=r"new.csv: row 2, column 'region': level 'west' was not seen") as e:
        c.encode({"size": np.array([1.0, 2.0]), "region": np.array(["east", "west"], dtype=object)},
                 where=lambda r: f"new.csv: row {r + 1}")
    assert "\n" not in str(e.value)


def test_spec_from_a_file_is_checked():
    assert Categories.from_spec(Categories(["a", "g"], {"g": ["x", "y"]}).spec).names == ["a", "g[T.y]"]
    with pytest.raises(ValueError, match="categories: expected"):
        Categories.from_spec({"inputs": ["g"], "levels": {"g": ["x", "x"]}})


def test_sgd_trains_on_the_dummies_and_the_checkpoint_carries_the_levels(houses, tmp_path):
    dm = CSVDataModule(houses, val_fraction=0, dtype="float64", standardize=True, batch_size=6)
    result = run_main(fit_main, "--data", str(houses), "--data.val_fraction", "0", "--data.standardize", "true",
                      "--data.batch_size", "6", "--max_epochs", "300", "--optimizer.lr", "0.1",
                      "--log_dir", "logs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ckpt = next(tmp_path.rglob("last.ckpt"))
    saved = torch.load(ckpt, weights_only=True)["datamodule_hyper_parameters"]
    assert saved["categories"]["levels"] == {"region": ["east", "north", "south"]}
    assert saved["feature_names"] == dm.feature_names
    new = tmp_path / "new.csv"
    new.write_text("region,size,age\nnorth,2.0,1\nsouth,1.0,3\n")  # by name, any order
    out = run_main(predict_main, "--ckpt", str(ckpt), "--csv", str(new), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "size,age,region[T.north],region[T.south],predicted_price"
    assert lines[1].startswith("2.0,1.0,1.0,0.0,") and lines[2].startswith("1.0,3.0,0.0,1.0,")
    # SGD on the dummies fits the training rows: the two rows' targets were 14.0 and 10.5.
    assert abs(float(lines[1].split(",")[-1]) - 14.0) < 1.5 and abs(float(lines[2].split(",")[-1]) - 10.5) < 1.5
    by_x = run_main(predict_main, "--ckpt", str(ckpt), "--x", "2.0", "1", "north", "1.0", "3", "south", cwd=tmp_path)
    assert by_x.stdout == out.stdout
    new.write_text("size,age,region\n2.0,1,west\n")
    one_error_line(run_main(predict_main, "--ckpt", str(ckpt), "--csv", str(new), cwd=tmp_path),
                   "new.csv", "data row 1", "'region'", "'west'", "not seen")
    one_error_line(run_main(predict_main, "--ckpt", str(ckpt), "--x", "2.0", "1", "west", cwd=tmp_path),
                   "--x row 1", "'region'", "'west'")
    one_error_line(run_main(predict_main, "--ckpt", str(ckpt), "--x", "2.0", "1", cwd=tmp_path), "rows of 3 inputs")
    one_error_line(run_main(predict_main, "--ckpt", str(ckpt), "--csv", str(new), "--no_header", "true", cwd=tmp_path),
                   "--no_header", "header row")



def test_parquet_text_columns_are_categorical_and_a_null_is_one_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lr_lightning.core.data.parquet import ParquetDataModule

    table = pa.table({"size": [1.0, 2.0, 3.0, 4.0], "g": pa.array([3, 1, 2, 1], pa.int32()),
                      "region": pa.array(["b", "a", "c", "a"]).dictionary_encode(), "price": [1.0, 2.0, 3.0, 4.0]})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=2)
    dm = ParquetDataModule(tmp_path / "d.parquet", categorical=["g"], val_fraction=0, dtype="float64")
    assert dm.feature_names == ["size", "g[T.2]", "g[T.3]", "region[T.b]", "region[T.c]"]
    x = np.concatenate([b[0].numpy() for b in dm.loader("predict")])
    assert x.tolist() == [[1, 0, 1, 1, 0], [2, 0, 0, 0, 0], [3, 1, 0, 0, 1], [4, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="'region' holds"):
        ParquetDataModule(tmp_path / "d.parquet", categorical=[], val_fraction=0)
    pq.write_table(table.set_column(2, "region", pa.array(["b", "a", None, "a"])), tmp_path / "n.parquet",
                   row_group_size=2)
    with pytest.raises(ValueError, match=r"n.parquet: row 3 \(1-based\), column 'region': empty") as e:
        ParquetDataModule(tmp_path / "n.parquet", val_fraction=0)
    assert "\n" not in str(e.value)


def test_cluster_columns_are_never_inputs_nor_categorical_and_both_is_one_line(houses, tmp_path):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from lr_lightning.core.data.parquet import ParquetDataModule

    pq.write_table(pacsv.read_csv(houses), tmp_path / "houses.parquet", row_group_size=4)
    for source, kw in ((CSVDataModule, {}), (ParquetDataModule, {}), (ParquetDataModule, {"in_memory": True})):
        path = houses if source is CSVDataModule else tmp_path / "houses.parquet"
        # A text cluster column is not found categorical; a numeric one leaves the encoding's inputs too.
        dm = source(path, clusters="region", val_fraction=0, **kw)
        assert dm.feature_names == ["size", "age"] and dm.categories is None
        dm = source(path, clusters="age", val_fraction=0, **kw)
        assert dm.feature_names == ["size", "region[T.north]", "region[T.south]"]
        assert dm.hparams["categories"]["inputs"] == ["size", "region"]
        with pytest.raises(ValueError, match="'region' is a cluster column .* and also categorical") as e:
            source(path, categorical=["region"], clusters=["age", "region"], val_fraction=0, **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="weights='region' is a categorical column"):
        ParquetDataModule(tmp_path / "houses.parquet", weights="region", val_fraction=0)


def test_fit_py_refuses_an_unsupported_formula_in_one_line(houses, tmp_path):
    result = run_main(fit_main, "--data", str(houses), "--data.formula", "price ~ np.log(size)", cwd=tmp_path)
    one_error_line(result, "--data", "np.log(size)", "not supported")
