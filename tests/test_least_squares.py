"""The closed-form reference: NIST's certified values, and exact answers on constructed data."""

import numpy as np
import pytest

from lr_lightning import nist
from lr_lightning.least_squares import fit_statistics, least_squares, polynomial_features

from .conftest import SHARED

NIST_DIR = SHARED / "nist-strd"
needs_nist = pytest.mark.skipif(not NIST_DIR.is_dir(), reason=f"NIST StRD data not found at {NIST_DIR}")


@needs_nist
@pytest.mark.parametrize("name", nist.NAMES)
def test_least_squares_gets_at_least_9_digits_of_every_certified_value(name):
    d = nist.load(NIST_DIR / f"{name}.dat")
    weight, bias = least_squares(d.x, d.y, bias=d.bias, polynomial_degree=d.polynomial_degree)
    estimate = nist.in_nist_order(weight, bias)
    # Measured: the coefficients get 9.36-9.58 digits on Wampler5 and more elsewhere, the residual SD 10.99 on
    # Wampler1 and more, R² 13.9 on Filip and more (OpenBLAS's QR kernels differ in the last bits).
    assert nist.min_lre(estimate, d.certified) >= 9
    residual_sd, r_squared = fit_statistics(d.x, d.y, weight, bias, d.polynomial_degree)
    assert nist.lre(residual_sd[0], d.residual_sd) >= 9
    assert nist.lre(r_squared[0], d.r_squared) >= 9


@needs_nist
def test_the_files_parse_as_nist_describes_them():
    by_name = {d.name: d for d in nist.load_all(NIST_DIR)}
    assert [len(by_name[n].y) for n in ("Norris", "Pontius", "NoInt1", "NoInt2", "Longley", "Filip")] == \
        [36, 40, 11, 3, 16, 82]
    assert by_name["Longley"].x.shape == (16, 6) and len(by_name["Longley"].certified) == 7
    assert by_name["Filip"].polynomial_degree == 10 and by_name["Wampler3"].polynomial_degree == 5
    assert not by_name["NoInt1"].bias and by_name["Norris"].bias
    assert by_name["Wampler5"].certified.tolist() == [1.0] * 6


def test_lre():
    assert nist.lre(1.0, 1.0) == 15 and nist.lre(float("nan"), 1.0) == 0
    assert nist.lre(1.001, 1.0) == pytest.approx(3.0)
    assert nist.lre(1e-9, 0.0) == pytest.approx(9.0)  # absolute error when the certified value is 0


def test_polynomial_features_order():
    x = np.array([[2.0, 3.0], [1.0, -1.0]])
    assert polynomial_features(x, 3).tolist() == [[2, 4, 8, 3, 9, 27], [1, 1, 1, -1, 1, -1]]
    assert polynomial_features(x, None).tolist() == x.tolist()


def test_known_polynomial_coefficients_are_recovered_in_raw_powers():
    x = np.linspace(-3, 7, 50)
    y = 1.5 + 2 * x - 3 * x**2 + 0.25 * x**3
    weight, bias = least_squares(x, y, polynomial_degree=3)
    np.testing.assert_allclose(weight, [[2, -3, 0.25]], rtol=1e-13)  # measured: 4.4e-16 off
    np.testing.assert_allclose(bias, [1.5], rtol=1e-13)


def test_without_intercept_no_intercept_is_smuggled_in():
    x = np.array([1.0, 2.0, 4.0, 5.0])
    y = 2 * x + 5  # a line with an intercept, fitted through the origin
    weight, bias = least_squares(x, y, bias=False)
    assert bias is None
    assert weight[0, 0] == pytest.approx((x * y).sum() / (x * x).sum(), rel=1e-15)


def test_multiple_outputs_and_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    true_w = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    y = x @ true_w.T + np.array([0.5, -1.0])
    weight, bias = least_squares(x, y)
    assert weight.shape == (2, 3) and bias.shape == (2,)
    np.testing.assert_allclose(weight, true_w, atol=1e-13)  # measured: 9.4e-18 off
    np.testing.assert_allclose(bias, [0.5, -1.0], atol=1e-13)


def test_matches_numpy_on_a_well_conditioned_problem():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(100, 4)), rng.normal(size=100)
    weight, bias = least_squares(x, y)
    reference = np.linalg.lstsq(np.column_stack([np.ones(100), x]), y, rcond=None)[0]
    # Measured: 5.6e-17 apart.
    np.testing.assert_allclose(np.concatenate([bias, weight[0]]), reference, rtol=1e-12, atol=1e-14)


def test_large_problems_are_streamed_in_chunks_to_the_same_answer():
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 5, size=(5000, 2))
    y = 1 + x @ [0.5, -1.5] + 0.2 * x[:, 0] ** 2 + 0.01 * rng.normal(size=5000)
    whole = least_squares(x, y, polynomial_degree=2)
    streamed = least_squares(x, y, polynomial_degree=2, chunk_rows=700)
    np.testing.assert_allclose(streamed[0], whole[0], rtol=1e-11, atol=1e-13)  # measured: 6.4e-20 apart
    np.testing.assert_allclose(streamed[1], whole[1], rtol=1e-11)
    no_intercept = least_squares(x, y, bias=False, chunk_rows=700)
    np.testing.assert_allclose(no_intercept[0], least_squares(x, y, bias=False)[0], rtol=1e-11)
