"""Clustered standard errors across 2 DDP processes (gloo): every statistic equals one process's to 1e-10 relative,
with clusters whose rows are dealt to both ranks (their per-cluster sums must merge by id), CR3's too."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
import torch

from .test_exact_ddp import _offset_data, assert_same_statistics, fit_each

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed")


def _clustered_cases(**trainer: Any) -> dict[str, Any]:
    from lr_lightning import RegressionDataModule

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
    # CR3 (weighted): each cluster's Gram matrix and score sums, split across ranks, merge by id before the solves.
    cr3 = {"one_way_weighted_cr3": (RegressionDataModule(x, y, clusters=firm, weights=w, val_fraction=0,
                                                         dtype="float64"), False)}
    return fit_each(cases, trainer, cluster=True) | fit_each(cr3, trainer, cluster=True, cr3=True)


@pytest.mark.slow  # the two-process job (conftest.ddp_results), shared with the other DDP tests
def test_two_ddp_processes_give_one_process_clustered_statistics(ddp_results, monkeypatch):
    import lr_lightning.exact.least_squares_module as lsm

    ddp = ddp_results[0]["clustered"]
    monkeypatch.setattr(lsm, "PASS_BYTES", 0)
    for name, one in _clustered_cases().items():
        two = ddp[name]
        assert (one["world_size"], two["world_size"]) == (1, 2)
        assert one["statistics"]["y"]["n_clusters"] == (300 if name.startswith("one_way") else [300, 17])
        assert ("CR3" in two["statistics"]["y"]["stderr_cluster"]) == name.endswith("cr3")
        worst = assert_same_statistics(one["statistics"], two["statistics"], name)
        print(name, "worst relative difference", worst)
