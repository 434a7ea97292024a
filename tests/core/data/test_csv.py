"""Any CSV file reads correctly or is one clear error, and a valid one gives exactly its numbers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from lr_lightning.core.data import CSVDataModule
from tests.conftest import assert_one_line_error, hostile_csv


@given(hostile_csv())
def test_any_csv_reads_correctly_or_is_one_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.csv"
        path.write_bytes(data)
        try:
            dm = CSVDataModule(path)
        except Exception as e:  # noqa: BLE001 - the property: only these two, in one line, naming the file
            assert_one_line_error(e, "data.csv")
            return
        # Read: every value finite, shapes consistent, names unique and non-empty, as the file says.
        assert torch.isfinite(dm.x).all() and torch.isfinite(dm.y).all()
        assert dm.x.shape[0] == dm.y.shape[0] >= 1 and dm.x.shape[1] == len(dm.feature_names) >= 1
        all_names = [*dm.feature_names, *dm.target_names]
        assert len(set(all_names)) == len(all_names) and all(n.strip() == n and n for n in all_names)
        assert not any(n.startswith("\ufeff") for n in all_names)


@given(st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=3, max_size=3), min_size=1,
                max_size=8), st.booleans(), st.booleans())
def test_a_valid_csv_gives_exactly_its_numbers(rows: list[list[float]], bom: bool, comment: bool) -> None:
    text = ("# written by a test\n" if comment else "") + "a,b,y\n" + "".join(
        ",".join(repr(v) for v in r) + "\n" for r in rows)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ok.csv"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
        dm = CSVDataModule(path, val_fraction=0.0, dtype="float64")
    expected = np.asarray(rows)
    assert dm.feature_names == ["a", "b"] and dm.target_names == ["y"]
    np.testing.assert_array_equal(dm.x.numpy(), expected[:, :2])
    np.testing.assert_array_equal(dm.y.numpy(), expected[:, 2:])
