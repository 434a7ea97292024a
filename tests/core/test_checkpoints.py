"""Checkpoint files handed to the API: missing, empty or oversized recipes are one clear error."""

from __future__ import annotations

import pytest

from lr_lightning import RegressionModule


def test_hostile_api_arguments_are_value_errors(tmp_path):
    from lr_lightning.core.checkpoints import build_model

    huge = {"class_path": "lr_lightning.core.networks.MLPRegressor", "init_args": {"in_features": 2,
                                                                           "hidden": [10**9, 10**9]}}
    with pytest.raises(ValueError, match="its parameters need about .* GB of memory; this machine has"):
        build_model(huge)  # refused from shapes alone, before any memory is asked for
    with pytest.raises(FileNotFoundError, match="no such file"):
        RegressionModule.load_from_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "none.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="none.ckpt: not a checkpoint written by lr_lightning"):
        RegressionModule.load_from_checkpoint(tmp_path / "none.ckpt")
