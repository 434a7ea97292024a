"""``ParquetDataModule``: a ``.parquet`` file or a directory of them, streamed row group by row group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lr_lightning.core.data.categories import formula_columns
from lr_lightning.core.data.datamodule import RegressionDataModule, column_names, load
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
        categorical: integer columns to treat as categories; text (string) columns are categories without being
            named (``[]``: none is, and a text column is refused). Each becomes treatment-coded dummies,
            ``region[T.north]``; the levels are found in one pass over every file's row groups.
        formula: ``"price ~ size + C(region)"``, as :class:`~lr_lightning.core.data.csv_file.CSVDataModule`'s:
            only its columns are read (and the weight and cluster columns, beside them).
        **kwargs: the other arguments of :class:`~lr_lightning.core.data.datamodule.RegressionDataModule`
            (dtype: default float64 for float64 columns, else float32; names: default the file's).
    """

    def __init__(self, path: str | Path, target: str | None = None, in_memory: bool = False,
                 categorical: list[str] | None = None, formula: str | None = None, **kwargs: Any) -> None:
        if not isinstance(in_memory, bool):
            raise ValueError(f"in_memory must be true or false, got {in_memory!r}")
        if categorical is not None and not (isinstance(categorical, (list, tuple))
                                            and all(isinstance(c, str) for c in categorical)):
            raise ValueError(f"categorical must be a list of column names, got {categorical!r}")
        # Cluster id columns (text allowed) are never features nor categorical: side columns, read beside x and y.
        clusters = kwargs.get("clusters")
        ids = [clusters] if isinstance(clusters, str) else [c for c in clusters if isinstance(c, str)] \
            if isinstance(clusters, (list, tuple)) and len(clusters) <= 2 else []
        inputs = terms = None
        if formula is not None:
            target, inputs, terms, categorical = formula_columns(formula, target, categorical, kwargs)
            # The weight and cluster columns are columns of the files beside the formula's: read as more inputs,
            # then taken out of the features (take_side), as without a formula.
            inputs += [c for c in dict.fromkeys([*ids, *column_names(kwargs.get("weights"))]) if c != target]
        table = ParquetTable(path, target, None if categorical is None else list(categorical),
                             ids=list(dict.fromkeys(ids)), inputs=inputs, terms=terms)
        if in_memory:  # the ids are read aside (load's text_ids), numbers or text
            for name in dict.fromkeys(ids):
                table.take_side(name, "clusters")
        super().__init__(load(table) if in_memory else table, None, **kwargs)  # a table holds its targets
        self._source_hparams(path=path, target=target, in_memory=in_memory,
                             **({"categorical": list(categorical)} if categorical is not None else {}),
                             **({"formula": formula} if formula is not None else {}))
        self.categories = table.categories
        if self.categories is not None:
            if self.weights_column in self.categories.inputs:  # a weight column is no input: the encoding leaves
                self.categories.inputs.remove(self.weights_column)  # it out (a streamed table's take_side did)
            # The encoding travels in the checkpoint (datamodule_hyper_parameters): predict.py encodes new rows so.
            self.save_hyperparameters({**self.hparams, "categories": self.categories.spec})
