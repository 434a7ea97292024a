"""Weighted least squares across 2 DDP processes (gloo): every statistic equals one process's to 1e-10 relative
(tests/exact/test_exact_ddp.py's comparison), the weights dealt out to the ranks with their rows."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
import torch

from .test_exact_ddp import _offset_data, assert_same_statistics, fit_each

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed")


def _weighted_cases(**trainer: Any) -> dict[str, Any]:
    from lr_lightning import RegressionDataModule

    x, y = _offset_data()
    w = np.random.default_rng(11).uniform(0.1, 5.0, size=len(y))
    w[::97] = 0.0  # rows of weight zero, on both ranks
    cases = {
        "weighted_offset_robust": (RegressionDataModule(x, y, weights=w, val_fraction=0, dtype="float64"), True),
        # A polynomial basis takes refinement passes: their weighted double-double sums are merged too.
        "weighted_quadratic": (RegressionDataModule(x[:, 1:], y, weights=w, val_fraction=0, dtype="float64",
                                                    polynomial_degree=2), True),
    }
    return fit_each(cases, trainer)


@pytest.mark.slow  # the two-process job (conftest.ddp_results), shared with the other DDP tests
def test_two_ddp_processes_give_one_process_weighted_statistics(ddp_results, monkeypatch):
    import lr_lightning.exact.least_squares_module as lsm

    ddp = ddp_results[0]["weighted"]
    monkeypatch.setattr(lsm, "PASS_BYTES", 0)
    for name, one in _weighted_cases().items():
        two = ddp[name]
        assert (one["world_size"], two["world_size"]) == (1, 2)
        assert one["statistics"]["y"]["weighted"] is True
        assert one["statistics"]["y"]["n"] == 5003 - len(range(0, 5003, 97))
        worst = assert_same_statistics(one["statistics"], two["statistics"], name)
        print(name, "worst relative difference", worst)
