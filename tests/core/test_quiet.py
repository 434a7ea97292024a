"""Quiet output: what the command line and the API print is what a user can act on, once.

Each test here failed before its fix: a warning per DDP process, Lightning's per-process start-up lines, a
matplotlib warning per missing glyph of a column name, torch's warning about a read-only pandas array.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lr_lightning import RegressionDataModule
from lr_lightning.core.cli import fit_main
from tests.conftest import run_main


def test_column_names_the_font_lacks_draw_without_a_warning_per_glyph(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "prices.csv").write_text("面积,价格\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(20)))
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # not once per place: an earlier test may have drawn the same glyphs
        done = run_main(fit_main, "--data", "prices.csv", "--max_epochs", "2", "--figures", "1", "--plot", "fit.png",
                        cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fit.png").stat().st_size > 0
    assert "Glyph" not in done.stderr, done.stderr


def test_a_pandas_dataframe_is_taken_without_torch_s_read_only_warning():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 3)), columns=["a", "b", "y"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "The given NumPy array is not writable" would raise here
        dm = RegressionDataModule(df[["a", "b"]], df["y"], val_fraction=0, dtype="float64")
    assert dm.n_samples == 20
    assert np.array_equal(dm.raw_split("train")[0].numpy()[np.argsort(dm.raw_split("train")[0].numpy()[:, 0])],
                          df[["a", "b"]].to_numpy()[np.argsort(df["a"].to_numpy())])
