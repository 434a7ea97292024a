"""``CSVDataModule``: a CSV file with a header row, read into memory by pyarrow.

(Named ``csv_file``, not ``csv``: a module named like the standard library's would shadow it for a script run from
this folder.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lr_lightning.core.data.csv_table import CsvTable
from lr_lightning.core.data.datamodule import RegressionDataModule
from lr_lightning.core.data.inputs import torch_dtype


class CSVDataModule(RegressionDataModule):
    """A CSV file with a header row, read into memory by pyarrow (format:
    :func:`~lr_lightning.core.data.csv_table.read_csv_table`). Parsed as float64, served as float32 unless ``dtype``
    says: a value beyond what that dtype holds is refused with its file, row and column. The float64 numbers are
    kept: :meth:`~lr_lightning.core.data.datamodule.RegressionDataModule.loader` serves them with ``dtype=float64``.

    >>> import tempfile, pathlib
    >>> folder = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
    >>> path = pathlib.Path(folder.name) / "d.csv"
    >>> _ = path.write_text("a,b,price\\n1,2,3\\n4,5,6\\n7,8,9\\n")
    >>> dm = CSVDataModule(path, val_fraction=0.0)
    >>> dm.feature_names, dm.target_names, dm.n_train
    (['a', 'b'], ['price'], 3)
    >>> folder.cleanup()

    Args:
        path: the CSV file.
        target: the name of the target column (default: the last one).
        categorical: columns to treat as categories (text or integers): each becomes treatment-coded dummies,
            ``region[T.north]``, the first level the reference (:mod:`~lr_lightning.core.data.categories`). Text
            columns are categorical without being named; ``[]``: none is.
        formula: ``"price ~ size + age + C(region)"`` (formulaic): the target, the input columns, and ``C()`` for
            categorical ones (named ``C(region)[T.north]``); ``- 1`` fits no intercept (numeric columns only).
            ``weights=`` and ``clusters=`` name columns of the file beside the formula's (as statsmodels'
            ``smf.wls(formula, data, weights=data.w)``); one that is also a term of the formula is refused.
        **kwargs: the other arguments of :class:`~lr_lightning.core.data.datamodule.RegressionDataModule`
            (dtype: default float32; feature_names, target_names: default the header's).
    """

    def __init__(self, path: str | Path, target: str | None = None, categorical: list[str] | None = None,
                 formula: str | None = None, **kwargs: Any) -> None:
        kwargs["dtype"] = torch_dtype(kwargs.get("dtype")) or torch.float32
        if categorical is not None and not (isinstance(categorical, (list, tuple))
                                            and all(isinstance(c, str) for c in categorical)):
            raise ValueError(f"categorical must be a list of column names, got {categorical!r}")
        inputs = terms = None
        if formula is not None:
            from lr_lightning.core.data.categories import formula_columns

            target, inputs, terms, categorical = formula_columns(formula, target, categorical, kwargs)
            # The weight column is a column of the file beside the formula's (statsmodels' smf.wls(formula, data,
            # weights=data.w)): read as one more input, which the datamodule then takes out of the features.
            weights = kwargs.get("weights")
            if isinstance(weights, str) and weights != target:
                if weights not in CsvTable.header(path):
                    raise ValueError(f"{path}: no weights column {weights!r}; the columns are "
                                     f"{', '.join(CsvTable.header(path))}")
                inputs = [*inputs, weights]
        # Cluster id columns are read aside (numbers, or text ids) and are never features nor categorical.
        clusters = kwargs.get("clusters")
        ids = [clusters] if isinstance(clusters, str) else [c for c in clusters if isinstance(c, str)] \
            if isinstance(clusters, (list, tuple)) and len(clusters) <= 2 else []
        table = CsvTable(path, target, dtype=kwargs["dtype"], categorical=categorical, inputs=inputs, terms=terms,
                         ids=ids)
        super().__init__(table, None, **kwargs)  # a table holds its targets
        source = {"path": path, "target": target}
        source |= {"categorical": list(categorical)} if categorical is not None else {}
        source |= {"formula": formula} if formula is not None else {}
        self._source_hparams(**source)
        self.categories = table.categories
        if self.categories is not None:
            if self.weights_column is not None:  # a weight column is no input: the encoding leaves it out
                self.categories.inputs.remove(self.weights_column)
            # The encoding travels in the checkpoint (datamodule_hyper_parameters): predict.py encodes new rows so.
            self.save_hyperparameters({**self.hparams, "categories": self.categories.spec})
