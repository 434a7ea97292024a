"""Data: the datamodule family (``datamodules``) over one table abstraction (``tables``), served by ``loaders``.

- :mod:`~lr_lightning.core.data.tables`: ``Table`` and its implementations (arrays, CSV, ``.npy``, Parquet), and the
  CSV reader ``read_csv_table``.
- :mod:`~lr_lightning.core.data.loaders`: the per-epoch order of rows and the batches, on one process or many.
- :mod:`~lr_lightning.core.data.datamodules`: ``RegressionDataModule`` and its subclasses, and
  ``datamodule_for_path``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lr_lightning.core.lazy import lazy_exports

# Imported on first use: `predict.py --onnx` reads a CSV through `tables` (numpy and pyarrow only), and importing this
# package must not load torch for it, as importing `datamodules` and `loaders` would.
_EXPORTS = {
    **dict.fromkeys(["CSVDataModule", "NpyDataModule", "ParquetDataModule", "RegressionDataModule",
                     "SyntheticDataModule", "TutorialDataModule", "datamodule_for_path"],
                    "lr_lightning.core.data.datamodules"),
    **dict.fromkeys(["BlockBatches", "BlockOrder", "EpochOrder", "TensorBatches", "rank_slices"],
                    "lr_lightning.core.data.loaders"),
    **dict.fromkeys(["ArrayTable", "CsvTable", "MissingHeaderError", "NpyTable", "ParquetTable", "Table",
                     "read_csv_table"], "lr_lightning.core.data.tables"),
}
__all__ = ["ArrayTable", "BlockBatches", "BlockOrder", "CSVDataModule", "CsvTable", "EpochOrder", "MissingHeaderError",
           "NpyDataModule", "NpyTable", "ParquetDataModule", "ParquetTable", "RegressionDataModule",
           "SyntheticDataModule", "Table", "TensorBatches", "TutorialDataModule", "datamodule_for_path",
           "rank_slices", "read_csv_table"]

if TYPE_CHECKING:
    from lr_lightning.core.data.datamodules import (
        CSVDataModule,
        NpyDataModule,
        ParquetDataModule,
        RegressionDataModule,
        SyntheticDataModule,
        TutorialDataModule,
        datamodule_for_path,
    )
    from lr_lightning.core.data.loaders import BlockBatches, BlockOrder, EpochOrder, TensorBatches, rank_slices
    from lr_lightning.core.data.tables import (
        ArrayTable,
        CsvTable,
        MissingHeaderError,
        NpyTable,
        ParquetTable,
        Table,
        read_csv_table,
    )


__getattr__ = lazy_exports(__name__, _EXPORTS)
