"""The side columns of streamed tables (core/data/sides.py): cluster ids gathered in the setup pass and coded per
batch, by marks and a lookup table where the ids are 0..G-1, by sorting and binary search otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from lr_lightning.core.data.sides import StreamedSides, lookup_table
from lr_lightning.core.data.tables import NpyTable


def _sides(tmp_path, ids: np.ndarray) -> tuple[StreamedSides, NpyTable]:
    np.save(tmp_path / "d.npy", np.column_stack([np.arange(len(ids), dtype=float), ids, np.ones(len(ids))]))
    table = NpyTable(tmp_path / "d.npy")
    table.take_side("x1", "clusters")
    return StreamedSides(table, None, ["x1"]), table


@pytest.mark.parametrize("ids", [
    np.array([0.0, 5, 3, 5, 7, 1, 2, 9]),  # whole numbers: marked
    np.array([0.0, 5, 3, 5, 7.5, 1, 2, 9]),  # a fraction in the second chunk: the marks become sorted ids
    np.array([2.5, 5, 3, 5, 7, 1, 2, 9]),  # a fraction first: sorted throughout
    np.array([4e9, 5, 3, 5, 7, 1, 2, 9]),  # beyond the marks' range
    np.array([-1.0, 5, 3, 5, 7, 1, 2, 9]),  # negative
], ids=["whole", "fraction-later", "fraction-first", "large", "negative"])
def test_distinct_ids_and_codes_are_those_of_sorting_and_searching(tmp_path, ids) -> None:
    sides, table = _sides(tmp_path, ids)
    for start in range(0, len(ids), 4):  # two chunks
        sides.check(start, table.read_range(start, start + 4, sides=True)[2])
    values = sides.finish()
    np.testing.assert_array_equal(values[0], np.unique(ids))
    side = table.read_range(0, len(ids), sides=True)[2]
    searched = StreamedSides.codes(values, [side[0]])
    indexed = StreamedSides.codes(values, [side[0]], [lookup_table(values[0])])
    np.testing.assert_array_equal(indexed.numpy(), searched.numpy())
    np.testing.assert_array_equal(searched.numpy()[:, 0], np.searchsorted(np.unique(ids), ids))
    assert (lookup_table(values[0]) is not None) == (ids.min() >= 0 and ids.max() < 100 and (ids % 1 == 0).all())
