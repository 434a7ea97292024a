"""Centred co-moments: the sufficient statistics of least squares, accumulated batch by batch and merged pairwise.

For the columns ``a = [features, targets]`` of some rows, :class:`CoMoments` holds the row count ``n``, the column
means and ``C = Σ (a - mean)(a - mean)ᵀ``. Two sets of rows merge exactly (Chan, Golub & LeVeque):

    n = n₁ + n₂,   δ = mean₂ - mean₁,   mean = mean₁ + δ·n₂/n,   C = C₁ + C₂ + δδᵀ·n₁n₂/n

Centring each batch on its own mean is what keeps the digits: ``Σ aaᵀ - n·mean·meanᵀ`` (the textbook formula)
cancels everything an offset in the data holds (a column at 10⁹ ± 1 keeps 7 digits of its spread, not 16).
:class:`PairwiseSum` merges batches as a binary tree (the way numpy sums), so rounding grows with log(batches),
not with their number. Everything stays on the batches' device: no host sync per batch.

>>> import torch
>>> a = torch.tensor([[1.0, 2.0], [3.0, 7.0], [5.0, 9.0]], dtype=torch.float64)
>>> whole, parts = CoMoments.of(a), CoMoments.of(a[:1]).merge(CoMoments.of(a[1:]))
>>> torch.allclose(whole.comoment, parts.comoment), whole.comoment[0].tolist()
(True, [8.0, 14.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CoMoments:
    """Row count (a float64 tensor: it may live on a GPU, and 2⁵³ rows is enough), column means, centred
    cross-products."""

    n: torch.Tensor
    mean: torch.Tensor
    comoment: torch.Tensor

    @classmethod
    def of(cls, *columns: torch.Tensor, work: torch.Tensor | None = None) -> CoMoments:
        """The co-moments of the rows of ``columns`` side by side (``(rows, k)`` blocks of any float dtype, e.g. the
        features and the targets), computed in float64.

        ``work``, a float64 ``(at least rows, Σk)`` buffer on the same device, is where the block is assembled and
        centred in place: reused from batch to batch, it spares a fresh allocation (and its page faults) and two
        copies per batch, which at a Gram matrix's arithmetic intensity cost as much as the product itself.
        """
        rows, q = len(columns[0]), sum(c.shape[1] for c in columns)
        n = columns[0].new_full((), float(rows), dtype=torch.float64)  # a fill on the device, not a host copy
        if not rows:  # a DDP rank's share of a last batch can be empty
            zeros = columns[0].new_zeros(q, dtype=torch.float64)
            return cls(n, zeros, zeros.new_zeros(q, q))
        if work is None or work.shape[0] < rows or work.shape[1] != q:
            work = columns[0].new_empty(rows, q, dtype=torch.float64)
        a, j, means = work[:rows], 0, []
        for c in columns:
            part = a[:, j:j + c.shape[1]]
            if c.dtype == torch.float64:  # centred as it is copied: one write of the block, not two
                means.append(c.mean(dim=0))
                torch.sub(c, means[-1], out=part)
            else:  # converted to float64 first, then centred in place
                part.copy_(c)
                means.append(part.mean(dim=0))
                part.sub_(means[-1])
            j += c.shape[1]
        return cls(n, torch.cat(means), a.T @ a)

    def merge(self, other: CoMoments) -> CoMoments:
        """These rows and ``other``'s, as if computed at once. Empty sides are exact no-ops."""
        n = self.n + other.n
        # n == 0 only if both are empty; clamp so the division is defined (δ is zero then anyway).
        share = other.n / n.clamp(min=1.0)
        delta = other.mean - self.mean
        return CoMoments(n, self.mean + delta * share,
                         self.comoment + other.comoment + torch.outer(delta, delta) * (self.n * share))

    def stacked(self) -> torch.Tensor:
        """One flat tensor ``[n, mean, C]``, for a single all-gather across ranks."""
        return torch.cat([self.n.reshape(1), self.mean, self.comoment.reshape(-1)])

    @classmethod
    def unstack(cls, flat: torch.Tensor, q: int) -> CoMoments:
        return cls(flat[0], flat[1:1 + q], flat[1 + q:].reshape(q, q))


class PairwiseSum:
    """Co-moments merged as a binary tree: a stack of partial results, merged when two cover equal numbers of
    batches (a binary counter), so each batch goes through about log₂(batches) merges."""

    def __init__(self) -> None:
        self.levels: list[tuple[int, CoMoments]] = []

    def add(self, moments: CoMoments) -> None:
        count = 1
        while self.levels and self.levels[-1][0] == count:
            prior_count, prior = self.levels.pop()
            moments, count = prior.merge(moments), count + prior_count
        self.levels.append((count, moments))

    def result(self) -> CoMoments | None:
        """Everything added, merged in order; None if nothing was."""
        total = None
        for _, moments in self.levels:
            total = moments if total is None else total.merge(moments)
        return total


def merge_in_order(parts: list[CoMoments]) -> CoMoments:
    """Merge several ranks' co-moments pairwise, in rank order: the same answer on every rank."""
    while len(parts) > 1:
        parts = [parts[i].merge(parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]
