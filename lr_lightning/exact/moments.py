"""Centred co-moments: the sufficient statistics of least squares, accumulated batch by batch and merged pairwise.

For the columns ``a = [features, targets]`` of some rows, :class:`CoMoments` holds the row count ``n``, the column
means and ``C = Σ (a - mean)(a - mean)ᵀ``. Two sets of rows merge exactly (Chan, Golub & LeVeque):

    n = n₁ + n₂,   δ = mean₂ - mean₁,   mean = mean₁ + δ·n₂/n,   C = C₁ + C₂ + δδᵀ·n₁n₂/n

Centring each batch on its own mean is what keeps the digits: ``Σ aaᵀ - n·mean·meanᵀ`` (the textbook formula)
cancels everything an offset in the data holds (a column at 10⁹ ± 1 keeps 7 digits of its spread, not 16).
:class:`PairwiseSum` merges batches as a binary tree (the way numpy sums), so rounding grows with log(batches),
not with their number. Everything stays on the batches' device: no host sync per batch.

The means are kept in double-double (``mean + mean_lo``), because the merge's δ is a difference of two means: with
an offset far beyond the spread (``x = 1000 + 0.001·u``), each float64 mean is rounded to a unit in the last place
of the *offset* (1.1e-13 here), which is 1e-10 of the spread, and δ and the δδᵀ term inherit that; two ways of
cutting the same rows into blocks then disagreed in the intercept's tenth digit, and ``3 + 10⁻⁹·u`` in the slope's
seventh. A block's own mean is made exact to float64's precision of the spread: the mean of the block centred on
its rounded mean is that rounding's error, computed from small numbers.

>>> import torch
>>> a = torch.tensor([[1.0, 2.0], [3.0, 7.0], [5.0, 9.0]], dtype=torch.float64)
>>> whole, parts = CoMoments.of(a), CoMoments.of(a[:1]).merge(CoMoments.of(a[1:]))
>>> torch.allclose(whole.comoment, parts.comoment), whole.comoment[0].tolist()
(True, [8.0, 14.0])
>>> from fractions import Fraction
>>> x = 1000 + 1e-3 * torch.rand(7, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
>>> merged = CoMoments.of(x[:3]).merge(CoMoments.of(x[3:]))
>>> exact = sum(map(Fraction, x[:, 0].tolist())) / 7
>>> error = abs(Fraction(merged.mean.item()) + Fraction(merged.mean_lo.item()) - exact)
>>> float(error) < 1e-3 * 2.2e-16  # float64 precision of the spread; a float64 mean at 1000: 5.7e-14
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lr_lightning.exact import compensated as dd


@dataclass
class CoMoments:
    """Row count (a float64 tensor: it may live on a GPU, and 2⁵³ rows is enough), column means in double-double
    (``mean + mean_lo``, ``|mean_lo| <= ulp(mean) / 2``), centred cross-products."""

    n: torch.Tensor
    mean: torch.Tensor
    mean_lo: torch.Tensor
    comoment: torch.Tensor

    @classmethod
    def of(cls, *columns: torch.Tensor, work: torch.Tensor | None = None, weights: torch.Tensor | None = None,
           shift: torch.Tensor | None = None) -> CoMoments:
        """The co-moments of the rows of ``columns`` side by side (``(rows, k)`` blocks of any float dtype, e.g. the
        features and the targets), computed in float64.

        Blocks of float32 or float64 in CPU memory go to :func:`lr_lightning.exact.gram.gram_sums` (BLAS's symmetric
        product, on every core). The rest, on a GPU say, take :meth:`on_device`: torch operations, the same sums.
        ``shift``: centre the rows on this point instead of the block's own mean, e.g. the previous block's mean,
        which spares a read of the block; the result is the same up to rounding (the centred sums correct for it).

        >>> a = torch.tensor([[1.0, 2.0], [3.0, 7.0], [5.0, 9.0]], dtype=torch.float64)
        >>> CoMoments.of(a, shift=torch.tensor([0.0, 100.0], dtype=torch.float64)).comoment[0].tolist()
        [8.0, 14.0]
        """
        numpy_ready = all(c.device.type == "cpu" and c.dtype in (torch.float32, torch.float64) for c in columns)
        if numpy_ready and len(columns[0]):
            from lr_lightning.exact.gram import gram_sums

            n, hi, lo, comoment = gram_sums([c.detach() for c in columns], weights,
                                            None if shift is None else shift.detach().to(torch.float64).numpy())
            return cls(torch.tensor(n, dtype=torch.float64), *map(torch.from_numpy, (hi, lo, comoment)))
        return cls.on_device(*columns, work=work, weights=weights)

    @classmethod
    def on_device(cls, *columns: torch.Tensor, work: torch.Tensor | None = None,
                  weights: torch.Tensor | None = None) -> CoMoments:
        """:meth:`of` in torch operations, on the columns' device: each block centred on its own mean.

        ``work``, a float64 ``(at least rows, Σk)`` buffer on the same device, is where the block is assembled and
        centred in place: reused from batch to batch, it spares a fresh allocation (and its page faults) and two
        copies per batch, which at a Gram matrix's arithmetic intensity cost as much as the product itself.

        ``weights`` (``(rows, 1)`` or ``(rows,)``, >= 0): weighted co-moments, the sufficient statistics of weighted
        least squares. ``n`` is then the total weight, the means are weighted and ``C = Σ w (a - mean)(a - mean)ᵀ``;
        the merge is the same formula with weights for counts.

        >>> a = torch.tensor([[1.0], [3.0], [5.0]], dtype=torch.float64)
        >>> m = CoMoments.on_device(a, weights=torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))
        >>> m.n.item(), m.mean.item(), m.comoment.item()  # as rows 1, 3, 5, 5
        (4.0, 3.5, 11.0)
        """
        if weights is not None:
            return cls._weighted(columns, weights.reshape(-1).to(torch.float64))
        rows, q = len(columns[0]), sum(c.shape[1] for c in columns)
        n = columns[0].new_full((), float(rows), dtype=torch.float64)  # a fill on the device, not a host copy
        if not rows:  # a DDP rank's share of a last batch can be empty
            zeros = columns[0].new_zeros(q, dtype=torch.float64)
            return cls(n, zeros, zeros.clone(), zeros.new_zeros(q, q))
        if work is None or work.shape[0] < rows or work.shape[1] != q:
            work = columns[0].new_empty(rows, q, dtype=torch.float64)
        a, j, means = work[:rows], 0, []
        # Column sums as a matrix-vector product with ones (BLAS gemv): a column reduction of a row-major block
        # (``c.mean(dim=0)``) ran at a tenth of the memory's speed, and two of them cost a third of the pass.
        ones = columns[0].new_ones(rows, dtype=torch.float64)
        for c in columns:
            part = a[:, j:j + c.shape[1]]
            if c.dtype == torch.float64:  # centred as it is copied: one write of the block, not two
                means.append(ones @ c / rows)
                torch.sub(c, means[-1], out=part)
            else:  # converted to float64 first, then centred in place
                part.copy_(c)
                means.append(ones @ part / rows)
                part.sub_(means[-1])
            j += c.shape[1]
        # The rounded mean is off by up to half a unit of the offset's last place; the centred block's mean is that
        # error (its entries are small, deviations from the mean, so it is exact to float64's precision of them).
        # C is taken about the exact mean: Σ(a - m̃)(a - m̃)ᵀ = C + n·e·eᵀ with e = m - m̃ = Σ(a - m̃)/n.
        # One more read of the block, a few per cent of the product's time.
        off = ones @ a
        hi, lo = dd.two_sum(torch.cat(means), off / n)  # two-sum, not fast two-sum: a mean near 0 may be below e
        return cls(n, hi, lo, a.T @ a - torch.outer(off, off / n))

    @classmethod
    def _weighted(cls, columns: tuple[torch.Tensor, ...], w: torch.Tensor) -> CoMoments:
        """Weighted co-moments (see :meth:`of`): the block centred on its rounded weighted mean, then the same
        correction for that rounding, with the total weight for the count."""
        a = torch.cat([c.to(torch.float64) for c in columns], dim=1)
        total = w.sum()
        if not len(a):
            zeros = a.new_zeros(a.shape[1])
            return cls(total, zeros, zeros.clone(), zeros.new_zeros(len(zeros), len(zeros)))
        safe = total.clamp(min=torch.finfo(torch.float64).tiny)
        mean = (w[:, None] * a).sum(dim=0) / safe
        a = a - mean
        wa = w[:, None] * a
        off = wa.sum(dim=0)
        hi, lo = dd.two_sum(mean, off / safe)
        return cls(total, hi, lo, wa.T @ a - torch.outer(off, off / safe))

    def merge(self, other: CoMoments) -> CoMoments:
        """These rows and ``other``'s, as if computed at once. Empty sides are exact no-ops."""
        n = self.n + other.n
        # n == 0 only if both are empty; clamp so the division is defined (δ is zero then anyway). Not to 1: with
        # weights, n is a total weight, which may be below 1.
        share = other.n / n.clamp(min=torch.finfo(torch.float64).tiny)
        # δ and the new mean in double-double: float64's δ = mean₂ - mean₁ would be exact only to a unit of the
        # offset's last place, not of δ's (see the module's docstring). A dozen ops on q-vectors: nothing next to
        # a block's product.
        delta = dd.add((other.mean, other.mean_lo), (-self.mean, -self.mean_lo))
        hi, lo = dd.add((self.mean, self.mean_lo), dd.mul(delta, dd.from_float(share)))
        d = delta[0] + delta[1]
        return CoMoments(n, hi, lo, self.comoment + other.comoment + torch.outer(d, d) * (self.n * share))

    def stacked(self) -> torch.Tensor:
        """One flat tensor ``[n, mean, mean_lo, C]``, for a single all-gather across ranks."""
        return torch.cat([self.n.reshape(1), self.mean, self.mean_lo, self.comoment.reshape(-1)])

    @classmethod
    def unstack(cls, flat: torch.Tensor, q: int) -> CoMoments:
        return cls(flat[0], flat[1:1 + q], flat[1 + q:1 + 2 * q], flat[1 + 2 * q:].reshape(q, q))


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
