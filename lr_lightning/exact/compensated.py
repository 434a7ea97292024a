"""Double-double arithmetic on torch tensors: about 32 significant digits from float64 operations, on any device.

A value is a pair ``(hi, lo)`` of float64 tensors with ``hi + lo`` the number and ``|lo| <= ulp(hi) / 2``. The
building blocks are error-free transformations (Knuth's two-sum, Dekker's product with Veltkamp's split): each
float64 operation's rounding error is itself computed exactly in float64. They need every operation rounded on its
own, which torch's eager elementwise kernels do (no fused multiply-add across kernels; never ``torch.compile`` this).

Why here: the refinement passes of the exact solver need residuals ``y - X β`` and sums ``Xᵀ r`` to more digits
than float64 holds (NIST's Wampler5 cancels ten of them), and x86's 80-bit ``long double`` exists neither on GPUs
nor on Apple silicon. Only what the solver uses is here; see Dekker (1971), Hida, Li & Bailey (2001).

>>> import torch
>>> hi, lo = two_prod(torch.tensor([0.1], dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64))
>>> hi.item(), lo.item()  # 0.1 is not exactly 1/10 in binary: the product's exact value is 1 + 5.55e-17
(1.0, 5.551115123125783e-17)
"""

from __future__ import annotations

import torch

DD = tuple[torch.Tensor, torch.Tensor]
_SPLIT = 134217729.0  # 2**27 + 1: Veltkamp's constant for float64's 53-bit significand


def two_sum(a: torch.Tensor, b: torch.Tensor) -> DD:
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e = a + b`` exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a: torch.Tensor) -> DD:
    """``a = hi + lo`` with each half 26 bits wide, so that products of halves are exact (Veltkamp)."""
    t = _SPLIT * a
    hi = t - (t - a)
    return hi, a - hi


def two_prod(a: torch.Tensor, b: torch.Tensor) -> DD:
    """``(p, e)`` with ``p = fl(a · b)`` and ``p + e = a · b`` exactly (Dekker; no FMA needed)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def normalize(hi: torch.Tensor, lo: torch.Tensor) -> DD:
    """The same value with ``|lo| <= ulp(hi) / 2`` (fast two-sum, valid since ``|hi| >= |lo|``)."""
    s = hi + lo
    return s, lo - (s - hi)


def add(a: DD, b: DD) -> DD:
    """``a + b`` in double-double (the accurate variant: two two-sums)."""
    s, e = two_sum(a[0], b[0])
    t, f = two_sum(a[1], b[1])
    s, e = normalize(s, e + t)
    return normalize(s, e + f)


def mul(a: DD, b: DD) -> DD:
    """``a · b`` in double-double (the ``lo · lo`` term is below the result's precision)."""
    p, e = two_prod(a[0], b[0])
    return normalize(p, e + (a[0] * b[1] + a[1] * b[0]))


def total(a: DD, dim: int) -> DD:
    """The double-double sum of ``a`` along ``dim``, by pairwise halving: log₂(n) vectorized steps, not n."""
    hi, lo = a
    if hi.shape[dim] == 0:
        zero = hi.sum(dim)  # an empty sum is an exact zero of the reduced shape
        return zero, torch.zeros_like(zero)
    while hi.shape[dim] > 1:
        n = hi.shape[dim]
        if n % 2:  # pad with an exact zero so the halves pair up
            shape = list(hi.shape)
            shape[dim] = 1
            zero = hi.new_zeros(shape)
            hi, lo = torch.cat([hi, zero], dim), torch.cat([lo, zero], dim)
            n += 1
        hi, lo = add((hi.narrow(dim, 0, n // 2), lo.narrow(dim, 0, n // 2)),
                     (hi.narrow(dim, n // 2, n // 2), lo.narrow(dim, n // 2, n // 2)))
    return hi.squeeze(dim), lo.squeeze(dim)


def from_float(a: torch.Tensor) -> DD:
    return a, torch.zeros_like(a)
