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

from collections.abc import Sequence

import numpy as np
import torch

from lr_lightning.exact.gram import ROWS
from lr_lightning.exact.threads import each_share


def score_sums(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, ways: Sequence[np.ndarray], *,
               beta: torch.Tensor, offset: torch.Tensor, columns: torch.Tensor | None, mean: torch.Tensor,
               unit: torch.Tensor, scale: torch.Tensor, bias: bool,
               mean_lo: torch.Tensor | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per clustering in ``ways`` (each ``(rows,)`` int64 ids), ``(ids, sums)``: the sorted distinct ids of the rows
    of positive weight, and per id the sum of its rows' scores, ``(len(ids), q·m)`` (``j·m + t``).

    ``z`` ``(rows, n_basis)`` and ``y`` ``(rows, m)`` are the batch (float32 or float64 CPU tensors), ``w``
    ``(rows,)`` its weights or None; the rest are float64. With ``c = z[:, columns] - mean`` (every column when
    ``columns`` is None), the residual is ``r = (y - c @ beta - offset) / scale``, times ``w``, and the design is
    ``[1, (c - mean_lo) / unit]``, without the 1 when ``bias`` is False (then ``mean`` and ``offset`` are zeros).
    ``mean_lo`` (zeros when None) is the means' low part in double-double: the design is centred on them exactly.
    """
    rows, m = len(z), y.shape[1]
    positive = None if w is None else w.numpy() > 0  # numpy: see the note on OpenMP below
    keep = None if positive is None or positive.all() else positive  # rows of weight 0 belong to no cluster
    indexed = [_index(ids, keep) for ids in ways]
    codes = [torch.from_numpy(code) for _, code, _ in indexed]
    q = bias + (z.shape[1] if columns is None else len(columns))
    f64 = torch.float64

    def run(lo: int, hi: int) -> list[torch.Tensor]:
        size = min(ROWS, hi - lo)
        work, r = torch.empty(size, q, dtype=f64), torch.empty(size, m, dtype=f64)
        scores = None if m == 1 else torch.empty(size, q, m, dtype=f64)  # one target: the scores are d·r, in place
        if bias and m > 1:
            work[:, 0] = 1.0
        parts = [torch.zeros(n + 1, q * m, dtype=f64) for _, _, n in indexed]  # the last row: weight-0 rows
        for i in range(lo, hi, ROWS):
            j = min(i + ROWS, hi)
            zb, d, rb = z[i:j], work[:j - i, bias:], r[:j - i]
            zb = zb if columns is None else zb[:, columns]
            if zb.dtype == f64:
                torch.sub(zb, mean, out=d)
            else:  # float32 rows: a copy to float64, then the subtract (twice as fast as a mixed-dtype subtract)
                d.copy_(zb).sub_(mean)
            torch.matmul(d, beta, out=rb)  # the residual from the centred rows, in cache: z read from memory once
            torch.sub(y[i:j], rb, out=rb).sub_(offset).div_(scale)
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
    out = []
    for j, (u, _, size) in enumerate(indexed):
        part = partial[0][j].numpy()
        for other in partial[1:]:  # in place: a part is (clusters, q·m), 34 MB at 100,000 clusters
            part += other[j].numpy()
        sums = part.reshape(len(part), q, m)
        if bias and mean_lo is not None:  # Σ (c - mean_lo) r = Σ c r - mean_lo Σ r, once per cluster
            sums[:, 1:] -= mean_lo.numpy()[None, :, None] * sums[:, :1]
        sums[:, bias:] /= unit.numpy()[:, None]  # the design's scaling, once per cluster, not per row
        out.append((u, part[:size] if len(u) == size else part[u]))  # dense codes: the ids are the rows
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
