"""evaluate.py --stage test on a run trained without a test split (#22): one line that says how to get one, and the
fix it names works."""

from __future__ import annotations

from lr_lightning.core.cli import fit_main
from lr_lightning.core.evaluate import evaluate_main

from ..conftest import run_main


def _evaluate(tmp_path, version):
    run = f"logs/version_{version}"
    return run_main(evaluate_main, "--config", f"{run}/config.yaml", "--ckpt_path", f"{run}/checkpoints/best.ckpt",
                    "--stage", "test", "--progress_bar", "false", cwd=tmp_path)


def test_no_test_split_names_the_flag_that_holds_one_out_and_that_flag_works(tmp_path):
    common = ["--data", "synthetic", "--max_epochs", "2", "--figures", "0", "--log_dir", "logs"]
    assert run_main(fit_main, *common, cwd=tmp_path).returncode == 0
    result = _evaluate(tmp_path, 0)
    assert result.returncode == 2 and result.stderr == (
        "error: --stage test: the run's data has no test split; train with python scripts/fit.py "
        "--data.test_fraction 0.2 to hold one out\n")
    assert run_main(fit_main, *common, "--data.test_fraction", "0.2", cwd=tmp_path).returncode == 0
    result = _evaluate(tmp_path, 1)
    assert result.returncode == 0 and "test/loss" in result.stdout, result.stderr
