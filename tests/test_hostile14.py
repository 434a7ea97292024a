"""What a hostile new user found in the exact least-squares feature (round hostile14): each test fails without its
fix. Small data, in-process, CPU only."""

from __future__ import annotations

import numpy as np

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
