"""RegressionDataModule and its family: dtypes, splits, shuffling, batches, the CSV and NPY readers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lr_lightning import (
    CSVDataModule,
    LinearRegression,
    RegressionDataModule,
    RegressionModule,
    SyntheticDataModule,
    TutorialDataModule,
    datamodule_for_path,
)
from lr_lightning.core.data.csv_table import MissingHeaderError, read_csv, read_csv_table
from lr_lightning.core.data.inputs import as_columns
from lr_lightning.core.data.loaders import EpochOrder, TensorBatches
from tests.conftest import make_trainer


def test_float32_and_other_inputs_keep_float32():
    assert RegressionDataModule(np.zeros(4, np.float32), np.zeros(4, np.float32), val_fraction=0).x.dtype == \
        torch.float32
    assert RegressionDataModule([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], val_fraction=0).x.dtype == torch.float32
    assert RegressionDataModule(np.zeros(4), np.zeros(4), val_fraction=0, dtype=torch.float32).x.dtype == \
        torch.float32
    assert SyntheticDataModule(n_samples=10).x.dtype == torch.float32


def _all(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_one_dimensional_inputs_become_float32_columns():
    dm = RegressionDataModule(np.arange(10), np.arange(10) * 2, val_fraction=0.0)  # integers: torch's default float
    assert dm.x.shape == (10, 1) and dm.y.shape == (10, 1)
    assert dm.x.dtype == dm.y.dtype == torch.float32
    assert (dm.n_features, dm.n_outputs, dm.n_samples) == (1, 1, 10)


def test_float64_on_request():
    dm = RegressionDataModule(np.arange(10), np.arange(10), dtype=torch.float64, val_fraction=0.0)
    assert dm.x.dtype == dm.y.dtype == torch.float64
    assert dm.hparams["dtype"] == "float64"


def test_split_is_deterministic_disjoint_and_complete():
    x = torch.arange(100.0)

    def split(seed):
        dm = RegressionDataModule(x, x, val_fraction=0.2, test_fraction=0.1, seed=seed)
        dm.setup("fit")
        return {k: set(v[0].flatten().tolist()) for k, v in dm.splits.items()}

    a, b, c = split(0), split(0), split(1)
    assert a == b and a != c
    assert [len(a[k]) for k in ("train", "val", "test")] == [70, 20, 10]
    assert a["train"] | a["val"] | a["test"] == set(x.tolist())
    assert not (a["train"] & a["val"]) and not (a["train"] & a["test"]) and not (a["val"] & a["test"])


def test_rows_stay_paired_through_split_and_shuffle():
    x = torch.arange(50.0)
    dm = RegressionDataModule(x, 3 * x + 1, batch_size=7, val_fraction=0.2)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.predict_dataloader()):
        xb, yb = _all(loader)
        torch.testing.assert_close(yb, 3 * xb + 1)


def test_each_sample_once_per_epoch_new_order_each_epoch_same_for_same_seed():
    x = torch.arange(103.0)
    loader = TensorBatches(x[:, None], x[:, None], batch_size=10, shuffle=True, seed=5)
    orders = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        xb, _ = _all(loader)
        assert sorted(xb.flatten().tolist()) == x.tolist()  # every sample exactly once
        orders.append(xb.flatten().tolist())
    assert orders[0] != orders[1] != orders[2]
    again = TensorBatches(x[:, None], x[:, None], batch_size=10, shuffle=True, seed=5)
    again.sampler.set_epoch(1)
    assert _all(again)[0].flatten().tolist() == orders[1]


class RecordInputs(torch.nn.Module):
    """A linear model that remembers the inputs of every forward pass."""

    seen: list[list[float]] = []

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)

    def forward(self, x):
        self.seen.append(x.flatten().tolist())
        return self.linear(x)


def test_lightning_sets_the_epoch_so_each_epoch_is_shuffled_anew():

    RecordInputs.seen = []
    dm = RegressionDataModule(torch.arange(16.0), torch.arange(16.0), batch_size=16, val_fraction=0.0)
    make_trainer(max_epochs=3).fit(RegressionModule(RecordInputs()), datamodule=dm)
    seen = RecordInputs.seen
    assert len(seen) == 3 and len({tuple(s) for s in seen}) == 3
    sampler = EpochOrder(16, shuffle=True, seed=0)
    sampler.set_epoch(2)
    assert seen[2] == dm.splits["train"][0][list(sampler)].flatten().tolist()


def test_partial_last_batch_and_drop_last():
    x = torch.arange(10.0)[:, None]
    sizes = [len(b[0]) for b in TensorBatches(x, x, batch_size=4)]
    assert sizes == [4, 4, 2]
    sizes = [len(b[0]) for b in TensorBatches(x, x, batch_size=4, drop_last=True)]
    assert sizes == [4, 4] and len(TensorBatches(x, x, batch_size=4, drop_last=True)) == 2


def test_val_and_test_are_not_shuffled():
    x = torch.arange(40.0)
    dm = RegressionDataModule(x, x, batch_size=4, val_fraction=0.25, test_fraction=0.25)
    dm.setup("fit")
    for name, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            torch.testing.assert_close(_all(loader)[0], dm.splits[name][0])


def test_batch_size_at_least_n_is_full_batch():
    dm = RegressionDataModule(torch.arange(10.0), torch.arange(10.0), batch_size=100, val_fraction=0.0)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and batches[0][0].shape == (10, 1)


def test_no_validation_split_means_no_validation_loop():

    dm = TutorialDataModule()
    assert dm.val_dataloader() == []
    trainer = make_trainer(max_epochs=1)
    trainer.fit(RegressionModule(LinearRegression(1, bias=False)), datamodule=dm)
    assert not any(k.startswith("val/") for k in trainer.callback_metrics)
    assert "train/loss" in trainer.callback_metrics


def test_tutorial_data():
    dm = TutorialDataModule()
    assert dm.x.flatten().tolist() == [1, 2, 3, 4] and dm.y.flatten().tolist() == [2, 4, 6, 8]
    assert (dm.n_train, dm.n_val, dm.batch_size) == (4, 0, 4)


def test_synthetic_exposes_true_weights_that_generate_y():
    dm = SyntheticDataModule(n_samples=200, n_features=3, noise=0.0, seed=3)
    assert dm.true_weight.shape == (1, 3) and dm.true_bias.shape == (1,)
    expected = dm.x.double() @ dm.true_weight.T + dm.true_bias
    torch.testing.assert_close(dm.y.double(), expected, atol=1e-5, rtol=1e-5)  # y is float32; measured: 3.3e-7 off
    other = SyntheticDataModule(n_samples=200, n_features=3, seed=4)
    assert not torch.equal(other.true_weight, dm.true_weight)


def test_csv_default_and_named_target(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,price\n1,2,3\n4,5,6\n\n")
    x, y, features, target = read_csv(path)
    assert features == ["a", "b"] and target == "price" and x.tolist() == [[1, 2], [4, 5]] and y.tolist() == [3, 6]
    dm = CSVDataModule(path, target="a", val_fraction=0.0)
    assert dm.feature_names == ["b", "price"] and dm.target_names == ["a"] and dm.y.flatten().tolist() == [1, 4]


def test_npy_last_column_is_target(tmp_path):
    data = np.column_stack([np.arange(10.0), np.arange(10.0) * 2, np.arange(10.0) * 3])
    np.save(tmp_path / "d.npy", data)
    dm = datamodule_for_path(tmp_path / "d.npy")(tmp_path / "d.npy", in_memory=True, val_fraction=0.0)
    assert dm.n_features == 2 and dm.y.flatten().tolist() == (np.arange(10.0) * 3).tolist()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", "the file is empty"),
        ("a,b\n", "only a header row"),
        ("a,b\n1,2\n3,x\n", "line 3, column 'b': 'x' is not a number"),
        ("a,b\n1,2\n3\n", "line 3 has 1 values, the header has 2 columns"),
        ("y\n1\n2\n", "only one column"),
    ],
)
def test_csv_errors_name_file_row_and_column(tmp_path, content, words):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match="bad.csv") as e:
        CSVDataModule(path)
    assert words in str(e.value)


def test_missing_file_and_unknown_target(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv: no such file"):
        datamodule_for_path(tmp_path / "nope.csv")(tmp_path / "nope.csv")
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no target column 'c'; the columns are a, b"):
        CSVDataModule(tmp_path / "d.csv", target="c")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"x": np.zeros((5, 2, 2)), "y": np.zeros(5)}, "expected a 1-D or 2-D array"),
        ({"x": np.zeros(5), "y": np.zeros(4)}, "x has 5 samples but y has 4"),
        ({"x": [0, 1, float("nan")], "y": [0, 1, 2]}, "non-finite value nan at row 3 (1-based)"),
        ({"x": np.zeros(10), "y": np.zeros(10), "batch_size": 0}, "batch_size must be a positive integer"),
        ({"x": np.zeros(10), "y": np.zeros(10), "val_fraction": 1.0}, "val_fraction must be in [0, 1)"),
        ({"x": np.zeros(10), "y": np.zeros(10), "val_fraction": 0.5, "test_fraction": 0.5}, "leave no training"),
        ({"x": np.zeros(4), "y": np.zeros(4), "val_fraction": 0.2}, "need at least 2"),
    ],
)
def test_bad_arrays_and_settings_raise_value_error(kwargs, words):
    with pytest.raises(ValueError) as e:
        RegressionDataModule(**kwargs)
    assert words in str(e.value)


def test_as_columns_never_leaves_a_1d_target():
    assert as_columns(torch.arange(3.0), "y").shape == (3, 1)
    assert as_columns(np.ones((3, 2)), "y").shape == (3, 2)


# ------------------------------------------------------------------------ CSV format: what is skipped, what refused
def _write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_csv_bom_blank_lines_and_comments_are_not_data(tmp_path):
    text = "\ufeff\n  \n# measured 2024-05-01\n  # by hand\na , price\n1,2\n\n# a pause\n3,6\n"
    x, y, features, target = read_csv(_write(tmp_path, text))
    assert features == ["a"] and target == "price"  # no BOM, no spaces in the names
    assert x.tolist() == [[1.0], [3.0]] and y.tolist() == [2.0, 6.0]
    dm = CSVDataModule(_write(tmp_path, "\ufeffa,b,y\n1,2,3\n4,5,6\n"), val_fraction=0.0)
    assert dm.feature_names == ["a", "b"] and dm.x.tolist() == [[1, 2], [4, 5]]


def test_csv_row_numbers_stay_the_files_line_numbers(tmp_path):
    # line 1 blank, 2 a comment, 3 the header, 4 data, 5 a comment, 6 the bad cell
    with pytest.raises(ValueError, match=r"d\.csv: line 6, column 'y': 'x' is not a number"):
        read_csv(_write(tmp_path, "\n# c\na,y\n1,2\n# c\n3,x\n"))
    with pytest.raises(ValueError, match=r"d\.csv: line 5 has 1 values, the header has 2 columns"):
        read_csv(_write(tmp_path, "# c\na,y\n\n1,2\n3\n"))


@pytest.mark.parametrize(("content", "words"), [
    ("a,,y\n1,2,3\n", "d.csv: column 2 has no name in the header row (line 1)"),
    ("\na, ,y\n1,2,3\n", "d.csv: column 2 has no name in the header row (line 2)"),
    ("a,b,\n1,2,3\n", "d.csv: column 3 has no name in the header row (line 1)"),
    ("a,y, a\n1,2,3\n", "d.csv: column 3 repeats the name 'a' of column 1; column names must be unique"),
    ("1,2\n3,4\n", "d.csv: no header row: the first row (line 1) is data; add a header row naming the columns"),
    ("# only\n\n# comments\n", "d.csv: no header row: the file holds only blank or comment lines"),
    ("a,y\n1,1e400\n", "d.csv: line 2, column 'y': '1e400' is not a finite number; remove or fill the row"),
])
def test_csv_format_problems_are_one_clear_error(tmp_path, content, words):
    with pytest.raises(ValueError) as e:
        CSVDataModule(_write(tmp_path, content))
    assert str(e.value).endswith(words) and "\n" not in str(e.value)


def test_a_headerless_csv_is_refused_with_its_own_error_class(tmp_path):
    with pytest.raises(MissingHeaderError):
        read_csv_table(_write(tmp_path, "1,2\n3,4\n"))
    # A header with some numeric names is still a header.
    assert read_csv_table(_write(tmp_path, "2024,y\n1,2\n"))[0] == ["2024", "y"]


def test_csv_selected_columns_by_name_others_unread(tmp_path):
    path = _write(tmp_path, "id,b,a,note\nr1,2,1,fine\nr2,4,3,\n")
    names, data = read_csv_table(path, ["a", "b"])
    assert names == ["a", "b"] and data.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match=r"d\.csv: no column 'c'; the columns are id, b, a, note"):
        read_csv_table(path, ["a", "c"])
    with pytest.raises(ValueError, match=r"d\.csv: line 2, column 'b': 'x' is not a number"):
        read_csv_table(_write(tmp_path, "a,b\n1,x\n"), ["b", "a"])


def test_csv_without_header_takes_the_given_names_in_order(tmp_path):
    names, data = read_csv_table(_write(tmp_path, "# no header\n1,2\n3,4\n"), ["a", "b"], header=False)
    assert names == ["a", "b"] and data.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match=r"d\.csv: line 1 has 3 values, expected 2 \(a, b, in this order\)"):
        read_csv_table(_write(tmp_path, "1,2,3\n"), ["a", "b"], header=False)


def test_csv_values_beyond_a_dtypes_range_are_refused_when_asked(tmp_path):
    path = _write(tmp_path, "a\n1e39\n")
    assert read_csv_table(path)[1].tolist() == [[1e39]]  # float64 holds it
    limit = float(torch.finfo(torch.float32).max)
    with pytest.raises(ValueError, match=r"d\.csv: line 2, column 'a': '1e39' is beyond ±3\.40282e\+38"):
        read_csv_table(path, max_abs=limit)


def test_a_read_only_array_is_taken_without_a_warning_and_left_as_it_was():
    # pandas' values under copy-on-write and memory-mapped files are read-only: torch warns on sharing them.
    x = np.arange(10.0).reshape(5, 2)
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dm = RegressionDataModule(x, np.arange(5.0), val_fraction=0)
    assert dm.x.dtype == torch.float64 and dm.x.tolist() == x.tolist() and not x.flags.writeable


def test_a_datamodule_of_strings_says_which_value_is_not_a_number():
    import pandas as pd

    from lr_lightning import RegressionDataModule

    x = pd.DataFrame({"size": ["1", "2", "lots"], "age": ["3", "4", "5"]})
    with pytest.raises(ValueError, match=r"^x: expected an array of real numbers; row 3 \(1-based\), column 'size': "
                                         r"'lots' is not a number$"):
        RegressionDataModule(x, [1.0, 2.0, 3.0], val_fraction=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-3, 40), min_size=1, max_size=60), st.sampled_from(["int64", "int32", "uint8"]))
def test_cluster_codes_are_the_ranks_of_the_distinct_ids(ids, dtype) -> None:
    """Dense ids 0..G-1 are their own codes, a range of few values is ranked by a table, the rest sorted: all give
    np.unique's inverse, as int64."""
    from lr_lightning.core.data.datamodule import cluster_codes

    a = np.array([i % 41 for i in ids] if dtype == "uint8" else ids).astype(dtype)
    for values in (a, a - a.min() if dtype != "uint8" else a, np.array(ids, dtype=np.int64) * 1_000_003):
        codes = cluster_codes(values)
        assert codes.dtype == np.int64
        np.testing.assert_array_equal(codes, np.unique(values, return_inverse=True)[1].reshape(-1))
