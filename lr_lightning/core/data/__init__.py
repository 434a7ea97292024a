"""Data: ``RegressionDataModule`` and one module per source, over one table abstraction (``tables``), served by
``loaders``; ``DatasetDataModule`` for data that is not a table.

- :mod:`~lr_lightning.core.data.datamodule`: ``RegressionDataModule``, the base (splits, feature map, loaders).
- one module per source: :mod:`~lr_lightning.core.data.tutorial`, :mod:`~lr_lightning.core.data.synthetic`,
  :mod:`~lr_lightning.core.data.csv_file`, :mod:`~lr_lightning.core.data.npy`, :mod:`~lr_lightning.core.data.parquet`;
  :mod:`~lr_lightning.core.data.paths`: ``datamodule_for_path``.
- :mod:`~lr_lightning.core.data.dataset`: ``DatasetDataModule``, over any ``torch.utils.data.Dataset``.
- :mod:`~lr_lightning.core.data.tables`: ``Table`` and its implementations (arrays, ``.npy``, Parquet);
  :mod:`~lr_lightning.core.data.csv_table`: the CSV reader ``read_csv_table`` and ``CsvTable``.
- :mod:`~lr_lightning.core.data.loaders`: the per-epoch order of rows and the batches, on one process or many.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lr_lightning.core.lazy import lazy_exports

# Imported on first use: `predict.py --onnx` reads a CSV through `csv_table` (numpy and pyarrow only), and importing
# this package must not load torch for it, as importing the datamodules and `loaders` would.
_EXPORTS = {
    # Through the family module: the command line's short names (--data CSVDataModule) are the loaded subclasses.
    "RegressionDataModule": "lr_lightning.core.data.datamodules",
    "TutorialDataModule": "lr_lightning.core.data.tutorial",
    "SyntheticDataModule": "lr_lightning.core.data.synthetic",
    "CSVDataModule": "lr_lightning.core.data.csv_file",
    "NpyDataModule": "lr_lightning.core.data.npy",
    "ParquetDataModule": "lr_lightning.core.data.parquet",
    "datamodule_for_path": "lr_lightning.core.data.paths",
    "DatasetDataModule": "lr_lightning.core.data.dataset",
    **dict.fromkeys(["BlockBatches", "BlockOrder", "EpochOrder", "TensorBatches", "rank_slices"],
                    "lr_lightning.core.data.loaders"),
    **dict.fromkeys(["ArrayTable", "NpyTable", "ParquetTable", "Table"], "lr_lightning.core.data.tables"),
    **dict.fromkeys(["CsvTable", "MissingHeaderError", "read_csv_table"], "lr_lightning.core.data.csv_table"),
}
__all__ = ["ArrayTable", "BlockBatches", "BlockOrder", "CSVDataModule", "CsvTable", "DatasetDataModule", "EpochOrder",
           "MissingHeaderError", "NpyDataModule", "NpyTable", "ParquetDataModule", "ParquetTable",
           "RegressionDataModule", "SyntheticDataModule", "Table", "TensorBatches", "TutorialDataModule",
           "datamodule_for_path", "rank_slices", "read_csv_table"]

if TYPE_CHECKING:
    from lr_lightning.core.data.csv_file import CSVDataModule
    from lr_lightning.core.data.csv_table import CsvTable, MissingHeaderError, read_csv_table
    from lr_lightning.core.data.datamodule import RegressionDataModule
    from lr_lightning.core.data.dataset import DatasetDataModule
    from lr_lightning.core.data.loaders import BlockBatches, BlockOrder, EpochOrder, TensorBatches, rank_slices
    from lr_lightning.core.data.npy import NpyDataModule
    from lr_lightning.core.data.parquet import ParquetDataModule
    from lr_lightning.core.data.paths import datamodule_for_path
    from lr_lightning.core.data.synthetic import SyntheticDataModule
    from lr_lightning.core.data.tables import ArrayTable, NpyTable, ParquetTable, Table
    from lr_lightning.core.data.tutorial import TutorialDataModule


__getattr__ = lazy_exports(__name__, _EXPORTS)
