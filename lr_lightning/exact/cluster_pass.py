"""The clustered pass over a batch in CPU memory: residuals, scores and per-cluster sums, fused in sub-blocks.

CR1 needs, per cluster ``g``, the sum of the rows' scores ``d_i ⊗ r_i``. Here ``d_i = [1, D⁻¹(z_i - mean)]`` is the
row's centred, unit-scaled design and ``r_i`` its residual in units of the residual SD, times its weight. The
solver's torch version builds ``d`` for the whole batch: a copy as large as the batch, written and read again.
:func:`score_sums` computes the same sums a sub-block of :data:`~lr_lightning.exact.gram.ROWS` rows at a time, in a
buffer that stays in cache, and reads each row from memory once: the centred rows ``z - mean`` are written into
the buffer first, and the residual is computed from them, ``y - (z - mean) @ beta - offset`` with ``offset`` the
intercept at the means (also the digits' choice: with columns at 1e6, ``z @ beta + intercept`` is a small
difference of large terms).
With one target the scores are ``d·r`` in place; the division by ``unit`` waits for the per-cluster sums (a scale
per column: once per cluster, not once per row). Measured on the 2-core VM: a 4,096 x 40 float64 sub-block on one
thread from 570-660 µs to 340-500 µs. Over 2M x 40 and 1,000 clusters, in the fit's 11 batches on two threads,
the pass takes 0.08 s; it took 0.15 s while the end of each batch's call ran torch operations on this thread (see
the note there).
The sub-blocks are shared among threads (:mod:`~lr_lightning.exact.threads`), in torch operations, which release
the GIL. Each sub-block's scores are added to their clusters' rows by ``index_add_``, a
scatter whose cost is the rows', however many clusters there are (scipy's sparse product held the GIL, and over
100,000 clusters wrote a 100,000-row result per sub-block).

>>> import numpy as np, torch
>>> t = lambda *v: torch.tensor(v, dtype=torch.float64)
>>> z, y = t([1.0], [2.0], [4.0]), t([1.0], [3.0], [2.0])
>>> [(ids.tolist(), sums.tolist()) for ids, sums in score_sums(
...     z, y, None, [np.array([5, 7, 5])], beta=t([0.0]), offset=t(0.0), columns=None,
...     mean=t(2.0), unit=t(1.0), scale=t(1.0), bias=True)]
[([5, 7], [[3.0, 3.0], [3.0, 0.0]])]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch

from lr_lightning.exact.gram import ROWS
from lr_lightning.exact.threads import each_share

TABLE_BYTES = 256 << 20  # per thread and clustering: 800,000 clusters at 40 columns; more ids take per-batch sums


def score_sums(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, ways: Sequence[np.ndarray], *,
               beta: torch.Tensor, offset: torch.Tensor, columns: torch.Tensor | None, mean: torch.Tensor,
               unit: torch.Tensor, scale: torch.Tensor, bias: bool, mean_lo: torch.Tensor | None = None,
               offset_lo: torch.Tensor | None = None, into: ScoreTables | None = None
               ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per clustering in ``ways`` (each ``(rows,)`` int64 ids), ``(ids, sums)``: the sorted distinct ids of the rows
    of positive weight, and per id the sum of its rows' scores, ``(len(ids), q·m)`` (``j·m + t``).

    ``z`` ``(rows, n_basis)`` and ``y`` ``(rows, m)`` are the batch (float32 or float64 CPU tensors), ``w``
    ``(rows,)`` its weights or None; the rest are float64. With ``c = z[:, columns] - mean`` (every column when
    ``columns`` is None), the residual is ``r = ((y - offset) - offset_lo - c @ beta) / scale``, times ``w`` (``y``
    less the intercept first: near it, exactly; ``offset_lo`` its low part, zeros when None), and the design is
    ``[1, (c - mean_lo) / unit]``, without the 1 when ``bias`` is False (then ``mean`` and ``offset`` are zeros).
    ``mean_lo`` (zeros when None) is the means' low part in double-double: the design is centred on them exactly.

    ``into``: the pass's :class:`ScoreTables`. A clustering whose ids are codes it can hold is added there instead,
    unscaled, and its entry is None: nothing of the clusters' size is touched per batch.
    """
    rows, m = len(z), y.shape[1]
    positive = None if w is None else w.numpy() > 0  # numpy: see the note on OpenMP below
    keep = None if positive is None or positive.all() else positive  # rows of weight 0 belong to no cluster
    q = bias + (z.shape[1] if columns is None else len(columns))
    tabled = [into is not None and into.take(way, ids, keep) for way, ids in enumerate(ways)]
    # A tabled clustering's rows go to their own ids' rows (a row of weight 0 adds exact zeros: its r is 0).
    indexed = [None if t else _index(ids, keep) for t, ids in zip(tabled, ways, strict=True)]
    codes = [torch.from_numpy(ids if t else i[1]) for t, i, ids in zip(tabled, indexed, ways, strict=True)]
    f64 = torch.float64

    def run(lo: int, hi: int) -> list[torch.Tensor]:
        size = min(ROWS, hi - lo)
        work, r, less = (torch.empty(size, width, dtype=f64) for width in (q, m, m))
        scores = None if m == 1 else torch.empty(size, q, m, dtype=f64)  # one target: the scores are d·r, in place
        if bias and m > 1:
            work[:, 0] = 1.0
        # Per clustering: this thread's table of the pass, or this call's part (its last row: weight-0 rows).
        parts = [into.table(way) if t else torch.zeros(i[2] + 1, q * m, dtype=f64)
                 for way, (t, i) in enumerate(zip(tabled, indexed, strict=True))]
        for i in range(lo, hi, ROWS):
            j = min(i + ROWS, hi)
            zb, d, rb = z[i:j], work[:j - i, bias:], r[:j - i]
            zb = zb if columns is None else zb[:, columns]
            if zb.dtype == f64:
                torch.sub(zb, mean, out=d)
            else:  # float32 rows: a copy to float64, then the subtract (twice as fast as a mixed-dtype subtract)
                d.copy_(zb).sub_(mean)
            torch.matmul(d, beta, out=rb)  # the residual from the centred rows, in cache: z read from memory once
            yb = torch.sub(y[i:j], offset, out=less[:j - i])
            if offset_lo is not None:
                yb.sub_(offset_lo)
            torch.sub(yb, rb, out=rb).div_(scale)
            if w is not None:
                rb *= w[i:j, None]
            if m == 1:
                d *= rb
                if bias:
                    work[:j - i, 0:1] = rb
                score = work[:j - i]
            else:
                score = torch.mul(work[:j - i, :, None], rb[:, None, :], out=scores[:j - i]).reshape(j - i, q * m)
            for code, part in zip(codes, parts, strict=True):
                part.index_add_(0, code[i:j], score)  # a scatter: its cost is the rows', whatever the clusters
        return parts

    partial = each_share(run, rows, ROWS)
    # In numpy from here on: a torch operation of this size on this thread runs on two OpenMP threads, and the
    # second one's spinning afterwards took a core from the next batch's pass (0.15 s against 0.09 s at 2M x 40).
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for j, found in enumerate(indexed):
        if found is None:  # in the tables
            out.append(None)
            continue
        u, _, size = found
        part = partial[0][j].numpy()
        for other in partial[1:]:
            part += other[j].numpy()
        part = _scaled(part, q, m, bias, unit, mean_lo)
        out.append((u, part[:size] if len(u) == size else part[u]))  # dense codes: the ids are the rows
    return out


def _scaled(part: np.ndarray, q: int, m: int, bias: bool, unit: torch.Tensor,
            mean_lo: torch.Tensor | None) -> np.ndarray:
    """Score sums ``(clusters, q·m)`` of the centred, unscaled design, in place to those of ``[1, (c - mean_lo) /
    unit]``: ``Σ (c - mean_lo) r = Σ c r - mean_lo Σ r``, and the columns' scaling, once per cluster."""
    sums = part.reshape(len(part), q, m)
    if bias and mean_lo is not None:
        sums[:, 1:] -= mean_lo.numpy()[None, :, None] * sums[:, :1]
    sums[:, bias:] /= unit.numpy()[:, None]
    return part


class ScoreTables:
    """A pass's per-cluster score sums, across its batches: per clustering, one table per thread, row ``id`` the
    sums of cluster ``id``, for ids that are codes (from 0, as the data modules number clusters) of a table of at
    most :data:`TABLE_BYTES`. A batch adds its rows to them and touches nothing of the clusters' size: at 100,000
    clusters a per-batch result was 33 MB to zero, merge, scale and merge again, per batch (1.8 s of 14 over 25M
    rows). :meth:`totals` merges the threads' tables and scales them, once.

    >>> tables = ScoreTables(1, width=1)
    >>> tables.take(0, np.array([0, 2]), None), tables.take(0, np.array([-1]), None)  # -1 is no code
    (True, False)
    >>> tables.table(0)[[0, 2]] += torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    >>> [(ids.tolist(), sums.tolist()) for ids, sums in tables.totals(1, 1, False, torch.ones(1), None)]
    [([0, 2], [[1.0], [2.0]])]
    """

    def __init__(self, ways: int, width: int) -> None:
        self.width = width
        self.seen = [np.zeros(0, bool) for _ in range(ways)]  # per clustering: the ids of rows of positive weight
        self._tables: dict[int, list[torch.Tensor | None]] = {}  # per thread, per clustering
        self._lock = threading.Lock()

    def take(self, way: int, ids: np.ndarray, keep: np.ndarray | None) -> bool:
        """Whether clustering ``way``'s ``ids`` (one batch's) go to the tables; if so they are marked as seen (the
        rows in ``keep``, all when None). Called on the batch's thread, before its pool threads run."""
        if not len(ids):
            return False
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or (max(high + 1, len(self.seen[way])) * self.width * 8 > TABLE_BYTES):
            return False
        seen = self.seen[way]
        if high >= len(seen):
            seen = self.seen[way] = np.concatenate([seen, np.zeros(max(high + 1, 2 * len(seen)) - len(seen), bool)])
        seen[ids if keep is None else ids[keep]] = True
        return True

    def table(self, way: int) -> torch.Tensor:
        """The calling thread's table of clustering ``way``, with a row for every id seen so far (grown by copy)."""
        thread = threading.get_ident()
        with self._lock:
            mine = self._tables.setdefault(thread, [None] * len(self.seen))
        size, table = len(self.seen[way]), mine[way]
        if table is None or len(table) < size:
            grown = torch.zeros(size, self.width, dtype=torch.float64)
            if table is not None:
                grown[:len(table)] = table
            mine[way] = table = grown
        return table

    def totals(self, q: int, m: int, bias: bool, unit: torch.Tensor, mean_lo: torch.Tensor | None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per clustering, ``(ids, sums)`` of the ids seen, the threads' tables summed and scaled as
        :func:`score_sums` scales its results."""
        out = []
        for way, seen in enumerate(self.seen):
            total = np.zeros((len(seen), self.width))
            for mine in self._tables.values():
                if mine[way] is not None:
                    total[:len(mine[way])] += mine[way].numpy()
            ids = np.flatnonzero(seen)
            out.append((ids, _scaled(total[ids], q, m, bias, unit, mean_lo)))
        return out


def _index(ids: np.ndarray, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(u, code, size)``: the distinct ids of the kept rows, each row's row in a ``size + 1``-row table (the last
    for rows not kept), and ``size``. Few non-negative ids (1,000 clusters): the id is its row, no sort."""
    kept = ids if keep is None else ids[keep]
    if not len(kept):
        return np.zeros(0, np.int64), np.zeros(len(ids), np.int64), 0
    low, high = int(kept.min()), int(kept.max())
    if low >= 0 and high < 4 * len(ids):
        seen = np.zeros(high + 1, bool)
        seen[kept] = True
        u, code, size = np.flatnonzero(seen), ids.copy() if keep is not None else ids, high + 1
    else:
        u, inverse = np.unique(kept, return_inverse=True)
        size = len(u)
        code = np.full(len(ids), size, np.int64) if keep is not None else inverse.reshape(-1)
        if keep is not None:
            code[keep] = inverse.reshape(-1)
    if keep is not None:
        code[~keep] = size
    return u, code, size
