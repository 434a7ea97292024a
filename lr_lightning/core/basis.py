"""The polynomial basis shared by training and the exact solver: raw powers, and a well-conditioned equivalent.

Raw powers ``x, x², …, x^d`` are nearly parallel columns; Chebyshev polynomials of each column mapped to [-1, 1]
span the same models and are well conditioned. :class:`~lr_lightning.core.features.FeatureMap` trains on that basis,
:mod:`lr_lightning.exact` solves on it, and :func:`basis_to_raw` maps coefficients back to raw powers exactly.
"""

from __future__ import annotations

from fractions import Fraction
from math import comb
from typing import Any

import numpy as np

LD = np.longdouble

MAX_DEGREE = 50


def check_degree(degree: Any) -> None:
    """``None`` or a whole number from 1 to :data:`MAX_DEGREE`, else ValueError.

    Beyond 50, raw powers overflow float64 for any |x| above 10⁶ (and mean nothing numerically long before), and the
    exact map between bases costs time cubic in the degree.
    """
    if degree is not None and not (isinstance(degree, int) and not isinstance(degree, bool)
                                   and 1 <= degree <= MAX_DEGREE):
        raise ValueError(f"polynomial_degree must be a whole number from 1 to {MAX_DEGREE}, got {degree!r}")


def polynomial_features(x: Any, degree: int | None) -> np.ndarray:
    """Each column's powers ``x, x², …, x^degree`` (no cross terms), ordered x1, x1², …, x1^d, x2, …

    >>> polynomial_features(np.array([[2.0, 3.0]]), 2).tolist()
    [[2.0, 4.0, 3.0, 9.0]]
    """
    x = _columns(x, "x", validate=False)  # a transform: NaN in, NaN out
    check_degree(degree)
    if degree is None or degree == 1:
        return x
    return np.concatenate([x[:, [j]] ** np.arange(1, degree + 1) for j in range(x.shape[1])], axis=1)


def scaling(x: np.ndarray, bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(centre, scale)`` per column (float64) that map the data onto [-1, 1].

    With an intercept, the midrange and half the range; without one, no centre and the largest magnitude:
    centring would smuggle an intercept into a model that must not have one.
    """
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    centre = (lo + hi) / 2 if bias else np.zeros(x.shape[1])
    scale = (hi - lo) / 2 if bias else np.maximum(np.abs(lo), np.abs(hi))
    return centre, np.where(scale > 0, scale, 1.0)


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
    """:func:`basis_to_raw_exact` in long double."""
    to_raw = basis_to_raw_exact(centre, scale, k, degree, bias, chebyshev)
    p = len(to_raw)
    exact = np.zeros((p, p), dtype=LD)
    for a in range(p):
        for b in range(p):
            if v := to_raw[a][b]:
                exact[a, b] = LD(v.numerator) / LD(v.denominator)
    return exact


def basis_to_raw_exact(centre: list[float], scale: list[float], k: int, degree: int, bias: bool,
                       chebyshev: bool = True) -> list[list[Fraction]]:
    """The matrix T, as exact fractions, with raw coefficients = T @ basis coefficients.

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
    return to_raw


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


def cell(row: int, col: int, n_columns: int, names: list[str] | None = None) -> str:
    """Where a value sits, as every error message says it: rows (and unnamed columns) counted from 1, as a person
    counts them and as CSV lines and predict.py's rows are; a column by its name where it has one, and not at all
    when there is only one. ``row``, ``col``: 0-based indices.

    >>> cell(0, 1, 3, ["a", "b", "c"]), cell(4, 0, 1), cell(4, 2, 3)
    ("row 1 (1-based), column 'b'", 'row 5 (1-based)', 'row 5, column 3 (both 1-based)')
    """
    if names is not None:
        return f"row {row + 1} (1-based), column {names[col]!r}"
    return f"row {row + 1} (1-based)" if n_columns == 1 else f"row {row + 1}, column {col + 1} (both 1-based)"


def labels(a: Any) -> list[str] | None:
    """The column names a pandas Series (its name) or DataFrame (its columns) carries; None for anything else."""
    columns = getattr(a, "columns", None)
    if columns is not None:
        return [str(c) for c in columns]
    name = getattr(a, "name", None) if hasattr(a, "to_numpy") else None
    return [str(name)] if name is not None else None


def unmasked(a: Any, name: str) -> Any:
    """``a``, or a masked array's data when nothing is masked; a masked array with masked values is refused
    (ValueError naming ``name``): ``np.asarray`` drops the mask, and the values behind it would be fitted."""
    if not np.ma.isMaskedArray(a):
        return a
    if np.ma.getmaskarray(a).any():
        raise ValueError(f"{name}: a masked array with masked values, which would be used as if they were data; drop "
                         "those rows or fill them first")
    return np.ma.getdata(a)


def not_a_number(a: np.ndarray) -> tuple[int, int, Any] | None:
    """The first value of a non-numeric array (strings, objects) that is not a real number, as ``(row, column,
    value)`` (0-based); None if every value converts."""
    grid = a.reshape(len(a), -1) if a.ndim >= 1 else a.reshape(1, 1)
    for (row, col), value in np.ndenumerate(grid):
        try:
            if isinstance(value, (complex, np.complexfloating)):
                raise TypeError
            float(value)
        except (TypeError, ValueError):
            return row, col, value.item() if isinstance(value, np.generic) else value
    return None


def pandas_numbers(a: Any) -> Any:
    """A pandas frame or series as float64 numbers, its missing values (``pd.NA``, ``None``) as NaN, which the
    finiteness checks then name by row and column; anything else as it is. (``np.asarray`` of a nullable ``Float64``
    column gives Python objects, refused as "not numbers" with no row named.)"""
    if type(a).__module__.startswith("pandas") and hasattr(a, "to_numpy"):
        try:
            return a.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # text columns: refused where arrays are checked, as for any array
            return a
    return a


def _columns(a: Any, name: str = "x", names: list[str] | None = None, validate: bool = True) -> np.ndarray:
    """``a`` as a 2-D array of real numbers, one column per variable; a 1-D ``a`` becomes one column.

    ``validate``: also refuse an empty array and non-finite values. Errors name the argument (``name``) and, for a
    non-finite value, its row and column (from ``names``, if given).
    """
    # Floating data is used as it comes (float32 is exact in float64; chunks are widened where they are used):
    # no copy of a large training set. Anything else becomes float64.
    names = names if names is not None else labels(a)
    a = unmasked(a, name)
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a torch tensor, maybe one that requires grad: its values only
        a = a.detach().cpu().numpy()
    try:
        a = np.asarray(pandas_numbers(a))
    except (TypeError, ValueError) as e:  # ragged lists
        raise ValueError(f"{name}: expected an array of real numbers ({e})") from None
    if not a.dtype.isnative:  # big-endian data from another machine's file: torch takes native byte order only
        a = a.astype(a.dtype.newbyteorder("="))
    if np.iscomplexobj(a):  # casting would drop the imaginary part with no more than a ComplexWarning
        raise ValueError(f"{name}: expected real numbers, got complex values ({a.dtype})")
    if not np.issubdtype(a.dtype, np.floating):
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):  # strings, None, objects
            bad = not_a_number(a)
            where = f"; {cell(bad[0], bad[1], a.shape[1] if a.ndim == 2 else 1, names)}: {bad[2]!r} is not a number" \
                if bad else ""
            raise ValueError(f"{name}: expected real numbers, got values of dtype {a.dtype}{where}") from None
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 1-D or 2-D array (n_samples, n_columns), got shape {a.shape}")
    if validate:
        _validate(a, name, names)
    return a


def _validate(a: np.ndarray, name: str, names: list[str] | None = None) -> None:
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: no {'samples' if a.shape[0] == 0 else 'columns'} (shape {a.shape})")
    # NaN and inf would not fail the solve: they would come out as NaN weights, or worse, as a wrong fit.
    finite = np.isfinite(a)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(f"{name}: non-finite value {a[row, col]} at {cell(row, col, a.shape[1], names)}")
