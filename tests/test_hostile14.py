"""What a hostile new user found in the exact least-squares feature (round hostile14): each test fails without its
fix. Small data, in-process, CPU only."""

from __future__ import annotations

import numpy as np
import pytest

from lr_lightning import least_squares


def _data(n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2))
    return x, x @ [1.0, 2.0] + rng.normal(size=n)


def test_statistics_survive_variances_beyond_float64() -> None:
    """x in units of 1e-5 and y near 1e150 give slopes near 1e155, whose variances (~1e310) float64 cannot hold
    though their standard errors can: the table used to cast the variances first, giving stderr inf, t 0 and p 1.
    t, p and R² do not depend on the units, so they must equal the unit-scale fit's."""
    x, y = _data()
    plain = least_squares(x, y, robust=True).statistics["y"]
    scaled = least_squares(x * 1e-5, y * 1e150, robust=True).statistics["y"]
    np.testing.assert_allclose(scaled["t"], plain["t"], rtol=1e-9)
    np.testing.assert_allclose(scaled["p"], plain["p"], rtol=1e-6)
    for kind in ("HC0", "HC3"):  # the sandwich errors scale with the units: slope units are y's over x's
        np.testing.assert_allclose(np.array(scaled["stderr_hc"][kind][1:]) / 1e155,
                                   plain["stderr_hc"][kind][1:], rtol=1e-9)


@pytest.mark.parametrize(("scale_x", "scale_y", "column"), [(1e-160, 1.0, "x0"), (1e-170, 1e-170, "x0"),
                                                            (1.0, 1e-160, "y")])
def test_values_too_small_for_their_squares_are_refused(scale_x: float, scale_y: float, column: str) -> None:
    """Below ~1e-154 a value's square is subnormal: x at 1e-160 gave slopes 1e-4 off with no word, and at 1e-170
    "every column is constant". Like values whose squares overflow, they are refused, naming the column."""
    x, y = _data()
    with pytest.raises(ValueError, match=rf"^least squares: column '{column}' has values of size ~.*rescale the data$"):
        least_squares(x * scale_x, y * scale_y)


def test_values_at_1e_140_are_still_solved() -> None:
    """The refusal's margin: data at 1e-140 (squares ~1e-280, normal numbers) keeps every digit."""
    x, y = _data()
    plain, small = least_squares(x, y), least_squares(x * 1e-140, y * 1e-140)
    np.testing.assert_allclose(small.weight, plain.weight, rtol=1e-12)
    np.testing.assert_allclose(small.bias / 1e-140, plain.bias, rtol=1e-12)
    np.testing.assert_allclose(small.statistics["y"]["t"], plain.statistics["y"]["t"], rtol=1e-9)


def test_polynomial_powers_beyond_float64_are_a_value_error() -> None:
    """x near 1e-110 to degree 3: the exact map to raw powers (Fractions) overflowed float64 as an OverflowError,
    a traceback on the command line; it is one ValueError now."""
    x, y = _data()
    with pytest.raises(ValueError, match=r"^least squares: the inputs' powers up to degree 3 reach beyond"):
        least_squares(x[:, 0] * 1e-110, y, polynomial_degree=3)
