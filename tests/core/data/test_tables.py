"""The table abstraction and the datamodule family: Parquet tables, each subclass from a YAML config, the hand-off to
the module, and the CSV reader on pyarrow."""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lr_lightning import (
    CSVDataModule,
    LinearRegression,
    NpyDataModule,
    ParquetDataModule,
    RegressionDataModule,
    RegressionModule,
    SyntheticDataModule,
    TutorialDataModule,
    datamodule_for_path,
)
from lr_lightning.core.data.csv_table import CsvTable, read_csv_table
from lr_lightning.core.data.loaders import BlockBatches
from lr_lightning.core.data.tables import ArrayTable, NpyTable, ParquetTable, Table
from tests.conftest import make_trainer, sgd


def _data(n=1000, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k))
    return np.column_stack([x, x @ np.arange(1.0, k + 1) + 0.5 + 0.01 * rng.standard_normal(n)]).astype(np.float32)


def _parquet(path, data, row_groups, names=None):
    """``data`` as a Parquet file whose row groups have the sizes ``row_groups``."""
    names = names or [f"x{j}" for j in range(data.shape[1] - 1)] + ["y"]
    with pq.ParquetWriter(path, pa.schema([(n, pa.from_numpy_dtype(data.dtype)) for n in names])) as writer:
        start = 0
        for size in row_groups:
            part = data[start:start + size]
            writer.write_table(pa.table({n: part[:, j] for j, n in enumerate(names)}), row_group_size=size)
            start += size
    assert start == len(data)
    return path


# ----------------------------------------------------------------------------------------------- Parquet table
def test_parquet_row_groups_are_the_blocks_and_rows_read_across_them(tmp_path):
    data = _data(250)
    table = ParquetTable(_parquet(tmp_path / "d.parquet", data, [100, 30, 120]))
    assert isinstance(table, Table) and table.streamed and table.dtype == np.float32
    assert table.blocks(1 << 16) == [(0, 100), (100, 130), (130, 250)]
    assert (table.n_rows, table.feature_names, table.target_names) == (250, ["x0", "x1", "x2"], ["y"])
    rows = np.array([249, 0, 99, 100, 131])  # three row groups, in this order
    x, y = table.read(rows)
    np.testing.assert_array_equal(x, data[rows, :3])
    np.testing.assert_array_equal(y, data[rows, 3:])
    np.testing.assert_array_equal(table.read_range(100, 130)[0], data[100:130, :3])
    assert len(table._cache) == 1  # one decoded row group held at a time
    table.release(0, 250)
    assert not table._cache


def test_parquet_directory_target_by_name_and_where(tmp_path):
    data = _data(90)
    (tmp_path / "parts").mkdir()
    _parquet(tmp_path / "parts/a.parquet", data[:40], [40], ["u", "v", "w", "t"])
    _parquet(tmp_path / "parts/b.pq", data[40:], [25, 25], ["u", "v", "w", "t"])
    table = ParquetTable(tmp_path / "parts", target="v")
    assert table.feature_names == ["u", "w", "t"] and table.target_names == ["v"] and table.n_rows == 90
    np.testing.assert_array_equal(table.read(np.array([45]))[1], data[[45], 1:2])
    assert table.where(45).endswith("b.pq: row 6 (1-based)")
    with pytest.raises(ValueError, match=r"parts: no target column 'z'; the columns are u, v, w, t"):
        ParquetTable(tmp_path / "parts", target="z")


def test_parquet_non_finite_value_is_named_by_file_row_and_column(tmp_path):
    data = _data(300)
    data[217, 2] = np.nan
    path = _parquet(tmp_path / "d.parquet", data, [100, 100, 100])
    with pytest.raises(ValueError) as e:
        ParquetDataModule(path, val_fraction=0.0).setup()
    assert str(e.value) == f"{path}: row 218 (1-based), column 'x2': non-finite value nan"
    with pytest.raises(ValueError, match=r"d\.parquet: row 218 \(1-based\), column 'x2': non-finite value nan"):
        ParquetDataModule(path, in_memory=True)


@pytest.mark.parametrize(("column", "words"), [
    (pa.array(["a", "b", "c"]), "column 'name' holds string values, not numbers"),
    (pa.array([True, False, True]), "column 'name' holds bool values, not numbers"),
])
def test_parquet_non_numeric_column_is_one_line(tmp_path, column, words):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"name": column, "x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]}), path)
    with pytest.raises(ValueError) as e:
        ParquetTable(path, categorical=[])  # categorical=[]: a text column is no category column (issue #23)
    assert str(e.value).startswith(f"{path}: {words}") and "\n" not in str(e.value)


def test_not_a_parquet_file_is_one_line(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"d\.parquet: not a Parquet file") as e:
        ParquetTable(path)
    assert "\n" not in str(e.value)


def _train(dm, epochs=2):
    torch.manual_seed(0)
    module = RegressionModule(LinearRegression(dm.n_features), optimizer=sgd(0.05), **dm.module_inputs())
    make_trainer(max_epochs=epochs).fit(module, datamodule=dm)
    return module.model.linear


def test_parquet_training_equals_npy_training_on_the_same_rows(tmp_path):
    data = _data(1000)
    np.save(tmp_path / "d.npy", data)
    _parquet(tmp_path / "d.parquet", data, [100] * 10)
    settings = {"batch_size": 32, "val_fraction": 0.2, "seed": 1, "standardize": True}
    npy = NpyDataModule(tmp_path / "d.npy", block_rows=100, **settings)
    parquet = ParquetDataModule(tmp_path / "d.parquet", **settings)
    npy.setup()
    parquet.setup()
    assert npy.ranges == parquet.ranges  # the same blocks dealt to the same splits
    assert npy.feature_map.spec == parquet.feature_map.spec
    for (xa, ya), (xb, yb) in zip(npy.train_dataloader(), parquet.train_dataloader(), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    a, b = _train(npy), _train(parquet)
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.bias, b.bias, rtol=0, atol=1e-6)


@pytest.mark.parametrize("world", [2, 3])
def test_parquet_ranks_read_each_training_row_once_over_uneven_row_groups(tmp_path, world):
    data = _data(517)
    data[:, 0] = np.arange(517)  # row ids
    table = ParquetTable(_parquet(tmp_path / "d.parquet", data, [200, 17, 150, 1, 149]))
    loaders = [BlockBatches(table, table.blocks(1 << 16), 8, shuffle=True, rank=r, world_size=world)
               for r in range(world)]
    batches = [list(loader) for loader in loaders]
    assert len({len(b) for b in batches}) == 1  # the same number of steps on every rank
    served = torch.cat([x for rank in batches for x, _ in rank])
    assert sorted(served[:, 0].tolist()) == list(range(517))  # every row once, none twice


def test_streamed_data_refuses_raw_split_and_polynomials_in_one_line(tmp_path):
    np.save(tmp_path / "d.npy", _data(100))
    dm = NpyDataModule(tmp_path / "d.npy")
    with pytest.raises(ValueError, match=r"d\.npy: raw_split needs the data in memory; build the datamodule with "
                                         "in_memory=True"):
        dm.raw_split("train")
    with pytest.raises(ValueError, match=r"d\.npy: polynomial_degree needs the data in memory"):
        NpyDataModule(tmp_path / "d.npy", polynomial_degree=2)
    x, y = NpyDataModule(tmp_path / "d.npy", in_memory=True, val_fraction=0.0).raw_split("train")
    assert x.shape == (100, 3) and y.shape == (100, 1)


# -------------------------------------------------------------------------------------------- the family
def test_datamodule_for_path_picks_the_class_by_suffix(tmp_path):
    (tmp_path / "npys").mkdir()
    np.save(tmp_path / "npys/a.npy", _data(10))
    (tmp_path / "pqs").mkdir()
    _parquet(tmp_path / "pqs/a.parquet", _data(10), [10])
    (tmp_path / "empty").mkdir()
    (tmp_path / "d.txt").write_text("")
    assert datamodule_for_path("a.csv") is CSVDataModule and datamodule_for_path("a.NPY") is NpyDataModule
    assert datamodule_for_path("a.parquet") is datamodule_for_path("a.pq") is ParquetDataModule
    assert datamodule_for_path(tmp_path / "npys") is NpyDataModule
    assert datamodule_for_path(tmp_path / "pqs") is ParquetDataModule
    with pytest.raises(ValueError, match="empty: no .npy or .parquet files in this directory"):
        datamodule_for_path(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"d\.txt: unknown data format '\.txt'"):
        datamodule_for_path(tmp_path / "d.txt")
    with pytest.raises(FileNotFoundError, match="nope: no such file"):
        datamodule_for_path(tmp_path / "nope")


def _from_yaml(cls, init_args):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=RegressionDataModule)
    config = parser.parse_object({"data": {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": init_args}})
    return parser.instantiate(config).data


def test_each_subclass_is_built_from_a_yaml_config(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,price\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(20)))
    np.save(tmp_path / "d.npy", _data(50))
    _parquet(tmp_path / "d.parquet", _data(50), [20, 30], ["a", "b", "c", "price"])
    common = {"batch_size": 8, "val_fraction": 0.2, "seed": 3, "dtype": "float64", "standardize": True}
    cases = [
        (TutorialDataModule, {"dtype": "float64"}),
        (SyntheticDataModule, {"n_samples": 40, "n_features": 2, "true_weight": [1.0, -1.0], **common}),
        (CSVDataModule, {"path": str(tmp_path / "d.csv"), "target": "price", **common}),
        (NpyDataModule, {"path": str(tmp_path / "d.npy"), "target": 0, "block_rows": 10, **common}),
        (ParquetDataModule, {"path": str(tmp_path / "d.parquet"), "target": "a", "in_memory": True, **common}),
    ]
    for cls, init_args in cases:
        dm = _from_yaml(cls, init_args)
        assert type(dm) is cls and dm.dtype == torch.float64 and dm.hparams["dtype"] == "float64"
        dm.setup("fit")
        x, y = next(iter(dm.train_dataloader()))
        assert x.dtype == torch.float64 and x.shape[1] == dm.n_features and y.shape[1] == 1
    assert _from_yaml(CSVDataModule, {"path": str(tmp_path / "d.csv")}).target_names == ["price"]
    assert _from_yaml(NpyDataModule, {"path": str(tmp_path / "d.npy"), "target": 0}).target_names == ["x0"]
    synthetic = _from_yaml(SyntheticDataModule, {"n_features": 2, "true_weight": [1.0, -1.0]})
    assert synthetic.true_weight.tolist() == [[1.0, -1.0]]


def test_help_lists_every_argument_with_its_docstring():
    from jsonargparse import ArgumentParser

    for cls in (TutorialDataModule, SyntheticDataModule, CSVDataModule, NpyDataModule, ParquetDataModule):
        sub = ArgumentParser()
        sub.add_class_arguments(cls, "data")
        help_text = sub.format_help()
        for name in ("batch_size", "val_fraction", "test_fraction", "shuffle", "seed", "standardize",
                     "polynomial_degree", "bias", "drop_last", "dtype", "feature_names", "target_names"):
            assert f"--data.{name}" in help_text, (cls.__name__, name)
        assert "samples per step" in help_text  # the docstring's Args became the help


def test_tutorial_data_trains_y_equals_w_x_and_fit_emits_no_warning(tmp_path):
    from lr_lightning.core.quiet import quiet_lightning

    validated = []

    class Module(RegressionModule):
        def validation_step(self, batch, batch_idx):
            validated.append(batch_idx)  # a sanity check would call it too

    dm = TutorialDataModule()
    assert (dm.bias, dm.batch_size, dm.n_val, dm.val_dataloader()) == (False, 4, 0, [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning there is, except what quiet_lightning turns off
        quiet_lightning()
        trainer = L.Trainer(max_epochs=2, accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False,
                            enable_checkpointing=False)  # a logger: the logging-interval warning would show
        trainer.fit(Module(LinearRegression(1, bias=False)), datamodule=dm)
    assert [str(w.message) for w in caught] == []
    assert validated == [] and "train/loss" in trainer.callback_metrics


def test_module_inputs_hand_the_fitted_feature_map_to_the_module():
    dm = SyntheticDataModule(n_samples=100, n_features=2, standardize=True, dtype="float64")
    inputs = dm.module_inputs()
    assert inputs == {"normalization": dm.feature_map.spec, "output_names": ["y"], "weights_dtype": "float64"}
    train_x = dm.raw_split("train")[0]
    assert inputs["normalization"]["feature_mean"] == pytest.approx(train_x.mean(0).tolist())  # training rows only
    assert TutorialDataModule().module_inputs() == {"normalization": None, "output_names": ["y"],
                                                    "weights_dtype": "float32"}


def test_tables_behind_each_datamodule(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,2\n3,4\n5,6\n")
    assert isinstance(CSVDataModule(tmp_path / "d.csv", val_fraction=0.0).table, CsvTable)
    assert isinstance(RegressionDataModule(np.zeros(5), np.zeros(5), val_fraction=0.0).table, ArrayTable)
    np.save(tmp_path / "d.npy", _data(20))
    assert isinstance(NpyDataModule(tmp_path / "d.npy").table, NpyTable)
    assert isinstance(NpyDataModule(tmp_path / "d.npy", in_memory=True).table, ArrayTable)


# ------------------------------------------------------------------------------------------- CSV on pyarrow
@pytest.mark.parametrize(("content", "words"), [
    ("a,y\n1,2\n\n# a comment\n3,x\n", "line 5, column 'y': 'x' is not a number"),
    ("a,y\r\n1,2\r\n3,4,5\r\n", "line 3 has 3 values, the header has 2 columns"),
    ("a,y\n1,2\nnan,4\n", "line 3, column 'a': 'nan' is not a finite number; remove or fill the row"),
    ("a,y\n1,2\n-Infinity,4\n", "line 3, column 'a': '-Infinity' is not a finite number; remove or fill the row"),
    ("a,y\n1,2\n3,\n", "line 3, column 'y': '' is not a number"),
    ("a,y\n1,\"2\n3\"\n", "line 3, column 'y': '2\\n3' is not a number"),  # a record's last line, as before
    ("a,y\n1,1_000\n", "line 2, column 'y': '1_000' is not a number"),
])
def test_csv_errors_through_pyarrow_are_one_line_with_the_files_line_numbers(tmp_path, content, words):
    path = tmp_path / "d.csv"
    path.write_text(content, newline="")
    with pytest.raises(ValueError) as e:
        read_csv_table(path)
    assert str(e.value) == f"{path}: {words}"


def test_csv_rows_of_empty_cells_and_spaces_are_skipped_as_before(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a , y\n 1 , 2 \n,,\n   \n\t3,\t4\n")
    assert read_csv_table(path) == (["a", "y"], pytest.approx(np.array([[1.0, 2.0], [3.0, 4.0]])))


def test_pyarrow_reads_a_large_csv_the_same_as_the_line_by_line_reader(tmp_path):
    from lr_lightning.core.data.csv_table import _read_line_by_line

    rng = np.random.default_rng(0)
    data = rng.standard_normal((5000, 4)) * 10.0 ** rng.integers(-30, 30, (5000, 4))
    path = tmp_path / "d.csv"
    rows = "".join(",".join(repr(float(v)) for v in row) + "\n" for row in data)
    path.write_text("# made by a test\na,b,c,y\n" + rows)
    names, fast = read_csv_table(path)
    assert names == ["a", "b", "c", "y"] and fast.tobytes() == data.tobytes()  # every bit
    assert _read_line_by_line(path, None, True, np.inf)[1].tobytes() == data.tobytes()


# ----------------------------------------------------------------------------- one way to say where a value is
def test_the_same_bad_value_is_placed_the_same_way_in_every_format(tmp_path):
    """Data row 3 (header excluded) holds a NaN: the CSV says its line (4), the others row 3, counted from 1, and say
    so. (They said line 4, row 2 and row 2: a user could not tell which.)"""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lr_lightning.core.data import CSVDataModule, NpyDataModule, ParquetDataModule, RegressionDataModule

    data = np.arange(20.0).reshape(10, 2)
    data[2, 0] = np.nan
    (tmp_path / "d.csv").write_text("a,y\n" + "".join(f"{a},{y}\n" for a, y in data))
    np.save(tmp_path / "d.npy", data)
    pq.write_table(pa.table({"a": data[:, 0], "y": data[:, 1]}), tmp_path / "d.parquet")
    expected = {
        "csv": "d.csv: line 4, column 'a': 'nan' is not a finite number",
        "npy": "d.npy: row 3 (1-based), column 'x0' (column 1 of the file): non-finite value nan",
        "parquet": "d.parquet: row 3 (1-based), column 'a': non-finite value nan",
        "array": "x: non-finite value nan at row 3 (1-based)",
    }
    build = {"csv": lambda: CSVDataModule(tmp_path / "d.csv"), "npy": lambda: NpyDataModule(tmp_path / "d.npy"),
             "parquet": lambda: ParquetDataModule(tmp_path / "d.parquet"),
             "array": lambda: RegressionDataModule(data[:, :1], data[:, 1])}
    for kind, make in build.items():
        with pytest.raises(ValueError) as e:
            make().setup()
        assert expected[kind] in str(e.value), (kind, str(e.value))
