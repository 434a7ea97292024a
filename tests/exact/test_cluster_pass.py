"""exact/cluster_pass.py: the per-cluster score sums of a CPU batch, in sub-blocks shared among threads, equal the
sums written out row by row (``np.add.at``) for every shape the solver hands it."""

import itertools

import numpy as np
import pytest
import torch

from lr_lightning.exact.cluster_pass import score_sums
from lr_lightning.exact.gram import ROWS


def _by_hand(z, y, w, ids, beta, offset, columns, mean, mean_lo, unit, scale, bias):
    """The definition, in numpy float64: c = z[:, k] - mean, r = w (y - c β - offset) / s,
    d = [1, (c - mean_lo) / unit], Σ_g d ⊗ r."""
    z, y = z.astype(np.float64), y.astype(np.float64)
    c = (z if columns is None else z[:, columns]) - mean
    r = (y - c @ beta - offset) / scale
    if w is not None:
        r = r * w[:, None]
    d = (c - mean_lo) / unit
    if bias:
        d = np.hstack([np.ones((len(z), 1)), d])
    score = (d[:, :, None] * r[:, None, :]).reshape(len(z), -1)
    keep = np.ones(len(z), bool) if w is None else w > 0
    u, inverse = np.unique(ids[keep], return_inverse=True)
    sums = np.zeros((len(u), score.shape[1]))
    np.add.at(sums, inverse.ravel(), score[keep])
    return u, sums


# Every combination of dtype, targets and intercept, with the columns and the weights taking turns so that each of
# their four combinations comes twice: a quarter of the full product, which the suite had no time for.
CASES = [(*case, ["all", "some"][i % 2], ["none", "zeros"][i // 2 % 2])
         for i, case in enumerate(itertools.product(["float64", "float32"], [1, 2], [True, False]))]


@pytest.mark.parametrize(("dtype", "targets", "bias", "columns", "weights"), CASES)
def test_score_sums_equal_the_sums_by_hand(dtype, targets, bias, columns, weights) -> None:
    rng = np.random.default_rng(7)
    rows, p = 2 * ROWS + 301, 4  # two threads' shares, each of whole sub-blocks and a short one
    z = (rng.normal(size=(rows, p)) * [1.0, 10.0, 0.1, 3.0] + [5.0, -40.0, 0.0, 1e3]).astype(dtype)
    y = rng.normal(size=(rows, targets)).astype(dtype) + 2.0
    k = None if columns == "all" else np.array([0, 2, 3])  # the solver's kept columns (one dropped as collinear)
    width = p if k is None else len(k)
    beta = rng.normal(size=(width, targets))  # the kept columns' coefficients
    offset = rng.normal(size=targets) if bias else np.zeros(targets)  # the intercept at the means
    mean = z.astype(np.float64).mean(0)[k if k is not None else slice(None)] if bias else np.zeros(width)
    mean_lo = rng.normal(size=width) * 1e-3 if bias else np.zeros(width)  # the means' low parts (exaggerated)
    unit, scale = rng.uniform(0.5, 2.0, width), rng.uniform(0.5, 2.0, targets)
    w = None if weights == "none" else np.where(rng.random(rows) < 0.2, 0.0, rng.uniform(0.1, 3.0, rows))
    firm, year = rng.integers(0, 300, rows), rng.integers(0, 12, rows) * 7 + 1_000_000  # dense ids, sparse ids

    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        found = score_sums(torch.from_numpy(z), torch.from_numpy(y), None if w is None else t(w), [firm, year],
                           beta=t(beta), offset=t(offset), columns=None if k is None else torch.from_numpy(k),
                           mean=t(mean), mean_lo=t(mean_lo) if bias else None, unit=t(unit), scale=t(scale), bias=bias)
    finally:
        torch.set_num_threads(before)
    for ids, (u, sums) in zip([firm, year], found, strict=True):
        want_u, want = _by_hand(z, y, w, ids, beta, offset, k, mean, mean_lo, unit, scale, bias)
        np.testing.assert_array_equal(u, want_u)
        assert sums.shape == want.shape == (len(want_u), (bias + width) * targets)
        # Sums of thousands of rows in another order: rounding of 1e-16 per row relative to the largest score.
        # Measured at most 2.3e-15 over the 8 cases (2-core AMD EPYC); the bound leaves ~400x for other CPUs.
        assert np.max(np.abs(sums - want)) <= 1e-12 * np.max(np.abs(want))


@pytest.mark.parametrize("targets", [1, 2])
def test_tables_over_batches_equal_the_sums_by_hand(targets) -> None:
    """Clusterings of codes go to the pass's tables (per thread, across batches; scaled once at the end); others
    (here negative ids) come back per batch. Both equal the sums over all the rows, and zero-weight rows' clusters
    are not seen."""
    from lr_lightning.exact.cluster_pass import ScoreTables

    rng = np.random.default_rng(11)
    rows, p = 3 * ROWS + 77, 3
    z = rng.normal(size=(rows, p)) * [1.0, 5.0, 0.2] + [3.0, -7.0, 1e3]
    y = rng.normal(size=(rows, targets))
    beta, offset = rng.normal(size=(p, targets)), rng.normal(size=targets)
    mean, mean_lo = z.mean(0), rng.normal(size=p) * 1e-3
    unit, scale = rng.uniform(0.5, 2.0, p), rng.uniform(0.5, 2.0, targets)
    w = np.where(rng.random(rows) < 0.2, 0.0, rng.uniform(0.1, 3.0, rows))
    firm, year = rng.integers(0, 500, rows), rng.integers(-12, 0, rows)
    w[firm == 499] = 0.0  # a cluster of zero-weight rows only: no cluster
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    tables, per_batch = ScoreTables(2, (1 + p) * targets), []
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for lo, hi in ((0, 2 * ROWS + 5), (2 * ROWS + 5, rows)):  # the first batch sees only some of the firms
            found = score_sums(t(z[lo:hi]), t(y[lo:hi]), t(w[lo:hi]), [firm[lo:hi], year[lo:hi]], beta=t(beta),
                               offset=t(offset), columns=None, mean=t(mean), mean_lo=t(mean_lo), unit=t(unit),
                               scale=t(scale), bias=True, into=tables)
            assert found[0] is None and found[1] is not None  # codes tabled; negative ids per batch
            per_batch.append(found[1])
    finally:
        torch.set_num_threads(before)
    (u, sums), _ = tables.totals(1 + p, targets, True, t(unit), t(mean_lo))
    want_u, want = _by_hand(z, y, w, firm, beta, offset, None, mean, mean_lo, unit, scale, True)
    np.testing.assert_array_equal(u, want_u)
    assert 499 not in u
    assert np.max(np.abs(sums - want)) <= 1e-12 * np.max(np.abs(want))
    want_u, want = _by_hand(z, y, w, year, beta, offset, None, mean, mean_lo, unit, scale, True)
    merged = {}
    for ids, part in per_batch:
        for i, row in zip(ids, part, strict=True):
            merged[i] = merged.get(i, 0.0) + row
    np.testing.assert_array_equal(sorted(merged), want_u)
    got = np.array([merged[i] for i in want_u])
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))
