"""Figures: --figures 0 draws none."""

from __future__ import annotations

from lr_lightning.core.cli import fit_main
from tests.conftest import run_main


def test_figures_zero_means_none(tmp_path):
    result = run_main(fit_main, "--figures", "0", "--max_epochs", "3", "--log_dir", "logs", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
