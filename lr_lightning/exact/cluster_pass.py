"""The clustered pass over a batch in CPU memory: residuals, scores and per-cluster sums, fused in sub-blocks.

CR1 needs, per cluster ``g``, the sum of the rows' scores ``d_i ⊗ r_i``. Here ``d_i = [1, D⁻¹(z_i - mean)]`` is the
row's centred, unit-scaled design and ``r_i`` its residual in units of the residual SD, times its weight. The
solver's torch version builds ``d`` for the whole batch: a copy as large as the batch, written and read again.
:func:`score_sums` computes the same sums a sub-block of :data:`~lr_lightning.exact.gram.ROWS` rows at a time, in a
buffer that stays in cache. The sub-blocks are shared among threads (:mod:`~lr_lightning.exact.threads`). Each
sub-block's sums are one sparse product per target: the clusters' indicator matrix, weighted by the residuals,
times ``d``, over the clusters the sub-block holds when there are more clusters than its rows (a product over all
100,000 would write a 100,000-row result per sub-block).

>>> import numpy as np
>>> z, y = np.array([[1.0], [2.0], [4.0]]), np.array([[1.0], [3.0], [2.0]])
>>> [(ids.tolist(), sums.tolist()) for ids, sums in score_sums(
...     z, y, None, [np.array([5, 7, 5])], beta=np.zeros((1, 1)), intercept=np.zeros(1), columns=None,
...     mean=np.array([2.0]), unit=np.array([1.0]), scale=np.ones(1), bias=True)]
[([5, 7], [[3.0, 3.0], [3.0, 0.0]])]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import sparse

from lr_lightning.exact.gram import ROWS
from lr_lightning.exact.threads import one_blas_thread, pool, shares


def score_sums(z: np.ndarray, y: np.ndarray, w: np.ndarray | None, ways: Sequence[np.ndarray], *,
               beta: np.ndarray, intercept: np.ndarray, columns: np.ndarray | None, mean: np.ndarray,
               unit: np.ndarray, scale: np.ndarray, bias: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per clustering in ``ways`` (each ``(rows,)`` int64 ids), ``(ids, sums)``: the sorted distinct ids of the rows
    of positive weight, and per id the sum of its rows' scores, ``(len(ids), q·m)`` (``j·m + t``).

    ``z`` ``(rows, n_basis)`` and ``y`` ``(rows, m)`` are the batch (float32 or float64), ``w`` ``(rows,)`` its
    weights or None. The residual is ``r = (y - z @ beta - intercept) / scale``, times ``w``. The design is
    ``[1, (z[:, columns] - mean) / unit]``, without the 1 when ``bias`` is False and with every column when
    ``columns`` is None.
    """
    rows, m = len(z), y.shape[1]
    keep = None if w is None or bool((w > 0).all()) else w > 0  # rows of weight 0 belong to no cluster
    indexed = [_index(ids, keep) for ids in ways]
    q = bias + (z.shape[1] if columns is None else len(columns))

    def run(lo: int, hi: int) -> list[np.ndarray]:
        work = np.empty((min(ROWS, hi - lo), q))
        if bias:
            work[:, 0] = 1.0
        parts = [np.zeros((size + 1, q, m)) for _, _, size in indexed]  # the last row: weight-0 rows, dropped
        for i in range(lo, hi, ROWS):
            j = min(i + ROWS, hi)
            zb, d = z[i:j], work[:j - i]
            r = y[i:j] - zb @ beta - intercept
            r /= scale
            if w is not None:
                r *= w[i:j, None]
            np.subtract(zb if columns is None else zb[:, columns], mean, out=d[:, bias:])
            d[:, bias:] /= unit
            at = np.arange(j - i)
            for (_, code, size), part in zip(indexed, parts, strict=True):
                rows_of, local = code[i:j], slice(None)
                if size >= j - i:  # more clusters than rows (100,000): the product over the sub-block's own only
                    local, rows_of = np.unique(rows_of, return_inverse=True)
                    rows_of = rows_of.reshape(-1)
                height = size + 1 if isinstance(local, slice) else len(local)
                for t in range(m):
                    part[local, :, t] += sparse.csr_matrix((r[:, t], (rows_of, at)), shape=(height, j - i)) @ d
        return parts

    threads = max(1, min(torch.get_num_threads(), rows // ROWS))
    if threads == 1:
        parts = run(0, rows)
    else:
        with one_blas_thread():
            partial = list(pool(threads).map(lambda b: run(*b), shares(rows, threads, ROWS)))
        parts = partial[0]
        for other in partial[1:]:  # in place: a part is (clusters, q, m), 34 MB at 100,000 clusters
            for part, more in zip(parts, other, strict=True):
                part += more
    out = []
    for (u, _, size), part in zip(indexed, parts, strict=True):
        part = part[:size] if len(u) == size else part[u]  # dense codes: the ids are the rows
        out.append((u, part.reshape(len(u), q * m)))
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
