"""The closed-form optimum: linear least squares to (nearly) every digit float64 can hold.

SGD only approaches the best linear fit; this computes it, so the package can say how far training got
(``val/excess_mse``) and can be checked against NIST's certified values (``scripts/nist.py``).

How, and why not the textbook formula: the normal equations ``(XᵀX) β = Xᵀy`` square the condition number,
and raw polynomial columns ``x, x², …, x¹⁰`` are nearly parallel, so on NIST's Filip data they lose every
digit. Instead:

1. Each input column is mapped to [-1, 1] and expanded in Chebyshev polynomials (a constant column carries
   the intercept). That basis spans the same models as raw powers but is well conditioned, so a Householder
   QR in float64 solves it accurately.
2. The answer is then refined (Björck's iterative refinement of the augmented system) with residuals of the
   *raw* design ``[1, x, x², …]`` computed in extended precision (``np.longdouble``). Each round the float64 QR
   solves for a correction; the extended-precision residuals make the corrections converge on the exact
   least-squares solution of the raw problem, not of its float64 rounding.
3. Coefficients live in the raw basis throughout; the map from the Chebyshev basis to raw powers is computed
   exactly with ``fractions.Fraction`` and applied in extended precision.

>>> import numpy as np
>>> x = np.arange(10.0)
>>> w, b = least_squares(x, 3 * x + 1)
>>> np.round(w, 12).tolist(), np.round(b, 12).tolist()
([[3.0]], [1.0])
"""

from __future__ import annotations

from fractions import Fraction
from math import comb
from typing import Any

import numpy as np

LD = np.longdouble


def polynomial_features(x: Any, degree: int | None) -> np.ndarray:
    """Each column's powers ``x, x², …, x^degree`` (no cross terms), ordered x1, x1², …, x1^d, x2, …

    >>> polynomial_features(np.array([[2.0, 3.0]]), 2).tolist()
    [[2.0, 4.0, 3.0, 9.0]]
    """
    x = _columns(x)
    if degree is None or degree == 1:
        return x
    if not (isinstance(degree, int) and degree >= 1):
        raise ValueError(f"polynomial_degree must be an integer >= 1, got {degree!r}")
    return np.concatenate([x[:, [j]] ** np.arange(1, degree + 1) for j in range(x.shape[1])], axis=1)


def least_squares(x: Any, y: Any, bias: bool = True, polynomial_degree: int | None = None,
                  max_refinements: int = 10, chunk_rows: int = 1 << 16) -> tuple[np.ndarray, np.ndarray | None]:
    """The least-squares fit ``y ≈ features(x) @ weight.T + bias``, in float64.

    ``features`` is the identity, or the polynomial expansion of :func:`polynomial_features`. Returns
    ``weight`` of shape ``(n_outputs, n_features)`` (in raw powers of the raw inputs) and ``bias`` of shape
    ``(n_outputs,)``, or ``None`` when ``bias=False``. Problems larger than ``chunk_rows`` rows are streamed
    in chunks of that many rows (memory stays O(chunk_rows × features)).
    """
    x, y = _columns(x), _columns(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if len(x) > chunk_rows:
        # At this size the float64 solve of the well-conditioned basis is already good to ~1e-14, and each round
        # of refinement is a pass over all the data: two rounds at most.
        return _streamed(x, y, bias, polynomial_degree or 1, polynomial_degree, min(2, max_refinements), chunk_rows)
    degree = polynomial_degree or 1
    raw = _with_intercept(polynomial_features(x.astype(LD), polynomial_degree), bias)  # the model, exactly
    basis, to_raw = _conditioned_basis(x, degree, bias)
    if len(x) < basis.shape[1]:
        raise ValueError(f"{len(x)} samples cannot determine {basis.shape[1]} coefficients")
    q, r = np.linalg.qr(basis)
    t = to_raw

    y_ld = y.astype(LD)
    beta = t @ np.linalg.solve(r, q.T @ y).astype(LD)  # raw coefficients, (p, m)
    resid = y_ld - raw @ beta
    history: list[float] = []
    for _ in range(max_refinements):
        # Björck: correct (resid, beta) so that resid + X beta = y and Xᵀ resid = 0, with the errors of both
        # equations measured in extended precision and the corrections solved in float64 through the QR.
        f = y_ld - resid - raw @ beta
        g = -(raw.T @ resid)
        u = np.linalg.solve(r.T, (t.T @ g).astype(np.float64))
        d1 = q.T @ f.astype(np.float64)
        d_beta = t @ np.linalg.solve(r, d1 - u).astype(LD)
        d_resid = (q @ (u - d1) + f.astype(np.float64)).astype(LD)
        beta, resid = beta + d_beta, resid + d_resid
        if _converged(d_beta, beta, history):
            break
    beta64 = beta.astype(np.float64)
    if bias:
        return beta64[1:].T.copy(), beta64[0].copy()
    return beta64.T.copy(), None


def scaling(x: np.ndarray, bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(centre, scale)`` per column (float64) that map the data onto [-1, 1].

    With an intercept, the midrange and half the range; without one, no centre and the largest magnitude:
    centring would smuggle an intercept into a model that must not have one.
    """
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    centre = (lo + hi) / 2 if bias else np.zeros(x.shape[1])
    scale = (hi - lo) / 2 if bias else np.maximum(np.abs(lo), np.abs(hi))
    return centre, np.where(scale > 0, scale, 1.0)


def _streamed(x: np.ndarray, y: np.ndarray, bias: bool, degree: int, polynomial_degree: int | None,
              max_refinements: int, chunk: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Large problems, chunk by chunk: the Gram matrix of the well-conditioned basis (never raw columns, whose
    squared condition number would lose every digit), then the same extended-precision refinement."""
    centre, scale = scaling(x, bias)
    t = basis_to_raw(centre.tolist(), scale.tolist(), x.shape[1], degree, bias)

    def basis(rows: slice) -> np.ndarray:
        return _basis_columns((x[rows] - centre) / scale, degree, bias)

    def raw(rows: slice) -> np.ndarray:
        return _with_intercept(polynomial_features(x[rows].astype(LD), polynomial_degree), bias)

    chunks = [slice(i, i + chunk) for i in range(0, len(x), chunk)]
    gram = sum(b.T @ b for b in map(basis, chunks))
    cholesky = np.linalg.cholesky(gram)

    def solve(rhs: np.ndarray) -> np.ndarray:  # gram⁻¹ rhs through its Cholesky factor
        return np.linalg.solve(cholesky.T, np.linalg.solve(cholesky, rhs))

    beta = t @ solve(sum(basis(c).T @ y[c] for c in chunks)).astype(LD)
    history: list[float] = []
    for _ in range(max_refinements):
        # Residuals of the raw design in extended precision, projected on the basis: the correction.
        rhs = sum(basis(c).T @ (y[c].astype(LD) - raw(c) @ beta).astype(np.float64) for c in chunks)
        d_beta = t @ solve(rhs).astype(LD)
        beta = beta + d_beta
        if _converged(d_beta, beta, history):
            break
    beta64 = beta.astype(np.float64)
    return (beta64[1:].T.copy(), beta64[0].copy()) if bias else (beta64.T.copy(), None)


def _converged(d_beta: np.ndarray, beta: np.ndarray, history: list[float]) -> bool:
    """Done when the correction is below extended precision, or stops shrinking (then rounding, not the method,
    is what is left: more rounds only cost time)."""
    size = float(np.max(np.abs(d_beta) / np.maximum(np.abs(beta), np.finfo(np.float64).tiny)))
    stalled = bool(history) and size > 0.5 * history[-1]
    history.append(size)
    return size <= 4 * float(np.finfo(LD).eps) or stalled


def _basis_columns(t: np.ndarray, degree: int, bias: bool) -> np.ndarray:
    """Chebyshev polynomials T1..Td of each scaled column (powers without an intercept), and a column of ones."""
    n, k = t.shape
    columns = [np.ones(n)] if bias else []
    for j in range(k):
        prev, cur = np.ones(n), t[:, j]
        for m in range(1, degree + 1):
            columns.append(cur if bias else t[:, j] ** m)
            prev, cur = cur, 2 * t[:, j] * cur - prev
    return np.stack(columns, axis=1)


def fit_statistics(x: Any, y: Any, weight: np.ndarray, bias: np.ndarray | None,
                   polynomial_degree: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Residual standard deviation and R² of a fit, per output, with residuals in extended precision.

    R² is centred (``1 - SSE / Σ(y - ȳ)²``) with an intercept and uncentred (``1 - SSE / Σy²``) without one,
    as NIST reports it.
    """
    x, y = _columns(x), _columns(y).astype(LD)
    pred = polynomial_features(x.astype(LD), polynomial_degree) @ np.asarray(weight, dtype=LD).T
    if bias is not None:
        pred = pred + np.asarray(bias, dtype=LD)
    sse = ((y - pred) ** 2).sum(axis=0)
    dof = len(y) - weight.shape[1] - (bias is not None)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0) if bias is not None else (y**2).sum(axis=0)
    return np.sqrt(sse / dof).astype(np.float64), (1 - sse / total).astype(np.float64)


def _columns(a: Any) -> np.ndarray:
    # Floating data is used as it comes (float32 is exact in float64; chunks are widened where they are used):
    # no copy of a large training set. Anything else becomes float64.
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array, got shape {a.shape}")
    return a


def _with_intercept(features: np.ndarray, bias: bool) -> np.ndarray:
    return np.concatenate([np.ones((len(features), 1), dtype=features.dtype), features], axis=1) if bias else features


def _conditioned_basis(x: np.ndarray, degree: int, bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """A well-conditioned float64 basis, and the exact matrix T with raw coefficients = T @ basis coefficients."""
    centre, scale = scaling(x, bias)
    # With an intercept, Chebyshev polynomials T1..Td of t; without, the powers t..t^d (T2 has a constant).
    return _basis_columns((x - centre) / scale, degree, bias), basis_to_raw(centre.tolist(), scale.tolist(),
                                                                             x.shape[1], degree, bias)


def basis_to_raw(centre: list[float], scale: list[float], k: int, degree: int, bias: bool,
                 chebyshev: bool = True) -> np.ndarray:
    """The exact (long double) matrix T with raw coefficients = T @ basis coefficients.

    The basis is, per input column j, ``P_m((x_j - centre_j) / scale_j)`` for m = 1..degree, with P_m the
    Chebyshev polynomial T_m when there is an intercept (and ``chebyshev``), else the power t^m; an intercept,
    if any, comes first. Raw coefficients are [intercept, x1, x1², …, x1^d, x2, …].
    """
    p = bias + k * degree
    to_raw = [[Fraction(0)] * p for _ in range(p)]  # T[raw index][basis index]
    if bias:
        to_raw[0][0] = Fraction(1)
    polys = _chebyshev(degree) if bias and chebyshev else [[0] * m + [1] for m in range(degree + 1)]
    for j in range(k):
        c, s = Fraction(centre[j]), Fraction(scale[j])
        for m in range(1, degree + 1):
            col = bias + j * degree + (m - 1)
            # Expand sum_a coef_a ((x - c)/s)^a into raw powers x^i.
            for a, coef in enumerate(polys[m]):
                for i in range(a + 1) if coef else ():
                    value = coef * comb(a, i) * (-c) ** (a - i) / s**a
                    if i > 0:
                        to_raw[bias + j * degree + (i - 1)][col] += value
                    elif bias:
                        to_raw[0][col] += value
    exact = np.zeros((p, p), dtype=LD)
    for a in range(p):
        for b in range(p):
            if v := to_raw[a][b]:
                exact[a, b] = LD(v.numerator) / LD(v.denominator)
    return exact


def _chebyshev(degree: int) -> list[list[int]]:
    """Integer coefficients (in powers of t) of the Chebyshev polynomials T0..T_degree."""
    polys = [[1], [0, 1]]
    for _ in range(2, degree + 1):
        a, b = polys[-1], polys[-2]
        nxt = [0] + [2 * v for v in a]
        for i, v in enumerate(b):
            nxt[i] -= v
        polys.append(nxt)
    return polys[: degree + 1]
