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
    def of(cls, a: torch.Tensor) -> CoMoments:
        """The co-moments of the rows of ``a`` (float64, ``(rows, columns)``)."""
        n = a.new_full((), float(len(a)))  # a fill on the device, not a copy from the host (no sync)
        if not len(a):  # a DDP rank's share of a last batch can be empty
            return cls(n, a.new_zeros(a.shape[1]), a.new_zeros(a.shape[1], a.shape[1]))
        mean = a.mean(dim=0)
        centred = a - mean
        return cls(n, mean, centred.T @ centred)

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
