"""Tables: where rows come from. One abstraction, :class:`Table`, over arrays, CSV, ``.npy`` and Parquet files.

A table is ``n_rows`` rows of ``n_inputs`` feature columns and ``n_outputs`` target columns, read as ``(x, y)``
numpy arrays: all of them at once (``read_range(0, n_rows)``), a range, or any rows in any order (``read``). A
*streamed* table (``.npy`` memory-mapped, Parquet) is never wholly in memory: it is read block by block
(``blocks``), and ``release`` gives back what a finished block held. The datamodules
(:mod:`lr_lightning.core.data.datamodule`) serve batches from any of them.

- :class:`ArrayTable`: arrays already in memory.
- :class:`~lr_lightning.core.data.csv_table.CsvTable` (in its own module): a CSV file with a header row, parsed by
  pyarrow into memory.
- :class:`NpyTable`: a ``.npy`` file or a directory of ``.npy`` shards, memory-mapped.
- :class:`ParquetTable`: a ``.parquet`` file or a directory of them; each row group is a block.

``.npy`` layouts: one 2-D array whose columns are features and the target (``target`` picks the column, default
the last); or ``x.npy`` and ``y.npy`` (rows match; ``y`` may have several columns) in a directory (or the file
``x.npy`` itself, read with the ``y.npy`` beside it and refused without one); or a directory of shards, ``*.npy``
with features and target together, or ``x*.npy`` and ``y*.npy`` in pairs (``x-000.npy`` with ``y-000.npy``), taken
in name order. ``scripts/make_data.py`` writes such a directory (or Parquet files).
"""

from __future__ import annotations

import math
import mmap
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

Ranges = list[tuple[int, int]]


# ------------------------------------------------------------------------------------------------ the ABC
class Table(ABC):
    """Rows of features and targets, read as ``(x, y)`` numpy arrays of shape ``(rows, n_inputs)`` and
    ``(rows, n_outputs)``.

    Subclasses set ``n_rows``, ``feature_names``, ``target_names``, ``dtype`` (the numpy dtype the rows are read in)
    and ``streamed`` (True: read block by block, never wholly in memory), and implement :meth:`blocks`,
    :meth:`read` and :meth:`read_range`.
    """

    n_rows: int
    feature_names: list[str]
    target_names: list[str]
    dtype: np.dtype
    streamed: bool = False

    @property
    def n_inputs(self) -> int:
        return len(self.feature_names)

    @property
    def n_outputs(self) -> int:
        return len(self.target_names)

    @abstractmethod
    def blocks(self, block_rows: int) -> Ranges:
        """``(start, stop)`` of consecutive rows that are cheap to read together, covering every row once."""

    @abstractmethod
    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the rows ``rows`` (row numbers, in that order)."""

    @abstractmethod
    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[start, stop)`` (views where the table can give them)."""

    def release(self, start: int, stop: int) -> None:  # noqa: B027 - a no-op unless the table holds pages
        """Give back the memory rows ``[start, stop)`` hold once no batch needs them; a no-op where meaningless."""

    def where(self, row: int) -> str:
        """Where row ``row`` (0-based) lives, as an error message names it: ``file: row r (1-based)``. Rows are counted
        from 1 in every message, as a person counts them (a CSV file's own messages give its line instead)."""
        return f"row {row + 1} (1-based)"

    def column(self, j: int, target: bool = False) -> str:
        """Feature (or target) column ``j`` as an error message names it."""
        return repr((self.target_names if target else self.feature_names)[j])


def _fixed_blocks(n: int, block_rows: int) -> Ranges:
    return [(a, min(a + block_rows, n)) for a in range(0, n, block_rows)]


def _columns2d(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return a[:, None] if a.ndim == 1 else a


class ArrayTable(Table):
    """Arrays in memory: ``x`` ``(n, k)`` (or ``(n,)``, one column) and ``y`` likewise, row for row.

    >>> t = ArrayTable(np.arange(6.0).reshape(3, 2), [1.0, 2.0, 3.0])
    >>> t.n_rows, t.feature_names, t.target_names, t.read(np.array([2, 0]))[1].ravel().tolist()
    (3, ['x0', 'x1'], ['y'], [3.0, 1.0])
    """

    def __init__(self, x: Any, y: Any, feature_names: list[str] | None = None,
                 target_names: list[str] | None = None) -> None:
        self.x, self.y = _columns2d(x), _columns2d(y)
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)}; they must match row for row")
        self.n_rows = len(self.x)
        self.dtype = np.result_type(self.x.dtype, self.y.dtype)
        k, m = self.x.shape[1], self.y.shape[1]
        self.feature_names = list(feature_names) if feature_names else [f"x{i}" for i in range(k)]
        self.target_names = list(target_names) if target_names else (["y"] if m == 1 else [f"y{i}" for i in range(m)])

    def blocks(self, block_rows: int) -> Ranges:
        return _fixed_blocks(self.n_rows, block_rows)

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x[rows], self.y[rows]

    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[start:stop], self.y[start:stop]


# ----------------------------------------------------------------------------------------------------- .npy
class MappedNpy:
    """One ``.npy`` file mapped read-only: ``array`` is a view of the mapping (no copy, nothing read yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read_header(f)
            except (ValueError, EOFError) as e:
                raise ValueError(f"{path}: not a .npy array ({e})") from None
            self.offset = f.tell()
            if dtype.hasobject or not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
                raise ValueError(f"{path}: expected real numbers, found dtype {dtype}")
            if not dtype.isnative:
                raise ValueError(f"{path}: numbers stored in the other byte order ({dtype.str}); save it in this "
                                 f"machine's: np.save(path, a.astype(a.dtype.newbyteorder('=')))")
            if len(shape) not in (1, 2) or shape[0] == 0:
                raise ValueError(f"{path}: expected a 2-D array (rows, columns) with rows, got shape {shape}")
            if fortran_order and len(shape) == 2 and shape[1] > 1:
                # Rows must be contiguous on disk to be read block by block.
                raise ValueError(f"{path}: stored in Fortran (column) order; save it with "
                                 "np.save(path, np.ascontiguousarray(a))")
            size = self.offset + math.prod(shape) * dtype.itemsize
            if path.stat().st_size < size:
                raise ValueError(f"{path}: truncated ({path.stat().st_size} bytes, the header says {size})")
            self.mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid after the close
        self.array = np.ndarray(shape, dtype, buffer=self.mapping, offset=self.offset)
        if self.array.ndim == 1:
            self.array = self.array[:, None]
        self.row_bytes = self.array.shape[1] * dtype.itemsize

    def release(self, start: int, stop: int) -> None:
        """Drop the pages of rows ``[start, stop)`` from this process (the kernel keeps them cached): resident
        memory would otherwise grow with every page an epoch touches. Later reads fault them back in."""
        first = -(-(self.offset + start * self.row_bytes) // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages only
        last = (self.offset + stop * self.row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first and hasattr(mmap, "MADV_DONTNEED"):
            self.mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


class NpyTable(Table):
    """The rows of one or more ``.npy`` files end to end (layouts: the module's docstring), memory-mapped;
    ``target`` is the index of the target column in a single array (default: the last one)."""

    streamed = True

    def __init__(self, path: str | Path, target: int | str | None = None) -> None:
        self.path = Path(path)
        pairs = _layout(self.path)
        self.parts: list[tuple[MappedNpy, MappedNpy | None]] = [
            (MappedNpy(x), MappedNpy(y) if y is not None else None) for x, y in pairs]
        first_x, first_y = self.parts[0]
        if first_y is None:  # features and target in one array
            columns = first_x.array.shape[1]
            if columns < 2:
                raise ValueError(f"{first_x.path}: expected a 2-D array of features and a target column, "
                                 f"got shape {first_x.array.shape}")
            t = columns - 1 if target is None else _column(target, columns, first_x.path)
            self.x_columns = [j for j in range(columns) if j != t]
            self.y_columns = [t]
            self.feature_names = [f"x{j}" for j in self.x_columns]
            self.target_names = [f"x{t}"]
        else:
            if target is not None:
                raise ValueError(f"{self.path}: the targets are in y.npy; a target column applies to a single array")
            self.x_columns = list(range(first_x.array.shape[1]))
            self.y_columns = list(range(first_y.array.shape[1]))
            self.feature_names = [f"x{j}" for j in self.x_columns]
            self.target_names = ["y"] if len(self.y_columns) == 1 else [f"y{j}" for j in self.y_columns]
        for x, y in self.parts:
            for f, first in ((x, first_x), (y, first_y)):
                if f is not None and f.array.shape[1] != first.array.shape[1]:
                    raise ValueError(f"{f.path}: {f.array.shape[1]} columns, but {first.path} has "
                                     f"{first.array.shape[1]}; all shards need the same columns")
            if y is not None and len(y.array) != len(x.array):
                raise ValueError(f"{y.path}: {len(y.array)} rows, but {x.path} has {len(x.array)}; "
                                 "they must match row for row")
        self.starts = np.cumsum([0] + [len(x.array) for x, _ in self.parts])
        self.n_rows = int(self.starts[-1])
        self.dtype = np.result_type(*(f.array.dtype for f in self.parts[0] if f is not None))
        self.side_names: list[str] = []  # columns taken out of the features (weights, cluster ids): take_side
        self.side_columns: list[int] = []

    def take_side(self, name: str, what: str) -> None:
        """Take feature column ``name`` out of the features, as a side column (a weight or a cluster id column)
        that ``read(rows, sides=True)`` reads beside ``x`` and ``y``."""
        if name not in self.feature_names:
            raise ValueError(f"{self.path}: no {what} column {name!r}; the feature columns are "
                             f"{', '.join(self.feature_names)}")
        if len(self.feature_names) == 1:
            raise ValueError(f"{self.path}: {what}={name!r} is the only feature column; nothing would be left to "
                             "fit on")
        j = self.feature_names.index(name)
        self.side_names.append(self.feature_names.pop(j))
        self.side_columns.append(self.x_columns.pop(j))

    def blocks(self, block_rows: int) -> Ranges:
        """``(start, stop)`` of consecutive rows, ``block_rows`` long, none crossing from one file into the next."""
        return [(a, min(a + block_rows, int(stop))) for start, stop in zip(self.starts[:-1], self.starts[1:],
                                                                           strict=True)
                for a in range(int(start), int(stop), block_rows)]

    def read(self, rows: np.ndarray, sides: bool = False) -> Any:
        """Copies of the rows ``rows`` (global row numbers, in that order): ``(x, y)`` in the files' dtype; with
        ``sides``, ``(x, y, sides)``, ``sides`` a list of the side columns (:meth:`take_side`), each ``(rows,)``."""
        if len(rows) == 0:
            return self._read(0, slice(0, 0), sides)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        if part[0] == part[-1] and (part == part[0]).all():  # the usual case: one file
            return self._read(int(part[0]), rows - self.starts[part[0]], sides)
        dtype = self.parts[0][0].array.dtype
        x = np.empty((len(rows), len(self.x_columns)), dtype)
        y = np.empty((len(rows), len(self.y_columns)), (self.parts[0][1] or self.parts[0][0]).array.dtype)
        side = [np.empty(len(rows), dtype) for _ in self.side_columns]
        for p in np.unique(part):
            mask = part == p
            got = self._read(int(p), rows[mask] - self.starts[p], sides)
            x[mask], y[mask] = got[:2]
            for whole, piece in zip(side, got[2] if sides else [], strict=False):
                whole[mask] = piece
        return (x, y, side) if sides else (x, y)

    def _read(self, p: int, rows: np.ndarray | slice, sides: bool = False) -> Any:
        xs, ys = self.parts[p]
        block = xs.array[rows]
        if ys is not None:
            x, y = (block[:, self.x_columns] if self.side_columns else block), ys.array[rows]
        else:
            x, y = block[:, self.x_columns], block[:, self.y_columns]
        return (x, y, [block[:, c] for c in self.side_columns]) if sides else (x, y)

    def read_range(self, start: int, stop: int, sides: bool = False) -> Any:
        """Rows ``[start, stop)``, within one file (as :meth:`blocks` are); ``sides``: as :meth:`read`."""
        p = int(np.searchsorted(self.starts, start, side="right") - 1)
        p = min(p, len(self.parts) - 1)
        return self._read(p, slice(start - int(self.starts[p]), stop - int(self.starts[p])), sides)

    def release(self, start: int, stop: int) -> None:
        p = int(np.searchsorted(self.starts, start, side="right") - 1)
        for f in self.parts[min(p, len(self.parts) - 1)]:
            if f is not None:
                f.release(start - int(self.starts[p]), stop - int(self.starts[p]))

    def where(self, row: int) -> str:
        """``file: row r`` for a global row, as an error message names it."""
        p = int(np.searchsorted(self.starts, row, side="right") - 1)
        return f"{self.parts[p][0].path}: row {row - int(self.starts[p]) + 1} (1-based)"

    def column(self, j: int, target: bool = False) -> str:
        """The column's name and its place in its file, counted from 1 as rows are: ``'x2' (column 3 of the file)``."""
        return f"{(self.target_names if target else self.feature_names)[j]!r} (column " \
               f"{(self.y_columns if target else self.x_columns)[j] + 1} of the file)"


def _layout(path: Path) -> list[tuple[Path, Path | None]]:
    """The files of ``path`` as ``(features-and-target or x file, y file or None)`` pairs, in row order."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() != ".npy":
            raise ValueError(f"{path}: expected a .npy file or a directory of .npy shards")
        if path.stem == "x" or path.stem.startswith(("x-", "x_")):  # features only, as in a directory of pairs
            y = path.with_name("y" + path.name[1:])
            if not y.is_file():
                raise ValueError(f"{path}: {path.name} without {y.name} beside it; an x file holds features only: "
                                 f"put the targets in {y.name} (or rename the file if its last column is the target)")
            return [(path, y)]
        return [(path, None)]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".npy" and p.is_file())
    if not files:
        raise ValueError(f"{path}: no .npy files in this directory")
    xs = [p for p in files if p.name.startswith("x")]
    ys = {p.name[1:]: p for p in files if p.name.startswith("y")}
    if xs and not ys and len(xs) == len(files):
        # Without y files, x files would be read as features and target together: the last feature as the target.
        raise ValueError(f"{path}: {xs[0].name} without {'y' + xs[0].name[1:]}; x*.npy files need their y*.npy "
                         "targets (or name the shards part-*.npy if the target is their last column)")
    if xs and ys:
        xnames = {x.name[1:] for x in xs}
        unpaired = next((f"{x.name} has no {'y' + x.name[1:]}" for x in xs if x.name[1:] not in ys), None) or \
            next((f"{y.name} has no {'x' + y.name[1:]}" for y in ys.values() if y.name[1:] not in xnames), None) or \
            next((f"{p.name} is neither" for p in files if p not in xs and p not in ys.values()), None)
        if unpaired:
            raise ValueError(f"{path}: {unpaired}; x*.npy and y*.npy files must come in pairs (x-000.npy with "
                             "y-000.npy), and nothing else")
        return [(x, ys[x.name[1:]]) for x in xs]
    return [(p, None) for p in files]


def _column(target: int | str, columns: int, path: Path) -> int:
    try:
        t = int(target)
    except ValueError:
        raise ValueError(f"{path}: no target column {target!r}; columns are 0..{columns - 1}") from None
    if not -columns <= t < columns:
        raise ValueError(f"{path}: no target column {target!r}; columns are 0..{columns - 1}")
    return t % columns


# -------------------------------------------------------------------------------------------------- Parquet
PARQUET_SUFFIXES = (".parquet", ".pq")
COLUMNS_PER_READ = 8  # columns decoded at a time: pyarrow's buffers for a row group stay a fraction of it


class ParquetTable(Table):
    """A ``.parquet`` file, or a directory of them taken in name order (the same columns in each), read row group by
    row group: each row group is a block, decoded when a batch first needs it and dropped once its block is done
    (one is held at a time), so memory stays at about one row group whatever the file's size.

    Every column must hold numbers (integers or floats); ``target`` names the target column (default: the last);
    ``inputs``: only these input columns, in this order (a formula's; ``terms``: their names, ``C(region)``).
    The rows are read in the columns' common dtype (float32 columns stay float32; integer columns are read as
    float64). An integer beyond ±2**53 has no exact float64 (nor float32) value, and no serving dtype is wider: it
    is refused with its file, row and column rather than read with lost digits. A null is read as nan, which the
    datamodules refuse with its file, row and column.

    >>> import tempfile, pathlib, pyarrow as pa, pyarrow.parquet as pq
    >>> folder = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
    >>> path = pathlib.Path(folder.name) / "d.parquet"
    >>> pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0], "y": [2.0, 4.0, 6.0]}), path,
    ...                row_group_size=2)
    >>> t = ParquetTable(path, target="a")
    >>> t.feature_names, t.target_names, t.blocks(1 << 16), t.read(np.array([2, 0]))[1].ravel().tolist()
    (['b', 'y'], ['a'], [(0, 2), (2, 3)], [3.0, 1.0])
    >>> folder.cleanup()
    """

    streamed = True
    # Decoded row groups held. Batches visit the blocks one after another (a batch crossing from one into the next
    # reads each once), so one is enough; each more costs a row group of memory.
    cached_groups = 1

    categories: Any = None  # a Categories where the files have category columns

    def __init__(self, path: str | Path, target: str | None = None, categorical: list[str] | None = None,
                 ids: Sequence[str] = (), inputs: Sequence[str] | None = None,
                 terms: dict[str, str] | None = None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file or directory")
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in PARQUET_SUFFIXES and p.is_file())
            if not files:
                raise ValueError(f"{self.path}: no .parquet files in this directory")
        else:
            files = [self.path]
        self.files: list[Any] = []
        self.paths = files
        self.file_starts: list[int] = []  # the global row of each file's first row
        names: list[str] | None = None
        starts, self.groups = [0], []  # (file index, row group index) per block
        for i, f in enumerate(files):
            try:
                pf = pq.ParquetFile(f)
            except (pa.ArrowInvalid, OSError) as e:
                raise ValueError(f"{f}: not a Parquet file ({_first_line(e)})") from None
            schema = pf.schema_arrow
            for field in schema:
                if inputs is not None and field.name not in (*inputs, target, *ids):
                    continue  # a formula reads only its columns (and the side ones): the others may hold anything
                if _is_text(field.type) and field.name in ids:
                    continue  # a column of text cluster ids: a side column (take_side), never categorical
                if _is_text(field.type) and categorical != [] and field.name != target:
                    continue  # a category column: its levels are found below
                if not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)):
                    raise ValueError(f"{f}: column {field.name!r} holds {field.type} values, not numbers; only "
                                     "numeric columns can be read (drop or encode it, or name it in categorical=)")
            if names is None:
                names = list(schema.names)
                used = [f for f in schema if inputs is None or f.name in (*inputs, target)]
                self.text_columns = [field.name for field in schema if _is_text(field.type)]
                text = [f.name for f in used if _is_text(f.type) and f.name != target and f.name not in ids]
                self.column_dtypes = [field.type.to_pandas_dtype() for field in used
                                      if not _is_text(field.type) and field.name not in (categorical or ())]
            elif list(schema.names) != names:
                raise ValueError(f"{f}: columns {', '.join(schema.names)}, but {files[0]} has {', '.join(names)}; "
                                 "all files need the same columns")
            self.files.append(pf)
            self.file_starts.append(starts[-1])
            for g in range(pf.metadata.num_row_groups):
                rows = pf.metadata.row_group(g).num_rows
                if rows:
                    self.groups.append((i, g))
                    starts.append(starts[-1] + rows)
        assert names is not None
        if len(set(names)) != len(names):
            raise ValueError(f"{files[0]}: repeated column names ({', '.join(names)}); column names must be unique")
        if len(names) < 2:
            raise ValueError(f"{files[0]}: only one column ({names[0]!r}); need at least one feature column besides "
                             "the target")
        target = names[-1] if target is None else target
        if target not in names:
            raise ValueError(f"{self.path}: no target column {target!r}; the columns are {', '.join(names)}")
        if starts[-1] == 0:
            raise ValueError(f"{self.path}: no rows")
        self.feature_names = [n for n in names if n != target] if inputs is None else list(inputs)
        for column in self.feature_names:
            if column not in names:
                raise ValueError(f"{self.path}: no column {column!r}; the columns are {', '.join(names)}")
        self.target_names = [target]
        self.starts = np.asarray(starts)
        self.n_rows = int(starts[-1])
        for column in ids:  # cluster id columns: no features (take_side), never categorical
            if column == target:
                raise ValueError(f"{self.path}: clusters={column!r} is the target column; a cluster column is no "
                                 "target: name another (or another target)")
            if column not in self.feature_names:
                raise ValueError(f"{self.path}: no cluster column {column!r}; the feature columns are "
                                 f"{', '.join(self.feature_names)}")
            if column in (categorical or ()):
                raise ValueError(f"{self.path}: column {column!r} is a cluster column (clusters=) and also "
                                 "categorical; a cluster id column is no feature")
        self.inputs = list(self.feature_names)  # the raw input columns (feature_names: after the encoding)
        categorical = list(dict.fromkeys([*(categorical or ()), *text]))
        for column in categorical:
            if column not in self.inputs:
                raise ValueError(f"{self.path}: categorical column {column!r} is not an input column; the inputs are "
                                 f"{', '.join(self.inputs)}")
        if categorical:
            from lr_lightning.core.data.categories import Categories

            self.categories = Categories(self.inputs, self._levels(categorical), terms)
            self.feature_names = self.categories.names
        self.dtype = np.result_type(*self.column_dtypes) if self.column_dtypes else np.dtype(np.float64)
        if not np.issubdtype(self.dtype, np.floating):
            self.dtype = np.dtype(np.float64)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, list[np.ndarray]]] = OrderedDict()
        self.side_names: list[str] = []  # columns taken out of the features (weights, cluster ids): take_side
        self.side_roles: dict[str, str] = {}  # their roles: "weights" or "clusters"

    def take_side(self, name: str, what: str) -> None:
        """Take input column ``name`` out of the features, as a side column (a weight or a cluster id column,
        which may hold text if the table was opened with ``ids=[name]``) that ``read(rows, sides=True)`` reads
        beside ``x`` and ``y``. A category column cannot be one; the encoding leaves the column out. Integer cluster
        ids are read as the integers they are (no float64: ids beyond 2**53 stay apart)."""
        levels = self.categories.levels if self.categories is not None else {}
        numeric = [c for c in self.inputs if c not in levels]
        if name not in numeric:
            raise ValueError(f"{self.path}: no {what} column {name!r}; the feature columns are "
                             f"{', '.join(numeric)}" + (f" ({name!r} is categorical)" if name in levels else ""))
        if len(self.inputs) == 1:
            raise ValueError(f"{self.path}: {what}={name!r} is the only feature column; nothing would be left to "
                             "fit on")
        self._cache.clear()
        self.side_names.append(name)
        self.side_roles[name] = what
        self.inputs.remove(name)
        if self.categories is not None:
            self.categories.inputs.remove(name)
            self.feature_names = self.categories.names
        else:
            self.feature_names.remove(name)

    def _levels(self, categorical: list[str]) -> dict[str, list[Any]]:
        """Each category column's levels: one pass over every file's row groups, reading only those columns (every
        DDP rank reads the same files, so all find the same levels). A null is refused with its file and row."""
        from lr_lightning.core.data.categories import find_levels, merge_levels

        found: dict[str, list[Any]] = {c: [] for c in categorical}
        for k, (fi, g) in enumerate(self.groups):
            part = self.files[fi].read_row_group(g, columns=categorical, use_threads=False)
            for j, c in enumerate(categorical):
                values = _column_values(part.column(j))
                found[c] = merge_levels(found[c], find_levels(values, c, lambda r, k=k: self.where(
                    int(self.starts[k]) + r)))
        return found

    def blocks(self, block_rows: int) -> Ranges:
        """The row groups (``block_rows`` does not apply: a row group is read whole)."""
        return [(int(a), int(b)) for a, b in zip(self.starts[:-1], self.starts[1:], strict=True)]

    def _group(self, k: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        while len(self._cache) >= self.cached_groups:
            self._cache.popitem(last=False)
        fi, g = self.groups[k]
        n = int(self.starts[k + 1] - self.starts[k])
        x = np.empty((n, len(self.inputs)), self.dtype)
        y = np.empty((n, 1), self.dtype)
        columns = [*self.inputs, *self.target_names]
        levels = self.categories.levels if self.categories is not None else {}
        text_input = next((c for c in columns if c in self.text_columns and c not in levels), None)
        if text_input is not None:
            raise ValueError(f"{self.paths[fi]}: column {text_input!r} holds text, not numbers; only numeric columns "
                             "can be read (drop or encode it), or cluster ids (clusters=)")
        text: dict[str, np.ndarray] = {}  # category columns, encoded below
        sides = []
        for name in self.side_names:
            values = self.files[fi].read_row_group(g, columns=[name], use_threads=False).column(0)
            if name in self.text_columns:
                ids = _column_values(values)
                missing = [r for r, v in enumerate(ids.tolist()) if v is None or not v.strip()]
                if missing:  # a null (or empty text) is no cluster id, not one more
                    raise ValueError(f"{self.where(int(self.starts[k]) + missing[0])}, column {name!r}: empty "
                                     "(null) cluster id; fill it or drop the row")
                sides.append(ids.astype(str))
            else:
                values = values.to_numpy()
                if values.dtype.kind in "iu" and self.side_roles.get(name) == "clusters":
                    sides.append(values)  # ids as the integers they are: exact, whatever their size
                    continue
                if values.dtype.kind in "iu":
                    _check_exact_integers(values, self.where(int(self.starts[k])), name)
                sides.append(values.astype(np.float64))
        for c in range(0, len(columns), COLUMNS_PER_READ):
            names = columns[c:c + COLUMNS_PER_READ]
            part = self.files[fi].read_row_group(g, columns=names, use_threads=False)
            for j in range(c, c + len(names)):
                if self.categories is not None and columns[j] in self.categories.levels:
                    text[columns[j]] = _column_values(part.column(j - c))
                    continue
                values = part.column(j - c).to_numpy()  # nulls become nan (ints with nulls: floats)
                if values.dtype.kind in "iu":
                    _check_exact_integers(values, self.where(int(self.starts[k])), columns[j])
                if j < len(self.inputs):
                    x[:, j] = values
                else:
                    y[:, 0] = values
            del part
        if self.categories is not None:
            raw = {c: text[c] if c in text else x[:, j] for j, c in enumerate(self.inputs)}
            x = self.categories.encode(raw, where=lambda r: self.where(int(self.starts[k]) + r)).astype(self.dtype)
        self._cache[k] = (x, y, sides)
        return x, y, sides

    def read(self, rows: np.ndarray, sides: bool = False) -> Any:
        """Copies of the rows ``rows``: ``(x, y)``; with ``sides``, ``(x, y, sides)``, ``sides`` a list of the side
        columns (:meth:`take_side`), each ``(rows,)``: float64, or str for a text column."""
        if len(rows) == 0:
            return self.read_range(0, 0, sides)
        group = np.searchsorted(self.starts, rows, side="right") - 1
        if (group == group[0]).all():
            x, y, s = self._group(int(group[0]))
            local = rows - self.starts[group[0]]
            return (x[local], y[local], [c[local] for c in s]) if sides else (x[local], y[local])
        x = np.empty((len(rows), self.n_inputs), self.dtype)
        y = np.empty((len(rows), 1), self.dtype)
        side: list[Any] = [None] * len(self.side_names)
        for k in np.unique(group):
            mask = group == k
            gx, gy, gs = self._group(int(k))
            local = rows[mask] - self.starts[k]
            x[mask], y[mask] = gx[local], gy[local]
            for j, c in enumerate(gs):
                if side[j] is None:
                    side[j] = np.empty(len(rows), c.dtype if c.dtype.kind != "U" else object)
                side[j][mask] = c[local]
        side = [c.astype(str) if c.dtype == object else c for c in side]
        return (x, y, side) if sides else (x, y)

    def read_range(self, start: int, stop: int, sides: bool = False) -> Any:
        if stop <= start:
            empty = np.empty((0, self.n_inputs), self.dtype), np.empty((0, 1), self.dtype)
            return (*empty, [np.empty(0) for _ in self.side_names]) if sides else empty
        k = int(np.searchsorted(self.starts, start, side="right") - 1)
        if stop <= self.starts[k + 1]:
            x, y, s = self._group(k)
            a, b = start - int(self.starts[k]), stop - int(self.starts[k])
            return (x[a:b], y[a:b], [c[a:b] for c in s]) if sides else (x[a:b], y[a:b])
        return self.read(np.arange(start, stop), sides)

    def release(self, start: int, stop: int) -> None:
        """Drop the decoded row groups that ``[start, stop)`` covers whole."""
        for k in list(self._cache):
            if start <= self.starts[k] and self.starts[k + 1] <= stop:
                del self._cache[k]

    def where(self, row: int) -> str:
        fi = self.groups[int(np.searchsorted(self.starts, row, side="right") - 1)][0]
        return f"{self.paths[fi]}: row {row - self.file_starts[fi] + 1} (1-based)"


def _is_text(t: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _column_values(column: Any) -> np.ndarray:
    """A category column's values: text as an object array (None for a null), integers as int64."""
    import pyarrow as pa

    if column.null_count == 0 and pa.types.is_integer(column.type):
        return column.to_numpy()
    return np.array(column.to_pylist(), dtype=object)


EXACT_INTEGERS = 2**53  # every integer up to this magnitude has an exact float64; the next, 2**53 + 1, has none


def _check_exact_integers(values: np.ndarray, where: str, column: str) -> None:
    """Refuse an integer of ``values`` (a row group's column; ``where``: its first row) that float64 cannot hold
    exactly: read anyway, it would lose its last digits silently (and rows differing there become equal)."""
    beyond = (values > EXACT_INTEGERS) | (values < -EXACT_INTEGERS)
    if beyond.any():
        first = int(np.flatnonzero(beyond)[0])
        file, _, row = where.rpartition(": row ")
        number = int(row.split(" ")[0]) + first
        raise ValueError(f"{file}: row {number} (1-based), column {column!r}: integer {int(values[first])} is beyond "
                         "±2**53, where float64 loses digits; store it as a float or scale it down")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


__all__ = ["ArrayTable", "NpyTable", "ParquetTable", "Table"]

