"""LeastSquaresModule and the regression table: NIST's certified values through the Trainer, statsmodels' statistics,
R-style aliasing, data larger than memory, checkpoints, and the command line's ``--solver exact``."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lr_lightning import LeastSquaresModule, NpyDataModule, ParquetDataModule, RegressionDataModule, RegressionModule
from lr_lightning.core.cli import fit_main
from lr_lightning.core.evaluate import evaluate_main
from lr_lightning.core.export import export_main
from lr_lightning.core.predict import predict_main
from lr_lightning.exact import nist
from lr_lightning.exact.solver import RankDeficientWarning, least_squares
from lr_lightning.exact.statistics import KEYS, format_table

from ..conftest import SHARED, make_trainer, run_main

# The keys issue #14 names, exactly (other checks read them): written out here, not taken from the code under test.
ISSUE_KEYS = ("names", "coef", "stderr", "t", "p", "ci95", "n", "df_model", "df_resid", "residual_sd", "r2", "adj_r2",
              "f_stat", "f_pvalue", "log_likelihood", "aic", "bic", "condition_number", "rank")

NIST_DIR = SHARED / "nist-strd"
needs_nist = pytest.mark.skipif(not NIST_DIR.is_dir(), reason=f"NIST StRD data not found at {NIST_DIR}")
sm = pytest.importorskip("statsmodels.api", reason="statsmodels is the reference for the statistics (dev extra)")


def fit(dm, **kwargs):
    module = LeastSquaresModule(bias=dm.bias, **kwargs)
    make_trainer(max_epochs=20).fit(module, datamodule=dm)
    return module


def least_squares_statistics(x, y, **kwargs):
    """The statistics of y on x through the Trainer, in memory, float64."""
    return fit(RegressionDataModule(x, y, val_fraction=0, dtype="float64"), **kwargs).statistics["y"]


# ------------------------------------------------------------------------------------------------ NIST
@needs_nist
@pytest.mark.parametrize("name", nist.NAMES)
def test_every_nist_dataset_through_the_trainer_meets_the_certified_digits(name):
    d = nist.load(NIST_DIR / f"{name}.dat")
    dm = RegressionDataModule(d.x, d.y, batch_size=16, val_fraction=0, polynomial_degree=d.polynomial_degree,
                              bias=d.bias, dtype="float64")
    s = fit(dm).statistics["y"]
    # Measured (AMD EPYC, torch's CPU kernels): coefficients >= 13.2 digits, stderr >= 12.8, residual SD >= 13.5,
    # R² >= 13.7, F >= 12.9. The issue asks 9 for the coefficients and 8 for the rest; held here with that margin.
    assert nist.min_lre(np.array(s["coef"]), d.certified) >= 9
    assert nist.min_lre(np.array(s["stderr"]), d.certified_sd) >= 8
    assert nist.lre(s["residual_sd"], d.residual_sd) >= 8
    assert nist.lre(s["r2"], d.r_squared) >= 8
    assert nist.lre(s["f_stat"], d.f_statistic) >= 8
    assert s["names"][0] == ("intercept" if d.bias else "x0") and s["n"] == len(d.y)


@needs_nist
def test_least_squares_over_arrays_is_the_same_machinery():
    d = nist.load(NIST_DIR / "Wampler5.dat")
    result = least_squares(d.x, d.y, polynomial_degree=5, names=["x"], chunk_rows=7)  # 3 chunks: merged sums
    assert nist.min_lre(nist.in_nist_order(*result), d.certified) >= 9
    assert result.statistics["y"]["names"] == ["intercept", "x", "x^2", "x^3", "x^4", "x^5"]
    assert nist.lre(result.statistics["y"]["residual_sd"], d.residual_sd) >= 8


# ------------------------------------------------------------------------------------------ statsmodels
def _compare(ours, ref, robust=True, condition=True, rtol=1e-6):
    """Every statistic statsmodels reports, to ``rtol`` relative (p-values below 1e-300 compare as zero)."""
    close = dict(rtol=rtol, atol=0)
    np.testing.assert_allclose(ours["coef"], ref.params, **close)
    np.testing.assert_allclose(ours["stderr"], ref.bse, **close)
    np.testing.assert_allclose(ours["t"], ref.tvalues, **close)
    np.testing.assert_allclose(ours["p"], ref.pvalues, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(np.array(ours["ci95"]), ref.conf_int(0.05), **close)
    for key, value in (("r2", ref.rsquared), ("adj_r2", ref.rsquared_adj), ("f_stat", ref.fvalue),
                       ("f_pvalue", ref.f_pvalue), ("log_likelihood", ref.llf), ("aic", ref.aic), ("bic", ref.bic),
                       ("residual_sd", math.sqrt(ref.scale)),
                       *([("condition_number", ref.condition_number)] if condition else [])):
        assert ours[key] == pytest.approx(value, rel=rtol, abs=1e-300), key
    assert (ours["n"], ours["df_model"], ours["df_resid"], ours["rank"]) == (
        ref.nobs, ref.df_model, ref.df_resid, len(ref.params))
    if robust:
        for kind in ("HC0", "HC1", "HC2", "HC3"):
            np.testing.assert_allclose(ours["stderr_hc"][kind], getattr(ref, f"{kind}_se"), **close, err_msg=kind)


@pytest.mark.parametrize("bias", [True, False], ids=["intercept", "no intercept"])
def test_every_statistic_agrees_with_statsmodels(bias):
    rng = np.random.default_rng(3)
    n = 300
    # Columns on different scales, one offset far from zero, and noise that grows with x0: HC0-HC3 differ.
    x = rng.normal(size=(n, 3)) * [1.0, 30.0, 0.01] + [0.0, 500.0, 0.0]
    y = np.column_stack([x @ [0.5, -0.02, 40.0] + 3 + rng.normal(size=n) * (1 + np.abs(x[:, 0])),
                         x @ [1.0, 0.0, 0.0] + rng.normal(size=n)])
    dm = RegressionDataModule(x, y, batch_size=64, val_fraction=0, bias=bias, dtype="float64",
                              feature_names=["a", "b", "c"], target_names=["price", "size"])
    module = fit(dm, robust=True)
    assert list(module.statistics) == ["price", "size"]
    design = sm.add_constant(x) if bias else x
    for j, target in enumerate(["price", "size"]):
        ours = module.statistics[target]
        assert set(ours) == set(ISSUE_KEYS) | {"stderr_hc"} and set(KEYS) == set(ISSUE_KEYS)
        assert ours["names"] == (["intercept"] if bias else []) + ["a", "b", "c"]
        _compare(ours, sm.OLS(y[:, j], design).fit())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(12, 80), k=st.integers(1, 4), offset=st.sampled_from([0.0, 1e3, -1e6]),
       log_scale=st.integers(-3, 3), seed=st.integers(0, 2**16), chunk=st.integers(1, 40))
def test_generated_designs_agree_with_statsmodels(n, k, offset, log_scale, seed, chunk):
    """Any shape, offset and scale, chunked anyhow: the classic table equals statsmodels'."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)) * 10.0**log_scale + offset
    y = x @ rng.normal(size=k) + rng.normal(size=n)
    ours = least_squares(x, y, chunk_rows=chunk, robust=True).statistics["y"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels on a nearly singular design
        ref = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    # statsmodels works on the raw design (pinv, and leverages from it): its own error grows like eps·cond², so the
    # comparison is to 1e-6 or that, whichever is larger (where it is larger, ours is the exact one: see below).
    rtol = max(1e-6, 1e-15 * ref.condition_number**2)
    if rtol < 1e-2:
        _compare(ours, ref, rtol=rtol)


def test_where_statsmodels_loses_digits_the_table_is_exact():
    """x = 1000 + 0.001·u: statsmodels' HC2 is 2e-5 off here; ours equals the rational-arithmetic answer."""
    from fractions import Fraction

    rng = np.random.default_rng(0)
    x = rng.normal(size=12) * 1e-3 + 1000
    y = x * rng.normal() + rng.normal(size=12)
    ours = least_squares(x, y, robust=True).statistics["y"]
    rows = [(Fraction(1), Fraction(float(v))) for v in x]
    ys = [Fraction(float(v)) for v in y]
    g = [[sum(r[a] * r[b] for r in rows) for b in range(2)] for a in range(2)]
    det = g[0][0] * g[1][1] - g[0][1] * g[1][0]
    inv = [[g[1][1] / det, -g[0][1] / det], [-g[1][0] / det, g[0][0] / det]]
    xty = [sum(r[a] * v for r, v in zip(rows, ys, strict=True)) for a in range(2)]
    beta = [inv[a][0] * xty[0] + inv[a][1] * xty[1] for a in range(2)]
    resid = [v - beta[0] - beta[1] * r[1] for r, v in zip(rows, ys, strict=True)]
    leverage = [sum(r[a] * inv[a][b] * r[b] for a in range(2) for b in range(2)) for r in rows]
    meat = [[sum(r[a] * r[b] * e**2 / (1 - h) for r, e, h in zip(rows, resid, leverage, strict=True))
             for b in range(2)] for a in range(2)]
    cov = [[sum(inv[a][i] * meat[i][j] * inv[j][b] for i in range(2) for j in range(2)) for b in range(2)]
           for a in range(2)]
    exact = [math.sqrt(cov[a][a]) for a in range(2)]
    np.testing.assert_allclose(ours["stderr_hc"]["HC2"], exact, rtol=1e-9)  # measured: 1e-11
    np.testing.assert_allclose(ours["coef"], [float(b) for b in beta], rtol=1e-9)


# -------------------------------------------------------------------------------------------- aliasing
def test_aliased_columns_are_named_once_reported_as_null_and_the_rest_estimated(tmp_path):
    rng = np.random.default_rng(4)
    n = 60
    a, b = rng.normal(size=n), rng.normal(size=n)
    x = np.column_stack([a, np.full(n, 2.5), b, 2 * a - b])  # k: constant; d: a combination of a and b
    y = 1 + a - 2 * b + 0.1 * rng.normal(size=n)
    dm = RegressionDataModule(x, y, val_fraction=0, dtype="float64", feature_names=["a", "k", "b", "d"])
    with pytest.warns(RankDeficientWarning) as record:
        module = fit(dm)
    messages = [str(w.message) for w in record if issubclass(w.category, RankDeficientWarning)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "k, d are aliased" in messages[0] and "rank 3 of 5" in messages[0]
    s = module.statistics["y"]
    assert s["names"] == ["intercept", "a", "k", "b", "d"] and s["rank"] == 3 and s["df_resid"] == n - 3
    for key in ("coef", "stderr", "t", "p", "ci95"):
        assert s[key][2] is None and s[key][4] is None and None not in (s[key][0], s[key][1], s[key][3])
    # The others, as R's lm estimates them: the fit without the aliased columns.
    _compare({**s, **{key: [v for v in s[key] if v is not None] for key in ("coef", "stderr", "t", "p", "ci95")}},
             sm.OLS(y, sm.add_constant(x[:, [0, 2]])).fit(), robust=False, condition=False)
    assert s["condition_number"] == math.inf  # of the whole design, singular: not a rounding-dependent number
    table = format_table(s)
    assert [line.split()[1] for line in table.splitlines() if line.startswith(("k ", "d "))] == ["—", "—"]
    weight, bias = module.coefficients()
    assert weight[0, 1] == weight[0, 3] == 0.0  # predictions use the estimated columns alone, as R's predict
    # statistics.json: null for the aliased, strict JSON.
    from lr_lightning.exact.statistics import to_json

    loaded = json.loads(to_json(module.statistics))
    assert loaded["y"]["coef"][2] is None and loaded["y"]["stderr"][4] is None


def test_too_few_distinct_values_for_the_degree_alias_the_high_powers():
    x = np.repeat([1.0, 2.0, 3.0, 4.0], 5)
    y = 2 * x + np.sin(np.arange(20.0))
    with pytest.warns(RankDeficientWarning, match=r"x\^4, x\^5 are aliased .* rank 4 of 6"):
        result = least_squares(x, y, polynomial_degree=5, names=["x"])
    assert result.aliased == ("x^4", "x^5") and result.rank == 4
    ref = sm.OLS(y, np.column_stack([x**p for p in range(4)])).fit()
    np.testing.assert_allclose([c for c in result.statistics["y"]["coef"] if c is not None], ref.params, rtol=1e-8)


@pytest.mark.parametrize(("x", "y", "words"), [
    (np.arange(3.0), np.arange(3.0), "3 training rows for 4 coefficients"),
    (np.ones((10, 2)), np.arange(10.0), r"every column \(x0, x1\) is constant"),
], ids=["n <= p", "all constant"])
def test_what_least_squares_cannot_estimate_is_one_error_before_any_pass(x, y, words):
    dm = RegressionDataModule(x if x.ndim == 2 else np.column_stack([x, x**2, x**3]), y, val_fraction=0,
                              dtype="float64")
    module = LeastSquaresModule()
    with pytest.raises(ValueError, match=words) as raised:
        make_trainer(max_epochs=5).fit(module, datamodule=dm)
    assert "\n" not in str(raised.value)
    assert module.solver is None or module.solver.passes <= 1


# ----------------------------------------------------------------------------------- numbers and passes
def test_an_offset_in_the_data_costs_no_digits():
    rng = np.random.default_rng(5)
    u = rng.normal(size=(500, 2))
    y = u @ [1.5, -0.5] + 0.01 * rng.normal(size=500)
    near = least_squares(u, y).statistics["y"]
    far = least_squares(u + 1e9, y).statistics["y"]  # the same slopes; the textbook Σx² - n·x̄² keeps none of them
    np.testing.assert_allclose(far["coef"][1:], near["coef"][1:], rtol=1e-7)  # float64 holds 1e9 + u to ~7 digits
    np.testing.assert_allclose(far["stderr"][1:], near["stderr"][1:], rtol=1e-6)


# Offsets far beyond the spread, as (offset, spread): a float64 mean of such a column is exact only to a unit of the
# offset's last place, 1e-10 of the spread for 1000 + 0.001·u, 1e-7 of it for 3 + 1e-9·u (a constant plus tiny noise).
OFFSETS = [(1000.0, 1e-3), (1e6, 1.0), (3.0, 1e-9), (1e9, 1.0)]
EPS = float(np.finfo(np.float64).eps)


def _exact_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """``([intercept, b0, b1], Σ|x̄_j·b_j|)`` of y on two columns, in rational arithmetic on the float64 values."""
    from fractions import Fraction

    n = len(y)
    cols = [[Fraction(v) for v in c] for c in x.T.tolist()]
    ys = [Fraction(v) for v in y.tolist()]
    mx, my = [sum(c) / n for c in cols], sum(ys) / n
    d = [[v - m for v in c] for c, m in zip(cols, mx, strict=True)]
    dy = [v - my for v in ys]
    s = [[sum(a * b for a, b in zip(d[i], d[j], strict=True)) for j in range(2)] for i in range(2)]
    t = [sum(a * b for a, b in zip(d[i], dy, strict=True)) for i in range(2)]
    det = s[0][0] * s[1][1] - s[0][1] ** 2
    b = [(t[0] * s[1][1] - t[1] * s[0][1]) / det, (s[0][0] * t[1] - s[0][1] * t[0]) / det]
    a = my - b[0] * mx[0] - b[1] * mx[1]
    return np.array([float(a), float(b[0]), float(b[1])]), float(abs(mx[0] * b[0]) + abs(mx[1] * b[1]))


@pytest.mark.parametrize(("offset", "spread"), OFFSETS)
def test_merged_co_moments_are_exact_however_the_rows_are_cut_and_merged(offset, spread):
    """Blocks of uneven sizes merged as pass 1 merges batches (a binary tree) and as ranks merge (after the
    all-gather's flat round trip, in another order) give the rows' exact means and centred co-moments."""
    from fractions import Fraction

    from lr_lightning.exact.moments import CoMoments, PairwiseSum, merge_in_order

    rng = np.random.default_rng(4)
    a = np.column_stack([offset + spread * rng.normal(size=600), offset + spread * rng.normal(size=600),
                         rng.normal(size=600)])
    exact_mean = [sum(map(Fraction, c)) / len(a) for c in a.T.tolist()]
    d = [[Fraction(v) - m for v in c] for c, m in zip(a.T.tolist(), exact_mean, strict=True)]
    exact_c = np.array([[float(sum(p * q for p, q in zip(d[i], d[j], strict=True))) for j in range(3)]
                        for i in range(3)])
    t = torch.from_numpy(a)
    for cuts in ([600], [1, 599], [256, 256, 88], [7, 300, 13, 100, 180]):
        blocks = [CoMoments.of(b) for b in torch.split(t, cuts)]
        tree = PairwiseSum()
        for b in blocks:
            tree.add(b)
        ranks = merge_in_order([CoMoments.unstack(b.stacked(), 3) for b in reversed(blocks)])
        for merged in (tree.result(), ranks):
            mean = [Fraction(h) + Fraction(lo) for h, lo in zip(merged.mean.tolist(), merged.mean_lo.tolist(),
                                                                 strict=True)]
            error = np.array([float(abs(m - e)) for m, e in zip(mean, exact_mean, strict=True)])
            # Measured: the means within 0.28·eps of the spread, C within 6.4e-15 (relative). With float64 means
            # merged: up to 1e6 (1000 + 0.001·u) to 2e9 (3 + 1e-9·u) times eps of the spread, C 4e-10 to 1.1e-6 off.
            assert np.all(error <= 4 * EPS * np.array([spread, spread, 1.0])), (cuts, error)
            np.testing.assert_allclose(merged.comoment.numpy(), exact_c, rtol=5e-14, atol=0)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_co_moments_equal_the_torch_ones_in_any_thread_count_and_about_any_nearby_shift(dtype, weighted):
    """A CPU block goes through exact/gram.py (syrk, sub-blocks shared among threads); the same sums in torch
    operations (what a GPU runs) agree, with one thread or two, centred on the block's mean or on another's."""
    from lr_lightning.exact.gram import ROWS
    from lr_lightning.exact.moments import CoMoments

    rng = np.random.default_rng(7)
    rows = 2 * ROWS + 123  # more than one thread's share, and a short last sub-block
    a = torch.from_numpy(np.column_stack([1000 + 0.001 * rng.normal(size=rows), rng.normal(size=(rows, 2))]))
    a = a.to(dtype)
    w = torch.from_numpy(rng.uniform(0, 2, rows)) if weighted else None
    reference = CoMoments.on_device(a, weights=w)
    neighbour = CoMoments.of(a[:ROWS] + 0.001, weights=None if w is None else w[:ROWS])  # a spread away
    threads, errors, means = torch.get_num_threads(), [], []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            for shift in (None, neighbour.mean):
                got = CoMoments.of(a[:, :1], a[:, 1:], weights=w, shift=shift)
                mean, expected = got.mean + got.mean_lo, reference.mean + reference.mean_lo
                c, ref = got.comoment.numpy(), reference.comoment.numpy()
                scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))  # an entry's error in units of its column's
                errors.append(float(np.max(np.abs(c - ref) / scale)))
                means.append(float(((mean - expected).abs() / torch.tensor([0.001, 1.0, 1.0])).max()))
                assert float(got.n) == pytest.approx(float(reference.n), rel=1e-15)
    finally:
        torch.set_num_threads(threads)
    # Measured: C within 6.4e-14 of torch's in units of its columns, means within 7.8e-16 of the spread; against
    # rational arithmetic the float32 case's C00 is 1.3e-15 off here and 6.3e-14 in torch's (its product's rounding).
    assert max(errors) <= 2e-13 and max(means) <= 8 * EPS, (errors, means)


@pytest.mark.parametrize(("offset", "spread"), OFFSETS)
def test_how_the_rows_are_cut_into_blocks_and_ordered_costs_no_digits(offset, spread):
    """The fit of one block equals that of many (pass_rows, uneven shards, ranks), in any row order, and both equal
    the rational-arithmetic fit. The intercept is ȳ - x̄ᵀb, a small difference of large terms with an offset, so its
    error is relative to those terms (x̄·b = 3000 against an intercept of 2 here for 1000 + 0.001·u)."""
    rng = np.random.default_rng(1)
    n = 2000
    x = np.column_stack([offset + spread * rng.normal(size=n), rng.normal(size=n)])
    # Noise at a tenth of the signal: the residuals cancel no digits of Σ(y - ȳ)², so pass 1's answer is final
    # (no refinement pass to make up for a loss in it).
    y = 2 + 3 * x[:, 0] + spread * (-1.5 * x[:, 1] + 0.3 * rng.normal(size=n))
    exact, cancelled = _exact_fit(x, y)
    scale = np.array([abs(exact[0]) + cancelled, *np.abs(exact[1:])])
    worst = 0.0
    for order in (np.arange(n), np.arange(n)[::-1], np.random.default_rng(2).permutation(n)):
        for chunk in (n, 1024, 777, 13):
            weight, bias = least_squares(x[order], y[order], chunk_rows=chunk)
            worst = max(worst, float(np.max(np.abs(np.array([bias[0], *weight[0]]) - exact) / scale)))
    # Measured: 1.5e-14 at worst (3 + 1e-9·u; the same over torch's default, avx2 and avx512 kernels, 1 and 2
    # threads). With float64 block means merged: 9.7e-12 (1000 + 0.001·u), 1.8e-11 (1e6 + u), 1.5e-8 (1e9 + u) and
    # 7.2e-8 (3 + 1e-9·u).
    assert worst <= 1e-13, worst


def test_well_conditioned_data_takes_one_pass_and_robust_one_more_and_too_few_epochs_say_so():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(400, 3))
    dm = RegressionDataModule(x, x @ [1.0, 2.0, 3.0] + rng.normal(size=400), batch_size=50, val_fraction=0.1,
                              dtype="float64")
    plain = LeastSquaresModule()
    trainer = make_trainer(max_epochs=10)
    trainer.fit(plain, datamodule=dm)
    assert plain.solver.passes == 1 and trainer.current_epoch == 1
    assert "val/loss" in trainer.callback_metrics  # the final pass's validation sees the solution
    robust = LeastSquaresModule(robust=True)
    with pytest.raises(ValueError, match=r"needs at least 2 passes .* max_epochs=1"):
        make_trainer(max_epochs=1).fit(robust, datamodule=dm)
    polynomial = RegressionDataModule(x[:, :1], x[:, 0] ** 3, val_fraction=0, polynomial_degree=3, dtype="float64")
    with pytest.raises(ValueError, match=r"more passes over the data than max_epochs=1 .*raise max_epochs"):
        make_trainer(max_epochs=1).fit(LeastSquaresModule(), datamodule=polynomial)


def test_shards_larger_than_memory_give_the_in_memory_answer(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 3)).astype(np.float32)
    y = (x @ [1.0, -1.0, 0.5] + 0.1 * rng.normal(size=2000)).astype(np.float32)
    (tmp_path / "shards").mkdir()
    table = np.column_stack([x, y])
    for i, (a, b) in enumerate([(0, 700), (700, 1500), (1500, 2000)]):  # uneven shards
        np.save(tmp_path / "shards" / f"part{i}.npy", table[a:b])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y}), tmp_path / "t.parquet",
                   row_group_size=600)  # row groups of 600, 600, 600, 200: streamed one at a time
    in_memory = fit(RegressionDataModule(x, y, batch_size=128, val_fraction=0, shuffle=False), robust=True)
    b = in_memory.statistics["y"]
    for streamed in (NpyDataModule(tmp_path / "shards", batch_size=128, val_fraction=0),
                     ParquetDataModule(tmp_path / "t.parquet", batch_size=128, val_fraction=0)):
        assert streamed.table.streamed
        a = next(iter(fit(streamed, robust=True).statistics.values()))
        for key in ("coef", "stderr", "p"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-10)
        np.testing.assert_allclose(a["stderr_hc"]["HC3"], b["stderr_hc"]["HC3"], rtol=1e-10)
        assert a["n"] == 2000


def test_the_fitted_module_predicts_and_its_checkpoint_loads_as_a_regression_module(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.uniform(-3, 2, size=(200, 1))
    y = 1 - 2 * x[:, 0] + 0.5 * x[:, 0] ** 2 + 0.05 * rng.normal(size=200)
    dm = RegressionDataModule(x, y, val_fraction=0.2, polynomial_degree=2, standardize=True, dtype="float64")
    module = LeastSquaresModule()
    trainer = make_trainer(max_epochs=10, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    weight, bias = module.coefficients()
    np.testing.assert_allclose([bias[0], *weight[0]], module.statistics["y"]["coef"], rtol=1e-12)
    raw = torch.tensor([[-1.0], [0.5]], dtype=torch.float64)
    expected = bias[0] + raw.numpy() * weight[0][0] + raw.numpy() ** 2 * weight[0][1]
    np.testing.assert_allclose(module(raw).detach().numpy(), expected, rtol=1e-12)
    trainer.save_checkpoint(tmp_path / "ls.ckpt")
    loaded = RegressionModule.load_from_checkpoint(tmp_path / "ls.ckpt")
    np.testing.assert_allclose(loaded(raw).detach().numpy(), module(raw).detach().numpy(), rtol=1e-14)
    stored = torch.load(tmp_path / "ls.ckpt", weights_only=True)["least_squares"]
    assert stored["solved"] and stored["statistics"]["y"]["coef"] == module.statistics["y"]["coef"]
    with pytest.raises(ValueError, match="RegressionModule.load_from_checkpoint"):
        LeastSquaresModule.load_from_checkpoint(tmp_path / "ls.ckpt")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_passes_run_without_a_host_sync_per_batch():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(5000, 4))
    y = x @ [1.0, 2.0, 3.0, 4.0] + rng.normal(size=5000)
    module = LeastSquaresModule(robust=True)
    trainer = make_trainer(accelerator="gpu", max_epochs=10)

    def step_without_syncs(batch, batch_idx):  # each batch's accumulation under CUDA's sync checker
        torch.cuda.set_sync_debug_mode("error")
        try:
            module.solver.update(*batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        if batch_idx + 1 == trainer.num_training_batches:
            module._end_pass()  # one sync per pass is the point: the merged sums go to the host for the solve

    module.training_step = step_without_syncs
    trainer.fit(module, datamodule=RegressionDataModule(x, y, batch_size=256, val_fraction=0, dtype="float64"))
    on_cpu = fit(RegressionDataModule(x, y, batch_size=256, val_fraction=0, dtype="float64"), robust=True)
    for key in ("coef", "stderr"):
        np.testing.assert_allclose(module.statistics["y"][key], on_cpu.statistics["y"][key], rtol=1e-10)
    np.testing.assert_allclose(module.statistics["y"]["stderr_hc"]["HC3"], on_cpu.statistics["y"]["stderr_hc"]["HC3"],
                               rtol=1e-10)


# ------------------------------------------------------------------------------------------ command line
def test_fit_solver_exact_prints_the_table_and_writes_statistics_json(tmp_path):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(120, 2))
    y = 2 + x @ [1.0, -3.0] + 0.1 * rng.normal(size=120)
    path = tmp_path / "d.csv"
    path.write_text("u,v,price\n" + "\n".join(f"{a:.17g},{b:.17g},{c:.17g}" for (a, b), c in zip(x, y, strict=True)))
    result = run_main(fit_main, "--data", str(path), "--solver", "exact", "--robust", "--data.val_fraction", "0",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("price"))
    assert header.split() == ["price", "coef", "std", "err", "t", "P>|t|", "[0.025", "0.975]"]
    assert any(line.startswith("R²:") and "adj. R²" in line and "F(2, 117)" in line for line in lines)
    assert any(line.startswith("AIC:") and "BIC:" in line and "n: 120" in line and "condition number" in line
               for line in lines)
    assert any(line.split()[:3] == ["robust", "std", "err"] for line in lines)
    assert result.stderr == ""  # quiet: no warnings
    run = tmp_path / "lightning_logs" / "version_0"
    stats = json.loads((run / "statistics.json").read_text())
    ref = sm.OLS(y, sm.add_constant(x)).fit()
    assert stats["price"]["names"] == ["intercept", "u", "v"]
    np.testing.assert_allclose(stats["price"]["coef"], ref.params, rtol=1e-9)  # CSV digits kept: read as float64
    np.testing.assert_allclose(stats["price"]["stderr_hc"]["HC1"], ref.HC1_se, rtol=1e-6)
    # TensorBoard: the table as text and the figures as scalars.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    assert "statistics/price/text_summary" in events.Tags()["tensors"]
    assert {"statistics/r2", "statistics/aic", "statistics/f_stat"} <= set(events.Tags()["scalars"])
    # predict.py reads its checkpoint like any other.
    predicted = run_main(predict_main, "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--x", "1", "2",
                         cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    printed = float(predicted.stdout.splitlines()[1].split(",")[-1])
    assert printed == pytest.approx(ref.params @ [1.0, 1.0, 2.0], rel=1e-9)
    # Every digit of the float64 model's prediction is printed: the text reads back to the same float.
    from lr_lightning import RegressionModule

    module = RegressionModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert printed == module(torch.tensor([[1.0, 2.0]], dtype=torch.float64)).item()


@pytest.mark.parametrize(("flags", "words"), [
    (["--solver", "exact", "--optimizer", "AdamW"], "error: --optimizer: not with --solver exact"),
    (["--solver", "exact", "--model", "MLPRegressor"], "error: --model MLPRegressor: --solver exact fits a linear"),
    (["--robust"], "error: --robust: robust standard errors come with --solver exact"),
    (["--solver", "closed"], "--solver"),
])
def test_solver_flags_that_do_not_fit_are_one_line(tmp_path, flags, words):
    result = run_main(fit_main, *flags, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr


def test_warnings_stay_quiet_through_the_api():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(100, 2))
    from lr_lightning.core.quiet import quiet_lightning

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test, except what quiet_lightning() silences
        quiet_lightning()
        fit(RegressionDataModule(x, x.sum(axis=1) + rng.normal(size=100), dtype="float64"), robust=True)


def test_the_readme_example_runs_and_prints_the_table_s_figures(capsys, caplog):
    import logging

    from ..conftest import ROOT

    text = (ROOT / "docs" / "exact.md").read_text()
    section = text[text.index("## Exact least squares at any scale"):]
    code = section[section.index("```python\n") + 10:section.index("```\n", section.index("```python\n") + 10)]
    lightning = logging.getLogger("lightning.pytorch")
    lightning.addHandler(caplog.handler)  # Lightning's loggers do not propagate to the root, where caplog listens
    try:
        with caplog.at_level(logging.INFO, logger="lightning.pytorch.callbacks.model_summary"):
            exec(compile(code, "README.md", "exec"), {})
    finally:
        lightning.removeHandler(caplog.handler)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("['intercept', 'size', 'age'] [") and "tensor([[" in printed[1]
    # Nothing else: a model summary of a one-layer LinearRegression (with 0 trainable parameters) says nothing.
    assert not [r.getMessage() for r in caplog.records if "params" in r.getMessage().lower()], caplog.text



def test_a_csv_served_as_float32_is_fitted_exactly_on_its_float64_numbers(tmp_path):
    from lr_lightning.core.data import CSVDataModule

    rng = np.random.default_rng(3)
    x = 1000 + rng.normal(size=(60, 2))
    y = x @ [1.5, -2.0] + 0.01 * rng.normal(size=60)
    path = tmp_path / "d.csv"
    rows = np.column_stack([x, y]).tolist()
    path.write_text("a,b,y\n" + "\n".join(",".join(map(repr, row)) for row in rows))
    ref = sm.OLS(y, sm.add_constant(x)).fit()
    for dtype in ("float32", "float64"):
        module = LeastSquaresModule()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make_trainer(max_epochs=10).fit(module, datamodule=CSVDataModule(path, val_fraction=0, dtype=dtype))
        # No warning: the exact module is served the file's float64 numbers whatever the training dtype.
        assert not [str(w.message) for w in caught if "round" in str(w.message)], dtype
        np.testing.assert_allclose(module.statistics["y"]["coef"], ref.params, rtol=1e-9)  # measured: 1e-13
    # Not idle: a fit of the float32 rounding of values near 1000 moves the slopes far beyond 1e-9.
    rounded = np.column_stack([x, y]).astype(np.float32).astype(np.float64)
    off = sm.OLS(rounded[:, 2], sm.add_constant(rounded[:, :2])).fit().params
    assert np.max(np.abs(off - ref.params) / np.abs(ref.params)) > 1e-6


@pytest.mark.parametrize("scale", [1e77, 1e-100])
def test_robust_errors_hold_at_any_representable_scale(scale):
    # Scaling x and y by c leaves the slopes and their standard errors as they are: at 1e77, r²·x² (1e308) would
    # overflow, at 1e-100 underflow, if the sandwich were summed in the data's units.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(80, 2))
    y = x @ [1.0, 2.0] + rng.normal(size=80) * (1 + np.abs(x[:, 0]))
    ref = sm.OLS(y, sm.add_constant(x)).fit()
    s = least_squares_statistics(x * scale, y * scale, robust=True)
    for name in ("HC0", "HC1", "HC2", "HC3"):
        np.testing.assert_allclose(s["stderr_hc"][name][1:], getattr(ref, f"{name}_se")[1:], rtol=1e-9)
        assert s["stderr_hc"][name][0] == pytest.approx(getattr(ref, f"{name}_se")[0] * scale, rel=1e-9)


def test_an_exact_fit_has_zero_robust_errors_and_a_leverage_one_row_leaves_hc2_hc3_undefined():
    x = np.arange(10.0)[:, None]
    exact = least_squares_statistics(x, 3 * x[:, 0] + 1, robust=True)
    assert all(v == 0.0 for name in ("HC0", "HC1", "HC2", "HC3") for v in exact["stderr_hc"][name])
    # A dummy column that is 1 in one row only: that row has leverage 1, its residual is 0, 0/0 in HC2 and HC3.
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.normal(size=30), np.eye(30)[0]])
    s = least_squares_statistics(x, x[:, 0] + rng.normal(size=30), robust=True)
    assert all(v is None or np.isnan(v) for name in ("HC2", "HC3") for v in s["stderr_hc"][name])
    assert all(np.isfinite(v) for v in s["stderr_hc"]["HC0"])


def test_predicting_from_a_rank_deficient_fit_warns_once_as_r_does(tmp_path):
    """Every path that predicts with the fit says it: predict.py --ckpt, evaluate.py --stage predict, and the ONNX
    export served by predict.py --onnx (export.py keeps the aliased names in the file's metadata)."""
    rng = np.random.default_rng(8)
    m2 = rng.uniform(40, 200, size=50)
    price = 100 + 3 * m2 + rng.normal(size=50)
    rows = np.column_stack([m2, m2 * 10.7639, price]).tolist()  # square feet: the same column, rescaled
    (tmp_path / "h.csv").write_text("m2,sqft,price\n" + "\n".join(",".join(map(repr, r)) for r in rows))
    fitted = run_main(fit_main, "--data", "h.csv", "--solver", "exact", "--data.val_fraction", "0", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    predicted = run_main(predict_main, "--ckpt", str(ckpt), "--x", "100", "1076.39", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stderr.splitlines() == [
        f"warning: --ckpt {ckpt}: prediction from a rank-deficient fit may be misleading (aliased, not estimated: "
        "sqft)"]
    assert float(predicted.stdout.splitlines()[1].split(",")[-1]) == pytest.approx(400, rel=1e-2)
    evaluated = run_main(evaluate_main, "--config", str(ckpt.parents[1] / "config.yaml"), "--ckpt_path", str(ckpt),
                         "--stage", "predict", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stderr.splitlines() == [
        f"warning: --ckpt_path {ckpt}: prediction from a rank-deficient fit may be misleading (aliased, not "
        "estimated: sqft)"]
    pytest.importorskip("onnxruntime", reason="the ONNX path needs the [export] extra")
    exported = run_main(export_main, "--ckpt", str(ckpt), "--out", "h.onnx", cwd=tmp_path)
    assert exported.returncode == 0 and exported.stderr == "", exported.stderr
    served = run_main(predict_main, "--onnx", "h.onnx", "--x", "100", "1076.39", cwd=tmp_path)
    assert served.returncode == 0, served.stderr
    assert served.stderr.splitlines() == [
        "warning: --onnx h.onnx: prediction from a rank-deficient fit may be misleading (aliased, not estimated: "
        "sqft)"]


def test_an_unfitted_module_says_so_and_a_fitted_one_fits_again_from_scratch():
    module = LeastSquaresModule()
    with pytest.raises(ValueError, match="not fitted"):
        module(torch.zeros(1, 1, dtype=torch.float64))
    x = np.arange(12.0)[:, None]
    make_trainer(max_epochs=5).fit(module, datamodule=RegressionDataModule(x, 2 * x[:, 0] + np.sin(x[:, 0]),
                                                                            val_fraction=0))
    first = module.statistics["y"]["coef"]
    make_trainer(max_epochs=5).fit(module, datamodule=RegressionDataModule(x, -x[:, 0] + np.cos(x[:, 0]),
                                                                            val_fraction=0))
    ref = sm.OLS(-x[:, 0] + np.cos(x[:, 0]), sm.add_constant(x)).fit()
    np.testing.assert_allclose(module.statistics["y"]["coef"], ref.params, rtol=1e-9)
    assert first != module.statistics["y"]["coef"]
