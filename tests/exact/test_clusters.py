"""Clustered (cluster-robust CR1) standard errors of the exact fit, one-way and two-way, OLS and WLS, against
statsmodels' ``fit(cov_type="cluster", cov_kwds={"groups": g}, use_t=True)`` (its G - 1 degrees of freedom)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import statsmodels.api as sm
import torch
from scipy import stats

from ..conftest import make_trainer


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _data(n: int = 900, seed: int = 0, groups: int = 45):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    firm = rng.integers(0, groups, n)
    year = rng.integers(0, 12, n) + 2000
    # A firm effect in the errors and in a regressor: clustering matters (CR1 differs from the classic errors).
    x[:, 0] += rng.normal(size=groups)[firm]
    y = 0.5 + x @ [1.0, -2.0, 0.5] + rng.normal(size=groups)[firm] + rng.normal(size=12)[year - 2000] + \
        rng.normal(size=n)
    return x, y, firm, year, rng.uniform(0.2, 3.0, n)


def _fit(dm, **module):
    from lr_lightning import LeastSquaresModule

    m = LeastSquaresModule(cluster=True, **module)
    make_trainer(max_epochs=20).fit(m, datamodule=dm)
    return m.statistics["y"]


def _check(s, reference, groups) -> None:
    assert _rel(s["stderr_cluster"]["CR1"], reference.bse) < 1e-8
    assert _rel(s["t_cluster"], reference.tvalues) < 1e-8
    assert _rel(s["p_cluster"], reference.pvalues) < 1e-8
    assert _rel(s["ci95_cluster"], reference.conf_int()) < 1e-8
    assert s["df_cluster"] == reference.df_resid_inference
    assert s["n_clusters"] == (groups if isinstance(groups, int) else list(groups))
    # The classic standard errors are still those of the plain fit, and clustering changed the figures.
    assert _rel(s["stderr"], reference.model.fit().bse) < 1e-8
    assert _rel(s["stderr_cluster"]["CR1"], s["stderr"]) > 0.05


@pytest.mark.parametrize("weighted", [False, True], ids=["ols", "wls"])
@pytest.mark.parametrize("two_way", [False, True], ids=["one_way", "two_way"])
def test_cluster_robust_errors_match_statsmodels(weighted, two_way, monkeypatch) -> None:
    import lr_lightning.exact.least_squares_module as lsm
    from lr_lightning import RegressionDataModule

    monkeypatch.setattr(lsm, "PASS_BYTES", 0)  # 1024-row batches: clusters span batches
    x, y, firm, year, w = _data(n=3000)
    groups = np.stack([firm, year], axis=1) if two_way else firm
    # A validation split (shuffled out of the rows): the train rows' clusters must follow their rows.
    dm = RegressionDataModule(x, y, clusters=groups, weights=w if weighted else None, val_fraction=0.25,
                              dtype="float64")
    s = _fit(dm)
    train = dm.split_of("train", torch.arange(len(y))[:, None], ordered=True)[:, 0].numpy()
    xt, yt, gt = sm.add_constant(x[train]), y[train], groups[train]
    model = sm.WLS(yt, xt, weights=w[train]) if weighted else sm.OLS(yt, xt)
    reference = model.fit(cov_type="cluster", cov_kwds={"groups": gt}, use_t=True)
    counts = [len(np.unique(gt[:, j])) for j in range(2)] if two_way else len(np.unique(gt))
    _check(s, reference, counts)
    assert s["df_cluster"] == (min(counts) if two_way else counts) - 1


def test_string_ids_and_no_intercept() -> None:
    from lr_lightning import RegressionDataModule

    x, y, firm, _, _ = _data(n=400, seed=3, groups=20)
    names = np.array([f"firm-{g:02d}" for g in firm])
    s = _fit(RegressionDataModule(x, y, clusters=names, val_fraction=0, dtype="float64", bias=False), bias=False)
    reference = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": firm}, use_t=True)
    _check(s, reference, 20)


@pytest.mark.parametrize("spread", [1.0, 0.01])
@pytest.mark.parametrize("robust", [False, True], ids=["cluster_pass", "with_hc"])
def test_offset_columns_keep_every_digit(spread, robust) -> None:
    """Columns at 1e6: the refinement passes run before the clustered pass, and the pass centres on the mean in
    double-double (its float64 rounding, 1e-10, was 1e-8 of a spread of 0.01: CR1 and HC1 agreed to 1e-8 only)."""
    from lr_lightning import RegressionDataModule

    x, y, firm, _, _ = _data(n=1200, seed=4, groups=30)
    x = x * spread + 1e6
    s = _fit(RegressionDataModule(x, y, clusters=firm, val_fraction=0, dtype="float64"), robust=robust)
    # statsmodels on the raw design loses ~3 digits here (1.8e-3 relative): the reference is its fit of the centred
    # columns (x - 1e6 is exact), its covariance mapped back to the raw intercept.
    model = sm.OLS(y, sm.add_constant(x - 1e6))
    to_raw = np.eye(4)
    to_raw[0, 1:] = -1e6
    se = lambda fit: np.sqrt(np.diag(to_raw @ fit.cov_params() @ to_raw.T))  # noqa: E731
    # Measured (2-core AMD EPYC): at most 6e-14 (CR1) and 7e-15 (HC1) at spread 0.01; 1e-8 before the fix.
    assert _rel(s["stderr_cluster"]["CR1"], se(model.fit(cov_type="cluster", cov_kwds={"groups": firm}))) < 1e-11
    if robust:
        assert _rel(s["stderr_hc"]["HC1"], se(model.fit(cov_type="HC1"))) < 1e-11


@pytest.mark.parametrize(("eps", "bound"), [(1e-3, 1e-10), (1e-6, 1e-9)])
def test_nearly_collinear_columns_keep_the_robust_and_clustered_digits(eps, bound) -> None:
    """x = [z0, z0 + eps·z1, z2]: the meats are taken of the whitened rows (K·d, the bread KᵀK) and the factor comes
    from a QR pass, so HC3 and CR1 lose digits with the condition number, not its square (at eps = 1e-6 they were
    3e-3 and 5e-5 off; at 1e-3, 8e-10). The reference: statsmodels on [z0, x1 - x0, z2] (the difference is exact
    here), mapped back."""
    from lr_lightning import RegressionDataModule

    rng = np.random.default_rng(0)
    n, groups = 3000, 30
    z, firm = rng.normal(size=(n, 3)), rng.integers(0, groups, n)
    x = np.column_stack([z[:, 0], z[:, 0] + eps * z[:, 1], z[:, 2]])
    d = x[:, 1] - x[:, 0]
    assert np.array_equal(x[:, 0] + d, x[:, 1])
    y = x @ [1.0, 2.0, -1.0] + rng.normal(size=n) + rng.normal(size=groups)[firm]
    s = _fit(RegressionDataModule(x, y, clusters=firm, val_fraction=0, dtype="float64"), robust=True)
    model = sm.OLS(y, sm.add_constant(np.column_stack([x[:, 0], d, x[:, 2]])))
    back = np.array([[1, 0, 0, 0], [0, 1, -1, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    se = lambda fit: np.sqrt(np.diag(back @ fit.cov_params() @ back.T))  # noqa: E731
    # Measured (2-core AMD EPYC): classic 7e-15 / 5e-12, HC3 3e-14 / 2e-11, CR1 1.4e-12 / 9e-11 at eps 1e-3 / 1e-6.
    assert _rel(s["stderr"], se(model.fit())) < bound
    assert _rel(s["stderr_hc"]["HC3"], se(model.fit(cov_type="HC3"))) < bound
    assert _rel(s["stderr_cluster"]["CR1"], se(model.fit(cov_type="cluster", cov_kwds={"groups": firm}))) < bound


@pytest.mark.parametrize("robust", [False, True], ids=["cluster_pass", "with_hc"])
def test_a_target_far_from_zero_keeps_the_robust_digits(robust) -> None:
    """y at 1e12: the residual takes y less the intercept at the means in double-double first, (y - hi) - lo; with
    the intercept rounded to float64, HC3 and CR1 were 1e-6 off (the classic errors were exact)."""
    from lr_lightning import RegressionDataModule

    rng = np.random.default_rng(2)
    n, firm = 800, rng.integers(0, 40, 800)
    x = rng.normal(size=(n, 2))
    y = 1e12 + x @ [1.0, -2.0] + rng.normal(size=n) * (1 + np.abs(x[:, 0]))
    s = _fit(RegressionDataModule(x, y, clusters=firm, val_fraction=0, dtype="float64"), robust=robust)
    model = sm.OLS(y - 1e12, sm.add_constant(x))  # y - 1e12 is exact here
    # Measured (2-core AMD EPYC): 1e-15 for both.
    assert _rel(s["stderr_cluster"]["CR1"], model.fit(cov_type="cluster", cov_kwds={"groups": firm}).bse) < 1e-12
    if robust:
        assert _rel(s["stderr_hc"]["HC3"], model.fit(cov_type="HC3").bse) < 1e-12


def test_cluster_sums_merge_by_id_across_ranks() -> None:
    from lr_lightning.exact.clusters import ClusterSums

    a, b = ClusterSums(2), ClusterSums(2)
    a.add(torch.tensor([4, 1, 4]), torch.tensor([[1.0, 0], [2, 0], [3, 0]]))
    b.add(torch.tensor([9, 4]), torch.tensor([[5.0, 1], [7, 1]]))
    b.add(torch.tensor([1]), torch.tensor([[1.0, 1]]))

    def gather(t: torch.Tensor) -> torch.Tensor:  # two "ranks": this one and b (padded as the real gather pads)
        other = {torch.int64: torch.tensor(b.ids), torch.float64: torch.tensor(b.sums)}[t.dtype] \
            if t.ndim else None
        if t.shape == (1,):
            return torch.stack([t, torch.tensor([float(len(b.ids))], dtype=t.dtype)])
        pad = t.clone()
        pad[:len(other)] = other
        pad[len(other):] = -1 if t.dtype == torch.int64 else 0
        return torch.stack([t, pad])

    merged = a.gathered(gather, None)
    assert merged.ids.tolist() == [1, 4, 9]
    assert merged.sums.tolist() == [[3.0, 1.0], [11.0, 1.0], [5.0, 1.0]]


def test_refusals_are_one_line() -> None:
    from lr_lightning import LeastSquaresModule, RegressionDataModule

    x, y, firm, _, _ = _data(n=50)
    with pytest.raises(ValueError, match="no cluster column"):
        make_trainer(max_epochs=20).fit(LeastSquaresModule(cluster=True),
                                        datamodule=RegressionDataModule(x, y, val_fraction=0, dtype="float64"))
    with pytest.raises(ValueError, match=r"clusters: shape \(49,\) for 50 rows"):
        RegressionDataModule(x, y, clusters=firm[:49])
    with pytest.raises(ValueError, match="must be true or false"):
        LeastSquaresModule(cluster="yes")
    # One cluster leaves G - 1 = 0 degrees of freedom: refused, not NaN errors (also as one side of two-way).
    for clusters in (np.zeros(50), np.stack([firm, np.zeros(50)], axis=1)):
        with pytest.raises(ValueError, match=r"1 cluster among the rows fitted; clustered errors need at least 2"):
            make_trainer(max_epochs=20).fit(LeastSquaresModule(cluster=True), datamodule=RegressionDataModule(
                x, y, clusters=clusters, val_fraction=0, dtype="float64"))


def test_a_cluster_column_that_is_the_target_is_refused(tmp_path) -> None:
    from lr_lightning import CSVDataModule

    _csv(tmp_path / "d.csv", n=40)  # columns a,b,c,firm,year,y: y, the last, is the default target
    for target in (None, "y"):
        with pytest.raises(ValueError, match=r"column 'y' is the target.* and a cluster column"):
            CSVDataModule(tmp_path / "d.csv", target=target, clusters="y")


def _csv(path, n: int = 400):
    x, y, firm, year, _ = _data(n=n, seed=7, groups=25)
    rows = [",".join(repr(float(c)) for c in (*r, f, t, v)) for r, f, t, v in zip(x, firm, year, y, strict=True)]
    path.write_text("a,b,c,firm,year,y\n" + "\n".join(rows) + "\n")
    return x, y, firm, year


def test_cli_clustered_fit(tmp_path) -> None:
    from lr_lightning.core.cli import fit_main

    from ..conftest import one_error_line, run_main

    x, y, firm, year = _csv(tmp_path / "d.csv")
    result = run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--data.clusters", "[firm,year]",
                      "--data.val_fraction", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Std. errors: cluster-robust CR1, two-way, clustered by firm and year (G = 25 and 12)" in result.stdout
    s = json.loads(next(tmp_path.glob("lightning_logs/*/statistics.json")).read_text())["y"]
    assert s["names"] == ["intercept", "a", "b", "c"] and s["n_clusters"] == [25, 12]
    groups = np.stack([firm, year], axis=1)
    reference = sm.OLS(y, sm.add_constant(x)).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    assert _rel(s["stderr_cluster"]["CR1"], reference.bse) < 1e-8
    assert _rel(s["p_cluster"], reference.pvalues) < 1e-8
    # The table shows the clustered errors.
    assert f"{s['stderr_cluster']['CR1'][1]:.4g}" in result.stdout.split("\na ")[1].split("\n")[0]
    one_way = run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--data.clusters", "firm", "--cr3",
                       cwd=tmp_path)
    assert "clustered by firm (G = 25)" in one_way.stdout, one_way.stderr
    # --cr3 (year is an input here): CR3's errors in statistics.json, and in a block of their own beside CR1's (the
    # table's columns).
    s = json.loads(sorted(tmp_path.glob("lightning_logs/*/statistics.json"))[-1].read_text())["y"]
    assert len(s["stderr_cluster"]["CR3"]) == 5 and s["stderr_cluster"]["CR3"] != s["stderr_cluster"]["CR1"]
    assert f"{s['stderr_cluster']['CR3'][1]:.4g}" in one_way.stdout.split("cluster std err")[1].split("\na ")[1]
    off = run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--data.clusters", "firm", "--no_cluster",
                   cwd=tmp_path)
    assert off.returncode == 0 and "Std. errors" not in off.stdout, off.stderr
    one_error_line(run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--data.clusters", "nope",
                            cwd=tmp_path), "no cluster column 'nope'")
    one_error_line(run_main(fit_main, "--data", "d.csv", "--data.clusters", "firm", cwd=tmp_path),
                   "--data.clusters", "--solver exact")
    one_error_line(run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--cluster", cwd=tmp_path),
                   "--cluster", "--data.clusters")
    one_error_line(run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--cr3", cwd=tmp_path),
                   "--cr3", "--data.clusters")
    one_error_line(run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--data.clusters", "[firm,year]",
                            "--cr3", cwd=tmp_path), "CR3 is one-way here")


def test_zero_weight_rows_take_no_part() -> None:
    from lr_lightning import RegressionDataModule

    x, y, firm, _, w = _data(n=500, seed=9, groups=25)
    w[firm == 3] = 0.0  # firm 3 has only rows of weight 0: it is no cluster
    w[::7] = 0.0
    s = _fit(RegressionDataModule(x, y, clusters=firm, weights=w, val_fraction=0, dtype="float64"))
    keep = w > 0
    reference = sm.WLS(y[keep], sm.add_constant(x[keep]), weights=w[keep]).fit(
        cov_type="cluster", cov_kwds={"groups": firm[keep]}, use_t=True)
    _check(s, reference, 24)


@pytest.mark.parametrize("weighted", [False, True], ids=["ols", "wls"])
def test_cluster_only_pass_skips_leverages_same_cr1_as_with_robust(weighted) -> None:
    """CR1 alone takes the pass without leverages (and its sparse per-cluster sums); with robust=True it shares the
    pass with HC0-HC3. Both give statsmodels' CR1, and HC3 is still statsmodels' — with an aliased (duplicated)
    column, so the kept columns are a subset, and rows of weight 0, which take no part in a cluster."""
    import warnings

    from lr_lightning import RegressionDataModule
    from lr_lightning.exact.solver import RankDeficientWarning

    x, y, firm, _, w = _data(n=1200, seed=5, groups=40)
    x = np.column_stack([x, x[:, 1]])  # aliased: the kept columns are 0, 1, 2
    w[:30] = 0.0 if weighted else w[:30]
    dm = RegressionDataModule(x, y, clusters=firm, weights=w if weighted else None, val_fraction=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        alone, both = _fit(dm), _fit(dm, robust=True)
    xs = sm.add_constant(x[:, :3])
    keep = w > 0 if weighted else slice(None)
    model = sm.WLS(y[keep], xs[keep], weights=w[keep]) if weighted else sm.OLS(y, xs)
    reference = model.fit(cov_type="cluster", cov_kwds={"groups": firm[keep]}, use_t=True)
    for s in (alone, both):
        assert _rel(s["stderr_cluster"]["CR1"][:4], reference.bse) < 1e-8
        assert s["stderr_cluster"]["CR1"][4] is None or np.isnan(s["stderr_cluster"]["CR1"][4])
        assert s["n_clusters"] == len(np.unique(firm[keep]))
    assert _rel(both["stderr_hc"]["HC3"][:4], model.fit(cov_type="HC3").bse) < 1e-8
    assert "stderr_hc" not in alone or alone["stderr_hc"] is None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_threaded_cpu_pass_equals_the_torch_pass(dtype) -> None:
    """A CPU batch's clustered pass runs in sub-blocks shared between threads (exact/cluster_pass.py); with
    robust=True the torch version sums the same scores. Two-way, weighted with rows of weight 0, batches of
    several sub-blocks: the same CR1 to rounding."""
    from lr_lightning import RegressionDataModule
    from lr_lightning.exact.gram import ROWS

    x, y, firm, year, w = _data(n=3 * ROWS + 77, seed=11, groups=300)
    w[::5] = 0.0
    x, y = x.astype(dtype), y.astype(dtype)  # float32 rows are served as they are
    dm = RegressionDataModule(x, y, clusters=np.stack([firm, year], axis=1), weights=w, val_fraction=0, dtype=dtype)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fast, torch_pass = _fit(dm), _fit(dm, robust=True)
    finally:
        torch.set_num_threads(threads)
    # Measured: 7.7e-16 (float64) and 4.1e-16 (float32).
    assert _rel(fast["stderr_cluster"]["CR1"], torch_pass["stderr_cluster"]["CR1"]) < 1e-12
    assert fast["n_clusters"] == torch_pass["n_clusters"] == [len(np.unique(firm[w > 0])), 12]


# ------------------------------------------------------------------------------------------------ CR3
def _leave_one_cluster_out(x, y, g, w=None):
    """CR3 by brute force: statsmodels refits without each cluster in turn, V = (G-1)/G Σ (β₍₋g₎-β)(β₍₋g₎-β)ᵀ."""
    def fit(rows):
        return (sm.OLS(y[rows], x[rows]) if w is None else sm.WLS(y[rows], x[rows], weights=w[rows])).fit().params

    beta, ids = fit(slice(None)), np.unique(g)
    change = np.array([fit(g != c) - beta for c in ids])
    return (len(ids) - 1) / len(ids) * change.T @ change


def _fit_cr3(dm, **module):
    from lr_lightning import LeastSquaresModule

    m = LeastSquaresModule(cluster=True, cr3=True, **module)
    make_trainer(max_epochs=20).fit(m, datamodule=dm)
    return m


@pytest.mark.parametrize("weighted", [False, True], ids=["ols", "wls"])
def test_cr3_equals_leave_one_cluster_out_refits(weighted, monkeypatch) -> None:
    """The closed form -(A - A_g)⁻¹ s_g, from per-cluster sums over 1024-row batches (clusters spanning batches),
    equals 30 statsmodels refits; coefficient_covariance and predict_interval take it by name."""
    import lr_lightning.exact.least_squares_module as lsm
    from lr_lightning import RegressionDataModule

    monkeypatch.setattr(lsm, "PASS_BYTES", 0)
    x, y, firm, _, w = _data(n=2500, seed=11, groups=30)
    w = w if weighted else None
    m = _fit_cr3(RegressionDataModule(x, y, clusters=firm, weights=w, val_fraction=0, dtype="float64"))
    reference = _leave_one_cluster_out(sm.add_constant(x), y, firm, w)
    s = m.statistics["y"]
    assert _rel(s["stderr_cluster"]["CR3"], np.sqrt(np.diag(reference))) < 1e-8  # observed 4e-14
    cov = m.coefficient_covariance(cov_type="CR3")[0]
    assert np.max(np.abs(cov - reference)) < 1e-8 * np.max(np.abs(reference))
    # CR3 is not CR1 (here 1.6-4.6 % larger, OLS and WLS alike); the default stays CR1.
    assert min(np.array(s["stderr_cluster"]["CR3"]) / s["stderr_cluster"]["CR1"]) > 1.01
    assert m.default_cov_type() == "CR1"
    at = np.array([[0.5, -1.0, 2.0]])
    band = m.predict_interval(at, cov_type="CR3")
    row = np.concatenate([[1.0], at[0]])
    half = (band["upper"] - band["mean"])[0, 0]
    expected = stats.t.ppf(0.975, s["df_resid"]) * np.sqrt(row @ reference @ row)
    assert abs(half - expected) < 1e-8 * expected


def test_cr3_on_grunfeld_by_firm() -> None:
    """statsmodels' bundled Grunfeld panel (11 firms × 20 years, text ids): invest ~ value + capital, CR3 by firm."""
    from statsmodels.datasets import grunfeld

    from lr_lightning import RegressionDataModule

    data = grunfeld.load_pandas().data
    x, y, firm = data[["value", "capital"]].to_numpy(float), data["invest"].to_numpy(float), data["firm"].to_numpy()
    m = _fit_cr3(RegressionDataModule(x, y, clusters=firm.astype(str), val_fraction=0, dtype="float64"))
    reference = _leave_one_cluster_out(sm.add_constant(x), y, firm)
    assert m.statistics["y"]["n_clusters"] == 11
    assert _rel(m.statistics["y"]["stderr_cluster"]["CR3"], np.sqrt(np.diag(reference))) < 1e-8


@pytest.mark.filterwarnings("ignore")  # pyfixest's own (pandas deprecations)
def test_cr3_equals_pyfixest_crv3() -> None:
    """pyfixest's CRV3 is Σ (β₍₋g₎-β)(β₍₋g₎-β)ᵀ times its small-sample factor; without it (ssc(k_adj=False,
    G_adj=False)) it is ours times G/(G-1): MacKinnon, Nielsen and Webb's (G-1)/G is the one difference."""
    pf = pytest.importorskip("pyfixest")
    import pandas as pd

    from lr_lightning import RegressionDataModule

    x, y, firm, _, _ = _data(n=600, seed=13, groups=25)
    m = _fit_cr3(RegressionDataModule(x, y, clusters=firm, val_fraction=0, dtype="float64"))
    frame = pd.DataFrame({"y": y, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "firm": firm})
    theirs = pf.feols("y ~ a + b + c", data=frame, vcov={"CRV3": "firm"}, ssc=pf.ssc(k_adj=False, G_adj=False))
    ours = np.array(m.statistics["y"]["stderr_cluster"]["CR3"]) * np.sqrt(25 / 24)
    assert _rel(ours, theirs.se().to_numpy()) < 1e-8


def test_cr3_where_a_cluster_holds_a_column_is_null_and_json_null() -> None:
    """A dummy that only one firm's rows have: without that firm A - A_g is singular, β₍₋g₎ does not exist, and
    CR3 is undefined: NaN (null in statistics.json) for every coefficient, not a pseudo-inverse's number. CR1
    stays."""
    from lr_lightning import RegressionDataModule
    from lr_lightning.exact.statistics import to_json

    x, y, firm, _, _ = _data(n=400, seed=17, groups=20)
    x = np.column_stack([x, (firm == 4).astype(float)])
    m = _fit_cr3(RegressionDataModule(x, y, clusters=firm, val_fraction=0, dtype="float64"))
    s = m.statistics["y"]
    assert all(np.isnan(v) for v in s["stderr_cluster"]["CR3"]) and all(np.isfinite(s["stderr_cluster"]["CR1"]))
    assert json.loads(to_json(m.statistics))["y"]["stderr_cluster"]["CR3"] == [None] * 5


def test_cr3_refusals_are_one_line(monkeypatch) -> None:
    import lr_lightning.exact.clusters as clusters
    from lr_lightning import LeastSquaresModule, RegressionDataModule

    x, y, firm, year, _ = _data(n=300, groups=30)
    with pytest.raises(ValueError, match=r"cr3=True\): CR3 standard errors are clustered ones; give cluster=True"):
        LeastSquaresModule(cr3=True)
    with pytest.raises(ValueError, match="cr3 must be true or false"):
        LeastSquaresModule(cluster=True, cr3=1)
    two_way = RegressionDataModule(x, y, clusters=np.stack([firm, year], axis=1), val_fraction=0, dtype="float64")
    with pytest.raises(ValueError, match=r"CR3 is one-way here.* 2 columns \(cluster0, cluster1\); two-way "
                                         "clustering has CR1 only"):
        _fit_cr3(two_way)
    # The memory budget: 30 clusters × 4² coefficients × 8 bytes = 3,840 bytes, refused under a 1 kB budget.
    monkeypatch.setattr(clusters, "CR3_BYTES", 1000)
    with pytest.raises(ValueError, match=r"cr3=True: 30 clusters × 4² coefficients' Gram matrices need 3.84e-06 GB, "
                                         r"above the 1e-06 GB budget \(lr_lightning.exact.clusters.CR3_BYTES\)"):
        _fit_cr3(RegressionDataModule(x, y, clusters=firm, val_fraction=0, dtype="float64"))
    plain = LeastSquaresModule(cluster=True)
    make_trainer(max_epochs=20).fit(plain, datamodule=RegressionDataModule(x, y, clusters=firm, val_fraction=0,
                                                                            dtype="float64"))
    with pytest.raises(ValueError, match=r"or CR1, got 'CR3'.*CR3 needs LeastSquaresModule\(cluster=True, cr3=True\)"):
        plain.coefficient_covariance("CR3")
