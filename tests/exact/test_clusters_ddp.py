"""Clustered standard errors across 2 DDP processes (gloo): every statistic equals one process's to 1e-10 relative,
with clusters whose rows are dealt to both ranks (their per-cluster sums must merge by id)."""

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
from .test_exact_ddp import _offset_data, assert_same_statistics

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed")


def _clustered_cases(**trainer: Any) -> dict[str, Any]:
    from lr_lightning import LeastSquaresModule, RegressionDataModule

    x, y = _offset_data()
    rng = np.random.default_rng(12)
    firm = rng.integers(0, 300, size=len(y))  # random rows: nearly every firm has rows on both ranks
    year = np.arange(len(y)) % 17
    w = rng.uniform(0.1, 5.0, size=len(y))
    cases = {
        "one_way_robust": (RegressionDataModule(x, y, clusters=firm, val_fraction=0, dtype="float64"), True),
        "two_way_weighted": (RegressionDataModule(x, y, clusters=np.stack([firm, year], axis=1), weights=w,
                                                  val_fraction=0, dtype="float64"), False),
    }
    out = {}
    for name, (dm, robust) in cases.items():
        module = LeastSquaresModule(robust=robust, cluster=True)
        t = make_trainer(max_epochs=20, **trainer)
        t.fit(module, datamodule=dm)
        out[name] = {"statistics": module.statistics, "world_size": t.world_size}
    return out


def _worker(rank: int, tmp: str) -> None:
    import lr_lightning.exact.least_squares_module as lsm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="1", WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")  # MASTER_PORT: read by Lightning, never bound
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=2)
    lsm.PASS_BYTES = 0  # 1024-row batches: several per rank
    torch.set_num_threads(1)
    results = _clustered_cases(strategy="ddp", devices=2)
    if rank == 0:
        (Path(tmp) / "ddp.pkl").write_bytes(pickle.dumps(results))
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # ~5 s: two new Pythons (spawn)
def test_two_ddp_processes_give_one_process_clustered_statistics(tmp_path, monkeypatch):
    import lr_lightning.exact.least_squares_module as lsm

    torch.multiprocessing.spawn(_worker, args=(str(tmp_path),), nprocs=2, join=True)
    ddp = pickle.loads((tmp_path / "ddp.pkl").read_bytes())
    monkeypatch.setattr(lsm, "PASS_BYTES", 0)
    for name, one in _clustered_cases().items():
        two = ddp[name]
        assert (one["world_size"], two["world_size"]) == (1, 2)
        assert one["statistics"]["y"]["n_clusters"] == (300 if name == "one_way_robust" else [300, 17])
        worst = assert_same_statistics(one["statistics"], two["statistics"], name)
        print(name, "worst relative difference", worst)
