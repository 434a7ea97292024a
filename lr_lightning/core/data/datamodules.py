"""The datamodules: one family over one table abstraction, each configurable from YAML.

``RegressionDataModule`` owns the whole data side of training, as Lightning intends: the rows (a
:class:`~lr_lightning.core.data.tables.Table`), the deterministic train/val/test split, the feature map fitted on the
training split, and the loaders. Everything else (model, loss, optimizer) lives in the module.

- ``RegressionDataModule(x, y, ...)``: arrays in memory.
- ``TutorialDataModule``: the classic tutorial's four points, ``y = 2x``.
- ``SyntheticDataModule``: ``y = x @ w + b + noise``, with the true ``w`` and ``b`` kept.
- ``CSVDataModule``: a CSV file with a header row (pyarrow), in memory.
- ``NpyDataModule``: a ``.npy`` file or a directory of shards, memory-mapped and streamed unless ``in_memory``.
- ``ParquetDataModule``: a ``.parquet`` file or a directory of them, streamed row group by row group unless
  ``in_memory``.

:func:`datamodule_for_path` picks the class for a file by its suffix. Tables in memory are served by
:class:`~lr_lightning.core.data.loaders.TensorBatches` (the split is a seeded permutation of the rows); streamed ones
by :class:`~lr_lightning.core.data.loaders.BlockBatches` (the split deals out whole blocks, an epoch visits the
training blocks in a fresh order and shuffles rows within each, and a finished block's memory is given back). A
streamed table is checked (every value finite) and its standardization statistics gathered in one pass.

The hand-off to the module is explicit: ``RegressionModule(net, **dm.module_inputs())``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from lr_lightning.core.basis import cell, check_degree, labels, not_a_number, pandas_numbers, unmasked
from lr_lightning.core.data.loaders import Batch, BlockBatches, TensorBatches, stable_sgd_lr
from lr_lightning.core.data.tables import (
    PARQUET_SUFFIXES,
    ArrayTable,
    CsvTable,
    NpyTable,
    ParquetTable,
    Ranges,
    Table,
)
from lr_lightning.core.features import FeatureMap, Moments

CHUNK_ROWS = 1 << 16  # rows per read in streaming passes
BLOCK_ROWS = 1 << 16  # rows per block of a .npy table


# --------------------------------------------------------------------------------------------- inputs
def as_columns(values: Any, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``values`` as a 2-D ``(n_samples, n_columns)`` tensor of ``dtype``; a 1-D input becomes one column.

    The column matters: a ``(B, 1)`` prediction against a ``(B,)`` target broadcasts to ``(B, B)`` in the
    loss and silently trains the wrong model.

    >>> as_columns([1.0, 2.0, 3.0], "y").shape
    torch.Size([3, 1])
    """
    a = values = unmasked(values, name)  # named in the error below, whichever step fails
    try:
        if isinstance(values, torch.Tensor):
            a = values.detach()  # data, not a node of someone's autograd graph (in-place ops on it would fail)
        else:
            a = np.asarray(pandas_numbers(values))
            if not a.dtype.isnative:  # big-endian: torch takes native byte order only
                a = a.astype(a.dtype.newbyteorder("="))
        if isinstance(a, np.ndarray) and not a.flags.writeable and a.dtype != object:
            # A read-only array (a pandas frame's values under copy-on-write, a memory-mapped file) is copied: torch
            # warns that a tensor sharing it could write to memory that must not change.
            a = a.copy()
        t = torch.as_tensor(a)
    except (TypeError, ValueError) as e:  # strings, ragged lists, objects
        bad = not_a_number(a) if isinstance(a, np.ndarray) and a.dtype.kind in "OUS" else None
        if bad is not None:
            raise ValueError(f"{name}: expected an array of real numbers; "
                             f"{cell(bad[0], bad[1], a.shape[1] if a.ndim == 2 else 1, labels(values))}: {bad[2]!r} is "
                             "not a number") from None
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
    # A non-finite value makes its column's sum non-finite: one read-only reduction decides the common case (an
    # element-wise check allocates a mask as large as the data); only an overflowing sum needs the full check.
    if not (torch.isfinite(t.sum(dim=0)).all() or torch.isfinite(t).all()):
        row, col = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"{name}: non-finite value {t[row, col].item()} at "
                         f"{cell(row, col, t.shape[1], labels(values))}")
    return t


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
    wide = any(_is_float64(a) for a in arrays)
    return torch.float64 if wide else torch.float32


def _is_float64(a: Any) -> bool:
    """Whether ``a`` holds float64 numbers: a tensor, a numpy array in either byte order (``>f8`` is not equal to
    ``np.float64``, and big-endian files were served as float32), or a pandas frame (``dtypes``, one per column;
    nullable ``Float64`` columns too)."""
    dtypes = getattr(a, "dtypes", None) if getattr(a, "dtype", None) is None else [a.dtype]
    if dtypes is None:
        return False
    for dt in dtypes:
        dt = getattr(dt, "numpy_dtype", dt)  # pandas' extension dtypes name their numpy dtype
        if dt == torch.float64 or (isinstance(dt, np.dtype) and dt.kind == "f" and dt.itemsize == 8):
            return True
    return False




def torch_dtype(dtype: Any) -> torch.dtype | None:
    """``None``, a ``torch.dtype``, or its name as a YAML config gives it (``"float32"``, ``"torch.float64"``)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype.removeprefix("torch."), None), torch.dtype):
        return getattr(torch, dtype.removeprefix("torch."))
    raise ValueError(f"dtype must be float32 or float64 (or a torch floating dtype), got {dtype!r}")


def _table_dtype(dtype: Any, table_dtype: np.dtype) -> torch.dtype:
    """The serving dtype for a file's rows: ``dtype`` when given, else float64 for float64 files, else float32."""
    return serving_dtype(torch_dtype(dtype), np.empty(0, table_dtype))


def _holds(dtype: torch.dtype, *values: Any) -> bool:
    """Whether ``dtype`` holds every number of ``values`` as they are: each is floating point (an array, tensor, pandas
    object or table with a ``dtype``) no wider than ``dtype``. Lists, integers and anything of unknown dtype are not
    known to fit."""
    for v in values:
        own = getattr(v, "dtype", None)
        if own is None and hasattr(v, "dtypes"):  # a DataFrame: its columns' common dtype, if they are all floats
            kinds = list(v.dtypes)
            own = np.result_type(*kinds) if kinds and all(isinstance(d, np.dtype) and d.kind == "f"
                                                           for d in kinds) else None
        if isinstance(own, np.dtype):
            own = torch.from_numpy(np.empty(0, own)).dtype if own in (np.float16, np.float32, np.float64) else None
        if not (isinstance(own, torch.dtype) and own.is_floating_point and torch.promote_types(own, dtype) == dtype):
            return False
    return True


def _check_range(t: torch.Tensor, name: str, dtype: torch.dtype, values: Any) -> None:
    """Refuse a value of ``t`` beyond what ``dtype`` holds (it would be served as an inf), naming its row and column:
    the check the conversion to ``dtype`` made, before that conversion was put off until training needs it."""
    limit = torch.finfo(dtype).max
    if t.numel() and (t.max() > limit or t.min() < -limit):
        row, col = (t.abs() > limit).nonzero()[0].tolist()
        raise ValueError(f"{name}: {t[row, col].item():g} at {cell(row, col, t.shape[1], labels(values))} is beyond "
                         f"±{limit:g}, the range of {str(dtype).removeprefix('torch.')}; pass dtype='float64'")


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _init_args(local: dict[str, Any]) -> dict[str, Any]:
    """An ``__init__``'s arguments from its ``locals()`` (taken first thing), for the hyperparameters."""
    return {k: v for k, v in local.items() if k not in ("self", "__class__")}


# ---------------------------------------------------------------------------------------- datamodule
class RegressionDataModule(L.LightningDataModule):
    """Serves ``(n_samples, n_features)`` inputs and ``(n_samples, n_outputs)`` targets, split into train/val/test.

    The split is a seeded random permutation cut into test, validation and training parts, so it is the
    same on every run (and on every DDP rank) for one ``seed``. ``val_fraction=0`` means no validation loop
    (``val_dataloader`` returns ``[]``); ``batch_size >= n`` is full-batch gradient descent. ``batch_size`` is per
    device: under DDP each of the ``world_size`` ranks gets its slice of every global batch of
    ``batch_size * world_size`` samples, and validation and test count every sample exactly once across ranks.

    ``standardize`` and ``polynomial_degree`` fit a :class:`~lr_lightning.core.features.FeatureMap` on the training
    split only; the loaders serve mapped features and targets, and :meth:`module_inputs` hands the map to the
    module, whose predictions then come back in original units. ``bias=False`` says the model has no intercept:
    then features and targets are scaled but never centred.

    ``dtype`` (default ``None``): float64 arrays or tensors are served as float64, anything else as float32; the
    tutorial, synthetic and CSV data serve float32, ``.npy`` and Parquet files float64 if they hold float64, else
    float32. Pass ``dtype=`` (``torch.float64`` or ``"float64"``) to choose. A module that takes raw rows (the exact
    ``LeastSquaresModule``) is served them in :attr:`raw_dtype`, the data's own precision where that is wider: a
    CSV's or a float64 array's numbers, not their float32 rounding (the table keeps them; the float32 copy that
    training uses is made when training first uses it).

    >>> dm = TutorialDataModule()
    >>> dm.setup("fit")
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> x.shape, y.shape
    (torch.Size([4, 1]), torch.Size([4, 1]))
    """

    # It serves blocks of several steps' batches to a module that asks for them (`resolved_steps_per_call`).
    serves_step_blocks = True

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
        dtype: torch.dtype | str | None = None,
        feature_names: list[str] | None = None,
        target_names: list[str] | None = None,
    ) -> None:
        args = _init_args(locals())
        del args["x"], args["y"]  # the data itself is no hyperparameter
        served = serving_dtype(torch_dtype(dtype), x, y)
        self._configure_arrays(x, y, served, args)

    # ---- construction, shared by the family: every __init__ ends here
    def _configure_arrays(self, x: Any, y: Any, dtype: torch.dtype, args: dict[str, Any]) -> None:
        # The table keeps the numbers as given where dtype would round them (float64 arrays, integers or Python floats
        # served as float32): the exact module is served those (raw_dtype). A float64 array is kept as it is, not
        # copied, and the dtype copy that training uses is made when it is first used (self.x).
        own = dtype if _holds(dtype, x, y) else torch.float64
        xt, yt = as_columns(x, "x", own), as_columns(y, "y", own)
        if len(xt) != len(yt):
            raise ValueError(f"x has {len(xt)} samples but y has {len(yt)}; they must match row for row")
        if own != dtype:
            _check_range(xt, "x", dtype, x)
            _check_range(yt, "y", dtype, y)
        self._configure(ArrayTable(_numpy(xt), _numpy(yt)), dtype, args, tensors=(xt, yt) if own == dtype else None)

    def _configure(self, table: Table, dtype: torch.dtype, args: dict[str, Any],
                   tensors: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """The constructor proper: ``table`` served in ``dtype`` with the settings in ``args`` (an ``__init__``'s
        arguments, which become the hyperparameters)."""
        L.LightningDataModule.__init__(self)
        batch_size, seed = args["batch_size"], args["seed"]
        if not (_is_int(batch_size) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not (_is_int(seed) and 0 <= seed <= SEED_MAX):
            raise ValueError(f"seed must be an integer from 0 to {SEED_MAX}, got {seed!r}")
        for name in ("shuffle", "standardize", "bias", "drop_last"):
            if not isinstance(args[name], bool):
                raise ValueError(f"{name} must be true or false, got {args[name]!r}")
        check_degree(args["polynomial_degree"])
        if table.streamed and args["polynomial_degree"] is not None:
            raise ValueError(f"{getattr(table, 'path', 'data')}: polynomial_degree needs the data in memory; load it "
                             "with in_memory=True (fit.py: --data.in_memory true)")
        self.table, self.dtype = table, dtype
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, args["shuffle"], seed, args["drop_last"]
        self.standardize, self.polynomial_degree, self.bias = args["standardize"], args["polynomial_degree"], \
            args["bias"]
        self.feature_map: FeatureMap | None = None
        self.feature_names = list(args.get("feature_names") or table.feature_names)
        self.target_names = list(args.get("target_names") or table.target_names)
        for what, names, n in (("feature_names", self.feature_names, table.n_inputs),
                               ("target_names", self.target_names, table.n_outputs)):
            if len(names) != n:
                raise ValueError(f"{what}: {len(names)} names for {n} columns")
        self.n_val = self._split_size(args["val_fraction"], "val_fraction")
        self.n_test = self._split_size(args["test_fraction"], "test_fraction")
        self.n_train = self.n_samples - self.n_val - self.n_test
        if self.n_train < 1:
            raise ValueError(f"val_fraction={args['val_fraction']} and test_fraction={args['test_fraction']} leave no "
                             f"training samples out of {self.n_samples}; lower them")
        # hparams.yaml cannot hold a torch.dtype or a Path; the names as served.
        self.save_hyperparameters({**{k: str(v) if isinstance(v, Path) else v for k, v in args.items()},
                                   "dtype": str(dtype).removeprefix("torch."),
                                   "feature_names": self.feature_names, "target_names": self.target_names})
        self._rows: Batch | None = tensors  # every row in dtype (self.x, self.y); made on first use if None
        self.splits: dict[str, Batch] = {}
        self._raw: dict[str, Batch] = {}
        self._own: dict[str, Batch] = {}  # the raw splits in raw_dtype, where that is wider than dtype
        self.ranges: dict[str, Ranges] = {}
        self.block_rows = args.get("block_rows", BLOCK_ROWS)

    def _split_size(self, fraction: float, name: str) -> int:
        if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0.0 <= fraction < 1.0):
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
        return self.table.n_rows

    @property
    def n_inputs(self) -> int:
        """Columns of the raw inputs."""
        return self.table.n_inputs

    @property
    def n_features(self) -> int:
        """Inputs of the model: the raw columns, times the polynomial degree if there is one."""
        return self.n_inputs * (self.polynomial_degree or 1)

    @property
    def n_outputs(self) -> int:
        return self.table.n_outputs

    @property
    def world_size(self) -> int:
        """Processes training together (DDP ranks); 1 until a Trainer is attached."""
        return self.trainer.world_size if self.trainer is not None else 1

    @property
    def rank(self) -> int:
        """This process's DDP rank; 0 until a Trainer is attached."""
        return self.trainer.global_rank if self.trainer is not None else 0

    @property
    def x(self) -> torch.Tensor | None:
        """Every input row in :attr:`dtype`, in row order; None for a streamed table."""
        rows = self._served_rows()
        return None if rows is None else rows[0]

    @property
    def y(self) -> torch.Tensor | None:
        """Every target row in :attr:`dtype`, in row order; None for a streamed table."""
        rows = self._served_rows()
        return None if rows is None else rows[1]

    def _served_rows(self) -> Batch | None:
        if self.table.streamed:
            return None
        if self._rows is None:
            # Where the table holds wider numbers than dtype this is a copy, made only when something needs it:
            # training, not the exact module, which is served the table's own numbers.
            self._rows = self._read_all(self.dtype)
        return self._rows

    def _read_all(self, dtype: torch.dtype) -> Batch:
        """Every row of the in-memory table as tensors of ``dtype``: views of its arrays where it holds ``dtype``."""
        x, y = self.table.read_range(0, self.n_samples)
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype), torch.from_numpy(np.ascontiguousarray(y)).to(dtype)

    @property
    def raw_dtype(self) -> torch.dtype:
        """The dtype raw rows are served in to a module that takes them (``serves_raw``: the exact least-squares
        module): :attr:`dtype`, or float64 where the table holds numbers ``dtype`` would round (a CSV's, float64
        arrays', Python floats', a float64 file's, served as float32): an exact fit of their float32 rounding would
        be float32-accurate. float32 data is served as it is: it widens to float64 exactly, where the solver uses
        it."""
        for candidate in (self.dtype, torch.float32):
            if _holds(candidate, self.table):
                return candidate
        return torch.float64

    # ---- the hand-off to the module
    def module_inputs(self) -> dict[str, Any]:
        """What the module needs from the data: ``RegressionModule(net, **dm.module_inputs())``.

        ``{"normalization": the feature map's spec or None, "output_names": the target names, "weights_dtype":
        "float32" | "float64"}``; runs ``setup("fit")`` first, so the feature map is fitted (on the training split
        only).
        """
        self.setup("fit")
        return {"normalization": self.feature_map.spec if self.feature_map is not None else None,
                "output_names": list(self.target_names), "weights_dtype": str(self.dtype).removeprefix("torch.")}

    def raw_split(self, name: str, own_precision: bool = False) -> Batch:
        """``(x, y)`` of split ``name`` (``"train"``, ``"val"``, ``"test"``) before any feature map, as tensors; in
        memory only (a streamed table is never wholly read). In :attr:`dtype`, or in :attr:`raw_dtype` (the data's
        own numbers) with ``own_precision`` or while a module that takes raw rows is attached, as the loaders serve
        them then."""
        if self.table.streamed:
            raise ValueError(f"{getattr(self.table, 'path', 'data')}: raw_split needs the data in memory; build the "
                             "datamodule with in_memory=True")
        if name not in ("train", "val", "test"):
            raise ValueError(f"no split {name!r}; the splits are train, val and test")
        self.setup()
        if (own_precision or self.serves_raw) and self.raw_dtype != self.dtype:
            return self._own_splits()[name]
        return self._raw[name]

    def _own_splits(self) -> dict[str, Batch]:
        """The raw splits in :attr:`raw_dtype` (where it differs from :attr:`dtype`), each split's rows in memory
        order: with no validation or test split, views of the table's float64 arrays, no copy."""
        if not self._own:
            self._own = self._split_rows(*self._read_all(self.raw_dtype), ordered=True)
        return self._own

    # ---- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.table.streamed:
            self._setup_streamed()
            return
        raw = self.serves_raw
        own = raw and self.raw_dtype != self.dtype  # the exact module is served the table's own numbers
        if own:
            self._own_splits()
        # The splits in dtype: for training, and for the feature map, which is fitted on the training rows as
        # training sees them (so it is the same map whichever module is fitted); the exact module without a
        # feature map needs neither, nor the dtype copy of the data.
        if not self._raw and not (own and not (self.standardize or self.polynomial_degree)):
            self._raw = self._split_rows(self.x, self.y, ordered=raw)
            if self.standardize or self.polynomial_degree:
                # Statistics from the training rows only: validation and test rows must not leak into training.
                self.feature_map = FeatureMap.fit(*self._raw["train"], polynomial_degree=self.polynomial_degree,
                                                  standardize=self.standardize, bias=self.bias)
        if not self.splits and not raw:
            fm = self.feature_map
            self.splits = self._raw if fm is None else {
                k: (fm.features(x.double()).to(x.dtype), fm.targets(y.double()).to(y.dtype))
                for k, (x, y) in self._raw.items()}
        # On an accelerator the data moves to the device once, here; batches are then sliced there, and
        # transfer_batch_to_device has nothing left to copy.
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is not None and device.type != "cpu":
            if own:
                self._own = {k: (x.to(device), y.to(device)) for k, (x, y) in self._own.items()}
            elif raw:
                self._raw = {k: (x.to(device), y.to(device)) for k, (x, y) in self._raw.items()}
            else:
                self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}

    def _split_rows(self, x: torch.Tensor, y: torch.Tensor, ordered: bool) -> dict[str, Batch]:
        """The rows of ``x`` and ``y`` (every row, in row order) in each split: a seeded random permutation cut into
        test, validation and training parts.

        ``ordered`` (a module that reads raw rows, whose sums don't depend on their order) keeps each split's rows in
        memory order: with no validation or test split that is the data as given, with no copy at all (a permuted
        copy of 2M x 40 floats costs more than the whole least-squares pass over them)."""
        a, b = self.n_test, self.n_test + self.n_val
        if ordered and not b:
            empty = (x[:0], y[:0])
            return {"test": empty, "val": empty, "train": (x, y)}
        perm = torch.randperm(self.n_samples, generator=torch.Generator().manual_seed(self.seed))
        if ordered:
            parts = {"test": perm[:a], "val": perm[a:b], "train": perm[b:]}
            return {k: (x[rows], y[rows]) for k, rows in ((k, idx.sort().values) for k, idx in parts.items())}
        # Shuffle once and cut: the splits are views of one permuted copy, not three gathers.
        x, y = x[perm], y[perm]
        return {"test": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "train": (x[b:], y[b:])}

    def _setup_streamed(self) -> None:
        if self.ranges:
            return
        # Deal whole blocks (seeded) to test, validation and training, cutting one block where a split ends.
        blocks = self.table.blocks(self.block_rows)
        order = np.random.default_rng(self.seed).permutation(len(blocks))
        bounds = {"test": (0, self.n_test), "val": (self.n_test, self.n_test + self.n_val),
                  "train": (self.n_test + self.n_val, self.n_samples)}
        ranges: dict[str, Ranges] = {name: [] for name in bounds}
        position = 0
        for a, b in (blocks[i] for i in order):
            for name, (lo, hi) in bounds.items():  # the part of [position, position + b - a) in each split
                s, e = max(lo, position), min(hi, position + b - a)
                if s < e:
                    ranges[name].append((a + s - position, a + e - position))
            position += b - a
        self.ranges = ranges
        try:
            train = self._check_finite()
        except ValueError:
            self.ranges = {}
            raise
        if self.standardize:
            self.feature_map = FeatureMap.standardizer(*train, bias=self.bias)

    def _check_finite(self) -> tuple[Moments, Moments] | None:
        """One pass over every row: each value must be finite (the error names the file, row and column); on the
        way, the training split's moments for standardization. Memory is released as the pass goes."""
        moments = None
        for name, start, x, y in self._chunks("train", "val", "test"):
            for values, target in ((x, False), (y, True)):
                if not np.isfinite(values).all():
                    row, col = np.argwhere(~np.isfinite(values))[0]
                    raise ValueError(f"{self.table.where(start + int(row))}, column "
                                     f"{self.table.column(int(col), target)}: non-finite value {values[row, col]}")
            if name == "train" and self.standardize:
                # In the training dtype first, as the in-memory path computes them.
                chunk = (Moments.of(torch.from_numpy(x).to(self.dtype).double().numpy()),
                         Moments.of(torch.from_numpy(y).to(self.dtype).double().numpy()))
                moments = chunk if moments is None else (moments[0] + chunk[0], moments[1] + chunk[1])
        return moments

    def _chunks(self, *splits: str) -> Iterator[tuple[str, int, np.ndarray, np.ndarray]]:
        """``(split, first row, x, y)`` for consecutive chunks of the splits' rows; each chunk's memory is released
        once the caller is done with it."""
        for name in splits:
            for a, b in self.ranges[name]:
                for start in range(a, b, CHUNK_ROWS):
                    stop = min(b, start + CHUNK_ROWS)
                    yield name, start, *self.table.read_range(start, stop)
                    self.table.release(start, stop)

    @property
    def serves_raw(self) -> bool:
        """Whether the loaders serve raw rows: when the module being trained applies the feature map itself and says
        so with a ``raw_batches = True`` attribute (``LeastSquaresModule``, whose refinement needs the raw design).
        Otherwise they serve mapped features, computed once here rather than in every step."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        return bool(getattr(module, "raw_batches", False))

    def _loader(self, split: str, shuffle: bool = False, drop_last: bool = False) -> TensorBatches:
        raw, batch_size = self.serves_raw, self.batch_size
        if raw:
            # A module that reads raw rows sums over them (LeastSquaresModule's passes): every row once, in memory
            # order, in blocks of the size it asks for (`pass_rows`), since neither order nor batch size changes a
            # sum, and Lightning's per-batch cost (~0.25-0.5 ms) is then paid per block, not per 32 rows.
            batch_size = getattr(self.trainer.lightning_module, "pass_rows", None) or batch_size
            shuffle = drop_last = False
        if self.table.streamed:
            return BlockBatches(self.table, self.ranges[split], batch_size, shuffle, self.seed, drop_last,
                                rank=self.rank, world_size=self.world_size, dtype=self.raw_dtype if raw else self.dtype,
                                feature_map=None if raw else self.feature_map)
        rows = (self._own_splits() if self.raw_dtype != self.dtype else self._raw) if raw else self.splits
        return TensorBatches(*rows[split], batch_size, shuffle, self.seed, drop_last, rank=self.rank,
                             world_size=self.world_size)

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", self.shuffle, self.drop_last)

    def val_dataloader(self) -> TensorBatches | list:
        # No split, no loop: an empty list, which Lightning takes as "no validation" (no sanity check either).
        return self._loader("val") if self.n_val else []

    def test_dataloader(self) -> TensorBatches | list:
        return self._loader("test") if self.n_test else []

    def predict_dataloader(self) -> TensorBatches:
        # Every sample, raw and in its original row order, so predictions line up with the input file (the
        # module applies the feature map itself). A module that takes raw rows predicts from the data's own numbers,
        # as it was fitted on them.
        dtype = self.raw_dtype if self.serves_raw else self.dtype
        if self.table.streamed:
            return BlockBatches(self.table, [(0, self.n_samples)], self.batch_size, dtype=dtype)
        return TensorBatches(*(self._read_all(dtype) if dtype != self.dtype else (self.x, self.y)), self.batch_size)

    def stable_lr(self, bias: bool | None = None) -> float:
        """A learning rate at which plain SGD on MSE trains a linear model on these features without diverging.

        Full-batch gradient descent converges below ``1 / λmax(XᵀX / n)`` (X: the training features, with a column
        of ones for the bias); mini-batches wobble around that, so this returns half of it. A streamed table takes
        one pass over its training rows.
        """
        self.setup()
        bias = self.bias if bias is None else bias
        if self.table.streamed:
            loader = self._loader("train")  # for its mapping of rows to the served features
            return stable_sgd_lr((loader.tensors(x, y)[0] for _, _, x, y in self._chunks("train")), bias)
        x = self.splits["train"][0]
        # In chunks: no float64 copy of the whole training set.
        return stable_sgd_lr((x[i:i + CHUNK_ROWS] for i in range(0, len(x), CHUNK_ROWS)), bias)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Our batches are a tuple of tensors: move them directly instead of Lightning's generic walk through any
        # collection (a measurable share of a step this small). Tensors already on `device` are returned as is.
        if isinstance(batch, tuple) and all(isinstance(t, torch.Tensor) for t in batch):
            return tuple(t.to(device, non_blocking=True) for t in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)


# ------------------------------------------------------------------------------------------- the family
class TutorialDataModule(RegressionDataModule):
    """The classic tutorial's data, ``x = 1, 2, 3, 4`` and ``y = 2x``: full batch, no validation split, and a model
    without an intercept (``y = w·x``).

    Args:
        batch_size: samples per step (4: the whole set).
        val_fraction: share of the samples held out for validation (0: none).
        test_fraction: share of the samples held out for testing.
        shuffle: visit the training samples in a fresh random order each epoch.
        seed: seed of the split and the shuffling.
        standardize: standardize features and targets with statistics of the training split.
        polynomial_degree: expand each input column into this many polynomial features.
        bias: whether the model has an intercept (false: y = w·x).
        drop_last: drop a last, smaller training batch.
        dtype: float32 or float64 (default: float32).
        feature_names: names of the input columns (default: x0).
        target_names: names of the target columns (default: y).
    """

    def __init__(self, batch_size: int = 4, val_fraction: float = 0.0, test_fraction: float = 0.0,
                 shuffle: bool = True, seed: int = 0, standardize: bool = False, polynomial_degree: int | None = None,
                 *, bias: bool = False, drop_last: bool = False, dtype: torch.dtype | str | None = None,
                 feature_names: list[str] | None = None, target_names: list[str] | None = None) -> None:
        args = _init_args(locals())
        x = torch.tensor([1.0, 2.0, 3.0, 4.0])
        self._configure_arrays(x, 2 * x, serving_dtype(torch_dtype(dtype), x), args)


class SyntheticDataModule(RegressionDataModule):
    """``y = x @ w + b + noise * N(0, 1)`` with ``x ~ N(0, 1)``; the true ``w`` and ``b`` are drawn from ``seed``
    unless given (``b = 0`` for a model without an intercept, ``bias=False``), and kept (float64) as
    ``true_weight`` ``(1, n_features)`` and ``true_bias`` ``(1,)``. Served in float32 unless ``dtype`` says.

    Args:
        n_samples: rows to generate.
        n_features: input columns.
        noise: standard deviation of the noise added to y.
        true_weight: the weights (one number for all columns, or one per column; default: drawn from seed).
        true_bias: the intercept (default: drawn from seed, or 0 with bias=false).
        batch_size: samples per step per device.
        val_fraction: share of the samples held out for validation.
        test_fraction: share of the samples held out for testing.
        shuffle: visit the training samples in a fresh random order each epoch.
        seed: seed of the data, the split and the shuffling.
        standardize: standardize features and targets with statistics of the training split.
        polynomial_degree: expand each input column into this many polynomial features.
        bias: whether the model has an intercept.
        drop_last: drop a last, smaller training batch.
        dtype: float32 or float64 (default: float32).
        feature_names: names of the input columns (default: x0, x1, ...).
        target_names: names of the target columns (default: y).
    """

    def __init__(self, n_samples: int = 1000, n_features: int = 1, noise: float = 0.1,
                 true_weight: float | list[float] | None = None, true_bias: float | None = None,
                 batch_size: int = 32, val_fraction: float = 0.2, test_fraction: float = 0.0, shuffle: bool = True,
                 seed: int = 0, standardize: bool = False, polynomial_degree: int | None = None, *, bias: bool = True,
                 drop_last: bool = False, dtype: torch.dtype | str | None = None,
                 feature_names: list[str] | None = None, target_names: list[str] | None = None) -> None:
        args = _init_args(locals())
        if not (_is_int(n_samples) and _is_int(n_features) and n_samples >= 1 and n_features >= 1):
            raise ValueError(f"n_samples and n_features must be >= 1, got {n_samples} and {n_features}")
        if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {noise}")
        check_memory(n_samples * (n_features + 1) * 8 * 3, f"{n_samples} x {n_features} synthetic samples")
        rng = np.random.default_rng(seed if _is_int(seed) and 0 <= seed <= SEED_MAX else 0)  # seed checked later
        w = rng.uniform(-2, 2, n_features) if true_weight is None else \
            np.broadcast_to(np.asarray(true_weight, float), n_features)
        b = float(rng.uniform(-1, 1)) if true_bias is None else float(true_bias)
        if true_bias is None and bias is False:
            b = 0.0
        x = rng.standard_normal((n_samples, n_features))
        y = x @ w + b + noise * rng.standard_normal(n_samples)
        # Generated, not given: served in torch's default float32 unless dtype= says otherwise.
        self._configure_arrays(x, y, torch_dtype(dtype) or torch.float32, args)
        self.true_weight = torch.tensor(w).reshape(1, -1)
        self.true_bias = torch.tensor([b], dtype=torch.float64)


class CSVDataModule(RegressionDataModule):
    """A CSV file with a header row, read into memory by pyarrow (format:
    :func:`~lr_lightning.core.data.tables.read_csv_table`). Parsed as float64, served as float32 unless ``dtype``
    says: a value beyond what that dtype holds is refused with its file, row and column. The float64 numbers are
    kept: the exact ``LeastSquaresModule`` is served them (:attr:`raw_dtype`), not their float32 rounding.

    Args:
        path: the CSV file.
        target: the name of the target column (default: the last one).
        batch_size: samples per step per device.
        val_fraction: share of the samples held out for validation.
        test_fraction: share of the samples held out for testing.
        shuffle: visit the training samples in a fresh random order each epoch.
        seed: seed of the split and the shuffling.
        standardize: standardize features and targets with statistics of the training split.
        polynomial_degree: expand each input column into this many polynomial features.
        bias: whether the model has an intercept.
        drop_last: drop a last, smaller training batch.
        dtype: float32 or float64 (default: float32).
        feature_names: names of the input columns (default: the header's).
        target_names: names of the target columns (default: the header's).
    """

    def __init__(self, path: str | Path, target: str | None = None, batch_size: int = 32, val_fraction: float = 0.2,
                 test_fraction: float = 0.0, shuffle: bool = True, seed: int = 0, standardize: bool = False,
                 polynomial_degree: int | None = None, *, bias: bool = True, drop_last: bool = False,
                 dtype: torch.dtype | str | None = None, feature_names: list[str] | None = None,
                 target_names: list[str] | None = None) -> None:
        args = _init_args(locals())
        served = torch_dtype(dtype) or torch.float32
        self._configure(CsvTable(path, target, dtype=served), served, args)


class NpyDataModule(RegressionDataModule):
    """A ``.npy`` file or a directory of ``.npy`` shards (layouts: :mod:`lr_lightning.core.data.tables`),
    memory-mapped and read block by block, so it may be far larger than memory; or read into memory with
    ``in_memory`` (then ``polynomial_degree`` is available, and ``raw_split``). A float64 file is served as float64,
    anything else as float32, unless ``dtype`` says.

    Streamed, the split deals out blocks of ``block_rows`` rows and shuffling is block-wise (the blocks in a fresh
    order each epoch, the rows within each block).

    >>> import tempfile, pathlib
    >>> folder = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
    >>> path = pathlib.Path(folder.name) / "d.npy"
    >>> np.save(path, np.arange(30, dtype=np.float32).reshape(10, 3))
    >>> dm = NpyDataModule(path, batch_size=4, val_fraction=0.2, block_rows=4)
    >>> dm.setup("fit")
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> x.shape, y.shape, dm.n_train, dm.n_val
    (torch.Size([4, 2]), torch.Size([4, 1]), 8, 2)
    >>> folder.cleanup()

    Args:
        path: a .npy file, or a directory of .npy shards.
        target: the index of the target column in a single array (default: the last one).
        in_memory: read the whole table into memory instead of streaming it.
        batch_size: samples per step per device.
        val_fraction: share of the samples held out for validation.
        test_fraction: share of the samples held out for testing.
        shuffle: visit the training samples in a fresh random order each epoch.
        seed: seed of the split and the shuffling.
        standardize: standardize features and targets with statistics of the training split.
        polynomial_degree: expand each input column into this many polynomial features (needs in_memory).
        bias: whether the model has an intercept.
        drop_last: drop a last, smaller training batch.
        dtype: float32 or float64 (default: the file's, float64 or else float32).
        feature_names: names of the input columns (default: x0, x1, ...: the columns' indices).
        target_names: names of the target columns.
        block_rows: rows per block when streamed.
    """

    def __init__(self, path: str | Path, target: int | str | None = None, in_memory: bool = False,
                 batch_size: int = 32, val_fraction: float = 0.2, test_fraction: float = 0.0, shuffle: bool = True,
                 seed: int = 0, standardize: bool = False, polynomial_degree: int | None = None, *, bias: bool = True,
                 drop_last: bool = False, dtype: torch.dtype | str | None = None,
                 feature_names: list[str] | None = None, target_names: list[str] | None = None,
                 block_rows: int = BLOCK_ROWS) -> None:
        args = _init_args(locals())
        if not (_is_int(block_rows) and block_rows > 0):
            raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")
        _configure_file(self, NpyTable(path, target), in_memory, dtype, args)


class ParquetDataModule(RegressionDataModule):
    """A ``.parquet`` file or a directory of them (the same numeric columns in each), streamed row group by row
    group like ``.npy`` shards (:class:`~lr_lightning.core.data.tables.ParquetTable`), so it may be far larger than
    memory; or read into memory with ``in_memory``. Float64 columns are served as float64, anything else as float32,
    unless ``dtype`` says.

    Streamed, each row group is a block: the split deals out row groups, and an epoch visits them in a fresh order,
    shuffling the rows within each. Write row groups of about a million rows or fewer (``make_data.py --format
    parquet`` does): memory holds one decoded row group at a time.

    Args:
        path: a .parquet file, or a directory of .parquet files.
        target: the name of the target column (default: the last one).
        in_memory: read the whole table into memory instead of streaming it.
        batch_size: samples per step per device.
        val_fraction: share of the samples held out for validation.
        test_fraction: share of the samples held out for testing.
        shuffle: visit the training samples in a fresh random order each epoch.
        seed: seed of the split and the shuffling.
        standardize: standardize features and targets with statistics of the training split.
        polynomial_degree: expand each input column into this many polynomial features (needs in_memory).
        bias: whether the model has an intercept.
        drop_last: drop a last, smaller training batch.
        dtype: float32 or float64 (default: float64 for float64 columns, else float32).
        feature_names: names of the input columns (default: the file's).
        target_names: names of the target columns (default: the file's).
    """

    def __init__(self, path: str | Path, target: str | None = None, in_memory: bool = False, batch_size: int = 32,
                 val_fraction: float = 0.2, test_fraction: float = 0.0, shuffle: bool = True, seed: int = 0,
                 standardize: bool = False, polynomial_degree: int | None = None, *, bias: bool = True,
                 drop_last: bool = False, dtype: torch.dtype | str | None = None,
                 feature_names: list[str] | None = None, target_names: list[str] | None = None) -> None:
        args = _init_args(locals())
        _configure_file(self, ParquetTable(path, target), in_memory, dtype, args)


def _configure_file(dm: RegressionDataModule, table: Table, in_memory: bool, dtype: Any,
                    args: dict[str, Any]) -> None:
    """A file's table, streamed, or read whole into memory (block by block, checked on the way) with ``in_memory``."""
    if not isinstance(in_memory, bool):
        raise ValueError(f"in_memory must be true or false, got {in_memory!r}")
    served = _table_dtype(dtype, table.dtype)
    if in_memory:
        table = load(table)
    dm._configure(table, served, args)


def load(table: Table) -> ArrayTable:
    """A table read into memory block by block, in its own dtype; every value must be finite (the error names the
    file, row and column)."""
    check_memory(table.n_rows * (table.n_inputs + table.n_outputs) * table.dtype.itemsize, f"{table.n_rows} rows")
    xs, ys = [], []
    for a, b in table.blocks(BLOCK_ROWS):
        x, y = table.read_range(a, b)
        for values, target in ((x, False), (y, True)):
            if not np.isfinite(values).all():
                row, col = np.argwhere(~np.isfinite(values))[0]
                raise ValueError(f"{table.where(a + int(row))}, column {table.column(int(col), target)}: "
                                 f"non-finite value {values[row, col]}")
        xs.append(np.array(x))  # copies: out of the mapping (or the decoded row group) into memory of our own
        ys.append(np.array(y))
        table.release(a, b)
    return ArrayTable(np.concatenate(xs), np.concatenate(ys), table.feature_names, table.target_names)


def datamodule_for_path(path: str | Path) -> type[RegressionDataModule]:
    """The datamodule class for a data file, by its suffix: ``.csv``, ``.npy`` (or a directory of ``.npy`` shards),
    ``.parquet``/``.pq`` (or a directory of them). The command line builds it as ``cls(path, target, ...)``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return CSVDataModule
    if suffix == ".npy":
        return NpyDataModule
    if suffix in PARQUET_SUFFIXES:
        return ParquetDataModule
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
        if suffixes & set(PARQUET_SUFFIXES) and ".npy" not in suffixes:
            return ParquetDataModule
        if ".npy" in suffixes and not suffixes & set(PARQUET_SUFFIXES):
            return NpyDataModule
        what = "both .npy and .parquet files" if ".npy" in suffixes else "no .npy or .parquet files"
        raise ValueError(f"{path}: {what} in this directory; expected a directory of .npy shards or of .parquet files")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    raise ValueError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; expected a .csv, .npy or .parquet "
                     "file, or a directory of .npy or .parquet files")


__all__ = ["CSVDataModule", "NpyDataModule", "ParquetDataModule", "RegressionDataModule", "SyntheticDataModule",
           "TutorialDataModule", "datamodule_for_path"]
