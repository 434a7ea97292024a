"""The exact solver's ready runs (configs/exact_*.yaml) parse and solve in one fast_dev_run: with lr_lightning/exact,
deleting this file goes too."""

from pathlib import Path

import pytest

from lr_lightning.core.cli import fit_main
from tests.conftest import ROOT, run_main

CONFIGS = sorted((ROOT / "configs").glob("exact_*.yaml"))


def test_exact_configs_are_found() -> None:
    assert "exact_robust.yaml" in {p.name for p in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_exact_config_solves(config: Path, tmp_path: Path) -> None:
    result = run_main(fit_main, "--config", str(config), "--log_dir", str(tmp_path / "logs"), "--progress_bar",
                      "false", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    statistics = (tmp_path / "logs" / "version_0" / "statistics.json").read_text()
    assert "HC3" in statistics or "hc3" in statistics
