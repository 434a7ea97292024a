"""Per-cluster sums for clustered (cluster-robust) standard errors: ``Σ_g (X_gᵀ e_g)`` per cluster ``g``, summed in
the robust pass, merged across batches, ``.npy``-free in-memory passes and DDP ranks by cluster id.

Memory: one float64 row of ``p·m`` sums per cluster (100,000 clusters at p = 40, one target: 32 MB), plus the ids;
a batch adds its own clusters' sums (``torch.unique`` + ``index_add_``) into a sorted id array that grows when new
ids come. Ranks all-gather ``(ids, sums)`` (padded to the longest) and sum by id, so a cluster split across ranks is
one cluster.

>>> import torch
>>> s = ClusterSums(1)
>>> s.add(torch.tensor([7, 3, 7]), torch.tensor([[1.0], [2.0], [4.0]]))
>>> s.add(torch.tensor([5]), torch.tensor([[8.0]]))
>>> s.ids.tolist(), s.sums.ravel().tolist()
([3, 5, 7], [2.0, 8.0, 5.0])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# Two-way clustering's intersection groups: the pair (a, b) of codes as one int64 id (codes < 2³¹).
PAIR = 1 << 31
DENSE_IDS = 1 << 26  # ids below this (cluster codes) are summed in an array indexed by the id
# CR3 keeps one q×q Gram matrix per cluster: G·q²·8 bytes. Above this it is refused (100,000 clusters at q = 41:
# 1.3 GB); raise it here (lr_lightning.exact.clusters.CR3_BYTES) on a machine with the memory to spare.
CR3_BYTES = 1 << 30
# A cluster whose removal leaves the unit-scaled Gram matrix with a Cholesky pivot below this (R's aliasing tolerance,
# solver.ALIAS_TOL) leaves a coefficient unidentified: CR3 is then undefined (NaN).
SINGULAR = 1e-7


class ClusterSums:
    """Sums of ``width``-wide rows per cluster id, ``ids`` sorted (int64), ``sums`` ``(len(ids), width)`` float64.

    Ids that are codes (integers from 0 to :data:`DENSE_IDS`, as the data modules number clusters) are summed into
    a dense array indexed by the id, with a mask of the ids seen: no sorted merge per batch. The first batch with
    other ids (two-way clustering's intersections) turns it into the sorted form for good."""

    def __init__(self, width: int) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._sums = np.zeros((0, width), dtype=np.float64)
        self._dense: np.ndarray | None = None  # (capacity, width), row i the sums of id i
        self._seen: np.ndarray | None = None
        self._fresh = True

    @property
    def ids(self) -> np.ndarray:
        return np.flatnonzero(self._seen).astype(np.int64) if self._dense is not None else self._ids

    @property
    def sums(self) -> np.ndarray:
        return self._dense[self._seen] if self._dense is not None else self._sums

    def add(self, ids: torch.Tensor, values: torch.Tensor) -> None:
        """Add rows ``values`` ``(rows, width)`` to their clusters ``ids`` ``(rows,)``."""
        if not len(ids):
            return
        u, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
        # Per-cluster sums: the rows sorted by cluster, then summed segment by segment (a fraction of index_add_'s
        # time on CPU, the same sums).
        order = torch.argsort(inverse, stable=True)
        part = torch.segment_reduce(values[order], "sum", lengths=counts, axis=0)
        self.merge(u.cpu().numpy(), part.cpu().numpy())

    def add_products(self, ids: torch.Tensor, design: torch.Tensor, r: torch.Tensor) -> None:
        """Add the rows' scores ``design_i ⊗ r_i`` (``(rows, q)`` and ``(rows, m)``; ``q·m`` wide, ``j·m + t``) to
        their clusters ``ids``, without forming them: on the CPU, per target ``t``, one sparse product of the
        clusters' indicator matrix, weighted by ``r[:, t]``, with ``design`` (scipy; a twentieth of sorting the
        rows by cluster and summing segments, at 1,000 clusters). Elsewhere the scores, through :meth:`add`.

        >>> s = ClusterSums(2)
        >>> s.add_products(torch.tensor([1, 0, 1]), torch.tensor([[1.0], [1.0], [1.0]]),
        ...                torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
        >>> s.ids.tolist(), s.sums.tolist()
        ([0, 1], [[3.0, 4.0], [6.0, 8.0]])
        """
        if not len(ids):
            return
        if design.device.type != "cpu":
            self.add(ids, (design[:, :, None] * r[:, None, :]).reshape(len(design), -1))
            return
        from scipy import sparse

        codes = ids.numpy()
        low, high = int(codes.min()), int(codes.max())
        if low >= 0 and high < 4 * len(codes):  # few codes (1,000 clusters): the code is the row, no sort
            u, inverse = np.flatnonzero(np.bincount(codes, minlength=high + 1)), codes
            size = high + 1
        else:
            u, inverse = np.unique(codes, return_inverse=True)
            size = len(u)
        d, rows = design.numpy(), np.arange(len(ids))
        part = np.empty((size, design.shape[1], r.shape[1]))
        for t, weights in enumerate(r.numpy().T):
            part[:, :, t] = sparse.csr_matrix((weights, (inverse.ravel(), rows)), shape=(size, len(ids))) @ d
        if size != len(u):
            part = part[u]
        self.merge(u, part.reshape(len(u), -1))

    def add_grams(self, ids: torch.Tensor, design: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Add the rows' Gram terms ``w_i x_i x_iᵀ`` (``design`` ``(rows, q)``, ``weights`` ``(rows, 1)`` or None for
        1; ``q·q`` wide) to their clusters ``ids``: the per-cluster ``X_gᵀ W_g X_g`` that CR3 needs. Rows of weight 0
        take no part (as in the score sums: a cluster of such rows only is no cluster).

        >>> s = ClusterSums(1)
        >>> s.add_grams(torch.tensor([4, 2, 4]), torch.tensor([[1.0], [2.0], [3.0]]))
        >>> s.ids.tolist(), s.sums.ravel().tolist()
        ([2, 4], [4.0, 10.0])
        """
        if weights is not None:
            positive = weights[:, 0] > 0
            ids, design, weights = ids[positive], design[positive], weights[positive]
        if not len(ids):
            return
        q = design.shape[1]
        weighted = design if weights is None else design * weights
        if design.device.type != "cpu":  # the products themselves, a piece of rows at a time
            step = max(1, (1 << 22) // (q * q))
            for i in range(0, len(ids), step):
                piece = slice(i, i + step)
                self.add(ids[piece], (design[piece, :, None] * weighted[piece, None, :]).reshape(-1, q * q))
            return
        from scipy import sparse

        u, inverse = np.unique(ids.numpy(), return_inverse=True)
        # The clusters' indicator matrix (clusters × rows), once; then column t of every cluster's Gram matrix is
        # one sparse product with the design scaled by the rows' w·x_t. Row t of the (symmetric) matrix is written.
        indicator = sparse.csr_matrix((np.ones(len(inverse)), (inverse.ravel(), np.arange(len(ids)))),
                                      shape=(len(u), len(ids)))
        d, wd = design.numpy(), weighted.numpy()
        part = np.empty((len(u), q, q))
        for t in range(q):
            part[:, t, :] = indicator @ (d * wd[:, t:t + 1])
        self.merge(u, part.reshape(len(u), q * q))

    def merge(self, ids: np.ndarray, sums: np.ndarray) -> None:
        """Add per-cluster ``sums`` of distinct sorted ``ids``."""
        if not len(ids):
            return
        dense = ids[0] >= 0 and ids[-1] < DENSE_IDS
        if self._fresh and dense:
            self._dense = np.zeros((0, self._sums.shape[1]), np.float64)
            self._seen = np.zeros(0, bool)
        self._fresh = False
        if self._dense is not None and dense:
            if ids[-1] >= len(self._dense):  # grow (at least doubling: a few copies in all)
                size = max(int(ids[-1]) + 1, 2 * len(self._dense))
                self._dense = np.concatenate([self._dense, np.zeros((size - len(self._dense), sums.shape[1]))])
                self._seen = np.concatenate([self._seen, np.zeros(size - len(self._seen), bool)])
            if ids[-1] - ids[0] + 1 == len(ids):  # every id of a range (the usual batch): a slice, not a gather
                self._dense[ids[0]:ids[-1] + 1] += sums
                self._seen[ids[0]:ids[-1] + 1] = True
            else:
                self._dense[ids] += sums
                self._seen[ids] = True
            return
        if self._dense is not None:  # ids beyond the dense range: the sorted form from now on
            self._ids, self._sums, self._dense, self._seen = self.ids, self.sums, None, None
        at = np.searchsorted(self._ids, ids)
        found = at < len(self._ids)
        found[found] = self._ids[at[found]] == ids[found]
        self._sums[at[found]] += sums[found]
        if not found.all():
            merged = np.concatenate([self._ids, ids[~found]])
            order = np.argsort(merged, kind="stable")
            self._ids, self._sums = merged[order], np.concatenate([self._sums, sums[~found]])[order]

    def gathered(self, gather: Callable[[torch.Tensor], torch.Tensor], device: torch.device | None) -> ClusterSums:
        """Every rank's sums merged by id (``gather`` stacks a tensor from every rank)."""
        own_ids, own_sums = self.ids, self.sums
        size = int(gather(torch.tensor([float(len(own_ids))], dtype=torch.float64, device=device)).max())
        ids = torch.full((size,), -1, dtype=torch.int64, device=device)
        sums = torch.zeros(size, own_sums.shape[1], dtype=torch.float64, device=device)
        ids[:len(own_ids)] = torch.from_numpy(own_ids).to(device)
        sums[:len(own_ids)] = torch.from_numpy(own_sums).to(device)
        all_ids, all_sums = gather(ids).cpu().numpy(), gather(sums).cpu().numpy()
        out = ClusterSums(own_sums.shape[1])
        for rank_ids, rank_sums in zip(all_ids, all_sums, strict=True):
            real = rank_ids >= 0  # the padding's -1s are no cluster
            out.merge(rank_ids[real], rank_sums[real])
        return out


def check_cr3_budget(groups: int, q: int) -> None:
    """Refuse CR3 in one line when ``groups`` clusters' ``q×q`` Gram matrices would exceed :data:`CR3_BYTES`.

    >>> check_cr3_budget(100_000, 41)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: cr3=True: 100,000 clusters × 41² coefficients' Gram matrices need 1.34 GB, above the 1.07 GB ...
    """
    need = groups * q * q * 8
    if need > CR3_BYTES:
        raise ValueError(f"cr3=True: {groups:,} clusters × {q}² coefficients' Gram matrices need {need / 1e9:.3g} GB, "
                         f"above the {CR3_BYTES / 1e9:.3g} GB budget (lr_lightning.exact.clusters.CR3_BYTES); use "
                         "CR1, or fewer clusters")


def jackknife(grams: np.ndarray, scores: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``Σ_g u_g u_gᵀ`` per target, ``u_g = (A - A_g)⁻¹ s_g``: the leave-one-cluster-out changes of the coefficients
    without refits (``β₍₋g₎ - β = -(A - A_g)⁻¹ s_g`` where ``Xᵀ W e = 0``), from the clusters' Gram matrices ``grams``
    ``(G, q, q)`` (``A = Σ_g A_g``) and score sums ``scores`` ``(G, q, m)``. ``(m, q, q)``; all NaN when removing
    some cluster leaves ``A - A_g`` singular (a Cholesky pivot of its unit-scaled form below :data:`SINGULAR`):
    a coefficient is then not identified without that cluster, and CR3 does not exist.

    >>> grams = np.array([[[1.0]], [[1.0]], [[2.0]]])  # one column, rows 1, 1, √2 in three clusters
    >>> np.round(jackknife(grams, np.array([[[1.0]], [[-1.0]], [[0.0]]])), 12).tolist()  # A - A_g = 3, 3, 2
    [[[0.222222222222]]]
    """
    total = grams.sum(axis=0)
    out = np.zeros((scores.shape[2], total.shape[0], total.shape[0]))
    for i in range(0, len(grams), chunk):
        rest = torch.from_numpy(total[None] - grams[i:i + chunk])
        size = torch.sqrt(torch.clamp(torch.diagonal(rest, dim1=1, dim2=2), min=0.0))
        if bool((size <= 0).any()):  # a column that is zero without this cluster
            return np.full(out.shape, np.nan)
        unit = rest / (size[:, :, None] * size[:, None, :])
        chol, info = torch.linalg.cholesky_ex(unit)
        if bool((info != 0).any()) or float(torch.diagonal(chol, dim1=1, dim2=2).min()) < SINGULAR:
            return np.full(out.shape, np.nan)
        rhs = torch.from_numpy(scores[i:i + chunk]) / size[:, :, None]
        u = torch.cholesky_solve(rhs, chol) / size[:, :, None]  # (chunk, q, m)
        out += torch.einsum("git,gjt->tij", u, u).numpy()
    return out


def cluster_keys(g: torch.Tensor) -> list[torch.Tensor]:
    """The cluster ids of each sum a pass needs for codes ``g`` ``(rows, k)``: one-way ``[g₀]``; two-way
    ``[g₀, g₁, (g₀, g₁)]``, the last the intersection groups (Cameron, Gelbach and Miller)."""
    if g.shape[1] == 1:
        return [g[:, 0]]
    return [g[:, 0], g[:, 1], g[:, 0] * PAIR + g[:, 1]]


__all__ = ["CR3_BYTES", "PAIR", "ClusterSums", "check_cr3_budget", "cluster_keys", "jackknife"]
