"""``datamodule_for_path``: the datamodule class for a data file, by its suffix."""

from __future__ import annotations

from pathlib import Path

from lr_lightning.core.data.csv_file import CSVDataModule
from lr_lightning.core.data.datamodule import RegressionDataModule
from lr_lightning.core.data.npy import NpyDataModule
from lr_lightning.core.data.parquet import ParquetDataModule
from lr_lightning.core.data.tables import PARQUET_SUFFIXES


def datamodule_for_path(path: str | Path) -> type[RegressionDataModule]:
    """The datamodule class for a data file, by its suffix: ``.csv``, ``.npy`` (or a directory of ``.npy`` shards),
    ``.parquet``/``.pq`` (or a directory of them). The command line builds it as ``cls(path, target, ...)``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return CSVDataModule
    if suffix == ".npy":
        return NpyDataModule
    if suffix in PARQUET_SUFFIXES:
        return ParquetDataModule
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
        if suffixes & set(PARQUET_SUFFIXES) and ".npy" not in suffixes:
            return ParquetDataModule
        if ".npy" in suffixes and not suffixes & set(PARQUET_SUFFIXES):
            return NpyDataModule
        what = "both .npy and .parquet files" if ".npy" in suffixes else "no .npy or .parquet files"
        raise ValueError(f"{path}: {what} in this directory; expected a directory of .npy shards or of .parquet files")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    raise ValueError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; expected a .csv, .npy or .parquet "
                     "file, or a directory of .npy or .parquet files")


__all__ = ["datamodule_for_path"]
