"""The summary fit.py prints (#22): a resumed run says so, and the example prediction is made inside the data."""

from __future__ import annotations

import re

from lr_lightning.core.cli import fit_main

from ..conftest import run_main


def _fit(tmp_path, *flags):
    result = run_main(fit_main, "--data", "synthetic", "--figures", "0", "--log_dir", "logs", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_resumed_run_says_from_which_checkpoint_and_epoch(tmp_path):
    first = _fit(tmp_path, "--max_epochs", "2")
    assert "resumed from" not in first
    again = _fit(tmp_path, "--max_epochs", "4", "--resume", "last")
    # last.ckpt was written at the end of epoch 2: 800 rows in batches of 32 is 25 steps an epoch.
    assert re.search(r"resumed from \S*version_0/checkpoints/last\.ckpt, written in epoch 2 after step 50\n", again), \
        again


def test_the_example_prediction_is_at_the_largest_training_input(tmp_path):
    out = _fit(tmp_path, "--max_epochs", "20", "--data.true_weight", "2", "--data.true_bias", "1")
    found = re.search(r"prediction for x0 = ([-\d.]+) \(the largest in the training data\): ([-\d.]+) before "
                      r"training, ([-\d.]+) after", out)
    assert found, out
    x, after = float(found[1]), float(found[3])
    assert 1 < x < 5  # synthetic inputs are standard normal: 800 of them reach past 1, not past 5
    assert abs(after - (2 * x + 1)) < 0.2  # the trained line, at that point
