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
4. A rank-deficient design (a constant or duplicated column, too few rows or distinct x values) has no unique
   solution. Its rank is decided on the basis with columns of unit norm, with ``numpy.linalg.lstsq``'s
   tolerance, and the answer is lstsq's: the solution of minimum norm in raw coefficients, refined the same way,
   with one :class:`RankDeficientWarning` naming the columns involved.

>>> import numpy as np
>>> x = np.arange(10.0)
>>> w, b = least_squares(x, 3 * x + 1)
>>> np.round(w, 12).tolist(), np.round(b, 12).tolist()
([[3.0]], [1.0])
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from lr_lightning.core.basis import (
    LD,
    _basis_columns,
    _columns,
    _conditioned_basis,
    _validate,
    _with_intercept,
    basis_to_raw,
    check_degree,
    polynomial_features,
    scaling,
)

__all__ = ["LeastSquaresResult", "RankDeficientWarning", "check_degree", "fit_statistics", "least_squares",
           "polynomial_features"]








class RankDeficientWarning(UserWarning):
    """The design has fewer independent columns than coefficients (a constant or duplicated column, fewer rows than
    coefficients, a polynomial degree the distinct x values cannot pin down): infinitely many coefficient vectors
    fit equally well, and :func:`least_squares` reports the one of minimum norm, as ``numpy.linalg.lstsq`` does."""


class LeastSquaresResult(tuple):
    """``(weight, bias)``, so that ``weight, bias = least_squares(...)`` unpacks it, plus what the solve found out.

    Attributes:
        weight: ``(n_outputs, n_features)``, in raw powers of the raw inputs.
        bias: ``(n_outputs,)``, or ``None`` without an intercept.
        rank: the numerical rank of the design; ``n_coefficients`` when it has full rank.
        n_coefficients: the number of coefficients, the intercept included.
        dependent: the names of the coefficients caught in a linear dependency (``"intercept"``, ``"x1"``,
            ``"x1^2"``, …), in coefficient order; empty at full rank.
    """

    rank: int
    n_coefficients: int
    dependent: tuple[str, ...]

    def __new__(cls, weight: np.ndarray, bias: np.ndarray | None, rank: int, n_coefficients: int,
                dependent: tuple[str, ...] = ()) -> LeastSquaresResult:
        self = super().__new__(cls, (weight, bias))
        self.rank, self.n_coefficients, self.dependent = rank, n_coefficients, tuple(dependent)
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickle and copy: a tuple subclass with a __new__ of its own
        return (*self, self.rank, self.n_coefficients, self.dependent)

    @property
    def weight(self) -> np.ndarray:
        return self[0]

    @property
    def bias(self) -> np.ndarray | None:
        return self[1]

    @property
    def full_rank(self) -> bool:
        return self.rank == self.n_coefficients


def least_squares(x: Any, y: Any, bias: bool = True, polynomial_degree: int | None = None,
                  max_refinements: int = 10, chunk_rows: int = 1 << 16, *,
                  names: list[str] | None = None) -> LeastSquaresResult:
    """The least-squares fit ``y ≈ features(x) @ weight.T + bias``, in float64.

    ``features`` is the identity, or the polynomial expansion of :func:`polynomial_features`. Problems larger than
    ``chunk_rows`` rows are streamed in chunks of that many rows (memory stays O(chunk_rows × features)).

    A rank-deficient design (a constant or duplicated column, fewer rows than coefficients, …) is not an error: as
    ``numpy.linalg.lstsq`` on the raw design ``[1, x, x², …]`` does, the result is the minimum-norm solution in
    raw coefficients, with the rank found with lstsq's tolerance (``eps · max(n, p) · σ_max``, here on the
    well-conditioned basis with columns of unit norm), and one :class:`RankDeficientWarning` names the columns
    involved.

    Args:
        x: ``(n_samples, n_inputs)`` real numbers (or ``(n_samples,)``: one input).
        y: ``(n_samples, n_outputs)`` real numbers (or ``(n_samples,)``: one output).
        bias: fit an intercept.
        polynomial_degree: expand each input column into its powers up to this degree (``None``: as it is).
        max_refinements: at most this many rounds of extended-precision refinement (two when streamed).
        chunk_rows: stream problems with more rows than this.
        names: the input columns' names, for messages (default ``x0``, ``x1``, …); powers are named ``x1^2``.

    Returns:
        ``(weight, bias)``: ``weight`` of shape ``(n_outputs, n_features)`` in raw powers of the raw inputs,
        ``bias`` of shape ``(n_outputs,)`` or ``None`` when ``bias=False``; as a :class:`LeastSquaresResult`,
        which also carries ``rank``, ``n_coefficients`` and ``dependent``.

    Raises:
        ValueError: no samples, a non-finite, complex or non-numeric value (the argument, row and column are
            named), x and y of different lengths, or a bad ``polynomial_degree``, ``names`` or ``chunk_rows``.
    """
    check_degree(polynomial_degree)
    if not isinstance(bias, (bool, np.bool_)):
        raise ValueError(f"bias must be True or False, got {bias!r}")
    if not (isinstance(chunk_rows, int) and chunk_rows >= 1):
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    x = _columns(x, "x", validate=False)
    if names is not None and len(names) != x.shape[1]:
        raise ValueError(f"names: {len(names)} names for {x.shape[1]} columns of x")
    names = [str(n) for n in names] if names is not None else [f"x{j}" for j in range(x.shape[1])]
    _validate(x, "x", names)
    y = _columns(y, "y")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}; they must match row for row")
    degree = polynomial_degree or 1
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    with np.errstate(over="ignore"):
        too_wide = ~np.isfinite(hi - lo)
    if too_wide.any():  # the scaling onto [-1, 1] would divide by inf
        j = int(np.argmax(too_wide))
        raise ValueError(f"x: column {names[j]!r} spans {lo[j]:g} to {hi[j]:g}, a range float64 cannot hold; "
                         "rescale it")
    if len(x) > chunk_rows:
        # At this size the float64 solve of the well-conditioned basis is already good to ~1e-14, and each round
        # of refinement is a pass over all the data: two rounds at most.
        beta, rank, null = _streamed(x, y, bias, degree, polynomial_degree, min(2, max_refinements), chunk_rows)
    else:
        beta, rank, null = _in_memory(x, y, bias, degree, polynomial_degree, max_refinements)
    beta64 = beta.astype(np.float64)
    if not np.isfinite(beta64).all():
        raise ValueError("least squares: the solution overflows float64 (are x and y in sensible units?)")
    p = len(beta64)
    dependent: tuple[str, ...] = ()
    if null is not None:
        coefficient_names = (["intercept"] if bias else []) + [n if m == 1 else f"{n}^{m}" for n in names
                                                                for m in range(1, degree + 1)]
        involved = _involved(null, lo, hi, degree, bias)
        dependent = tuple(name for name, i in zip(coefficient_names, involved, strict=True) if i)
        warnings.warn(_rank_message(x, dependent, names, lo, hi, polynomial_degree, rank, p),
                      RankDeficientWarning, stacklevel=2)
    if bias:
        return LeastSquaresResult(beta64[1:].T.copy(), beta64[0].copy(), rank, p, dependent)
    return LeastSquaresResult(beta64.T.copy(), None, rank, p, dependent)


def _in_memory(x: np.ndarray, y: np.ndarray, bias: bool, degree: int, polynomial_degree: int | None,
               max_refinements: int) -> tuple[np.ndarray, int, np.ndarray | None]:
    """``(raw coefficients (p, m) in long double, rank, raw null space or None)`` for data that fits in memory."""
    raw = _with_intercept(polynomial_features(x.astype(LD), polynomial_degree), bias)  # the model, exactly
    basis, t = _conditioned_basis(x, degree, bias)
    q, r = np.linalg.qr(basis)
    spectrum = _Spectrum.of(r, len(x))
    y_ld = y.astype(LD)
    history: list[float] = []
    if spectrum.rank < basis.shape[1]:
        # Rank deficient: no unique solution, and the QR below would divide by zero. Refine the minimum-norm one.
        def pinv(resid: np.ndarray) -> np.ndarray:
            return spectrum.solve(q.T @ resid)

        null = spectrum.raw_null_space(t)
        beta = _project_out(null, t @ pinv(y).astype(LD))
        for _ in range(max_refinements):
            d_beta = _project_out(null, t @ pinv((y_ld - raw @ beta).astype(np.float64)).astype(LD))
            beta = beta + d_beta
            if _converged(d_beta, beta, history):
                break
        return beta, spectrum.rank, null

    beta = t @ np.linalg.solve(r, q.T @ y).astype(LD)  # raw coefficients, (p, m)
    resid = y_ld - raw @ beta
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
    return beta, basis.shape[1], None


class _Spectrum:
    """The SVD of ``R D⁻¹``, where ``B = Q R`` (or ``BᵀB = RᵀR``) and ``D`` holds the column norms of the basis B.

    The singular values are those of B with its columns scaled to unit norm: the rank is decided there, with
    ``numpy.linalg.lstsq``'s tolerance, so that a column's units cannot make it look (in)dependent.
    """

    def __init__(self, d: np.ndarray, u: np.ndarray, s: np.ndarray, vt: np.ndarray, rank: int) -> None:
        self.d, self.u, self.s, self.vt, self.rank = d, u, s, vt, rank

    @classmethod
    def of(cls, r: np.ndarray, n: int) -> _Spectrum:
        norms = np.linalg.norm(r, axis=0)
        d = np.where(norms > 0, norms, 1.0)
        u, s, vt = np.linalg.svd(r / d, full_matrices=True)
        tol = np.finfo(np.float64).eps * max(n, r.shape[1]) * (s[0] if len(s) else 0.0)
        return cls(d, u, s, vt, int((s > tol).sum()))

    def solve(self, qt_rhs: np.ndarray) -> np.ndarray:
        """Basis coefficients of minimum norm (in the scaled basis) for ``Qᵀ rhs``: ``D⁻¹ V_r S_r⁻¹ U_rᵀ Qᵀ rhs``."""
        k = self.rank
        return self.vt[:k].T @ ((self.u[:, :k].T @ qt_rhs) / self.s[:k, None]) / self.d[:, None]

    def solve_normal(self, bt_rhs: np.ndarray) -> np.ndarray:
        """The same from ``Bᵀ rhs`` (the streamed path has no Q): ``D⁻¹ V_r S_r⁻² V_rᵀ D⁻¹ Bᵀ rhs``."""
        k = self.rank
        return self.vt[:k].T @ ((self.vt[:k] @ (bt_rhs / self.d[:, None])) / self.s[:k, None] ** 2) / self.d[:, None]

    def raw_null_space(self, t: np.ndarray) -> np.ndarray:
        """An orthonormal basis (p, p - rank) of the raw coefficients that change no prediction: the directions the
        minimum-norm solution must not have. Basis null vectors ``D⁻¹ V_null`` mapped to raw ones by T."""
        null = t @ (self.vt[self.rank:].T / self.d[:, None]).astype(LD)
        null = (null / np.abs(null).max(axis=0)).astype(np.float64)  # T can be large: scale before leaving LD
        return np.linalg.qr(null)[0]


def _project_out(null: np.ndarray | None, beta: np.ndarray) -> np.ndarray:
    """``beta`` without its component in the raw null space (if any): what is left is the minimum-norm solution."""
    if null is None:
        return beta
    n = null.astype(LD)
    return beta - n @ (n.T @ beta)


def _involved(null: np.ndarray, lo: np.ndarray, hi: np.ndarray, degree: int, bias: bool) -> np.ndarray:
    """Which raw coefficients take part in a dependency: those with a share of the null space, measured with each
    raw column at its own magnitude (``max |x|^m``), so that the units of a column decide nothing."""
    magnitude = np.maximum(np.abs(lo), np.abs(hi)).astype(LD)
    size = np.concatenate([[LD(1)] if bias else [], *[magnitude[j] ** np.arange(1, degree + 1, dtype=LD)
                                                         for j in range(len(lo))]])
    size = np.where(size > 0, size, LD(1))  # an all-zero column: its own magnitude is no scale
    scaled = null.astype(LD) * size[:, None]
    scaled = (scaled / np.abs(scaled).max(axis=0)).astype(np.float64)
    share = np.linalg.norm(np.linalg.qr(scaled)[0], axis=1)  # rotation-invariant: the projector's diagonal
    return share > 1e-6


def _rank_message(x: np.ndarray, dependent: tuple[str, ...], names: list[str], lo: np.ndarray, hi: np.ndarray,
                  polynomial_degree: int | None, rank: int, p: int) -> str:
    """One line: which columns, why if it can be said (a constant column, too few rows, too few distinct x), the
    rank."""
    shown = ", ".join(dependent[:12]) + (f" … ({len(dependent) - 12} more)" if len(dependent) > 12 else "")
    what = f"columns {shown} are linearly dependent" if len(dependent) > 1 else f"column {shown} is all zeros"
    why = []
    involved = [j for j, n in enumerate(names) if n in dependent or any(d.startswith(f"{n}^") for d in dependent)]
    # (An all-zero column is constant too, but "all zeros" said it; without an intercept a constant column alone is
    # no dependency.)
    constant = [names[j] for j in involved if lo[j] == hi[j] and len(dependent) > 1]
    if constant:
        why.append(f"{', '.join(constant)} {'is' if len(constant) == 1 else 'are'} constant")
    if len(x) < p:
        why.append(f"{len(x)} samples for {p} coefficients")
    elif polynomial_degree is not None and polynomial_degree > 1:
        for j in involved:
            distinct = len(np.unique(x[:, j]))
            if distinct <= polynomial_degree and names[j] not in constant:
                why.append(f"{names[j]} has {distinct} distinct values, too few for degree {polynomial_degree}")
    elif not constant and (distinct := len(np.unique(x, axis=0))) < p:  # duplicated rows
        why.append(f"{distinct} distinct rows of x for {p} coefficients")
    why.append(f"rank {rank} of {p} coefficients")
    return f"least squares: {what} ({'; '.join(why)}); reporting the minimum-norm solution"




def _streamed(x: np.ndarray, y: np.ndarray, bias: bool, degree: int, polynomial_degree: int | None,
              max_refinements: int, chunk: int) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Large problems, chunk by chunk: the Gram matrix of the well-conditioned basis (never raw columns, whose
    squared condition number would lose every digit), then the same extended-precision refinement.

    Returns ``(raw coefficients (p, m) in long double, rank, raw null space or None)``.
    """
    centre, scale = scaling(x, bias)
    t = basis_to_raw(centre.tolist(), scale.tolist(), x.shape[1], degree, bias)

    def basis(rows: slice) -> np.ndarray:
        return _basis_columns((x[rows] - centre) / scale, degree, bias)

    def raw(rows: slice) -> np.ndarray:
        return _with_intercept(polynomial_features(x[rows].astype(LD), polynomial_degree), bias)

    chunks = [slice(i, i + chunk) for i in range(0, len(x), chunk)]
    gram = sum(b.T @ b for b in map(basis, chunks))
    norms = np.sqrt(np.diag(gram))
    unit = gram / np.outer(*[np.where(norms > 0, norms, 1.0)] * 2)
    eigen = np.linalg.eigvalsh(unit)
    null = None
    if eigen[0] > 1e-8 * eigen[-1]:
        # Condition number of the unit-column basis below 10⁴: squaring it in the Gram matrix costs nothing.
        cholesky = np.linalg.cholesky(gram)

        def solve(rhs: np.ndarray) -> np.ndarray:  # gram⁻¹ rhs through its Cholesky factor
            return np.linalg.solve(cholesky.T, np.linalg.solve(cholesky, rhs))

        rank = len(gram)
    else:
        # Nearly or exactly dependent columns: the Gram matrix cannot tell which (its eigenvalues carry only half
        # the digits), so a second pass finds R of the basis by a QR chunk by chunk (TSQR), and the rank is decided
        # on R as in memory. The solve goes through R's SVD, on the numerical range only.
        r = np.zeros((0, gram.shape[1]))
        for c in chunks:
            block = basis(c)
            stacked = np.empty((len(r) + len(block), r.shape[1]), order="F")  # LAPACK's order: no copy in qr
            stacked[:len(r)], stacked[len(r):] = r, block
            r = np.linalg.qr(stacked, mode="r")
        spectrum = _Spectrum.of(r, len(x))
        solve, rank = spectrum.solve_normal, spectrum.rank
        if rank < len(gram):
            null = spectrum.raw_null_space(t)

    beta = _project_out(null, t @ solve(sum(basis(c).T @ y[c] for c in chunks)).astype(LD))
    history: list[float] = []
    for _ in range(max_refinements):
        # Residuals of the raw design in extended precision, projected on the basis: the correction.
        rhs = sum(basis(c).T @ (y[c].astype(LD) - raw(c) @ beta).astype(np.float64) for c in chunks)
        d_beta = _project_out(null, t @ solve(rhs).astype(LD))
        beta = beta + d_beta
        if _converged(d_beta, beta, history):
            break
    return beta, rank, null


def _converged(d_beta: np.ndarray, beta: np.ndarray, history: list[float]) -> bool:
    """Done when the correction is below extended precision, or stops shrinking (then rounding, not the method,
    is what is left: more rounds only cost time)."""
    size = float(np.max(np.abs(d_beta) / np.maximum(np.abs(beta), np.finfo(np.float64).tiny)))
    stalled = bool(history) and size > 0.5 * history[-1]
    history.append(size)
    return size <= 4 * float(np.finfo(LD).eps) or stalled




def fit_statistics(x: Any, y: Any, weight: np.ndarray, bias: np.ndarray | None,
                   polynomial_degree: int | None = None, rank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Residual standard deviation and R² of a fit, per output, with residuals in extended precision.

    R² is centred (``1 - SSE / Σ(y - ȳ)²``) with an intercept and uncentred (``1 - SSE / Σy²``) without one,
    as NIST reports it. NaN means "undefined", never an error: the residual SD is NaN when no degrees of freedom
    are left (samples <= rank: an exact fit says nothing about the noise), and R² is NaN where the target has no
    variation to explain (Σ(y - ȳ)² = 0, or Σy² = 0 without an intercept).

    Args:
        x, y: the data the fit was made on, as for :func:`least_squares`.
        weight, bias: the fit, as :func:`least_squares` returns it.
        polynomial_degree: as for :func:`least_squares`.
        rank: the rank of the design (``least_squares(...).rank``); default: every coefficient counts.
    """
    x, y = _columns(x, "x"), _columns(y, "y").astype(LD)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}; they must match row for row")
    pred = polynomial_features(x.astype(LD), polynomial_degree) @ np.asarray(weight, dtype=LD).T
    if bias is not None:
        pred = pred + np.asarray(bias, dtype=LD)
    sse = ((y - pred) ** 2).sum(axis=0)
    dof = len(y) - (weight.shape[1] + (bias is not None) if rank is None else rank)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0) if bias is not None else (y**2).sum(axis=0)
    sd = np.sqrt(sse / dof) if dof > 0 else np.full(sse.shape, np.nan)
    r2 = 1 - sse / np.where(total > 0, total, 1)
    return sd.astype(np.float64), np.where(total > 0, r2, np.nan).astype(np.float64)












