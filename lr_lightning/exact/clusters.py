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


class ClusterSums:
    """Sums of ``width``-wide rows per cluster id, ``ids`` sorted (int64), ``sums`` ``(len(ids), width)`` float64."""

    def __init__(self, width: int) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros((0, width), dtype=np.float64)

    def add(self, ids: torch.Tensor, values: torch.Tensor) -> None:
        """Add rows ``values`` ``(rows, width)`` to their clusters ``ids`` ``(rows,)``."""
        u, inverse = torch.unique(ids, return_inverse=True)
        part = values.new_zeros(len(u), values.shape[1]).index_add_(0, inverse, values)
        self.merge(u.cpu().numpy(), part.cpu().numpy())

    def merge(self, ids: np.ndarray, sums: np.ndarray) -> None:
        """Add per-cluster ``sums`` of distinct sorted ``ids``."""
        at = np.searchsorted(self.ids, ids)
        found = at < len(self.ids)
        found[found] = self.ids[at[found]] == ids[found]
        self.sums[at[found]] += sums[found]
        if not found.all():
            merged = np.concatenate([self.ids, ids[~found]])
            order = np.argsort(merged, kind="stable")
            self.ids, self.sums = merged[order], np.concatenate([self.sums, sums[~found]])[order]

    def gathered(self, gather: Callable[[torch.Tensor], torch.Tensor], device: torch.device | None) -> ClusterSums:
        """Every rank's sums merged by id (``gather`` stacks a tensor from every rank)."""
        size = int(gather(torch.tensor([float(len(self.ids))], dtype=torch.float64, device=device)).max())
        ids = torch.full((size,), -1, dtype=torch.int64, device=device)
        sums = torch.zeros(size, self.sums.shape[1], dtype=torch.float64, device=device)
        ids[:len(self.ids)] = torch.from_numpy(self.ids).to(device)
        sums[:len(self.ids)] = torch.from_numpy(self.sums).to(device)
        all_ids, all_sums = gather(ids).cpu().numpy(), gather(sums).cpu().numpy()
        out = ClusterSums(self.sums.shape[1])
        for rank_ids, rank_sums in zip(all_ids, all_sums, strict=True):
            real = rank_ids >= 0  # the padding's -1s are no cluster
            out.merge(rank_ids[real], rank_sums[real])
        return out


def cluster_keys(g: torch.Tensor) -> list[torch.Tensor]:
    """The cluster ids of each sum a pass needs for codes ``g`` ``(rows, k)``: one-way ``[g₀]``; two-way
    ``[g₀, g₁, (g₀, g₁)]``, the last the intersection groups (Cameron, Gelbach and Miller)."""
    if g.shape[1] == 1:
        return [g[:, 0]]
    return [g[:, 0], g[:, 1], g[:, 0] * PAIR + g[:, 1]]


__all__ = ["PAIR", "ClusterSums", "cluster_keys"]
