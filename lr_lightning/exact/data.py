"""What :class:`~lr_lightning.exact.least_squares_module.LeastSquaresModule` asks of a ``RegressionDataModule``: its
raw rows, in the data's own precision, through the datamodule's public seam
(:meth:`~lr_lightning.core.data.datamodule.RegressionDataModule.loader` and ``raw_split``).

The module sums over rows (its passes), and a sum changes with neither the rows' order nor their batching: it is
served every row once, unmapped (the refinement needs the raw design), in memory order (no permuted copy), in blocks
of the size it asks for (Lightning's per-batch cost, ~0.25-0.5 ms, is then paid per block, not per 32 rows), and in
:func:`raw_dtype`: a CSV's or a float64 array's numbers, not their float32 rounding, since an exact fit of the
rounding would be float32-accurate.
"""

from __future__ import annotations

from typing import Any

import torch

from lr_lightning.core.data.inputs import holds

Batch = tuple[torch.Tensor, torch.Tensor]


def raw_dtype(dm: Any) -> torch.dtype:
    """The dtype the exact module is served rows in: ``dm.dtype``, or float64 where the table holds numbers ``dtype``
    would round (a CSV's, float64 arrays', Python floats', a float64 file's, served as float32). float32 data is
    served as it is: it widens to float64 exactly, where the solver uses it.

    >>> from lr_lightning.core.data import CSVDataModule, TutorialDataModule
    >>> raw_dtype(TutorialDataModule())
    torch.float32
    """
    for candidate in (dm.dtype, torch.float32):
        if holds(candidate, dm.table):
            return candidate
    return torch.float64


def raw_loader(dm: Any, split: str, rows_per_batch: int | None, clusters: bool = False) -> Any:
    """The loader of ``split`` (``"train"``, ``"val"``, ``"test"``, ``"predict"``) the exact module reads: raw rows in
    :func:`raw_dtype`, every row once in memory order, ``rows_per_batch`` at a time (for ``"predict"``: every row in
    row order, in ``dm``'s batch size). ``clusters``: each batch ends with the rows' cluster codes, ``(rows, k)``
    int64 (:class:`ClusteredBatches`)."""
    if clusters and dm.table.streamed:  # the codes come from the files' cluster columns, block by block
        return dm.loader(split, mapped=False, dtype=raw_dtype(dm), batch_size=rows_per_batch, clusters=True)
    if clusters:
        return ClusteredBatches(dm, split, rows_per_batch)
    if split == "predict":
        return dm.loader("predict", dtype=raw_dtype(dm))
    return dm.loader(split, mapped=False, dtype=raw_dtype(dm), batch_size=rows_per_batch, ordered=True)


def raw_split(dm: Any, name: str) -> Batch:
    """``(x, y)`` of split ``name`` as the exact module is served it: raw, in :func:`raw_dtype`, in memory order."""
    return dm.raw_split(name, dtype=raw_dtype(dm), ordered=True)


class ClusteredBatches:
    """``(x, y, g)`` (weighted: ``(x, y, w, g)``) batches of split ``split`` in memory: those of :func:`raw_loader`
    with each row's cluster codes ``g`` (``(rows, k)`` int64, :attr:`RegressionDataModule.clusters`) at the end. The
    rows are served by the data module's own ``TensorBatches`` (its DDP slicing included) with the rows' positions in
    the split as their "weights", which then pick the rows' weights and codes."""

    def __init__(self, dm: Any, split: str, rows_per_batch: int | None) -> None:
        from lr_lightning.core.data.loaders import TensorBatches

        if dm.clusters is None:
            raise ValueError("cluster=True: the data module has no cluster column; give it clusters= (fit.py: "
                             "--data.clusters NAME, or [A,B] for two-way)")
        x, y, *w = raw_split(dm, split)
        self.w = w[0] if w else None
        self.g = dm.split_of(split, torch.from_numpy(dm.clusters), ordered=True)
        position = torch.arange(len(x))[:, None]
        self.batches = TensorBatches(x, y, rows_per_batch or dm.batch_size, rank=dm.rank, world_size=dm.world_size,
                                     weights=position)
        self.sampler, self.batch_sampler = self.batches.sampler, None

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Any:
        for x, y, at in self.batches:
            at = at[:, 0]
            if len(at) and int(at[-1]) - int(at[0]) + 1 == len(at):  # consecutive rows (one process): views
                at = slice(int(at[0]), int(at[-1]) + 1)
            yield (x, y, self.g[at]) if self.w is None else (x, y, self.w[at], self.g[at])


__all__ = ["ClusteredBatches", "raw_dtype", "raw_loader", "raw_split"]
