"""Tables: where rows come from. One abstraction, :class:`Table`, over arrays, CSV, ``.npy`` and Parquet files.

A table is ``n_rows`` rows of ``n_inputs`` feature columns and ``n_outputs`` target columns, read as ``(x, y)``
numpy arrays: all of them at once (``read_range(0, n_rows)``), a range, or any rows in any order (``read``). A
*streamed* table (``.npy`` memory-mapped, Parquet) is never wholly in memory: it is read block by block
(``blocks``), and ``release`` gives back what a finished block held. The datamodules
(:mod:`lr_lightning.core.data.datamodules`) serve batches from any of them.

- :class:`ArrayTable`: arrays already in memory.
- :class:`CsvTable`: a CSV file with a header row, parsed by pyarrow into memory (:func:`read_csv_table`).
- :class:`NpyTable`: a ``.npy`` file or a directory of ``.npy`` shards, memory-mapped.
- :class:`ParquetTable`: a ``.parquet`` file or a directory of them; each row group is a block.

``.npy`` layouts: one 2-D array whose columns are features and the target (``target`` picks the column, default
the last); or ``x.npy`` and ``y.npy`` (rows match; ``y`` may have several columns) in a directory; or a directory of
shards, ``*.npy`` with features and target together, or ``x*.npy`` and ``y*.npy`` in pairs (``x-000.npy`` with
``y-000.npy``), taken in name order. ``scripts/make_data.py`` writes such a directory (or Parquet files).
"""

from __future__ import annotations

import csv
import math
import mmap
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
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


# ----------------------------------------------------------------------------------------------------- CSV
class MissingHeaderError(ValueError):
    """A CSV whose first row holds only numbers: data where the header row should be."""


def read_csv(path: str | Path, target: str | None = None,
             max_abs: float = math.inf) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Read a CSV with a header row: ``(x, y, feature_names, target_name)``; the target defaults to the last column.

    The format is :func:`read_csv_table`'s.
    """
    names, data = read_csv_table(path, max_abs=max_abs)
    target = names[-1] if target is None else target
    if target not in names:
        raise ValueError(f"{path}: no target column {target!r}; the columns are {', '.join(names)}")
    if len(names) < 2:
        raise ValueError(f"{path}: only one column ({names[0]!r}); need at least one feature column besides the target")
    t = names.index(target)
    return np.delete(data, t, axis=1), data[:, t], [n for i, n in enumerate(names) if i != t], target


class CsvTable(Table):
    """A CSV file with a header row (:func:`read_csv_table`), read into memory as float64, the numbers as the file
    writes them, whatever ``dtype`` they will be served in: the exact least-squares module is served those
    (``RegressionDataModule.raw_dtype``), not their float32 rounding. ``target`` names the target column (default:
    the last one). A value beyond what ``dtype`` holds is refused with its file, row and column, not turned into an
    inf."""

    streamed = False

    def __init__(self, path: str | Path, target: str | None = None, dtype: Any = np.float32) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(np.float64)
        x, y, features, target = read_csv(path, target, max_abs=float(np.finfo(numpy_dtype(dtype)).max))
        # x is read_csv's own float64 array (no copy); y, a column of the parsed table, is copied out of it, so that the
        # table's memory is released.
        self.x, self.y = x, np.ascontiguousarray(y[:, None])
        self.n_rows, self.feature_names, self.target_names = len(x), features, [target]

    blocks = ArrayTable.blocks
    read = ArrayTable.read
    read_range = ArrayTable.read_range

    def where(self, row: int) -> str:
        return f"{self.path}: data row {row + 1} (1-based, header excluded)"


def numpy_dtype(dtype: Any) -> np.dtype:
    """``float32``/``float64`` given as a numpy dtype, a string or a ``torch.dtype``."""
    return np.dtype(str(dtype).removeprefix("torch."))


def read_csv_table(path: str | Path, columns: Sequence[str] | None = None, *, header: bool = True,
                   max_abs: float = math.inf) -> tuple[list[str], np.ndarray]:
    """Read a CSV into ``(column_names, float64 array)``, parsed by pyarrow.

    The format: a header row naming the columns, then rows of numbers. Blank lines are skipped anywhere, and so
    are comment lines, whose first non-space character is ``#``. A UTF-8 byte order mark (Excel writes one) is
    not part of the first name, and names are stripped of surrounding spaces. Errors name the file, and the row
    (the line number, as an editor shows it) and the column of the bad cell.

    pyarrow reads well-formed files. When it refuses one (or a value is not finite or beyond ``max_abs``), the file
    is read again line by line with the standard library, only to say exactly where and what the problem is; a file
    that line-by-line reading accepts (a row of empty cells, say) is read that way.

    Args:
        path: the CSV file.
        columns: only these columns, in this order; the others are not parsed, so they may hold anything (ids,
            an empty target). A missing one is an error. With ``header=False``: the names of the file's columns,
            in order, and every row must have exactly that many values.
        header: ``False`` for a file without a header row (``columns`` then names its columns).
        max_abs: refuse values of larger magnitude, like nan and inf: the largest number of the dtype they will
            be cast to (``torch.finfo(torch.float32).max``), beyond which they would become inf there.

    Raises:
        MissingHeaderError: ``header=True`` and the first row holds only numbers. Taking it as the header would
            lose that row of data without a word.
        ValueError: anything else that is not such a file (empty, ragged, a missing, unnamed or repeated column, a
            cell that is not a finite number).
        FileNotFoundError: no such file.
    """
    path = _existing_file(path)
    if not header and not columns:
        raise ValueError(f"{path}: a file without a header row needs the names of its columns")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror})") from None
    if b"\x00" not in data:
        fast = _read_with_pyarrow(data, columns, header, max_abs)
        if fast is not None:
            return fast
    return _read_line_by_line(path, columns, header, max_abs)


_COMMENT = re.compile(rb"(?m)^[ \t]*#[^\r\n]*")


def _read_with_pyarrow(data: bytes, columns: Sequence[str] | None, header: bool,
                       max_abs: float) -> tuple[list[str], np.ndarray] | None:
    """The table, or None for anything but a well-formed file (then the line-by-line reader says what is wrong)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if b"#" in data:  # comment lines become empty lines: pyarrow skips those, and line numbers stay the file's
        data = _COMMENT.sub(b"", data)
    start = 0
    if header:
        found = _header_line(data)
        if found is None:
            return None
        names, start = found
        if not names or any(not n for n in names) or len(set(names)) != len(names) or all(map(_is_float, names)):
            return None
        if any(c not in names for c in columns or ()):
            return None
    else:
        names = list(columns or ())
    wanted = list(columns) if columns is not None else names
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data)[start:],
            read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.float64() for c in wanted}, include_columns=wanted, null_values=[],
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    if table.num_rows == 0:
        return None
    out = np.empty((table.num_rows, len(wanted)), dtype=np.float64)
    for j in range(len(wanted)):
        out[:, j] = table.column(j).to_numpy()
    if not (np.isfinite(out).all() and (np.abs(out) <= max_abs).all()):
        return None
    return wanted, out


def _header_line(data: bytes) -> tuple[list[str], int] | None:
    """The first row that is not blank (comment lines are already blank): its names, and where the data starts."""
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        try:
            line = data[pos:end].decode("utf-8-sig" if pos == 0 else "utf-8")
        except UnicodeDecodeError:
            return None
        if '"' in line:  # quoted names (maybe over several lines): the line-by-line reader's job
            return None
        cells = next(csv.reader([line]), [])
        if any(cell.strip() for cell in cells):
            return [cell.strip() for cell in cells], end
        pos = end
    return None


def _read_line_by_line(path: Path, columns: Sequence[str] | None, header: bool,
                       max_abs: float) -> tuple[list[str], np.ndarray]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a leading BOM is dropped, not read as text
            return _parse_csv(path, _utf8_lines(path, f), columns, header, max_abs)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text CSV file (byte {e.start} is not UTF-8 text)") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror})") from None


def _utf8_lines(path: Path, lines: Iterable[str]) -> Iterator[str]:
    """The lines, refusing NUL characters: UTF-16 text (Windows' "Unicode" CSV) decodes as UTF-8 without an error,
    one NUL beside every ASCII character."""
    for line in lines:
        if "\x00" in line:
            raise ValueError(f"{path}: not a UTF-8 text CSV file (it holds NUL characters: UTF-16? save it as UTF-8)")
        yield line


def _parse_csv(path: Path, lines: Iterable[str], columns: Sequence[str] | None, header: bool,
               max_abs: float) -> tuple[list[str], np.ndarray]:
    # A comment line is handed to the reader as an empty line rather than dropped, so that the reader's line
    # numbers stay the file's.
    reader = csv.reader("\n" if line.lstrip().startswith("#") else line for line in lines)
    rows = ((reader.line_num, row) for row in reader if any(cell.strip() for cell in row))
    first = next(rows, None)
    if first is None:
        if reader.line_num:
            raise ValueError(f"{path}: no header row: the file holds only blank or comment lines")
        raise ValueError(f"{path}: the file is empty; expected a header row, then rows of numbers")
    if header:
        line, cells = first
        names = [cell.strip() for cell in cells]
        if all(_is_float(name) for name in names):
            raise MissingHeaderError(f"{path}: no header row: the first row (line {line}) is data; add a header row "
                                     "naming the columns")
        seen: dict[str, int] = {}
        for i, name in enumerate(names, start=1):
            if not name:
                raise ValueError(f"{path}: column {i} has no name in the header row (line {line})")
            if name in seen:
                raise ValueError(f"{path}: column {i} repeats the name {name!r} of column {seen[name]}; "
                                 "column names must be unique")
            seen[name] = i
        missing = [c for c in columns or () if c not in seen]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(map(repr, missing))}; the columns are {', '.join(names)}")
        body: Iterable[tuple[int, list[str]]] = rows
    else:
        names, body = list(columns or ()), _chain(first, rows)
    wanted = list(columns) if columns is not None else names
    index = [names.index(c) for c in wanted]
    every = index == list(range(len(names)))
    data = []
    for line, row in body:
        if len(row) != len(names):
            if not header:
                raise ValueError(f"{path}: line {line} has {len(row)} values, expected {len(names)} "
                                 f"({', '.join(names)}, in this order)")
            raise ValueError(f"{path}: line {line} has {len(row)} values, the header has {len(names)} columns")
        cells = row if every else [row[j] for j in index]
        try:
            values = [parse_number(cell) for cell in cells]
        except ValueError:
            col = next(i for i, cell in enumerate(cells) if not _is_float(cell))
            raise ValueError(f"{path}: line {line}, column {wanted[col]!r}: {cells[col]!r} is not a number") from None
        if not all(math.isfinite(v) and abs(v) <= max_abs for v in values):
            col = next(i for i, v in enumerate(values) if not (math.isfinite(v) and abs(v) <= max_abs))
            why = "is not a finite number" if not math.isfinite(values[col]) else f"is beyond ±{max_abs:.6g}"
            raise ValueError(f"{path}: line {line}, column {wanted[col]!r}: {cells[col].strip()!r} {why}; "
                             "remove or fill the row")
        data.append(values)
    if not data:
        raise ValueError(f"{path}: only a header row; no data rows")
    return wanted, np.asarray(data, dtype=np.float64)


def _chain(first: Any, rest: Iterable[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _existing_file(path: str | Path) -> Path:
    """``path``, if it is a regular file: a FIFO or a device would block or never end, a link loop is not missing."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise FileNotFoundError(f"{path}: a symbolic link to nothing (or to itself)")
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file (a pipe, socket or device); expected a file")
    return path


def _is_float(cell: str) -> bool:
    try:
        parse_number(cell)
    except ValueError:
        return False
    return True


def parse_number(text: str) -> float:
    """``float(text)``, except that digit separators are refused: Python reads ``1_000`` as 1000, while ``1,000`` is
    refused, and a file meaning either should not silently be read one way."""
    if "_" in text:
        raise ValueError(f"could not convert string to float: {text!r}")
    return float(text)


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

    def blocks(self, block_rows: int) -> Ranges:
        """``(start, stop)`` of consecutive rows, ``block_rows`` long, none crossing from one file into the next."""
        return [(a, min(a + block_rows, int(stop))) for start, stop in zip(self.starts[:-1], self.starts[1:],
                                                                           strict=True)
                for a in range(int(start), int(stop), block_rows)]

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the rows ``rows`` (global row numbers, in that order): ``(x, y)`` in the files' dtype."""
        if len(rows) == 0:
            return self.read_range(0, 0)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        if part[0] == part[-1] and (part == part[0]).all():  # the usual case: one file
            return self._read(int(part[0]), rows - self.starts[part[0]])
        x = np.empty((len(rows), len(self.x_columns)), self.parts[0][0].array.dtype)
        y = np.empty((len(rows), len(self.y_columns)), (self.parts[0][1] or self.parts[0][0]).array.dtype)
        for p in np.unique(part):
            mask = part == p
            x[mask], y[mask] = self._read(int(p), rows[mask] - self.starts[p])
        return x, y

    def _read(self, p: int, rows: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = self.parts[p]
        if ys is not None:
            return xs.array[rows], ys.array[rows]
        block = xs.array[rows]
        return block[:, self.x_columns], block[:, self.y_columns]

    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[start, stop)``, within one file (as :meth:`blocks` are)."""
        p = int(np.searchsorted(self.starts, start, side="right") - 1)
        p = min(p, len(self.parts) - 1)
        return self._read(p, slice(start - int(self.starts[p]), stop - int(self.starts[p])))

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
        if len(xs) != len(ys) or any(x.name[1:] not in ys for x in xs) or len(xs) + len(ys) != len(files):
            raise ValueError(f"{path}: x*.npy and y*.npy files must come in pairs (x-000.npy with y-000.npy), "
                             "and nothing else")
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

    Every column must hold numbers (integers or floats); ``target`` names the target column (default: the last).
    The rows are read in the columns' common dtype (float32 columns stay float32). A null is read as nan, which the
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

    def __init__(self, path: str | Path, target: str | None = None) -> None:
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
                if not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)):
                    raise ValueError(f"{f}: column {field.name!r} holds {field.type} values, not numbers; only "
                                     "numeric columns can be read (drop or encode it)")
            if names is None:
                names = list(schema.names)
                self.column_dtypes = [field.type.to_pandas_dtype() for field in schema]
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
        self.feature_names = [n for n in names if n != target]
        self.target_names = [target]
        self.starts = np.asarray(starts)
        self.n_rows = int(starts[-1])
        self.dtype = np.result_type(*self.column_dtypes)
        if not np.issubdtype(self.dtype, np.floating):
            self.dtype = np.dtype(np.float64)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def blocks(self, block_rows: int) -> Ranges:
        """The row groups (``block_rows`` does not apply: a row group is read whole)."""
        return [(int(a), int(b)) for a, b in zip(self.starts[:-1], self.starts[1:], strict=True)]

    def _group(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        while len(self._cache) >= self.cached_groups:
            self._cache.popitem(last=False)
        fi, g = self.groups[k]
        n = int(self.starts[k + 1] - self.starts[k])
        x = np.empty((n, len(self.feature_names)), self.dtype)
        y = np.empty((n, 1), self.dtype)
        columns = [*self.feature_names, *self.target_names]
        for c in range(0, len(columns), COLUMNS_PER_READ):
            names = columns[c:c + COLUMNS_PER_READ]
            part = self.files[fi].read_row_group(g, columns=names, use_threads=False)
            for j in range(c, c + len(names)):
                values = part.column(j - c).to_numpy()  # nulls become nan (ints with nulls: floats)
                if j < len(self.feature_names):
                    x[:, j] = values
                else:
                    y[:, 0] = values
            del part
        self._cache[k] = (x, y)
        return x, y

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) == 0:
            return self.read_range(0, 0)
        group = np.searchsorted(self.starts, rows, side="right") - 1
        if (group == group[0]).all():
            x, y = self._group(int(group[0]))
            local = rows - self.starts[group[0]]
            return x[local], y[local]
        x = np.empty((len(rows), self.n_inputs), self.dtype)
        y = np.empty((len(rows), 1), self.dtype)
        for k in np.unique(group):
            mask = group == k
            gx, gy = self._group(int(k))
            local = rows[mask] - self.starts[k]
            x[mask], y[mask] = gx[local], gy[local]
        return x, y

    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        if stop <= start:
            return np.empty((0, self.n_inputs), self.dtype), np.empty((0, 1), self.dtype)
        k = int(np.searchsorted(self.starts, start, side="right") - 1)
        if stop <= self.starts[k + 1]:
            x, y = self._group(k)
            a = start - int(self.starts[k])
            return x[a:a + stop - start], y[a:a + stop - start]
        return self.read(np.arange(start, stop))

    def release(self, start: int, stop: int) -> None:
        """Drop the decoded row groups that ``[start, stop)`` covers whole."""
        for k in list(self._cache):
            if start <= self.starts[k] and self.starts[k + 1] <= stop:
                del self._cache[k]

    def where(self, row: int) -> str:
        fi = self.groups[int(np.searchsorted(self.starts, row, side="right") - 1)][0]
        return f"{self.paths[fi]}: row {row - self.file_starts[fi] + 1} (1-based)"


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


__all__ = ["ArrayTable", "CsvTable", "MissingHeaderError", "NpyTable", "ParquetTable", "Table", "parse_number",
           "read_csv", "read_csv_table"]

