"""Figures: ``fit.py --plot``'s picture: the loss curves in one unit, on an axis named by the loss, beside the
fitted line over the data; and docs/images/run.png, remade by the command that made it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from lr_lightning.core.callbacks import LossHistory
from lr_lightning.core.cli import fit_main, parse
from lr_lightning.core.figures import _loss_panel, train_loss_scale
from lr_lightning.core.run import build_run

from ..conftest import ROOT, run_main

# The command that makes docs/images/run.png (run in the repository root; docs/tensorboard.md shows it).
RUN_PNG = ["--data", "synthetic", "--max_epochs", "20", "--figures", "0", "--plot"]


def _trained(tmp_path, *flags):
    run = build_run(*parse("fit", ["--log_dir", str(tmp_path / "logs"), "--progress_bar", "false", "--figures", "0",
                                   "--data", "synthetic", "--data.true_weight", "30", "--data.noise", "3",
                                   "--max_epochs", "15", *flags]))
    run.trainer.fit(run.module, datamodule=run.dm)
    return run.module, next(c for c in run.trainer.callbacks if isinstance(c, LossHistory))


def test_train_and_val_loss_are_drawn_in_the_data_units(tmp_path):
    module, history = _trained(tmp_path, "--data.standardize", "true")
    assert train_loss_scale(module) > 100  # y spans about ±60: standardized units are far from the data's
    ax = Figure().subplots()
    _loss_panel(ax, history, module)
    drawn = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert set(drawn) == {"train/loss", "val/loss"} and ax.get_ylabel() == "MSELoss (data units)"
    # Trained to the noise: both near its variance, 9, in the data's units (standardized, train/loss was ~0.01).
    assert drawn["train/loss"][-1] == pytest.approx(drawn["val/loss"][-1], rel=0.5)
    assert 4 < drawn["train/loss"][-1] < 20


def test_a_huber_train_loss_gets_its_own_standardized_axis(tmp_path):
    module, history = _trained(tmp_path, "--data.standardize", "true", "--loss", "HuberLoss")
    assert train_loss_scale(module) is None  # no factor converts a Huber loss between units
    fig = Figure()
    ax = fig.subplots()
    _loss_panel(ax, history, module)
    right = next(a for a in fig.axes if a is not ax)
    assert ax.get_ylabel() == "HuberLoss (data units)" and right.get_ylabel() == "HuberLoss (standardized units)"
    assert [line.get_label() for line in right.get_lines()] == ["train/loss (standardized, right)"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_run_png_is_remade_by_its_command(tmp_path):
    result = run_main(fit_main, *RUN_PNG, "run.png", "--log_dir", "logs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Two panels side by side (loss, fit): 11 × 4.5 inches at 100 dpi; the fit alone would be 600 × 450.
    assert _png_size(tmp_path / "run.png") == (1100, 450)
    assert _png_size(ROOT / "docs" / "images" / "run.png") == (1100, 450)  # the committed one: the same command


def test_figures_zero_means_none(tmp_path):
    result = run_main(fit_main, "--figures", "0", "--max_epochs", "3", "--log_dir", "logs", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
