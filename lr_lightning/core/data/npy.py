"""``NpyDataModule``: a ``.npy`` file or a directory of ``.npy`` shards, memory-mapped and streamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lr_lightning.core.data.datamodule import BLOCK_ROWS, RegressionDataModule, load
from lr_lightning.core.data.inputs import is_int
from lr_lightning.core.data.tables import NpyTable


class NpyDataModule(RegressionDataModule):
    """A ``.npy`` file or a directory of ``.npy`` shards (layouts: :mod:`lr_lightning.core.data.tables`),
    memory-mapped and read block by block, so it may be far larger than memory; or read into memory with
    ``in_memory`` (then ``polynomial_degree`` is available, and ``raw_split``). A float64 file is served as float64,
    anything else as float32, unless ``dtype`` says.

    Streamed, the split deals out blocks of ``block_rows`` rows and shuffling is block-wise (the blocks in a fresh
    order each epoch, the rows within each block).

    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> folder = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
    >>> path = pathlib.Path(folder.name) / "d.npy"
    >>> np.save(path, np.arange(30, dtype=np.float32).reshape(10, 3))
    >>> dm = NpyDataModule(path, batch_size=4, val_fraction=0.2, block_rows=4)
    >>> dm.setup("fit")
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> x.shape, y.shape, dm.n_train, dm.n_val
    (torch.Size([4, 2]), torch.Size([4, 1]), 8, 2)
    >>> folder.cleanup()

    Args:
        path: a .npy file, or a directory of .npy shards.
        target: the index of the target column in a single array (default: the last one).
        in_memory: read the whole table into memory instead of streaming it (needed by polynomial_degree).
        block_rows: rows per block when streamed.
        **kwargs: the other arguments of :class:`~lr_lightning.core.data.datamodule.RegressionDataModule`
            (dtype: default the file's, float64 or else float32; feature_names: default x0, x1, ...).
    """

    def __init__(self, path: str | Path, target: int | str | None = None, in_memory: bool = False, *,
                 block_rows: int = BLOCK_ROWS, **kwargs: Any) -> None:
        if not (is_int(block_rows) and block_rows > 0):
            raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")
        if not isinstance(in_memory, bool):
            raise ValueError(f"in_memory must be true or false, got {in_memory!r}")
        table = NpyTable(path, target)
        super().__init__(load(table) if in_memory else table, None, **kwargs)  # a table holds its targets
        self.block_rows = block_rows
        self._source_hparams(path=path, target=target, in_memory=in_memory, block_rows=block_rows)
