"""The exact solver's output under DDP: the aliased-column warning once, no start-up lines."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from lr_lightning import RegressionDataModule
from tests.conftest import run_script


def _aliased_csv(path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    y = 2 * a + rng.normal(size=200)
    path.write_text("a,b,c,y\n" + "".join(f"{a[i]},{b[i]},{a[i] + b[i]},{y[i]}\n" for i in range(200)))


@pytest.mark.slow  # two processes start (DDP on the CPU), each importing torch and Lightning: about 7 s
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="DDP on the CPU here wants two cores")
def test_ddp_says_the_aliased_column_once_and_no_start_up_lines(tmp_path):
    _aliased_csv(tmp_path / "aliased.csv")
    done = run_script("fit.py", "--solver", "exact", "--data", "aliased.csv", "--accelerator", "cpu", "--devices", "2",
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # Was: one warning per process, sometimes glued into one line, and "Initializing distributed: GLOBAL_RANK: r".
    assert done.stderr.splitlines() == [
        "warning: least squares: c is aliased (constant, or a linear combination of the columns before it): not "
        "estimable, reported as null; rank 3 of 4 coefficients"], done.stderr
    assert "2 processes" in done.stdout


def test_the_reference_fit_names_aliased_columns_on_rank_0_only(monkeypatch):
    from lr_lightning.core.networks import LinearRegression
    from lr_lightning.core.parts import _reference

    x = np.random.default_rng(0).normal(size=(50, 2))
    dm = RegressionDataModule(np.column_stack([x, x.sum(axis=1)]), x[:, 0], val_fraction=0.2, dtype="float64")
    for rank, expected in (("0", 1), ("1", 0)):  # what a DDP process started by Lightning has in its environment
        monkeypatch.setenv("LOCAL_RANK", rank)
        # Lightning reads it into rank_zero_only.rank when it is imported, before the module code runs in a DDP
        # process; here it is imported already, so set that too.
        from lightning.pytorch.utilities import rank_zero_only

        monkeypatch.setattr(rank_zero_only, "rank", int(rank))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            assert _reference(dm, LinearRegression(3)) is not None
        assert sum("aliased" in str(w.message) for w in seen) == expected, [str(w.message) for w in seen]
