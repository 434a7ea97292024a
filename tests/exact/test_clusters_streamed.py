"""Weights and clusters on streamed data (memory-mapped ``.npy`` shards, Parquet row groups): the same statistics as
the fit in memory; text cluster ids in CSV and Parquet columns; one-line refusals; 2 DDP processes over shards."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ..conftest import make_trainer


def _data(n: int = 4000, g: int = 150, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    firm = rng.integers(0, g, n)
    year = rng.integers(0, 9, n)
    x = rng.normal(size=(n, 3)) + rng.normal(size=(g, 1))[firm]
    w = rng.uniform(0.1, 3.0, n)
    w[::37] = 0.0  # rows of weight 0 take no part
    y = 1 + x @ [2.0, -1.0, 0.5] + rng.normal(size=g)[firm] + rng.normal(size=n)
    return {"x": x, "w": w, "firm": firm.astype(np.float64), "year": year.astype(np.float64), "y": y}


def _shards(folder: Path, d: dict[str, np.ndarray], rows: int = 1500) -> Path:
    """``part-*.npy`` shards: columns x0 x1 x2, the weight x3, firm x4, year x5, the target x6."""
    a = np.column_stack([d["x"], d["w"], d["firm"], d["year"], d["y"]])
    folder.mkdir()
    for i, start in enumerate(range(0, len(a), rows)):
        np.save(folder / f"part-{i:03d}.npy", a[start:start + rows])
    return folder


def _fit(dm: Any, robust: bool = False, **trainer: Any) -> dict[str, Any]:
    from lr_lightning.exact import LeastSquaresModule

    module = LeastSquaresModule(cluster=True, robust=robust)
    make_trainer(max_epochs=20, **trainer).fit(module, datamodule=dm)
    return module.statistics[dm.target_names[0]]


def _assert_close(a: dict[str, Any], b: dict[str, Any], tol: float) -> None:
    assert a["n"] == b["n"] and a["n_clusters"] == b["n_clusters"]
    for key in ("coef", "stderr"):
        np.testing.assert_allclose(b[key], a[key], rtol=tol, atol=0)
    np.testing.assert_allclose(b["stderr_cluster"]["CR1"], a["stderr_cluster"]["CR1"], rtol=tol, atol=0)


@pytest.mark.parametrize("clusters", ["x4", ["x4", "x5"]])
def test_npy_shards_streamed_equal_the_fit_in_memory(tmp_path, clusters) -> None:
    from lr_lightning.core.data import NpyDataModule

    folder = _shards(tmp_path / "d", _data())
    kw = dict(weights="x3", clusters=clusters, val_fraction=0, dtype="float64", batch_size=256)
    memory = _fit(NpyDataModule(folder, in_memory=True, **kw), robust=True)
    dm = NpyDataModule(folder, block_rows=700, **kw)
    streamed = _fit(dm, robust=True)
    assert dm.table.streamed and dm.clusters is None  # no code per row is held
    assert [len(v) for v in dm.cluster_values] == ([150] if clusters == "x4" else [150, 9])
    _assert_close(memory, streamed, 1e-10)
    assert streamed["weighted"] and dm.feature_names == ["x0", "x1", "x2"] + (["x5"] if clusters == "x4" else [])


def test_cr3_streamed_equals_in_memory(tmp_path) -> None:
    """CR3 (weighted) over memory-mapped shards read in 700-row blocks: each cluster's Gram matrix summed across
    blocks and shards, the same as in memory."""
    from lr_lightning.core.data import NpyDataModule
    from lr_lightning.exact import LeastSquaresModule

    folder = _shards(tmp_path / "d", _data())
    kw = dict(weights="x3", clusters="x4", val_fraction=0, dtype="float64")
    out = []
    for dm in (NpyDataModule(folder, in_memory=True, **kw), NpyDataModule(folder, block_rows=700, **kw)):
        module = LeastSquaresModule(cluster=True, cr3=True)
        make_trainer(max_epochs=20).fit(module, datamodule=dm)
        out.append(module.statistics[dm.target_names[0]])
    assert out[0]["n_clusters"] == 150
    np.testing.assert_allclose(out[1]["stderr_cluster"]["CR3"], out[0]["stderr_cluster"]["CR3"], rtol=1e-10, atol=0)
    assert np.all(np.array(out[0]["stderr_cluster"]["CR3"]) != out[0]["stderr_cluster"]["CR1"])


def test_npy_side_columns_of_x_and_y_pairs(tmp_path) -> None:
    """The x*.npy / y*.npy layout: a weight or cluster column is a column of the x shards."""
    from lr_lightning.core.data import NpyDataModule

    d = _data()
    (tmp_path / "d").mkdir()
    for i, start in enumerate(range(0, 4000, 1500)):
        np.save(tmp_path / "d" / f"x-{i}.npy", np.column_stack([d["x"], d["w"], d["firm"]])[start:start + 1500])
        np.save(tmp_path / "d" / f"y-{i}.npy", d["y"][start:start + 1500])
    kw = dict(weights="x3", clusters="x4", val_fraction=0, dtype="float64")
    _assert_close(_fit(NpyDataModule(tmp_path / "d", in_memory=True, **kw)),
                  _fit(NpyDataModule(tmp_path / "d", block_rows=512, **kw)), 1e-10)


def _parquet(path: Path, d: dict[str, np.ndarray]) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"firm {int(f):03d}" for f in d["firm"]]  # text ids
    pq.write_table(pa.table({"a": d["x"][:, 0], "b": d["x"][:, 1], "c": d["x"][:, 2], "w": d["w"], "firm": names,
                             "y": d["y"]}), path, row_group_size=900)
    return names


def test_parquet_streamed_with_text_ids_equals_in_memory(tmp_path) -> None:
    from lr_lightning.core.data import ParquetDataModule

    _parquet(tmp_path / "d.parquet", _data())
    kw = dict(weights="w", clusters="firm", val_fraction=0, dtype="float64")
    memory = _fit(ParquetDataModule(tmp_path / "d.parquet", in_memory=True, **kw))
    dm = ParquetDataModule(tmp_path / "d.parquet", **kw)
    streamed = _fit(dm)
    assert dm.feature_names == ["a", "b", "c"] and dm.cluster_values[0][0] == "firm 000"
    _assert_close(memory, streamed, 1e-10)


def test_parquet_streamed_categories_weights_and_text_ids_in_one_file(tmp_path) -> None:
    """Categorical text column, weight column and text cluster ids in one file: streamed equals in memory equals
    statsmodels' WLS (dummies, weights, CR1 cluster errors); neither side column is an input of the encoding."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import statsmodels.api as sm

    from lr_lightning.core.data import ParquetDataModule

    d = _data(n=1200, g=40)
    region = np.array(["east", "north", "south"])[np.random.default_rng(4).integers(0, 3, 1200)]
    y = d["y"] + np.select([region == "north", region == "south"], [3.0, -2.0], 0.0)
    pq.write_table(pa.table({"a": d["x"][:, 0], "region": region, "w": d["w"], "firm": [f"f{int(f)}" for f in
                                                                                        d["firm"]], "y": y}),
                   tmp_path / "d.parquet", row_group_size=500)
    kw = dict(weights="w", clusters="firm", val_fraction=0, dtype="float64")
    dm = ParquetDataModule(tmp_path / "d.parquet", **kw)
    streamed = _fit(dm)
    memory_dm = ParquetDataModule(tmp_path / "d.parquet", in_memory=True, **kw)
    memory = _fit(memory_dm)
    for m in (dm, memory_dm):
        assert m.feature_names == ["a", "region[T.north]", "region[T.south]"]
        assert m.hparams["categories"]["inputs"] == ["a", "region"]
    assert dm.table.streamed and dm.clusters is None and len(dm.cluster_values[0]) == 40
    _assert_close(memory, streamed, 1e-10)
    x = sm.add_constant(np.column_stack([d["x"][:, 0], region == "north", region == "south"]).astype(float))
    keep = d["w"] > 0  # rows of weight 0 take no part (statsmodels would count them in n)
    ref = sm.WLS(y[keep], x[keep], weights=d["w"][keep]).fit(cov_type="cluster",
                                                              cov_kwds={"groups": d["firm"][keep]}, use_t=True)
    np.testing.assert_allclose(streamed["coef"], ref.params, rtol=1e-8, atol=0)
    np.testing.assert_allclose(streamed["stderr_cluster"]["CR1"], ref.bse, rtol=1e-8, atol=0)


def test_csv_text_ids_equal_statsmodels(tmp_path) -> None:
    import statsmodels.api as sm

    from lr_lightning.core.data import CSVDataModule

    d = _data()
    firms = np.array(["acme", "beta", "gamma co", "delta"])[d["firm"].astype(int) % 4] + \
        np.char.mod("-%d", d["firm"].astype(int))
    lines = ["a,b,firm,c,y"] + [f"{float(r[0])!r},{float(r[1])!r},{f},{float(r[2])!r},{float(t)!r}"
                                for r, f, t in zip(d["x"], firms, d["y"], strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    dm = CSVDataModule(tmp_path / "d.csv", clusters="firm", val_fraction=0, dtype="float64")
    ours = _fit(dm)
    assert dm.feature_names == ["a", "b", "c"]
    ref = sm.OLS(d["y"], sm.add_constant(d["x"])).fit(cov_type="cluster", cov_kwds={"groups": d["firm"]},
                                                     use_t=True)
    assert ours["n_clusters"] == 150
    np.testing.assert_allclose(ours["stderr_cluster"]["CR1"], ref.bse, rtol=1e-8, atol=0)
    np.testing.assert_allclose(ours["coef"], ref.params, rtol=1e-8, atol=0)


def test_streamed_training_batches_carry_the_weights(tmp_path) -> None:
    """The SGD path: streamed batches are (x, y, w), w the shards' weight column, never the cluster codes."""
    from lr_lightning.core.data import NpyDataModule

    d = _data()
    dm = NpyDataModule(_shards(tmp_path / "d", d), weights="x3", clusters="x4", val_fraction=0, shuffle=False,
                       batch_size=100, dtype="float64")
    dm.setup("fit")
    x, y, w = next(iter(dm.train_dataloader()))
    assert w.shape == (100, 1) and w.dtype == torch.float64
    rows = x[:, 0].numpy()  # the first block's rows, in order: match them to the data by their x0
    at = np.searchsorted(np.sort(d["x"][:, 0]), rows)
    order = np.argsort(d["x"][:, 0])[at]
    np.testing.assert_array_equal(w[:, 0].numpy(), d["w"][order])


def test_streamed_refusals_are_one_line(tmp_path) -> None:
    from lr_lightning.core.data import NpyDataModule, ParquetDataModule

    d = _data()
    d["w"][1600] = -1.0  # second shard, its row 101
    folder = _shards(tmp_path / "d", d)
    with pytest.raises(ValueError, match=r"part-001.npy: row 101 \(1-based\), column 'x3': weight -1.0") as e:
        NpyDataModule(folder, weights="x3", val_fraction=0).setup("fit")
    assert "\n" not in str(e.value)
    d = _data()
    d["firm"][5] = np.nan
    folder = _shards(tmp_path / "e", d)
    with pytest.raises(ValueError, match=r"part-000.npy: row 6 \(1-based\), column 'x4': cluster id nan"):
        NpyDataModule(folder, clusters="x4", val_fraction=0).setup("fit")
    with pytest.raises(ValueError, match=r"e: no cluster column 'x9'; the feature columns are x0, x1"):
        NpyDataModule(folder, clusters="x9")
    d = _data()
    d["w"][:] = 0
    with pytest.raises(ValueError, match="column 'x3': every weight is zero"):
        NpyDataModule(_shards(tmp_path / "f", d), weights="x3", val_fraction=0).setup("fit")
    _parquet(tmp_path / "d.parquet", _data())
    with pytest.raises(ValueError, match=r"d.parquet: column 'firm' holds string values, not numbers"):
        ParquetDataModule(tmp_path / "d.parquet", categorical=[])  # no categories: text only as cluster ids
    with pytest.raises(ValueError, match="needs the data in memory|in_memory=True"):
        NpyDataModule(folder, weights=np.ones(4000))  # weights as an array: in memory only


# ------------------------------------------------------------------------------------------------ DDP
def _ddp_cases(folder: str, **trainer: Any) -> dict[str, Any]:
    from lr_lightning.core.data import NpyDataModule

    out = {}
    for name, clusters in (("one_way", "x4"), ("two_way", ["x4", "x5"])):
        dm = NpyDataModule(folder, weights="x3", clusters=clusters, val_fraction=0, dtype="float64", block_rows=400)
        out[name] = _fit(dm, robust=name == "one_way", **trainer)
    return out


def _worker(rank: int, tmp: str) -> None:
    import lr_lightning.exact.least_squares_module as lsm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="1", WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")  # MASTER_PORT: read by Lightning, never bound
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=2)
    lsm.PASS_BYTES = 0  # small batches: several per rank
    torch.set_num_threads(1)
    results = _ddp_cases(f"{tmp}/d", strategy="ddp", devices=2)
    if rank == 0:
        (Path(tmp) / "ddp.pkl").write_bytes(pickle.dumps(results))
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # ~10 s: two new Pythons (spawn)
@pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32", reason="needs torch.distributed")
def test_two_ddp_processes_over_shards_give_one_process_statistics(tmp_path, monkeypatch) -> None:
    import lr_lightning.exact.least_squares_module as lsm

    _shards(tmp_path / "d", _data())
    torch.multiprocessing.spawn(_worker, args=(str(tmp_path),), nprocs=2, join=True)
    two = pickle.loads((tmp_path / "ddp.pkl").read_bytes())
    monkeypatch.setattr(lsm, "PASS_BYTES", 0)
    for name, one in _ddp_cases(str(tmp_path / "d")).items():
        _assert_close(one, two[name], 1e-10)
        np.testing.assert_allclose(two[name]["p_cluster"], one["p_cluster"], rtol=1e-8, atol=1e-300)


@pytest.mark.parametrize("source", ["csv", "parquet streamed", "parquet in memory"])
def test_integer_ids_beyond_2_53_stay_apart(tmp_path, source) -> None:
    """19-digit ids 3 apart: float64 (spacing 128 at 1e18) made the CSV's 8 firms one cluster, and a Parquet int64
    column was refused. Ids are kept as the integers they are."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import statsmodels.api as sm

    from lr_lightning import CSVDataModule, ParquetDataModule

    rng = np.random.default_rng(0)
    n, firm = 400, rng.integers(0, 8, 400)
    ids, x = 10**18 + 3 * firm + 6, rng.normal(size=400)
    y = 2 * x + rng.normal(size=8)[firm] + rng.normal(size=n)
    if source == "csv":
        path = tmp_path / "b.csv"
        path.write_text("x,firm,y\n" + "".join(f"{float(a)!r},{g},{float(b)!r}\n" for a, g, b in zip(x, ids, y,
                                                                                                       strict=True)))
        dm = CSVDataModule(path, clusters="firm", val_fraction=0, dtype="float64")
    else:
        path = tmp_path / "b.parquet"
        pq.write_table(pa.table({"x": x, "firm": pa.array(ids, pa.int64()), "y": y}), path, row_group_size=150)
        dm = ParquetDataModule(path, clusters="firm", val_fraction=0, dtype="float64",
                               in_memory=source.endswith("memory"))
    s = _fit(dm)
    reference = sm.OLS(y, sm.add_constant(x)).fit(cov_type="cluster", cov_kwds={"groups": firm})
    assert s["n_clusters"] == 8
    assert np.max(np.abs(np.array(s["stderr_cluster"]["CR1"]) - reference.bse) / reference.bse) < 1e-12


@pytest.mark.parametrize("marker", ["NA", "null", "N/A", "<NA>", "-nan", "1.#IND"])
def test_a_csv_id_that_reads_as_missing_is_refused(tmp_path, marker) -> None:
    """'NA' made a cluster of its own (pandas and R read it as missing): refused in one line naming the row."""
    from lr_lightning import CSVDataModule

    path = tmp_path / "na.csv"
    path.write_text(f"x,firm,y\n1,a,2\n2,{marker},3\n3,b,4\n4,a,5\n")
    with pytest.raises(ValueError, match=rf"na.csv: data row 2 .*'firm': cluster id '{marker}' reads as missing"):
        CSVDataModule(path, clusters="firm")
