"""CSV files: :func:`read_csv_table` parses one (pyarrow, or line by line where pyarrow cannot), and
:class:`CsvTable` serves it as a :class:`~lr_lightning.core.data.tables.Table`.

numpy and pyarrow only, no torch: ``predict.py --onnx`` reads its CSV through this module.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lr_lightning.core.data.tables import ArrayTable, Table


class MissingHeaderError(ValueError):
    """A CSV whose first row holds only numbers: data where the header row should be."""


def read_csv(path: str | Path, target: str | None = None, max_abs: float = math.inf,
             columns: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Read a CSV with a header row: ``(x, y, feature_names, target_name)``; the target defaults to the last column.

    The format is :func:`read_csv_table`'s; ``columns``: only these.
    """
    names, data = read_csv_table(path, columns, max_abs=max_abs)
    target = names[-1] if target is None else target
    if target not in names:
        raise ValueError(f"{path}: no target column {target!r}; the columns are {', '.join(names)}")
    if len(names) < 2:
        raise ValueError(f"{path}: only one column ({names[0]!r}); need at least one feature column besides the target")
    t = names.index(target)
    return np.delete(data, t, axis=1), data[:, t], [n for i, n in enumerate(names) if i != t], target


class CsvTable(Table):
    """A CSV file with a header row (:func:`read_csv_table`), read into memory as float64, the numbers as the file
    writes them, whatever ``dtype`` they will be served in (a module that asks for float64 rows is served those, not
    their float32 rounding). ``target`` names the target column (default:
    the last one). A value beyond what ``dtype`` holds is refused with its file, row and column, not turned into an
    inf."""

    streamed = False

    categories: Any = None  # a Categories where the table has category columns (categorical=, or text columns)

    def __init__(self, path: str | Path, target: str | None = None, dtype: Any = np.float32,
                 categorical: Sequence[str] | None = None, inputs: Sequence[str] | None = None,
                 terms: dict[str, str] | None = None, ids: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(np.float64)
        max_abs = float(np.finfo(numpy_dtype(dtype)).max)
        # Cluster id columns (``ids``) are read aside, numbers or text, into text_ids: never features, never
        # categorical (a text id column is not found categorical).
        self.ids = list(dict.fromkeys(ids))
        self.text_ids: dict[str, np.ndarray] = {}
        numeric_columns = None
        if self.ids:
            names = _header_names(self.path)
            for c in self.ids:
                if c not in names:
                    raise ValueError(f"{self.path}: no cluster column {c!r}; the columns are {', '.join(names)}")
                if c in (categorical or ()) or c in (inputs or ()):
                    raise ValueError(f"{self.path}: column {c!r} is a cluster column (clusters=) and also "
                                     f"{'categorical' if c in (categorical or ()) else 'an input of the formula'}; "
                                     "a cluster id column is no feature")
                if c == (target if target is not None else names[-1]):  # the last column: the default target
                    which = "the target" if target is not None else "the target (the last column)"
                    raise ValueError(f"{self.path}: column {c!r} is {which} and a cluster column (clusters=); a "
                                     "cluster id column is no target: name another (target=, --data.target)")
            numeric_columns = [n for n in names if n not in self.ids]
        if categorical or inputs is not None:
            x, y, features, target = self._read_categorical(target, list(categorical or ()), inputs, terms, max_abs)
        else:
            try:
                x, y, features, target = read_csv(path, target, max_abs=max_abs, columns=numeric_columns)
            except ValueError:
                # Text columns are categorical unless categorical=[] says there are none.
                found = [] if categorical is not None else self._text_inputs(target)
                if not found:
                    raise
                x, y, features, target = self._read_categorical(target, found, None, terms, max_abs, detect=False)
            if self.ids and not self.text_ids:
                self._read_ids(read_text_columns(self.path, self.ids))
        # x is read_csv's own float64 array (no copy); y, a column of the parsed table, is copied out of it, so that the
        # table's memory is released.
        self.x, self.y = x, np.ascontiguousarray(y[:, None])
        self.n_rows, self.feature_names, self.target_names = len(x), features, [target]

    @staticmethod
    def header(path: str | Path) -> list[str]:
        """The column names of the file's header row."""
        return _header_names(Path(path))

    blocks = ArrayTable.blocks
    read = ArrayTable.read
    read_range = ArrayTable.read_range

    def where(self, row: int) -> str:
        return f"{self.path}: data row {row + 1} (1-based, header excluded)"

    def _text_inputs(self, target: str | None) -> list[str]:
        found = [c for c in text_columns(self.path) if c not in self.ids]
        target = target if target is not None else self._names()[-1] if found else None
        return [] if target in found else found  # a text target: the numeric reader says it is no number

    def _names(self) -> list[str]:
        """The header's names but the cluster id columns: the target (default the last of them) and the inputs."""
        return [n for n in _header_names(self.path) if n not in self.ids]

    def _read_ids(self, text: dict[str, np.ndarray]) -> None:
        self.text_ids = {c: _id_values(text[c], c, self.where) for c in self.ids}

    def _read_categorical(self, target: str | None, categorical: list[str], inputs: Sequence[str] | None,
                          terms: dict[str, str] | None, max_abs: float,
                          detect: bool = True) -> tuple[np.ndarray, np.ndarray, list[str], str]:
        """Numeric columns parsed as numbers, category columns as text (integers where every value is one), encoded
        by :class:`~lr_lightning.core.data.categories.Categories`; ``detect``: text columns are categorical too."""
        from lr_lightning.core.data.categories import Categories

        names = self._names()
        target = names[-1] if target is None else target
        inputs = [n for n in names if n != target] if inputs is None else list(inputs)
        for column in [target, *inputs, *categorical]:
            if column not in names:
                raise ValueError(f"{self.path}: no column {column!r}; the columns are {', '.join(names)}")
        stray = [c for c in categorical if c not in inputs]
        if stray or target in categorical:
            raise ValueError(f"{self.path}: categorical column {(stray or [target])[0]!r} is not an input column")
        if not inputs:
            raise ValueError(f"{self.path}: only one column ({target!r}); need at least one feature column besides "
                             "the target")
        found = self._text_inputs(target) if detect else []
        categorical = list(dict.fromkeys([*categorical, *(c for c in found if c in inputs)]))
        numeric = [c for c in inputs if c not in categorical]
        _, data = read_csv_table(self.path, [*numeric, target], max_abs=max_abs)
        text = read_text_columns(self.path, [*categorical, *self.ids])  # one read: the categories and the ids
        self._read_ids(text)
        columns = {}
        for c in inputs:
            if c in categorical:
                values = text[c]
                columns[c] = values.astype(np.int64) if all(_is_int_text(v) for v in values) else values
            else:
                columns[c] = data[:, numeric.index(c)]
        self.categories = Categories.of(columns, categorical, terms, where=self.where)
        x = self.categories.encode(columns, where=self.where)
        return x, data[:, -1], self.categories.names, target


def _header_names(path: Path) -> list[str]:
    """The column names of a CSV's header row (as :func:`read_csv_table` reads them)."""
    data = _existing_file(path).read_bytes()
    if b"#" in data:
        data = _COMMENT.sub(b"", data)
    found = _header_line(data)
    if found is None:
        with path.open(newline="", encoding="utf-8-sig") as f:
            row = next((r for r in csv.reader("\n" if line.lstrip().startswith("#") else line for line in f)
                        if any(c.strip() for c in r)), None)
        if row is None:
            raise ValueError(f"{path}: the file is empty; expected a header row, then rows")
        return [c.strip() for c in row]
    return found[0]


def _is_int_text(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


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


# ----------------------------------------------------------------------- text columns: categories, cluster ids
def _read_as_text(path: str | Path, columns: Sequence[str] | None) -> Any:
    """One pyarrow read of a CSV, its lines as :func:`read_csv_table` takes them (a UTF-8 byte order mark dropped,
    comment and blank lines skipped, names stripped): ``columns`` as text, or (None) every column, typed as pyarrow
    infers them. An empty cell is ``''``, never a null."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    data = Path(path).read_bytes()
    if b"#" in data:
        data = _COMMENT.sub(b"", data)
    found = _header_line(data)  # the stripped names, where the header needs no quoting
    if found is None and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    names, start = found if found is not None else (None, 0)
    convert = {"null_values": [], "strings_can_be_null": False, "quoted_strings_can_be_null": False}
    if columns is not None:
        convert |= {"column_types": {c: pa.string() for c in columns}, "include_columns": list(columns)}
    return pacsv.read_csv(pa.py_buffer(data)[start:], read_options=pacsv.ReadOptions(column_names=names),
                          convert_options=pacsv.ConvertOptions(**convert))


def read_text_columns(path: str | Path, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``columns`` of a CSV (header row, comment and blank lines as
    :func:`~lr_lightning.core.data.csv_table.read_csv_table` reads them) as text, stripped; empty cells stay ''.
    Category columns and cluster id columns are read so, in one read.

    >>> import tempfile, pathlib
    >>> folder = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
    >>> path = pathlib.Path(folder.name) / "d.csv"
    >>> _ = path.write_text("a,firm,y\\n1,acme,2\\n2, beta,3\\n")
    >>> read_text_columns(path, ["firm"])["firm"].tolist()
    ['acme', 'beta']
    >>> folder.cleanup()
    """
    import pyarrow as pa

    try:
        table = _read_as_text(path, columns)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the columns {', '.join(columns)} as text "
                         f"({str(e).strip().splitlines()[0]})") from None
    return {c: np.array([v.strip() for v in table.column(c).to_pylist()], dtype=object) for c in columns}


def text_columns(path: str | Path) -> list[str]:
    """The columns of a CSV that hold text (no filled cell is a number): those found categorical when none are
    named. [] when pyarrow cannot read the file (the numeric reader then says what is wrong)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not Path(path).is_file():  # a folder, a FIFO (reading it would block): the numeric reader says what it is
        return []
    try:
        table = _read_as_text(path, None)
    except Exception:  # noqa: BLE001 - not a file pyarrow reads (a folder, repeated names): the numeric reader says
        return []
    if len(set(table.column_names)) != len(table.column_names):
        return []  # repeated names: the numeric reader says which
    found = []
    for j, name in enumerate(table.column_names):
        column = table.column(j)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values = [v for v in pc.unique(column).to_pylist() if v.strip()]
            # Text in every filled cell: a category column. Numbers with a stray word ('n/a', '?', 1_000) are a
            # column of numbers with a bad cell, which the numeric reader names by row and column.
            if values and not any(_is_float(v.replace("_", "")) for v in values):
                found.append(name.strip())
    return found


# As ids, refused: a missing value, not a cluster. pandas' default na_values (compared lower-cased), which include
# R's NA; a CSV has no nulls of its own. A Parquet string column has real nulls, so its "NA" is text like any other.
MISSING_MARKERS = {"#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan", "<na>", "n/a", "na",
                   "null", "nan", "none"}
_INTEGER = re.compile(r"\s*[-+]?\d+\s*")


def _id_values(text: np.ndarray, column: str, where: Callable[[int], str]) -> np.ndarray:
    """A cluster id column read as text: integers where every value is one (int64, or Python ints beyond it: ids of
    19 digits stay apart, which float64 would merge), else float64 where every value is a number, else the text
    (str). An empty id is refused, naming its row."""
    empty = np.flatnonzero(text == "")
    if len(empty):
        raise ValueError(f"{where(int(empty[0]))}, column {column!r}: empty cluster id; fill it or drop the row")
    values = text.tolist()
    missing = next((row for row, v in enumerate(values) if v.strip().lower() in MISSING_MARKERS), None)
    if missing is not None:  # else one more cluster, of the rows pandas and R would call missing
        raise ValueError(f"{where(missing)}, column {column!r}: cluster id {values[missing]!r} reads as missing "
                         "(pandas reads it so; R reads NA); fill it, drop the row, or name the cluster otherwise")
    if all(_INTEGER.fullmatch(v) for v in values):
        ints = [int(v) for v in values]
        return np.array(ints, dtype=np.int64) if all(-2**63 <= i < 2**63 for i in ints) else np.array(ints, object)
    try:
        return np.array([parse_number(v) for v in values], dtype=np.float64)
    except ValueError:
        return text.astype(str)


__all__ = ["CsvTable", "MissingHeaderError", "numpy_dtype", "parse_number", "read_csv", "read_csv_table",
           "read_text_columns", "text_columns"]
