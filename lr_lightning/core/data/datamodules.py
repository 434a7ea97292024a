"""The data: where samples come from, how they are split, and how batches are served.

``RegressionDataModule`` owns the whole data side of training, as Lightning intends: the sources (the
tutorial's four points, synthetic data with known weights, CSV and ``.npy`` files), the deterministic
train/val/test split, and the loaders. Everything else (model, loss, optimizer) lives in the module.

Batches are sliced out of in-memory tensors by :class:`TensorBatches` instead of going through
``DataLoader(TensorDataset(...))``, which fetches and collates one sample at a time: for a linear model
that bookkeeping costs more than the math.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from lr_lightning.core.basis import check_degree, polynomial_features
from lr_lightning.core.features import FeatureMap
from lr_lightning.exact import least_squares

Batch = tuple[torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------------------------- inputs
def as_columns(values: Any, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``values`` as a 2-D ``(n_samples, n_columns)`` tensor of ``dtype``; a 1-D input becomes one column.

    The column matters: a ``(B, 1)`` prediction against a ``(B,)`` target broadcasts to ``(B, B)`` in the
    loss and silently trains the wrong model.

    >>> as_columns([1.0, 2.0, 3.0], "y").shape
    torch.Size([3, 1])
    """
    try:
        t = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError) as e:  # strings, ragged lists, objects
        raise ValueError(f"{name}: expected an array of real numbers ({e})") from None
    if t.is_complex():
        raise ValueError(f"{name}: expected real numbers, got {t.dtype}")
    if t.ndim == 1:
        t = t.unsqueeze(1)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 1-D or 2-D array (n_samples, n_columns), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: no samples (shape {tuple(t.shape)})")
    t = t.to(dtype)
    if not torch.isfinite(t).all():
        row, col = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"{name}: non-finite value {t[row, col].item()} at row {row}, column {col}")
    return t


def read_csv(path: str | Path, target: str | None = None,
             max_abs: float = math.inf) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Read a CSV with a header row: ``(x, y, feature_names, target_name)``; the target defaults to the last column.

    The format is :func:`read_csv_table`'s: blank lines and ``#`` comment lines are skipped, a UTF-8 BOM is not
    part of the first name, names must be present and unique, and a first row of numbers is refused.
    """
    names, data = read_csv_table(path, max_abs=max_abs)
    target = names[-1] if target is None else target
    if target not in names:
        raise ValueError(f"{path}: no column {target!r} for --target; the columns are {', '.join(names)}")
    if len(names) < 2:
        raise ValueError(f"{path}: only one column ({names[0]!r}); need at least one feature column besides the target")
    t = names.index(target)
    return np.delete(data, t, axis=1), data[:, t], [n for i, n in enumerate(names) if i != t], target


class MissingHeaderError(ValueError):
    """A CSV whose first row holds only numbers: data where the header row should be."""


def read_csv_table(path: str | Path, columns: Sequence[str] | None = None, *, header: bool = True,
                   max_abs: float = math.inf) -> tuple[list[str], np.ndarray]:
    """Read a CSV into ``(column_names, float64 array)``.

    The format: a header row naming the columns, then rows of numbers. Blank lines are skipped anywhere, and so
    are comment lines, whose first non-space character is ``#``. A UTF-8 byte order mark (Excel writes one) is
    not part of the first name, and names are stripped of surrounding spaces. Errors name the file, and the row
    (the line number, as an editor shows it) and the column of the bad cell.

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
        names, body = list(columns or ()), itertools.chain([first], rows)
    wanted = list(columns) if columns is not None else names
    index = [names.index(c) for c in wanted]
    every = index == list(range(len(names)))
    data = []
    for line, row in body:
        if len(row) != len(names):
            if not header:
                raise ValueError(f"{path}: row {line} has {len(row)} values, expected {len(names)} "
                                 f"({', '.join(names)}, in this order)")
            raise ValueError(f"{path}: row {line} has {len(row)} values, the header has {len(names)} columns")
        cells = row if every else [row[j] for j in index]
        try:
            values = [parse_number(cell) for cell in cells]
        except ValueError:
            col = next(i for i, cell in enumerate(cells) if not _is_float(cell))
            raise ValueError(f"{path}: row {line}, column {wanted[col]!r}: {cells[col]!r} is not a number") from None
        if not all(math.isfinite(v) and abs(v) <= max_abs for v in values):
            col = next(i for i, v in enumerate(values) if not (math.isfinite(v) and abs(v) <= max_abs))
            why = "is not a finite number" if not math.isfinite(values[col]) else f"is beyond ±{max_abs:.6g}"
            raise ValueError(f"{path}: row {line}, column {wanted[col]!r}: {cells[col].strip()!r} {why}; "
                             "remove or fill the row")
        data.append(values)
    if not data:
        raise ValueError(f"{path}: only a header row; no data rows")
    return wanted, np.asarray(data, dtype=np.float64)


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


SEED_MAX = 2**32 - 1  # numpy's and Lightning's seeds are unsigned 32-bit integers


def _is_int(value: Any) -> bool:
    """A whole number, and not a bool (``True`` is an ``int`` to Python, but ``batch_size=True`` is a mistake)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_memory(nbytes: int, what: str) -> None:
    """Refuse, with a ValueError saying how much, what would not fit in this machine's memory: asking for it anyway
    ends in the kernel killing the process, or hours of swapping, not in an error message."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    if total and nbytes > total:
        raise ValueError(f"{what} need about {nbytes / 1e9:.3g} GB of memory; this machine has {total / 1e9:.3g} GB")


def serving_dtype(dtype: torch.dtype | None, *arrays: Any) -> torch.dtype:
    """The dtype a datamodule serves: ``dtype`` when given, else float64 if any of ``arrays`` is a float64 array or
    tensor (float64 in stays float64), else float32 (lists, integers, float32 and smaller floats).

    >>> import numpy as np
    >>> serving_dtype(None, np.zeros(3), [1.0]), serving_dtype(None, [1.0, 2.0])
    (torch.float64, torch.float32)
    >>> serving_dtype(torch.float32, np.zeros(3))
    torch.float32
    """
    if dtype is not None:
        if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise ValueError(f"dtype must be a torch floating dtype (torch.float32 or torch.float64), got {dtype!r}")
        return dtype
    wide = any(getattr(a, "dtype", None) in (np.float64, torch.float64) for a in arrays)
    return torch.float64 if wide else torch.float32


# -------------------------------------------------------------------------------------------- batches
class EpochSampler:
    """The order in which one epoch visits ``n`` samples: a fresh permutation per epoch, or ``0..n-1``.

    The permutation is a pure function of ``(seed, epoch)``, so two runs with one seed see the same batches,
    and a resumed run sees the order the interrupted one would have. Lightning calls ``set_epoch`` on a
    loader's ``sampler`` at the start of every epoch, as it does for a ``DistributedSampler``.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor | None:
        """This epoch's permutation, or ``None`` for the natural order (then batches are views, not copies)."""
        if not self.shuffle:
            return None
        # SeedSequence mixes (seed, epoch) properly: seed + epoch would give seed 1/epoch 0 the order of seed 0/epoch 1.
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        return iter(range(self.n) if order is None else order.tolist())

    def __len__(self) -> int:
        return self.n


def rank_slices(n: int, batch_size: int, world_size: int = 1, rank: int = 0,
                drop_last: bool = False) -> list[tuple[int, int]]:
    """This rank's ``(start, stop)`` in each global batch of ``batch_size * world_size`` positions of ``0..n-1``.

    Every position lands in exactly one rank's slice: no padding, no sample seen twice (a
    ``DistributedSampler`` pads by repeating samples, which skews small validation sets, lightning#5060).
    Every rank gets the same number of slices, as DDP needs (each step all-reduces gradients); in the last,
    shorter global batch the slices differ by at most one row, and a rank may get an empty one.

    >>> rank_slices(10, 2, world_size=2, rank=1)
    [(2, 4), (6, 8), (9, 10)]
    """
    g = batch_size * world_size
    n_batches = n // g if drop_last else math.ceil(n / g)
    slices = []
    for start in range(0, n_batches * g, g):
        q, extra = divmod(min(g, n - start), world_size)  # a full batch: q = batch_size, extra = 0
        a = start + rank * q + min(rank, extra)
        slices.append((a, a + q + (rank < extra)))
    return slices


class TensorBatches:
    """Mini-batches ``(x[idx], y[idx])`` sliced out of in-memory tensors, in the order of ``sampler``.

    Lightning accepts any iterable as a loader; this one yields what ``DataLoader(TensorDataset(x, y))``
    would, at the cost of one index per batch instead of one ``__getitem__`` per sample plus a collate.
    Like a ``DataLoader`` it has a ``sampler`` (Lightning calls its ``set_epoch``) and no ``batch_sampler``.

    Under DDP (``world_size`` ranks) each rank serves its slice of every global batch of
    ``batch_size * world_size`` samples (:func:`rank_slices`): the ranks together see the same batches as one
    process with the global batch size, whatever the number of devices.
    """

    batch_sampler = None

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, *, rank: int = 0, world_size: int = 1,
                 sampler: EpochSampler | None = None) -> None:
        self.x, self.y, self.batch_size, self.drop_last = x, y, batch_size, drop_last
        self.rank, self.world_size = rank, world_size
        self.sampler = sampler if sampler is not None else EpochSampler(len(x), shuffle, seed)
        self._served, self._resume_at = 0, (-1, 0)  # (epoch, batches already trained on), from load_state_dict

    def __len__(self) -> int:
        g = self.batch_size * self.world_size
        return len(self.sampler) // g if self.drop_last else math.ceil(len(self.sampler) / g)

    def __iter__(self) -> Iterator[Batch]:
        x, y = self.x, self.y
        slices = rank_slices(len(self.sampler), self.batch_size, self.world_size, self.rank, self.drop_last)
        order = self.sampler.order()
        if order is not None:
            # One gather per epoch (of this rank's rows only) into fresh tensors, then every batch is a view: no
            # allocation or gather per step (fresh memory for every batch costs page faults that, at large
            # batches, outweigh the math). A batch someone keeps holds on to its own epoch's copy.
            if self.world_size > 1:
                order = torch.cat([order[a:b] for a, b in slices])
                offsets = np.cumsum([0] + [b - a for a, b in slices]).tolist()
                slices = list(zip(offsets[:-1], offsets[1:], strict=True))
            order = order.to(x.device)
            x, y = x.index_select(0, order), y.index_select(0, order)
        for a, b in slices[self._skip():]:
            self._served += 1
            yield x[a:b], y[a:b]

    def _skip(self) -> int:
        """Batches to skip at the start of this epoch. A resumed run skips the batches it already trained on, in
        the epoch it was interrupted in only: when that epoch was complete, Lightning goes on to the next one."""
        epoch, trained = self._resume_at
        skip = trained if epoch == self.sampler.epoch else 0
        self._resume_at, self._served = (-1, 0), skip
        return skip

    # Lightning saves these in checkpoints and restores them when it resumes in the middle of an epoch: with the
    # order a function of (seed, epoch), skipping the batches already trained on makes the resumed run exact.
    # Batches are counted globally, so the state is the same on every rank.
    def state_dict(self) -> dict[str, int]:
        # Lightning fetches ahead only from loaders without a length; ours has one, so every batch served by the
        # time a checkpoint is written has been trained on.
        return {"epoch": self.sampler.epoch, "consumed": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._resume_at = (state["epoch"], state["consumed"])


def stable_sgd_lr(chunks: Iterable[torch.Tensor], bias: bool) -> float:
    """Half of ``1 / λmax(XᵀX / n)`` for the features X given chunk by chunk (with a column of ones for the bias):
    full-batch gradient descent on MSE converges below ``1 / λmax``, mini-batches wobble around it."""
    gram, n = None, 0
    for chunk in chunks:
        chunk = chunk.double().cpu()
        if bias:
            chunk = torch.cat([chunk, torch.ones(len(chunk), 1, dtype=chunk.dtype)], dim=1)
        gram = chunk.T @ chunk if gram is None else gram + chunk.T @ chunk
        n += len(chunk)
    return 0.5 / torch.linalg.eigvalsh(gram / n)[-1].item()


# ---------------------------------------------------------------------------------------- datamodule
class RegressionDataModule(L.LightningDataModule):
    """Serves ``(n_samples, n_features)`` inputs and ``(n_samples, n_outputs)`` targets, split into train/val/test.

    The split is a seeded random permutation cut into test, validation and training parts, so it is the
    same on every run (and on every DDP rank) for one ``seed``. ``val_fraction=0`` means no validation loop;
    ``batch_size >= n`` is full-batch gradient descent.

    ``standardize`` and ``polynomial_degree`` fit a :class:`~lr_lightning.core.features.FeatureMap` on the training
    split only; the loaders serve mapped features and targets, ``RegressionModule`` adopts the map, and its
    predictions come back in original units. ``bias=False`` says the model has no intercept: then features and
    targets are scaled but never centred.

    ``dtype`` (default ``None``): float64 arrays or tensors are served as float64 (and ``RegressionModule`` trains a
    float32 network on them in float64), anything else as float32; the sources ``tutorial``, ``synthetic`` and
    ``from_csv`` serve float32, ``.npy`` files their own dtype. Pass ``dtype=`` to choose.

    >>> dm = RegressionDataModule.tutorial()
    >>> dm.setup("fit")
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> x.shape, y.shape
    (torch.Size([4, 1]), torch.Size([4, 1]))
    """

    def __init__(
        self,
        x: Any,
        y: Any,
        batch_size: int = 32,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        shuffle: bool = True,
        seed: int = 0,
        standardize: bool = False,
        polynomial_degree: int | None = None,
        *,
        bias: bool = True,
        drop_last: bool = False,
        dtype: torch.dtype | None = None,
        feature_names: list[str] | None = None,
        target_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["x", "y", "dtype"])
        self.dtype = dtype = serving_dtype(dtype, x, y)
        self.hparams["dtype"] = str(dtype).removeprefix("torch.")  # a string: hparams.yaml cannot hold a torch.dtype
        self.x, self.y = self._take_data(x, y, dtype)
        if not (_is_int(batch_size) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not (_is_int(seed) and 0 <= seed <= SEED_MAX):
            raise ValueError(f"seed must be an integer from 0 to {SEED_MAX}, got {seed!r}")
        for name, flag in (("shuffle", shuffle), ("standardize", standardize), ("bias", bias),
                           ("drop_last", drop_last)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        check_degree(polynomial_degree)
        self.standardize, self.polynomial_degree, self.bias = standardize, polynomial_degree, bias
        self.feature_map: FeatureMap | None = None
        self.n_val = self._split_size(val_fraction, "val_fraction")
        self.n_test = self._split_size(test_fraction, "test_fraction")
        self.n_train = self.n_samples - self.n_val - self.n_test
        if self.n_train < 1:
            raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training "
                             f"samples out of {self.n_samples}; lower them")
        self.feature_names = feature_names or [f"x{i}" for i in range(self.n_inputs)]
        self.target_names = target_names or (["y"] if self.n_outputs == 1 else [f"y{i}" for i in range(self.n_outputs)])
        self.splits: dict[str, Batch] = {}

    @staticmethod
    def _take_data(x: Any, y: Any, dtype: torch.dtype) -> Batch:
        x, y = as_columns(x, "x", dtype), as_columns(y, "y", dtype)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}; they must match row for row")
        return x, y

    def _split_size(self, fraction: float, name: str) -> int:
        if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
            raise ValueError(f"{name} must be in [0, 1), got {fraction!r}")
        k = round(self.n_samples * fraction)
        if fraction > 0 and k < 2:
            # R² (and any variance) needs two samples; one held-out point would make val/r2 undefined.
            raise ValueError(f"{name}={fraction} of {self.n_samples} samples holds out {k}; need at least 2 "
                             f"(use a larger fraction, more data, or 0 to skip that split)")
        return k

    # ---- sizes, taken from the data so nobody types them twice
    @property
    def n_samples(self) -> int:
        return len(self.x)

    @property
    def n_inputs(self) -> int:
        """Columns of the raw inputs."""
        return self.x.shape[1]

    @property
    def n_features(self) -> int:
        """Inputs of the model: the raw columns, times the polynomial degree if there is one."""
        return self.n_inputs * (self.polynomial_degree or 1)

    @property
    def n_outputs(self) -> int:
        return self.y.shape[1]

    @property
    def world_size(self) -> int:
        """Processes training together (DDP ranks); 1 until a Trainer is attached."""
        return self.trainer.world_size if self.trainer is not None else 1

    def trainer_defaults(self, world_size: int = 1, **overrides: Any) -> dict[str, Any]:
        """Trainer settings this data implies; pass them on as ``L.Trainer(**dm.trainer_defaults(...))``.

        Without a validation split, ``limit_val_batches=0`` is Lightning's own way to switch the loop off
        (anything else warns); ``log_every_n_steps`` above the number of batches per epoch would warn and log
        no step at all on small data. A progress bar only when the output is a terminal (in a log file its redraws
        are hundreds of kilobytes of noise), and no model summary (a table of one layer). ``world_size``: the number
        of DDP processes (devices × nodes). ``overrides``: any Trainer argument, taking precedence.
        """
        g = self.batch_size * world_size
        n_batches = self.n_train // g if self.drop_last else math.ceil(self.n_train / g)
        return {"log_every_n_steps": max(1, min(50, n_batches)), "limit_val_batches": 1.0 if self.n_val else 0,
                "enable_progress_bar": sys.stdout.isatty(), "enable_model_summary": False, **overrides}

    # ---- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            # Shuffle once and cut: the splits are views of one permuted copy, not three gathers.
            g = torch.Generator().manual_seed(self.seed)
            perm = torch.randperm(self.n_samples, generator=g)
            x, y = self.x[perm], self.y[perm]
            a, b = self.n_test, self.n_test + self.n_val
            self.raw_splits = {"test": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "train": (x[b:], y[b:])}
            self.splits = self.raw_splits
            if self.standardize or self.polynomial_degree:
                # Statistics from the training rows only: validation and test rows must not leak into training.
                self.feature_map = FeatureMap.fit(*self.raw_splits["train"], polynomial_degree=self.polynomial_degree,
                                                  standardize=self.standardize, bias=self.bias)
                fm = self.feature_map
                self.splits = {k: (fm.features(x.double()).to(x.dtype), fm.targets(y.double()).to(y.dtype))
                               for k, (x, y) in self.raw_splits.items()}
        # On an accelerator the data moves to the device once, here; batches are then sliced there, and
        # transfer_batch_to_device has nothing left to copy.
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is not None and device.type != "cpu":
            self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}

    # `batch_size` is per device: under DDP each of the `world_size` ranks gets its slice of every global batch of
    # batch_size * world_size samples, and validation and test count every sample exactly once across ranks.
    def train_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits["train"], self.batch_size, self.shuffle, self.seed, self.drop_last,
                             **self._rank())

    def val_dataloader(self) -> TensorBatches | list:
        # No split, no loop: an empty list (with `limit_val_batches=0`, see `trainer_defaults`).
        return TensorBatches(*self.splits["val"], self.batch_size, **self._rank()) if self.n_val else []

    def test_dataloader(self) -> TensorBatches | list:
        return TensorBatches(*self.splits["test"], self.batch_size, **self._rank()) if self.n_test else []

    def _rank(self) -> dict[str, int]:
        return {"rank": self.trainer.global_rank if self.trainer is not None else 0, "world_size": self.world_size}

    def predict_dataloader(self) -> TensorBatches:
        # Every sample, raw and in its original row order, so predictions line up with the input file (the
        # module applies the feature map itself).
        return TensorBatches(self.x, self.y, self.batch_size)

    def stable_lr(self, bias: bool | None = None) -> float:
        """A learning rate at which plain SGD on MSE trains a linear model on these features without diverging.

        Full-batch gradient descent converges below ``1 / λmax(XᵀX / n)`` (X: the training features, with a column
        of ones for the bias); mini-batches wobble around that, so this returns half of it.
        """
        self.setup()
        x = self.splits["train"][0]
        # In chunks: no float64 copy of the whole training set.
        return stable_sgd_lr((x[i:i + (1 << 16)] for i in range(0, len(x), 1 << 16)),
                             self.bias if bias is None else bias)

    def optimum(self) -> dict[str, Any]:
        """The least-squares fit on the training split (raw inputs, the same model) and its MSE on each split.

        ``{"weight", "bias", "mse": {split: MSE}, "rank", "n_coefficients", "dependent"}``; computed once (so a
        rank-deficient split warns once, however often Lightning calls ``setup``). With dependent columns, the
        fit is the minimum-norm one and ``dependent`` names the columns involved (see
        :func:`~lr_lightning.exact.solver`).
        """
        if not hasattr(self, "_optimum"):
            self.setup()
            x, y = (t.numpy() for t in self.raw_splits["train"])  # views: least_squares widens chunk by chunk
            fit = least_squares(x, y, bias=self.bias, polynomial_degree=self.polynomial_degree,
                                names=self.feature_names)
            weight, bias = fit
            mse = {}
            for name, (xs, ys) in self.raw_splits.items():
                if len(xs):  # in chunks: no float64 copy of a whole split
                    sse = sum(float(((polynomial_features(xs[i:i + 65536].double().numpy(), self.polynomial_degree)
                                      @ weight.T + (bias if bias is not None else 0)
                                      - ys[i:i + 65536].double().numpy()) ** 2).sum())
                              for i in range(0, len(xs), 65536))
                    mse[name] = sse / (len(xs) * ys.shape[1])
            self._optimum = {"weight": weight, "bias": bias, "mse": mse, "rank": fit.rank,
                             "n_coefficients": fit.n_coefficients, "dependent": fit.dependent}
        return self._optimum

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Our batches are a tuple of tensors: move them directly instead of Lightning's generic walk through any
        # collection (a measurable share of a step this small). Tensors already on `device` are returned as is.
        if isinstance(batch, tuple) and all(isinstance(t, torch.Tensor) for t in batch):
            return tuple(t.to(device, non_blocking=True) for t in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # ---- data sources
    @classmethod
    def tutorial(cls, **kwargs: Any) -> RegressionDataModule:
        """The classic tutorial's data, ``x = 1, 2, 3, 4`` and ``y = 2x``: full batch, no validation split."""
        x = torch.tensor([1.0, 2.0, 3.0, 4.0])
        return cls(x, 2 * x, **{"batch_size": 4, "val_fraction": 0.0, **kwargs})

    @classmethod
    def synthetic(cls, n_samples: int = 1000, n_features: int = 1, noise: float = 0.1, seed: int = 0,
                  true_weight: Any = None, true_bias: float | None = None, **kwargs: Any) -> RegressionDataModule:
        """``y = x @ w + b + noise * N(0, 1)`` with ``x ~ N(0, 1)``; the true ``w`` and ``b`` are drawn from
        ``seed`` unless given (``b = 0`` for a model without an intercept, ``bias=False``), and kept (float64) as
        ``true_weight`` ``(1, n_features)`` and ``true_bias`` ``(1,)``. ``kwargs`` go to the datamodule
        (``bias`` there is whether the model has an intercept, as everywhere else)."""
        if not (_is_int(n_samples) and _is_int(n_features) and n_samples >= 1 and n_features >= 1):
            raise ValueError(f"n_samples and n_features must be >= 1, got {n_samples} and {n_features}")
        if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {noise}")
        check_memory(n_samples * (n_features + 1) * 8 * 3, f"{n_samples} x {n_features} synthetic samples")
        rng = np.random.default_rng(seed if _is_int(seed) and 0 <= seed <= SEED_MAX else 0)  # seed checked below
        w = rng.uniform(-2, 2, n_features) if true_weight is None else \
            np.broadcast_to(np.asarray(true_weight, float), n_features)
        b = float(rng.uniform(-1, 1)) if true_bias is None else float(true_bias)
        if true_bias is None and kwargs.get("bias", True) is False:
            b = 0.0
        x = rng.standard_normal((n_samples, n_features))
        y = x @ w + b + noise * rng.standard_normal(n_samples)
        # Generated, not given: served in torch's default float32 unless dtype= says otherwise.
        dm = cls(x, y, seed=seed, **{"dtype": torch.float32, **kwargs})
        dm.true_weight, dm.true_bias = torch.tensor(w).reshape(1, -1), torch.tensor([b], dtype=torch.float64)
        return dm

    @classmethod
    def from_csv(cls, path: str | Path, target: str | None = None, **kwargs: Any) -> RegressionDataModule:
        """A CSV file with a header row; ``target`` names the target column (default: the last one)."""
        # Text parsed as float64, served as float32 unless dtype= says otherwise: a CSV is not "float64 data". A value
        # beyond what that dtype holds is refused with its file, row and column, not as an inf after conversion.
        kwargs = {"dtype": torch.float32, **kwargs}
        dtype = kwargs["dtype"] if isinstance(kwargs["dtype"], torch.dtype) else torch.float32
        x, y, features, target = read_csv(path, target, max_abs=torch.finfo(dtype).max)
        return cls(x, y, feature_names=features, target_names=[target], **kwargs)

    @classmethod
    def from_npy(cls, path: str | Path, target: int | str | None = None, **kwargs: Any) -> RegressionDataModule:
        """A ``.npy`` file or a directory of shards (layouts: :mod:`lr_lightning.core.data.memmap`), read into memory;
        ``target`` is the index of the target column (default: the last one)."""
        from lr_lightning.core.data.memmap import NpyTable  # imports this module

        table = NpyTable(path, target)
        # File by file out of the mapping, in the files' own dtype (a float32 file is not widened on the way).
        x, y = (np.concatenate(parts) for parts in zip(*(table.read_range(a, b) for a, b in
                                                          table.blocks(table.n_rows)), strict=True))
        return cls(x, y, feature_names=table.feature_names, target_names=table.target_names, **kwargs)

    @classmethod
    def from_path(cls, path: str | Path, target: str | None = None, in_memory: bool = False,
                  **kwargs: Any) -> RegressionDataModule:
        """A ``.csv`` file (read into memory), or a ``.npy`` file or a directory of ``.npy`` shards, memory-mapped
        (:class:`~lr_lightning.core.data.memmap.MemmapDataModule`) unless ``in_memory``."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return cls.from_csv(path, target, **kwargs)
        if (suffix == ".npy" or path.is_dir()) and in_memory:
            return cls.from_npy(path, target, **kwargs)
        if suffix == ".npy" or path.is_dir():
            from lr_lightning.core.data.memmap import MemmapDataModule  # imports this module

            return MemmapDataModule(path, target, **kwargs)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        raise ValueError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; expected a .csv or .npy file, "
                         "or a directory of .npy shards")
