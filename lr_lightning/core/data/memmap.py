"""Data larger than memory: ``.npy`` files and directories of ``.npy`` shards, memory-mapped, read block by block.

``MemmapDataModule`` is the drop-in for :class:`RegressionDataModule` when the data does not
fit in memory (``scripts/fit.py --data big.npy`` or ``--data shards/``). Nothing is loaded up front:

- the files are memory-mapped; each batch copies only its own rows out of the mapping;
- the rows are cut into blocks of ``block_rows`` consecutive rows. The train/val/test split deals out whole
  blocks (seeded), and an epoch visits the training blocks in a fresh random order, shuffling rows within each
  block (:class:`BlockSampler`), so reads stay within one or two blocks at a time;
- pages of a block are handed back to the kernel (``madvise(MADV_DONTNEED)``) once every batch that needs
  them has been read, so the process's resident memory stays at a few blocks, not the file's size;
- standardization statistics, and a check that every value is finite, take one streaming pass.

Under DDP each rank reads only the rows of its own slice of every global batch (:func:`rank_slices`).

Layouts: one 2-D array whose columns are features and the target (``target`` picks the column, default the
last); or ``x.npy`` and ``y.npy`` (rows match; ``y`` may have several columns) in a directory; or a directory
of shards, ``*.npy`` with features and target together, or ``x*.npy`` and ``y*.npy`` in pairs (``x-000.npy``
with ``y-000.npy``), taken in name order. ``scripts/make_data.py`` writes such a directory.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lr_lightning.core.data.datamodules import (
    Batch,
    RegressionDataModule,
    TensorBatches,
    rank_slices,
    serving_dtype,
    stable_sgd_lr,
)
from lr_lightning.core.features import FeatureMap, Moments

Ranges = list[tuple[int, int]]
CHUNK_ROWS = 1 << 16  # rows per read in streaming passes


# ------------------------------------------------------------------------------------------------ files
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


class NpyTable:
    """The rows of one or more ``.npy`` files end to end, read as features ``x`` and targets ``y``."""

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

    def blocks(self, block_rows: int) -> Ranges:
        """``(start, stop)`` of consecutive rows, ``block_rows`` long, none crossing from one file into the next."""
        return [(a, min(a + block_rows, int(stop))) for start, stop in zip(self.starts[:-1], self.starts[1:],
                                                                           strict=True)
                for a in range(int(start), int(stop), block_rows)]

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the rows ``rows`` (global row numbers, in that order): ``(x, y)`` in the files' dtype."""
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
        return self._read(p, slice(start - int(self.starts[p]), stop - int(self.starts[p])))

    def release(self, start: int, stop: int) -> None:
        p = int(np.searchsorted(self.starts, start, side="right") - 1)
        for f in self.parts[p]:
            if f is not None:
                f.release(start - int(self.starts[p]), stop - int(self.starts[p]))

    def where(self, row: int) -> str:
        """``file: row r`` for a global row, as an error message names it."""
        p = int(np.searchsorted(self.starts, row, side="right") - 1)
        return f"{self.parts[p][0].path}: row {row - int(self.starts[p])}"


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
        raise ValueError(f"{path}: no column {target!r} for --target; columns are 0..{columns - 1}") from None
    if not -columns <= t < columns:
        raise ValueError(f"{path}: no column {target!r} for --target; columns are 0..{columns - 1}")
    return t % columns


# ------------------------------------------------------------------------------------------------ order
class BlockSampler:
    """Visits the rows of ``ranges``: with ``shuffle``, the blocks in a fresh random order each epoch, then the
    rows of each block in random order; else in order. A pure function of ``(seed, epoch)``, like
    :class:`EpochSampler`, whose interface it has (``order`` gives global row numbers).

    Shuffling within blocks rather than across the whole file keeps reads local; the price is that rows of one
    block tend to share batches. For files sorted by something that matters (time, the target), choose a
    ``block_rows`` well below the batch size times the number of batches per epoch, or shuffle the file once.
    """

    def __init__(self, ranges: Ranges, shuffle: bool = True, seed: int = 0) -> None:
        self.ranges, self.shuffle, self.seed, self.epoch = ranges, shuffle, seed, 0
        self.visited: list[tuple[int, tuple[int, int]]] = []  # (position where the block ends, block), last order

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(b - a for a, b in self.ranges)

    def order(self) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch])
        blocks = [self.ranges[i] for i in rng.permutation(len(self.ranges))] if self.shuffle else self.ranges
        rows = [a + rng.permutation(b - a) if self.shuffle else np.arange(a, b) for a, b in blocks]
        ends = np.cumsum([len(r) for r in rows]).tolist()
        self.visited = list(zip(ends, blocks, strict=True))
        return torch.from_numpy(np.concatenate(rows)) if rows else torch.zeros(0, dtype=torch.long)


class MappedBatches(TensorBatches):
    """:class:`TensorBatches` over a memory-mapped :class:`NpyTable`: the same batches (and
    the same resumable state) as in memory with the same sampler, but each batch's rows are read when needed."""

    def __init__(self, table: NpyTable, ranges: Ranges, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, *, rank: int = 0, world_size: int = 1, dtype: torch.dtype = torch.float32,
                 feature_map: FeatureMap | None = None) -> None:
        super().__init__(None, None, batch_size, drop_last=drop_last, rank=rank, world_size=world_size,
                         sampler=BlockSampler(ranges, shuffle, seed))
        self.table, self.dtype, self.feature_map = table, dtype, feature_map

    def __iter__(self) -> Iterator[Batch]:
        order = self.sampler.order().numpy()
        visited = iter(self.sampler.visited)
        done = next(visited, None)
        g = self.batch_size * self.world_size
        slices = rank_slices(len(order), self.batch_size, self.world_size, self.rank, self.drop_last)
        skip = self._skip()
        for k in range(skip, len(slices)):
            a, b = slices[k]
            x, y = self.table.read(order[a:b]) if b > a else self._empty()
            self._served += 1
            yield self.tensors(x, y)
            # Blocks that no later batch reads give their pages back (every rank reaches the same point).
            while done is not None and done[0] <= (k + 1) * g:
                self.table.release(*done[1])
                done = next(visited, None)

    def tensors(self, x: np.ndarray, y: np.ndarray) -> Batch:
        """Rows as read, in the datamodule's dtype and feature map: exactly what the in-memory path serves."""
        xt, yt = torch.from_numpy(x).to(self.dtype), torch.from_numpy(y).to(self.dtype)
        if self.feature_map is None:
            return xt, yt
        fm = self.feature_map
        return fm.features(xt.double()).to(self.dtype), fm.targets(yt.double()).to(self.dtype)

    def _empty(self) -> tuple[np.ndarray, np.ndarray]:
        return self.table.read_range(0, 0)


# ------------------------------------------------------------------------------------------- datamodule
class MemmapDataModule(RegressionDataModule):
    """:class:`RegressionDataModule` for ``.npy`` data larger than memory (see the module's
    docstring). The same splits-loaders-hyperparameters interface; differences: the split deals out blocks of
    ``block_rows`` rows, shuffling is block-wise, ``polynomial_degree`` is not available, and there is no exact
    least-squares reference (``optimum``), which would take further passes over the data.

    >>> import tempfile, pathlib
    >>> folder = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
    >>> path = pathlib.Path(folder.name) / "d.npy"
    >>> np.save(path, np.arange(30, dtype=np.float32).reshape(10, 3))
    >>> dm = MemmapDataModule(path, batch_size=4, val_fraction=0.2, block_rows=4)
    >>> dm.setup("fit")
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> x.shape, y.shape, dm.n_train, dm.n_val
    (torch.Size([4, 2]), torch.Size([4, 1]), 8, 2)
    >>> folder.cleanup()
    """

    optimum = None  # no least-squares reference: RegressionModule and the CLI skip val/excess_mse and its line

    def __init__(self, path: str | Path, target: int | str | None = None, batch_size: int = 32,
                 val_fraction: float = 0.2, test_fraction: float = 0.0, shuffle: bool = True, seed: int = 0,
                 standardize: bool = False, polynomial_degree: int | None = None, *, bias: bool = True,
                 drop_last: bool = False, dtype: torch.dtype | None = None, block_rows: int = 1 << 16,
                 feature_names: list[str] | None = None, target_names: list[str] | None = None) -> None:
        if polynomial_degree is not None:
            raise ValueError(f"{path}: polynomial_degree needs the data in memory; load it with --in-memory "
                             "(RegressionDataModule.from_npy)")
        if not (isinstance(block_rows, int) and block_rows > 0):
            raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")
        self.table = NpyTable(path, target)
        # A float64 file is float64 in, and stays float64 unless dtype= says otherwise.
        dtype = serving_dtype(dtype, *(f.array for f in self.table.parts[0] if f is not None))
        super().__init__(self.table, None, batch_size, val_fraction, test_fraction, shuffle, seed, standardize,
                         None, bias=bias, drop_last=drop_last, dtype=dtype,
                         feature_names=feature_names or self.table.feature_names,
                         target_names=target_names or self.table.target_names)
        self.hparams.update(path=str(path), target=target, block_rows=block_rows)
        self.block_rows, self.dtype = block_rows, dtype
        self.ranges: dict[str, Ranges] = {}

    @staticmethod
    def _take_data(x: Any, y: Any, dtype: torch.dtype) -> tuple[None, None]:
        return None, None  # nothing is loaded; the table is read batch by batch

    @property
    def n_samples(self) -> int:
        return self.table.n_rows

    @property
    def n_inputs(self) -> int:
        return len(self.table.x_columns)

    @property
    def n_outputs(self) -> int:
        return len(self.table.y_columns)

    def setup(self, stage: str | None = None) -> None:
        if self.ranges:
            return
        # Deal whole blocks (seeded) to test, validation and training, cutting one block where a split ends.
        blocks = self.table.blocks(self.block_rows)
        order = np.random.default_rng(self.seed).permutation(len(blocks))
        bounds = {"test": (0, self.n_test), "val": (self.n_test, self.n_test + self.n_val),
                  "train": (self.n_test + self.n_val, self.n_samples)}
        self.ranges = {name: [] for name in bounds}
        position = 0
        for a, b in (blocks[i] for i in order):
            for name, (lo, hi) in bounds.items():  # the part of [position, position + b - a) in each split
                s, e = max(lo, position), min(hi, position + b - a)
                if s < e:
                    self.ranges[name].append((a + s - position, a + e - position))
            position += b - a
        train = self._check_finite()
        if self.standardize:
            self.feature_map = FeatureMap.standardizer(*train, bias=self.bias)

    def _check_finite(self) -> tuple[Moments, Moments] | None:
        """One pass over every row: each value must be finite (the error names the file, row and column); on the
        way, the training split's moments for standardization. Pages are released as the pass goes."""
        moments = None
        for name, start, x, y in self._chunks("train", "val", "test"):
            for values, columns, names in ((x, self.table.x_columns, self.feature_names),
                                           (y, self.table.y_columns, self.target_names)):
                if not np.isfinite(values).all():
                    row, col = np.argwhere(~np.isfinite(values))[0]
                    raise ValueError(f"{self.table.where(start + int(row))}, column {columns[col]} "
                                     f"({names[col]}): non-finite value {values[row, col]}")
            if name == "train" and self.standardize:
                # In the training dtype first, as the in-memory path computes them.
                chunk = (Moments.of(torch.from_numpy(x).to(self.dtype).double().numpy()),
                         Moments.of(torch.from_numpy(y).to(self.dtype).double().numpy()))
                moments = chunk if moments is None else (moments[0] + chunk[0], moments[1] + chunk[1])
        return moments

    def _chunks(self, *splits: str) -> Iterator[tuple[str, int, np.ndarray, np.ndarray]]:
        """``(split, first row, x, y)`` for consecutive chunks of the splits' rows; each chunk's pages are released
        once the caller is done with it."""
        for name in splits:
            for a, b in self.ranges[name]:
                for start in range(a, b, CHUNK_ROWS):
                    stop = min(b, start + CHUNK_ROWS)
                    yield name, start, *self.table.read_range(start, stop)
                    self.table.release(start, stop)

    def _loader(self, split: str, shuffle: bool = False, **kwargs: Any) -> MappedBatches:
        return MappedBatches(self.table, self.ranges[split], self.batch_size, shuffle, self.seed, dtype=self.dtype,
                             feature_map=self.feature_map, **kwargs)

    def train_dataloader(self) -> MappedBatches:
        return self._loader("train", self.shuffle, drop_last=self.drop_last, **self._rank())

    def val_dataloader(self) -> MappedBatches | list:
        return self._loader("val", **self._rank()) if self.n_val else []

    def test_dataloader(self) -> MappedBatches | list:
        return self._loader("test", **self._rank()) if self.n_test else []

    def predict_dataloader(self) -> MappedBatches:
        # Every row, raw and in file order: the module applies the feature map itself.
        return MappedBatches(self.table, [(0, self.n_samples)], self.batch_size, dtype=self.dtype)

    def stable_lr(self, bias: bool | None = None) -> float:
        """As :meth:`RegressionDataModule.stable_lr`, streamed: one pass over the training rows."""
        self.setup()
        loader = self._loader("train")  # for its mapping of rows to the served features
        return stable_sgd_lr((loader.tensors(x, y)[0] for _, _, x, y in self._chunks("train")),
                             self.bias if bias is None else bias)


# ---------------------------------------------------------------------------------------- writing data
def write_synthetic(out: str | Path, n_rows: int, n_features: int, shard_rows: int = 1 << 20, noise: float = 0.1,
                    seed: int = 0, dtype: Any = np.float32) -> dict[str, Any]:
    """Write ``y = x @ w + b + noise * N(0, 1)`` (``x ~ N(0, 1)``) as shards ``out/part-00000.npy``, … of at most
    ``shard_rows`` rows, each row the features then the target, plus ``out/truth.json`` with ``w`` and ``b``.

    Written chunk by chunk into the mapped files: memory stays small whatever ``n_rows``. Returns the truth.
    """
    import json

    if n_rows < 1 or n_features < 1 or shard_rows < 1:
        raise ValueError(f"rows, features and shard rows must be >= 1, got {n_rows}, {n_features}, {shard_rows}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.glob("*.npy"))):
        raise ValueError(f"{out}: already exists and holds data; choose a new directory")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, b = rng.uniform(-2, 2, n_features), float(rng.uniform(-1, 1))
    for i, start in enumerate(range(0, n_rows, shard_rows)):
        rows = min(shard_rows, n_rows - start)
        shard = np.lib.format.open_memmap(out / f"part-{i:05d}.npy", mode="w+", dtype=dtype,
                                          shape=(rows, n_features + 1))
        for a in range(0, rows, CHUNK_ROWS):
            x = rng.standard_normal((min(CHUNK_ROWS, rows - a), n_features), dtype=np.float32)
            shard[a:a + len(x), :n_features] = x
            shard[a:a + len(x), n_features] = x @ w + b + noise * rng.standard_normal(len(x))
        shard.flush()
        del shard
    truth = {"weight": w.tolist(), "bias": b, "noise": noise, "rows": n_rows, "seed": seed}
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth
