"""Weighted least squares across 2 DDP processes (gloo): every statistic equals one process's to 1e-10 relative
(tests/exact/test_exact_ddp.py's comparison), the weights dealt out to the ranks with their rows."""

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


def _weighted_cases(**trainer: Any) -> dict[str, Any]:
    from lr_lightning import LeastSquaresModule, RegressionDataModule

    x, y = _offset_data()
    w = np.random.default_rng(11).uniform(0.1, 5.0, size=len(y))
    w[::97] = 0.0  # rows of weight zero, on both ranks
    cases = {
        "weighted_offset_robust": (RegressionDataModule(x, y, weights=w, val_fraction=0, dtype="float64"), True),
        # A polynomial basis takes refinement passes: their weighted double-double sums are merged too.
        "weighted_quadratic": (RegressionDataModule(x[:, 1:], y, weights=w, val_fraction=0, dtype="float64",
                                                    polynomial_degree=2), True),
    }
    out = {}
    for name, (dm, robust) in cases.items():
        module = LeastSquaresModule(robust=robust)
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
    results = _weighted_cases(strategy="ddp", devices=2)
    if rank == 0:
        (Path(tmp) / "ddp.pkl").write_bytes(pickle.dumps(results))
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # ~4 s: two new Pythons (spawn)
def test_two_ddp_processes_give_one_process_weighted_statistics(tmp_path, monkeypatch):
    import lr_lightning.exact.least_squares_module as lsm

    torch.multiprocessing.spawn(_worker, args=(str(tmp_path),), nprocs=2, join=True)
    ddp = pickle.loads((tmp_path / "ddp.pkl").read_bytes())
    monkeypatch.setattr(lsm, "PASS_BYTES", 0)
    for name, one in _weighted_cases().items():
        two = ddp[name]
        assert (one["world_size"], two["world_size"]) == (1, 2)
        assert one["statistics"]["y"]["weighted"] is True
        assert one["statistics"]["y"]["n"] == 5003 - len(range(0, 5003, 97))
        worst = assert_same_statistics(one["statistics"], two["statistics"], name)
        print(name, "worst relative difference", worst)
