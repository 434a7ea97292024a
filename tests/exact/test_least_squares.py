"""The closed-form reference: NIST's certified values, and exact answers on constructed data."""

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

from lr_lightning.core.cli import fit_main
from lr_lightning.core.data.datamodule import RegressionDataModule
from lr_lightning.exact import nist
from lr_lightning.exact.solver import RankDeficientWarning, fit_statistics, least_squares, polynomial_features

from ..conftest import ROOT, SHARED, run_main

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


# ------------------------------------------------------------------------------------- rank deficiency
def _design(x, bias, degree):
    features = polynomial_features(x, degree)
    return np.column_stack([np.ones(len(features)), features]) if bias else features


def _rank_cases():
    """(id, x, y, bias, degree, names, aliased, words of the warning): each a different way to lose rank, on
    well-scaled data. R's lm aliases, in column order, each column that is constant or a combination of those before
    it."""
    rng = np.random.default_rng(5)
    n = 40
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = 1 + 2 * x1 - x2 + 0.1 * rng.normal(size=n)
    grid = np.repeat([-1.0, -0.5, 0.5, 1.0], 5)  # 4 distinct values, degree 5 wants 6
    twice = np.repeat(rng.normal(size=(2, 2)), 10, axis=0)  # 20 rows, only 2 distinct
    return [
        ("constant column", np.column_stack([x1, np.full(n, 3.0), x2]), y, True, None, ["x1", "c", "x2"], ("c",),
         r"^least squares: c is aliased \(constant, or a linear combination of the columns before it\): not "
         r"estimable, reported as null; rank 3 of 4 coefficients$"),
        # Without an intercept a constant column is a regressor (the intercept, in effect); a second one is aliased.
        ("constant columns, no intercept", np.column_stack([x1, np.full(n, 3.0), np.full(n, -2.0)]), y, False, None,
         ["x1", "c", "d"], ("d",), r"d is aliased .* rank 2 of 3 coefficients"),
        ("collinear columns", np.column_stack([x1, 2 * x1, x2]), y, True, None, ["x1", "x2", "x3"], ("x2",),
         r"x2 is aliased .* rank 3 of 4 coefficients"),
        ("degree beyond the distinct x", grid, rng.normal(size=20), True, 5, ["x"], ("x^4", "x^5"),
         r"x\^4, x\^5 are aliased .* rank 4 of 6 coefficients"),
        ("duplicated rows", twice, rng.normal(size=20), True, None, ["a", "b"], ("b",),
         r"b is aliased .* rank 2 of 3 coefficients"),
    ]


@pytest.mark.parametrize(("x", "y", "bias", "degree", "names", "aliased", "words"), [c[1:] for c in _rank_cases()],
                         ids=[c[0] for c in _rank_cases()])
def test_aliased_columns_are_left_out_as_r_does_with_one_warning(x, y, bias, degree, names, aliased, words):
    with pytest.warns(RankDeficientWarning, match=words) as record:
        fit = least_squares(x, y, bias=bias, polynomial_degree=degree, names=names)
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert fit.aliased == aliased and fit.rank == fit.n_coefficients - len(aliased) and not fit.full_rank
    # The estimated coefficients are the fit on the other columns; the aliased ones are 0 (and None in statistics).
    coefficient_names = fit.statistics["y"]["names"]
    kept = [i for i, name in enumerate(coefficient_names) if name not in aliased]
    reference = np.linalg.lstsq(_design(x, bias, degree)[:, kept], y, rcond=None)[0]
    ours = nist.in_nist_order(*fit)
    np.testing.assert_allclose(ours[kept], reference, rtol=1e-9, atol=1e-12)
    assert not ours[[i for i in range(len(ours)) if i not in kept]].any()
    weight, bias_ = fit  # still unpacks as (weight, bias)
    assert weight.shape == (1, x.reshape(len(x), -1).shape[1] * (degree or 1)) and (bias_ is None) == (not bias)


def test_the_column_named_is_the_one_that_depends_on_those_before_it():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(30, 4))
    x[:, 3] = x[:, 1] - 0.5 * x[:, 2] + 4  # x3 depends on x1, x2 and the intercept; x0 is free
    with pytest.warns(RankDeficientWarning):
        fit = least_squares(x, rng.normal(size=30), names=["x0", "x1", "x2", "x3"])
    assert fit.aliased == ("x3",)


def test_chunked_with_a_constant_column_matches_in_memory():
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.uniform(-2, 3, 3000), np.full(3000, 1.5), rng.normal(size=3000)])
    y = 0.5 + x[:, 0] - 2 * x[:, 2] + 0.01 * rng.normal(size=3000)
    with pytest.warns(RankDeficientWarning, match=r"k is aliased") as record:
        streamed = least_squares(x, y, chunk_rows=500, names=["a", "k", "b"])
    assert len(record) == 1
    with pytest.warns(RankDeficientWarning):
        whole = least_squares(x, y)
    reference = np.linalg.lstsq(_design(x[:, [0, 2]], True, None), y, rcond=None)[0]
    assert streamed.rank == whole.rank == 3 and streamed.aliased == ("k",)
    np.testing.assert_allclose(nist.in_nist_order(*streamed)[[0, 1, 3]], reference, rtol=1e-10)
    np.testing.assert_allclose(nist.in_nist_order(*whole)[[0, 1, 3]], reference, rtol=1e-10)


def test_full_rank_problems_report_full_rank_and_do_not_warn():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(100, 4)), rng.normal(size=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankDeficientWarning)
        fit = least_squares(x, y)
        streamed = least_squares(x, y, chunk_rows=30)
        # Nearly collinear is not collinear: x3 = x0 + 1e-6 noise (R's lm keeps it: 1e-6 > its 1e-7) is solved, in
        # one chunk and in several, after the QR pass that decides it.
        x[:, 3] = x[:, 0] + 1e-6 * rng.normal(size=100)
        close = least_squares(x, y)
        close_streamed = least_squares(x, y, chunk_rows=30)
    assert (fit.rank, fit.n_coefficients, fit.aliased, fit.full_rank) == (5, 5, (), True)
    assert streamed.rank == close.rank == close_streamed.rank == 5
    np.testing.assert_allclose(fit.weight, streamed.weight, rtol=1e-11)
    reference = np.linalg.lstsq(_design(x, True, None), y, rcond=None)[0]
    np.testing.assert_allclose(nist.in_nist_order(*close), reference, rtol=1e-6)  # lstsq itself: ~1e-10 off here
    np.testing.assert_allclose(close_streamed.weight, close.weight, rtol=1e-8)
    again = pickle.loads(pickle.dumps(fit))
    assert again.rank == 5 and np.array_equal(again.weight, fit.weight)


def test_below_r_s_threshold_a_near_copy_is_aliased():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 2))
    x[:, 1] = x[:, 0] + 1e-9 * rng.normal(size=100)  # 1e-9 of its spread: below R's 1e-7
    with pytest.warns(RankDeficientWarning, match="x1 is aliased"):
        fit = least_squares(x, x[:, 0] + rng.normal(size=100))
    assert fit.rank == 2


# ----------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("x", "y", "words"), [
    ([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]], [1.0, 2.0, 3.0],
     r"x: non-finite value nan at row 2 \(1-based\), column 'b'"),
    ([1.0, 2.0, 3.0], [1.0, 2.0, np.inf], r"y: non-finite value inf at row 3 \(1-based\)$"),
    (np.zeros((0, 2)), np.zeros(0), r"x: no samples \(shape \(0, 2\)\)"),
    (np.arange(4.0) + 1j, np.arange(4.0), r"x: expected real numbers, got complex values \(complex128\)"),
    (np.arange(4.0), np.arange(4.0) * 1j, r"y: expected real numbers, got complex values"),
    (np.arange(4.0), np.arange(3.0), "x has 4 samples but y has 3"),
    (["a", "b"], [1.0, 2.0], "x: expected real numbers, got values of dtype <U1"),
    ([-1e308, 1e308, 0.0], [1.0, 2.0, 3.0], "x: column 'b' spans -1e\\+308 to 1e\\+308, a range float64 cannot hold"),
    ([[1.0, 2.0], [3.0, 5.0], [4.0, 1.0]], [1.0, 2.0, 3.0], "3 rows for 3 coefficients; it needs more rows"),
    ([[1.0, 2.0]] * 4, [1.0, 2.0, 3.0, 4.0], r"every column \(a, b\) is constant"),
], ids=["nan", "inf", "empty", "complex x", "complex y", "lengths", "strings", "overflowing range", "n <= p",
        "all constant"])
def test_what_cannot_be_solved_is_one_clear_value_error(x, y, words):
    names = ["a", "b"] if np.ndim(x) == 2 and np.shape(x)[1] == 2 else ["b"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning, no RuntimeWarning on the way
        with pytest.raises(ValueError, match=words) as raised:
            least_squares(x, y, names=names)
    assert "\n" not in str(raised.value)


def test_fit_statistics_are_nan_where_undefined_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd, r2 = fit_statistics([0.0, 1.0], [1.0, 3.0], np.array([[2.0]]), np.array([1.0]))  # 2 rows, 2 coefficients
        assert np.isnan(sd[0]) and r2[0] == 1.0
        sd, r2 = fit_statistics([0.0, 1.0, 2.0], [4.0, 4.0, 4.0], np.array([[0.0]]), np.array([4.0]))  # constant y
        assert sd[0] == 0.0 and np.isnan(r2[0])
        # A rank-deficient fit leaves n - rank degrees of freedom, not n - p.
        x = np.column_stack([np.arange(5.0), 2 * np.arange(5.0)])
        y = np.array([0.0, 1.1, 1.9, 3.2, 3.9])
        with pytest.warns(RankDeficientWarning):
            fit = least_squares(x, y)
        sd, _ = fit_statistics(x, y, *fit, rank=fit.rank)
        residual = y - (x @ fit.weight[0] + fit.bias[0])
        assert sd[0] == pytest.approx(np.sqrt((residual**2).sum() / (5 - 2)), rel=1e-12)


# ----------------------------------------------------------------------------------------- public name
def test_lr_lightning_least_squares_is_the_function_also_after_importing_the_module():
    code = ("import sys, lr_lightning\n"
            "assert 'lr_lightning.exact.solver' not in sys.modules  # lazy: `import lr_lightning` stays light\n"
            "f = lr_lightning.least_squares\n"
            "import lr_lightning.exact.solver\n"
            "assert callable(f) and f is lr_lightning.least_squares is lr_lightning.exact.solver.least_squares\n"
            "assert lr_lightning.RankDeficientWarning is lr_lightning.exact.solver.RankDeficientWarning\n"
            "w, b = lr_lightning.least_squares([1.0, 2.0, 3.0], [3.0, 5.0, 7.0])\n"
            "assert abs(w[0, 0] - 2) < 1e-12 and abs(b[0] - 1) < 1e-12\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    import lr_lightning

    assert lr_lightning.least_squares is least_squares


# ------------------------------------------------------------------------------------ data module, CLI
def test_the_reference_on_a_data_module_warns_once_and_keeps_the_rank():
    from lr_lightning.exact.reference import optimum

    rng = np.random.default_rng(8)
    x = np.column_stack([rng.normal(size=50), np.full(50, 2.0)])
    dm = RegressionDataModule(x, x[:, 0] + 1, feature_names=["u", "k"])
    with pytest.warns(RankDeficientWarning, match="k is aliased") as record:
        first = optimum(dm)
    assert len(record) == 1
    assert first["rank"] == 2 and first["n_coefficients"] == 3 and first["aliased"] == ("k",)
    assert first["mse"]["val"] < 1e-10  # the fit without k, and still the best one
    few = RegressionDataModule(x[:4], x[:4, 0], val_fraction=0)  # 4 rows for 3 coefficients: fine; 3 would not be
    with pytest.warns(RankDeficientWarning, match="x1 is aliased"):  # (its constant column, unnamed)
        assert optimum(few)["rank"] == 2
    assert optimum(RegressionDataModule(x[:3], x[:3, 0], val_fraction=0)) is None  # no reference: training goes on


def _csv(path, columns, names):
    rows = np.column_stack(columns)
    path.write_text(",".join(names) + "\n" + "\n".join(",".join(f"{v:.17g}" for v in r) for r in rows) + "\n")
    return path


def _dependent_columns(case):
    """The columns of a CSV (the target last) with a linear dependency of the kind ``case`` names."""
    rng = np.random.default_rng(9)
    x1, x3 = rng.normal(size=40), rng.normal(size=40)
    if case == "constant":
        return {"x1": x1, "c": np.full(40, 3.0), "x3": x3, "y": 1 + x1 - x3}
    if case == "collinear":
        return {"x1": x1, "x2": 2 * x1, "x3": x3, "y": 1 + x1 - x3}
    if case == "few rows":
        return {**{f"x{j}": rng.normal(size=3) for j in range(1, 5)}, "y": rng.normal(size=3)}
    grid = np.repeat([1.0, 2.0, 3.0, 4.0], 10)  # polynomial: 4 distinct values for 6 coefficients
    return {"x1": grid, "y": 2 * grid + 0.1 * rng.normal(size=40)}


@pytest.mark.parametrize(("case", "flags", "words"), [
    ("constant", [], "least squares: c is aliased (constant, or a linear combination of the columns before it): "
     "not estimable, reported as null; rank 3 of 4"),
    ("collinear", ["--data.standardize", "true"], "least squares: x2 is aliased (constant, or a linear combination of "
     "the columns before it): not estimable, reported as null; rank 3 of 4"),
    ("few rows", ["--data.val_fraction", "0", "--data.bias", "false"], None),
    ("polynomial", ["--data.polynomial_degree", "5"], "least squares: x1^4, x1^5 are aliased"),
])
def test_fit_trains_on_dependent_columns_and_warns_once(tmp_path, case, flags, words):
    columns = _dependent_columns(case)
    path = _csv(tmp_path / "d.csv", list(columns.values()), list(columns))
    result = run_main(fit_main, "--data", str(path), "--max_epochs", "2", *flags, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    warned = [line for line in output.splitlines() if "aliased (" in line]
    assert "Checkpoints: last" in result.stdout
    if words is None:  # 3 rows for 4 coefficients: no exact reference, and training goes on without it
        assert warned == [] and "least squares:" not in result.stdout
        return
    assert len(warned) == 1 and words in warned[0], output
    # The whole summary, the reference line (naming the aliased columns) and the checkpoints included.
    assert "aliased; rank" in result.stdout


def test_fit_refuses_an_unsolvable_reference_before_training(tmp_path):
    path = _csv(tmp_path / "wide.csv", [[-1e308, 1e308, 0.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0]], ["x", "y"])
    result = run_main(fit_main, "--data", str(path), "--precision", "64-true", "--data.val_fraction", "0",
                      cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: --data: the least-squares reference on the training split: x: column 'x' spans -1e+308 to "
        "1e+308, a range float64 cannot hold; rescale it"]


def test_a_network_passed_as_bias_is_named_by_class_in_one_line():
    from lr_lightning.core.networks import MLPRegressor
    from lr_lightning.exact import LeastSquaresModule
    with pytest.raises(ValueError) as info:
        LeastSquaresModule(MLPRegressor(2))
    assert str(info.value) == "LeastSquaresModule: bias must be true or false, got a MLPRegressor"
