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
        **kwargs: the other arguments of :class:`~lr_lightning.core.data.datamodule.RegressionDataModule`
            (dtype: default float32; feature_names, target_names: default the header's).
    """

    def __init__(self, path: str | Path, target: str | None = None, **kwargs: Any) -> None:
        kwargs["dtype"] = torch_dtype(kwargs.get("dtype")) or torch.float32
        clusters = kwargs.get("clusters")
        ids = [clusters] if isinstance(clusters, str) else [c for c in clusters if isinstance(c, str)] \
            if isinstance(clusters, (list, tuple)) and len(clusters) <= 2 else []  # read aside: text ids too
        table = CsvTable(path, target, dtype=kwargs["dtype"], ids=ids)
        super().__init__(table, None, **kwargs)  # a table holds its targets
        self._source_hparams(path=path, target=target)
