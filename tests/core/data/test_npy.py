"""Any .npy file reads correctly or is one clear error (generated hostile input)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from hypothesis import given

from tests.conftest import assert_one_line_error, hostile_npy


@given(hostile_npy())
def test_any_npy_reads_correctly_or_is_one_clear_error(case: tuple[bytes, str]) -> None:
    from lr_lightning.core.data import NpyDataModule  # here: the file's other tests do not need .npy support

    data, mode = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.npy"
        path.write_bytes(data)
        try:
            dm = NpyDataModule(path, in_memory=mode == "in-memory", val_fraction=0.0)
            dm.setup("fit")
            x, y = next(iter(dm.train_dataloader()))
        except Exception as e:  # noqa: BLE001
            assert_one_line_error(e, "data.npy")
            return
        assert torch.isfinite(x).all() and torch.isfinite(y).all() and len(x) == len(y) >= 1
