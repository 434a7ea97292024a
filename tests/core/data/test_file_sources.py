"""Parquet and .npy sources name the file, row and column of what they cannot read."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lr_lightning import NpyDataModule, ParquetDataModule


def test_a_parquet_integer_beyond_2_53_is_refused_naming_file_row_and_column(tmp_path):
    big = 2**53 + 1  # float64 rounds it to 2**53
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": np.array([1, 2, 3, big, 5], np.int64), "y": np.arange(5.0)}), path,
                   row_group_size=2)
    dm = ParquetDataModule(path, val_fraction=0.0)
    with pytest.raises(ValueError, match=rf"d\.parquet: row 4 \(1-based\), column 'id': integer {big} is beyond"):
        dm.setup("fit")


def test_parquet_integers_up_to_2_53_are_read_exactly(tmp_path):
    path = tmp_path / "d.parquet"
    ids = np.array([2**53, -(2**53), 7], np.int64)
    pq.write_table(pa.table({"id": ids, "y": np.arange(3.0)}), path)
    x, _ = ParquetDataModule(path, val_fraction=0.0, in_memory=True).table.read_range(0, 3)
    assert x[:, 0].astype(np.int64).tolist() == ids.tolist()


def test_an_unpaired_npy_shard_is_named(tmp_path):
    for name in ("x-000", "y-000", "x-001"):
        np.save(tmp_path / f"{name}.npy", np.ones((4, 2 if name[0] == "x" else 1)))
    with pytest.raises(ValueError, match=r"x-001\.npy has no y-001\.npy; x\*\.npy and y\*\.npy files must come in "):
        NpyDataModule(tmp_path)
    (tmp_path / "x-001.npy").unlink()
    np.save(tmp_path / "y-002.npy", np.ones((4, 1)))
    with pytest.raises(ValueError, match=r"y-002\.npy has no x-002\.npy"):
        NpyDataModule(tmp_path)
