"""Loaders: the order an epoch visits rows in, and the batches served in that order, on one process or many.

Batches are sliced out of in-memory tensors by :class:`TensorBatches` instead of going through
``DataLoader(TensorDataset(...))``, which fetches and collates one sample at a time: for a linear model that
bookkeeping costs more than the math. :class:`BlockBatches` serves the same batches from a streamed
:class:`~lr_lightning.core.data.tables.Table`, reading each batch's rows when needed and giving back the memory
of every finished block. Under DDP each rank serves its slice of every global batch (:func:`rank_slices`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from lr_lightning.core.data.tables import Ranges, Table
from lr_lightning.core.features import FeatureMap

Batch = tuple[torch.Tensor, torch.Tensor]


class EpochOrder:
    """The order in which one epoch visits ``n`` samples: a fresh permutation per epoch, or ``0..n-1``.

    Not a torch ``Sampler`` (nothing draws from it one index at a time): the loaders hold it as their ``sampler``
    because that is where Lightning looks for ``set_epoch``.

    The permutation is a pure function of ``(seed, epoch)``, so two runs with one seed see the same batches,
    and a resumed run sees the order the interrupted one would have. Lightning calls ``set_epoch`` on a
    loader's ``sampler`` at the start of every epoch, as it does for a ``DistributedSampler``.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor | None:
        """This epoch's permutation, or ``None`` for the natural order (then batches are views, not copies)."""
        if not self.shuffle:
            return None
        # SeedSequence mixes (seed, epoch) properly: seed + epoch would give seed 1/epoch 0 the order of seed 0/epoch 1.
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        return iter(range(self.n) if order is None else order.tolist())

    def __len__(self) -> int:
        return self.n


def rank_slices(n: int, batch_size: int, world_size: int = 1, rank: int = 0,
                drop_last: bool = False) -> list[tuple[int, int]]:
    """This rank's ``(start, stop)`` in each global batch of ``batch_size * world_size`` positions of ``0..n-1``.

    Every position lands in exactly one rank's slice: no padding, no sample seen twice (a
    ``DistributedSampler`` pads by repeating samples, which skews small validation sets, lightning#5060).
    Every rank gets the same number of slices, as DDP needs (each step all-reduces gradients); in the last,
    shorter global batch the slices differ by at most one row, and a rank may get an empty one.

    >>> rank_slices(10, 2, world_size=2, rank=1)
    [(2, 4), (6, 8), (9, 10)]
    """
    g = batch_size * world_size
    n_batches = n // g if drop_last else math.ceil(n / g)
    slices = []
    for start in range(0, n_batches * g, g):
        q, extra = divmod(min(g, n - start), world_size)  # a full batch: q = batch_size, extra = 0
        a = start + rank * q + min(rank, extra)
        slices.append((a, a + q + (rank < extra)))
    return slices


class TensorBatches:
    """Mini-batches ``(x[idx], y[idx])`` sliced out of in-memory tensors, in the order of ``sampler``.

    Lightning accepts any iterable as a loader; this one yields what ``DataLoader(TensorDataset(x, y))``
    would, at the cost of one index per batch instead of one ``__getitem__`` per sample plus a collate.
    Like a ``DataLoader`` it has a ``sampler`` (Lightning calls its ``set_epoch``) and no ``batch_sampler``.

    Under DDP (``world_size`` ranks) each rank serves its slice of every global batch of
    ``batch_size * world_size`` samples (:func:`rank_slices`): the ranks together see the same batches as one
    process with the global batch size, whatever the number of devices.

    With ``weights`` (an ``(n, 1)`` tensor of row weights) the batches are ``(x, y, w)``, the weights sliced with
    their rows.
    """

    batch_sampler = None

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, *, rank: int = 0, world_size: int = 1,
                 sampler: EpochOrder | None = None, weights: torch.Tensor | None = None) -> None:
        self.x, self.y, self.batch_size, self.drop_last = x, y, batch_size, drop_last
        self.weights = weights  # (n, 1) row weights: batches are then (x, y, w)
        self.rank, self.world_size = rank, world_size
        self.sampler = sampler if sampler is not None else EpochOrder(len(x), shuffle, seed)
        self._served, self._resume_at = 0, (-1, 0)  # (epoch, batches already trained on), from load_state_dict

    def __len__(self) -> int:
        g = self.batch_size * self.world_size
        return len(self.sampler) // g if self.drop_last else math.ceil(len(self.sampler) / g)

    def __iter__(self) -> Iterator[Batch]:
        x, y, w = self.x, self.y, self.weights
        slices = rank_slices(len(self.sampler), self.batch_size, self.world_size, self.rank, self.drop_last)
        order = self.sampler.order()
        if order is not None:
            # One gather per epoch (of this rank's rows only) into fresh tensors, then every batch is a view: no
            # allocation or gather per step (fresh memory for every batch costs page faults that, at large
            # batches, outweigh the math). A batch someone keeps holds on to its own epoch's copy.
            if self.world_size > 1:
                order = torch.cat([order[a:b] for a, b in slices])
                offsets = np.cumsum([0] + [b - a for a, b in slices]).tolist()
                slices = list(zip(offsets[:-1], offsets[1:], strict=True))
            order = order.to(x.device)
            x, y = x.index_select(0, order), y.index_select(0, order)
            w = w.index_select(0, order) if w is not None else None
        for a, b in slices[self._skip():]:
            self._served += 1
            yield (x[a:b], y[a:b]) if w is None else (x[a:b], y[a:b], w[a:b])

    def _skip(self) -> int:
        """Batches to skip at the start of this epoch. A resumed run skips the batches it already trained on, in
        the epoch it was interrupted in only: when that epoch was complete, Lightning goes on to the next one."""
        epoch, trained = self._resume_at
        skip = trained if epoch == self.sampler.epoch else 0
        self._resume_at, self._served = (-1, 0), skip
        return skip

    # Lightning saves these in checkpoints and restores them when it resumes in the middle of an epoch: with the
    # order a function of (seed, epoch), skipping the batches already trained on makes the resumed run exact.
    # Batches are counted globally, so the state is the same on every rank.
    def state_dict(self) -> dict[str, int]:
        # Lightning fetches ahead only from loaders without a length; ours has one, so every batch served by the
        # time a checkpoint is written has been trained on.
        return {"epoch": self.sampler.epoch, "consumed": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._resume_at = (state["epoch"], state["consumed"])


def stable_sgd_lr(chunks: Iterable[torch.Tensor], bias: bool) -> float:
    """Half of ``1 / λmax(XᵀX / n)`` for the features X given chunk by chunk (with a column of ones for the bias):
    full-batch gradient descent on MSE converges below ``1 / λmax``, mini-batches wobble around it."""
    gram, n = None, 0
    for chunk in chunks:
        chunk = chunk.double().cpu()
        if bias:
            chunk = torch.cat([chunk, torch.ones(len(chunk), 1, dtype=chunk.dtype)], dim=1)
        gram = chunk.T @ chunk if gram is None else gram + chunk.T @ chunk
        n += len(chunk)
    return 0.5 / torch.linalg.eigvalsh(gram / n)[-1].item()


class BlockOrder:
    """Visits the rows of ``ranges``: with ``shuffle``, the blocks in a fresh random order each epoch, then the
    rows of each block in random order; else in order. A pure function of ``(seed, epoch)``, like
    :class:`EpochOrder`, whose interface it has (``order`` gives global row numbers).

    Shuffling within blocks rather than across the whole file keeps reads local; the price is that rows of one
    block tend to share batches. For files sorted by something that matters (time, the target), choose a
    ``block_rows`` well below the batch size times the number of batches per epoch, or shuffle the file once.
    """

    def __init__(self, ranges: Ranges, shuffle: bool = True, seed: int = 0) -> None:
        self.ranges, self.shuffle, self.seed, self.epoch = ranges, shuffle, seed, 0
        self.visited: list[tuple[int, tuple[int, int]]] = []  # (position where the block ends, block), last order

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(b - a for a, b in self.ranges)

    def order(self) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch])
        blocks = [self.ranges[i] for i in rng.permutation(len(self.ranges))] if self.shuffle else self.ranges
        rows = [a + rng.permutation(b - a) if self.shuffle else np.arange(a, b) for a, b in blocks]
        ends = np.cumsum([len(r) for r in rows]).tolist()
        self.visited = list(zip(ends, blocks, strict=True))
        return torch.from_numpy(np.concatenate(rows)) if rows else torch.zeros(0, dtype=torch.long)


class BlockBatches(TensorBatches):
    """:class:`TensorBatches` over a streamed :class:`~lr_lightning.core.data.tables.Table` (``.npy`` shards,
    Parquet row groups): the same batches (and the same resumable state) as in memory with the same order, but each
    batch's rows are read when needed, and a block's memory is released once no later batch reads it."""

    def __init__(self, table: Table, ranges: Ranges, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, *, rank: int = 0, world_size: int = 1, dtype: torch.dtype = torch.float32,
                 feature_map: FeatureMap | None = None, sides: Callable[..., tuple] | None = None) -> None:
        super().__init__(None, None, batch_size, drop_last=drop_last, rank=rank, world_size=world_size,
                         sampler=BlockOrder(ranges, shuffle, seed))
        self.table, self.dtype, self.feature_map = table, dtype, feature_map
        # The batch's items after (x, y) from its rows' side columns (weights, cluster codes): StreamedSides.
        self.sides = sides

    def __iter__(self) -> Iterator[Batch]:
        order = self.sampler.order().numpy()
        visited = iter(self.sampler.visited)
        done = next(visited, None)
        g = self.batch_size * self.world_size
        slices = rank_slices(len(order), self.batch_size, self.world_size, self.rank, self.drop_last)
        skip = self._skip()
        for k in range(skip, len(slices)):
            a, b = slices[k]
            self._served += 1
            if self.sides is None:
                yield self.tensors(*(self.table.read(order[a:b]) if b > a else self._empty()))
            else:
                x, y, side = self.table.read(order[a:b], sides=True) if b > a else \
                    self.table.read_range(0, 0, sides=True)
                yield *self.tensors(x, y), *self.sides(side, self.dtype)
            # Blocks that no later batch reads give their pages back (every rank reaches the same point).
            while done is not None and done[0] <= (k + 1) * g:
                self.table.release(*done[1])
                done = next(visited, None)

    def tensors(self, x: np.ndarray, y: np.ndarray) -> Batch:
        """Rows as read, in the datamodule's dtype and feature map: exactly what the in-memory path serves."""
        xt, yt = torch.from_numpy(x).to(self.dtype), torch.from_numpy(y).to(self.dtype)
        if self.feature_map is None:
            return xt, yt
        fm = self.feature_map
        return fm.features(xt.double()).to(self.dtype), fm.targets(yt.double()).to(self.dtype)

    def _empty(self) -> tuple[np.ndarray, np.ndarray]:
        return self.table.read_range(0, 0)


