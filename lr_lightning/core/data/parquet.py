"""``ParquetDataModule``: a ``.parquet`` file or a directory of them, streamed row group by row group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lr_lightning.core.data.datamodule import RegressionDataModule, load
from lr_lightning.core.data.tables import ParquetTable


class ParquetDataModule(RegressionDataModule):
    """A ``.parquet`` file or a directory of them (the same numeric columns in each), streamed row group by row
    group like ``.npy`` shards (:class:`~lr_lightning.core.data.tables.ParquetTable`), so it may be far larger than
    memory; or read into memory with ``in_memory``. Float64 columns are served as float64, anything else as float32,
    unless ``dtype`` says.

    Streamed, each row group is a block: the split deals out row groups, and an epoch visits them in a fresh order,
    shuffling the rows within each. Write row groups of about a million rows or fewer (``make_data.py --format
    parquet`` does): memory holds one decoded row group at a time.

    Args:
        path: a .parquet file, or a directory of .parquet files.
        target: the name of the target column (default: the last one).
        in_memory: read the whole table into memory instead of streaming it (needed by polynomial_degree).
        **kwargs: the other arguments of :class:`~lr_lightning.core.data.datamodule.RegressionDataModule`
            (dtype: default float64 for float64 columns, else float32; names: default the file's).
    """

    def __init__(self, path: str | Path, target: str | None = None, in_memory: bool = False, **kwargs: Any) -> None:
        if not isinstance(in_memory, bool):
            raise ValueError(f"in_memory must be true or false, got {in_memory!r}")
        clusters = kwargs.get("clusters")
        names = [clusters] if isinstance(clusters, str) else list(clusters) if isinstance(clusters, list) else []
        table = ParquetTable(path, target, text=[c for c in names if isinstance(c, str)])  # text ids allowed
        if in_memory:  # text id columns are read aside (load's text_ids), not as numbers
            for name in (c for c in names if c in table.text_columns):
                table.take_side(name, "clusters")
        super().__init__(load(table) if in_memory else table, None, **kwargs)  # a table holds its targets
        self._source_hparams(path=path, target=target, in_memory=in_memory)
