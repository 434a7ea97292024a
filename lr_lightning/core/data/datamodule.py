"""``RegressionDataModule``: the data side of training for a table of rows, as Lightning intends.

The datamodule owns the rows (a :class:`~lr_lightning.core.data.tables.Table`), the deterministic train/val/test
split, the feature map fitted on the training split, and the loaders. Everything else (model, loss, optimizer) lives
in the module. Its sources are subclasses, one file each: ``tutorial``, ``synthetic``, ``csv_file``, ``npy``,
``parquet``; :func:`~lr_lightning.core.data.paths.datamodule_for_path` picks one for a file. Data that is not a 2-D
table (images, sequences) goes through :class:`~lr_lightning.core.data.dataset.DatasetDataModule` instead.

Tables in memory are served by :class:`~lr_lightning.core.data.loaders.TensorBatches` (the split is a seeded
permutation of the rows); streamed ones by :class:`~lr_lightning.core.data.loaders.BlockBatches` (the split deals out
whole blocks, an epoch visits the training blocks in a fresh order and shuffles rows within each, and a finished
block's memory is given back). A streamed table is checked (every value finite) and its standardization statistics
gathered in one pass.

The hand-off to the module is explicit: ``RegressionModule(net, **dm.module_inputs())``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from lr_lightning.core.basis import check_degree
from lr_lightning.core.data.inputs import (
    SEED_MAX,
    as_columns,
    check_memory,
    check_range,
    holds,
    is_int,
    serving_dtype,
    table_dtype,
    to_numpy,
    torch_dtype,
)
from lr_lightning.core.data.loaders import Batch, BlockBatches, TensorBatches, stable_sgd_lr
from lr_lightning.core.data.sides import StreamedSides
from lr_lightning.core.data.tables import ArrayTable, Ranges, Table
from lr_lightning.core.features import FeatureMap, Moments
from lr_lightning.core.weighting import check_weights

CHUNK_ROWS = 1 << 16  # rows per read in streaming passes
BLOCK_ROWS = 1 << 16  # rows per block of a .npy table


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
    float32. Pass ``dtype=`` (``torch.float64`` or ``"float64"``) to choose. The table keeps the numbers as given
    (a CSV's or a float64 array's, not their float32 rounding): :meth:`loader` and :meth:`raw_split` serve them in
    any dtype, and the float32 copy that training uses is made when training first uses it.

    A module that needs other batches than training's (unmapped rows, another dtype, its own batch size) defines
    ``dataloader_for(datamodule, split)``: the ``*_dataloader`` hooks return what it builds (with :meth:`loader`).

    The sources (subclasses) take these same arguments as keywords, after their own.

    >>> from lr_lightning.core.data.tutorial import TutorialDataModule
    >>> dm = TutorialDataModule()
    >>> dm.setup("fit")
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> x.shape, y.shape
    (torch.Size([4, 1]), torch.Size([4, 1]))

    Args:
        x: the inputs (array, tensor, DataFrame, list), or a :class:`~lr_lightning.core.data.tables.Table` holding
            inputs and targets (then no ``y``).
        y: the targets; a 1-D target is one column.
        batch_size: samples per step per device.
        val_fraction: share of the samples held out for validation.
        test_fraction: share of the samples held out for testing.
        shuffle: visit the training samples in a fresh random order each epoch.
        seed: seed of the split and the shuffling.
        standardize: standardize features and targets with statistics of the training split.
        polynomial_degree: expand each input column into this many polynomial features.
        bias: whether the model has an intercept (false: y = w·x, nothing is centred).
        drop_last: drop a last, smaller training batch.
        dtype: float32 or float64 (default: float64 for float64 arrays and files, else float32).
        feature_names: names of the input columns (default: the data's, or x0, x1, ...).
        target_names: names of the target columns (default: the data's, or y).
        weights: row weights for weighted least squares (:mod:`lr_lightning.core.weighting`): one number >= 0 per
            row (an array), or, for a table (a file's sources), the name of one of its columns, which is then no
            feature. Batches are then ``(x, y, w)`` with ``w`` ``(B, 1)`` in the batch's dtype; predictions need no
            weights. A streamed table reads its weight column block by block (:mod:`~lr_lightning.core.data.sides`);
            weights as an array need the data in memory.
        clusters: cluster ids for clustered standard errors (``LeastSquaresModule(cluster=True)``): for a table, the
            name of one column or a list of two (two-way clustering), which are then no features; for arrays, an
            ``(n,)`` or ``(n, 2)`` array. Any values (integers, floats) that compare equal are one cluster. Kept
            aside as :attr:`clusters`, ``(n, k)`` int64 codes numbered over every row, and never served in training
            batches (:meth:`split_of` gives a split's rows of them). A streamed table keeps them in its files:
            :attr:`clusters` is None and :attr:`cluster_values` holds each column's distinct ids, sorted, gathered in
            setup's pass (:mod:`~lr_lightning.core.data.sides`); ``loader(..., clusters=True)`` serves the codes.
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
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
        weights: Any = None,
        clusters: Any = None,
    ) -> None:
        # Not super().__init__(): save_hyperparameters(dict) compares the dict with the arguments of every __init__
        # that calls super() on the way (the data x and y here, arrays that cannot be compared with a dict).
        L.LightningDataModule.__init__(self)
        # The hyperparameters (weights and clusters are saved as their column names below).
        args = {k: v for k, v in locals().items() if k not in ("self", "x", "y", "weights", "clusters")}
        tensors = None
        if isinstance(x, Table):
            if y is not None:
                raise ValueError("y: a Table holds its targets; pass y only with arrays")
            table, served = x, table_dtype(dtype, x.dtype)
        else:
            if y is None:
                raise ValueError("y: missing; pass the targets beside x (or a Table as x)")
            table, served, tensors = self._array_table(x, y, serving_dtype(torch_dtype(dtype), x, y))
        check_roles(table, weights, clusters)
        self.clusters, self.cluster_names = None, []
        if clusters is not None:
            rest, self.clusters, self.cluster_names = _take_clusters(table, clusters)
            table, tensors = rest, tensors if rest is table else None  # named columns left the table
        column, named = None, table
        if isinstance(weights, str):
            table, weights, column = *_take_column(table, weights), weights
            tensors = None
        # A streamed table's weight column stays in the files, read beside each block (checked in setup's pass).
        self.weights = None if weights is None or table.streamed and column else \
            check_weights(weights, table.n_rows, f"column {column!r}" if column else "weights",
                          where=getattr(named, "where", None) if column else None)
        self.weights_column = column
        if weights is not None and table.streamed and column is None:
            raise ValueError(f"{getattr(table, 'path', 'data')}: weights as an array need the data in memory; name "
                             "a column of the files (weights='w'), or load them with in_memory=True")
        if tensors is not None and self.weights is not None:
            tensors = (*tensors, torch.from_numpy(self.weights).to(served))
        self._configure(table, served, args, tensors)
        self.cluster_values: list[np.ndarray] = []  # streamed: each cluster column's sorted distinct ids (setup)
        if weights is not None:
            self.save_hyperparameters({**self.hparams, "weights": column if column else "array"})
        if clusters is not None:
            self.save_hyperparameters({**self.hparams, "clusters": clusters if isinstance(clusters, (str, list))
                                       and all(isinstance(c, str) for c in np.atleast_1d(clusters)) else "array"})

    @staticmethod
    def _array_table(x: Any, y: Any, dtype: torch.dtype) -> tuple[Table, torch.dtype, Batch | None]:
        # The table keeps the numbers as given where dtype would round them (float64 arrays, integers or Python floats
        # served as float32). A float64 array is kept as it is, not copied, and the dtype copy that training uses is
        # made when it is first used (self.x).
        own = dtype if holds(dtype, x, y) else torch.float64
        xt, yt = as_columns(x, "x", own), as_columns(y, "y", own)
        if len(xt) != len(yt):
            raise ValueError(f"x has {len(xt)} samples but y has {len(yt)}; they must match row for row")
        if own != dtype:
            check_range(xt, "x", dtype, x)
            check_range(yt, "y", dtype, y)
        return ArrayTable(to_numpy(xt), to_numpy(yt)), dtype, (xt, yt) if own == dtype else None

    def _configure(self, table: Table, dtype: torch.dtype, args: dict[str, Any], tensors: Batch | None) -> None:
        """``table`` served in ``dtype`` with the settings in ``args``, each checked."""
        batch_size, seed = args["batch_size"], args["seed"]
        if not (is_int(batch_size) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not (is_int(seed) and 0 <= seed <= SEED_MAX):
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
        self.feature_names = list(args["feature_names"] or table.feature_names)
        self.target_names = list(args["target_names"] or table.target_names)
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
        # hparams.yaml cannot hold a torch.dtype; the names as served.
        self.save_hyperparameters({**args, "dtype": str(dtype).removeprefix("torch."),
                                   "feature_names": self.feature_names, "target_names": self.target_names})
        self._rows: Batch | None = tensors  # every row in dtype (self.x, self.y); made on first use if None
        self._splits: dict[str, Batch] = {}  # the splits as training is served them
        self._unmapped: dict[tuple[torch.dtype, bool], dict[str, Batch]] = {}  # raw_split's, by (dtype, ordered)
        self.ranges: dict[str, Ranges] = {}
        self.block_rows = BLOCK_ROWS

    def _source_hparams(self, **source: Any) -> None:
        """Put a source's own arguments (a path, a target column) before the shared ones in the hyperparameters."""
        self.save_hyperparameters({**{k: str(v) if isinstance(v, Path) else v for k, v in source.items()},
                                   **self.hparams})

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
        if self._rows is None:  # a copy where the table holds wider numbers than dtype, made when first needed
            self._rows = self._read_all(self.dtype)
        return self._rows

    def _read_all(self, dtype: torch.dtype) -> Batch:
        """Every row of the in-memory table as tensors of ``dtype``: views of its arrays where it holds ``dtype``."""
        if dtype == self.dtype and self._rows is not None:
            return self._rows
        x, y = self.table.read_range(0, self.n_samples)
        rows = torch.from_numpy(np.ascontiguousarray(x)).to(dtype), torch.from_numpy(np.ascontiguousarray(y)).to(dtype)
        return rows if self.weights is None else (*rows, torch.from_numpy(self.weights).to(dtype))

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

    def raw_split(self, name: str, dtype: torch.dtype | None = None, ordered: bool = False) -> Batch:
        """``(x, y)`` (with weights: ``(x, y, w)``) of split ``name`` (``"train"``, ``"val"``, ``"test"``) before any
        feature map, as tensors of ``dtype`` (default :attr:`dtype`; a wider one serves the table's own numbers), the
        weights in float64 as given; in memory only (a streamed table is never wholly read).

        ``ordered`` keeps each split's rows in memory order (for sums, which no order changes): with no validation
        or test split that is the data as given, with no copy at all."""
        if self.table.streamed:
            raise ValueError(f"{getattr(self.table, 'path', 'data')}: raw_split needs the data in memory; build the "
                             "datamodule with in_memory=True")
        if name not in ("train", "val", "test"):
            raise ValueError(f"no split {name!r}; the splits are train, val and test")
        key = (dtype or self.dtype, bool(ordered))
        if key not in self._unmapped:
            rows = self._read_all(key[0])
            if len(rows) > 2:  # the weights as given (float64): rounded to float32 they would weigh another fit
                rows = (*rows[:2], torch.from_numpy(self.weights))
            self._unmapped[key] = self._split_rows(*rows, ordered=key[1])
        return self._unmapped[key][name]

    @property
    def splits(self) -> dict[str, Batch]:
        """Each split's ``(x, y)`` as training is served them: in :attr:`dtype`, the feature map applied; ``{}`` for a
        streamed table."""
        if self.table.streamed:
            return {}
        if not self._splits:
            self.setup()
            fm, raw = self.feature_map, {k: self.raw_split(k) for k in ("train", "val", "test")}
            self._splits = raw if fm is None else {k: (fm.features(x.double()).to(x.dtype),
                                                       fm.targets(y.double()).to(y.dtype), *w)
                                                   for k, (x, y, *w) in raw.items()}
        return self._splits

    # ---- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.table.streamed:
            self._setup_streamed()
        elif self.feature_map is None and (self.standardize or self.polynomial_degree):
            # Statistics from the training rows only, as training sees them: validation and test rows must not leak.
            # Unweighted with weights too: the map only conditions the problem; the fit is mapped back exactly.
            self.feature_map = FeatureMap.fit(*self.raw_split("train")[:2], polynomial_degree=self.polynomial_degree,
                                              standardize=self.standardize, bias=self.bias)

    def split_of(self, name: str, rows: torch.Tensor, ordered: bool = True) -> torch.Tensor:
        """The part of ``rows`` (one entry per row of the data, in row order: :attr:`clusters`, say) in split
        ``name``, in the order :meth:`raw_split` serves that split's rows (``ordered``: memory order); in memory only.

        >>> import numpy as np
        >>> dm = RegressionDataModule(np.zeros((4, 1)), np.zeros(4), clusters=[5, 5, 7, 9], val_fraction=0.5)
        >>> dm.split_of("train", torch.from_numpy(dm.clusters)).shape, dm.clusters.ravel().tolist()
        (torch.Size([2, 1]), [0, 0, 1, 2])
        """
        if self.table.streamed:
            raise ValueError(f"{getattr(self.table, 'path', 'data')}: split_of needs the data in memory")
        return self._split_rows(rows, ordered=ordered)[name][0]

    def _split_rows(self, *tensors: torch.Tensor, ordered: bool) -> dict[str, Batch]:
        """The rows of ``x`` and ``y`` (and ``w``; every row, in row order) in each split: a seeded random permutation
        cut into test, validation and training parts; ``ordered``: each part's rows in memory order."""
        a, b = self.n_test, self.n_test + self.n_val
        if ordered and not b:
            empty = tuple(t[:0] for t in tensors)
            return {"test": empty, "val": empty, "train": tuple(tensors)}
        perm = torch.randperm(self.n_samples, generator=torch.Generator().manual_seed(self.seed))
        if ordered:
            parts = {"test": perm[:a], "val": perm[a:b], "train": perm[b:]}
            return {k: tuple(t[rows] for t in tensors) for k, rows in ((k, idx.sort().values)
                                                                        for k, idx in parts.items())}
        # Shuffle once and cut: the splits are views of one permuted copy, not three gathers.
        tensors = tuple(t[perm] for t in tensors)
        return {k: tuple(t[lo:hi] for t in tensors) for k, (lo, hi) in
                (("test", (0, a)), ("val", (a, b)), ("train", (b, None)))}

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
        way, the training split's moments for standardization, the weights' check and the cluster columns' distinct
        ids (:attr:`cluster_values`, sorted: the same on every rank). Memory is released as the pass goes."""
        moments, sides = None, StreamedSides(self.table, self.weights_column, self.cluster_names)
        for name, start, x, y, *side in self._chunks("train", "val", "test", sides=sides.any):
            if side:
                sides.check(start, side[0])
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
        self.cluster_values = sides.finish()
        return moments

    def _chunks(self, *splits: str, sides: bool = False) -> Iterator[tuple[Any, ...]]:
        """``(split, first row, x, y)`` (``sides``: ``(..., side columns)``) for consecutive chunks of the splits'
        rows; each chunk's memory is released once the caller is done with it."""
        for name in splits:
            for a, b in self.ranges[name]:
                for start in range(a, b, CHUNK_ROWS):
                    stop = min(b, start + CHUNK_ROWS)
                    yield name, start, *self.table.read_range(start, stop, *[True] * sides)
                    self.table.release(start, stop)

    # ---- loaders
    def loader(self, split: str, *, mapped: bool = True, dtype: torch.dtype | None = None,
               batch_size: int | None = None, shuffle: bool = False, drop_last: bool = False,
               ordered: bool = False, clusters: bool = False) -> TensorBatches | BlockBatches:
        """A loader over split ``split`` (``"train"``, ``"val"``, ``"test"``, or ``"predict"``: every row, unmapped,
        in row order): features through the feature map (``mapped``) or as they are, in ``dtype`` (default
        :attr:`dtype`), ``batch_size`` rows per batch (default :attr:`batch_size`), each split's rows in memory order
        with ``ordered`` (in memory; unmapped rows only). The ``*_dataloader`` hooks call it with the training
        settings; a module's ``dataloader_for`` may ask for others. ``clusters`` (streamed tables only; in memory,
        :class:`~lr_lightning.exact.data.ClusteredBatches` adds them): each batch ends with its rows' cluster codes,
        ``(rows, k)`` int64, positions in :attr:`cluster_values`.

        >>> from lr_lightning.core.data.tutorial import TutorialDataModule
        >>> x, y = next(iter(TutorialDataModule().loader("train", dtype=torch.float64, batch_size=2)))
        >>> x.dtype, x.shape
        (torch.float64, torch.Size([2, 1]))
        """
        self.setup()
        dtype, batch_size = dtype or self.dtype, batch_size or self.batch_size
        if split == "predict":  # raw, in row order: predictions line up with the input file
            if self.table.streamed:
                return BlockBatches(self.table, [(0, self.n_samples)], batch_size, dtype=dtype)
            return TensorBatches(*self._read_all(dtype)[:2], batch_size)  # predictions need no weights
        if self.table.streamed:
            sides = StreamedSides(self.table, self.weights_column, self.cluster_names)
            return BlockBatches(self.table, self.ranges[split], batch_size, shuffle, self.seed, drop_last,
                                rank=self.rank, world_size=self.world_size, dtype=dtype,
                                feature_map=self.feature_map if mapped else None,
                                sides=sides.batch_items(self.cluster_values if clusters else None))
        if mapped:
            rows = self.splits[split] if dtype == self.dtype else tuple(t.to(dtype) for t in self.splits[split])
        else:
            self.raw_split(split, dtype, ordered)
            rows = self._unmapped[(dtype, ordered)][split]
        # On an accelerator the rows move to the device once; batches are then sliced there.
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is not None and device.type != "cpu":
            cache = self._splits if mapped and dtype == self.dtype else self._unmapped.get((dtype, ordered), {})
            rows = cache[split] = tuple(t.to(device) for t in rows)
        return TensorBatches(rows[0], rows[1], batch_size, shuffle, self.seed, drop_last, rank=self.rank,
                             world_size=self.world_size, weights=rows[2] if len(rows) > 2 else None)

    def _module_loader(self, split: str) -> Any:
        """What the module being run builds for ``split`` with its ``dataloader_for``, if it has one; else None."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        make = getattr(module, "dataloader_for", None)
        return make(self, split) if make is not None else None

    def train_dataloader(self) -> Any:
        made = self._module_loader("train")
        return self.loader("train", shuffle=self.shuffle, drop_last=self.drop_last) if made is None else made

    def val_dataloader(self) -> Any:
        # No split, no loop: an empty list, which Lightning takes as "no validation" (no sanity check either).
        if not self.n_val:
            return []
        made = self._module_loader("val")
        return self.loader("val") if made is None else made

    def test_dataloader(self) -> Any:
        if not self.n_test:
            return []
        made = self._module_loader("test")
        return self.loader("test") if made is None else made

    def predict_dataloader(self) -> Any:
        # Every sample, raw and in its original row order (the module applies the feature map itself).
        made = self._module_loader("predict")
        return self.loader("predict") if made is None else made

    def stable_lr(self, bias: bool | None = None) -> float:
        """A learning rate at which plain SGD on MSE trains a linear model on these features without diverging.

        Full-batch gradient descent converges below ``1 / λmax(XᵀX / n)`` (X: the training features, with a column
        of ones for the bias); mini-batches wobble around that, so this returns half of it. A streamed table takes
        one pass over its training rows.
        """
        self.setup()
        bias = self.bias if bias is None else bias
        if self.table.streamed:
            loader = self.loader("train")  # for its mapping of rows to the served features
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


def column_names(argument: Any) -> list[str]:
    """The column names ``weights=`` or ``clusters=`` gives: a name, or a list of them (else none: an array)."""
    if isinstance(argument, str):
        return [argument]
    if isinstance(argument, (list, tuple)) and all(isinstance(c, str) for c in argument):
        return list(argument)
    return []


def check_roles(table: Table, weights: Any, clusters: Any) -> None:
    """Refuse, in one line naming the argument, the column and why, a weight or cluster column that is the target,
    a category column, or both the weights and a cluster column: each is a column of its own, no feature.

    >>> check_roles(ArrayTable(np.zeros((3, 2)), np.zeros(3)), "y", None)
    Traceback (most recent call last):
    ...
    ValueError: data: weights='y' is the target column; a weight column is no target: name another (or another target)
    """
    where = getattr(table, "path", "data")
    categories = getattr(table, "categories", None)
    levels = categories.levels if categories is not None else {}
    roles = [("weights", "weight", name) for name in column_names(weights)[:1]] + \
        [("clusters", "cluster", name) for name in column_names(clusters)]
    for argument, role, name in roles:
        if name in table.target_names:
            raise ValueError(f"{where}: {argument}={name!r} is the target column; a {role} column is no target: "
                             "name another (or another target)")
        if name in levels:
            raise ValueError(f"{where}: {argument}={name!r} is a categorical column (categorical=, or text); a "
                             f"{role} column is no feature")
    if isinstance(weights, str) and weights in column_names(clusters):
        raise ValueError(f"{where}: column {weights!r} is both the weights (weights=) and a cluster column "
                         "(clusters=); give each its own column")


def _take_column(table: Table, name: str, what: str = "weights") -> tuple[ArrayTable, np.ndarray]:
    """``table`` without its input column ``name``, and that column (float64): a weight column is no feature."""
    where = getattr(table, "path", "data")
    if table.streamed:
        if not hasattr(table, "take_side"):
            raise ValueError(f"{where}: {what}={name!r} needs the data in memory; load it with in_memory=True "
                             "(fit.py: --data.in_memory true)")
        table.take_side(name, what)  # read beside each block (StreamedSides), not here
        return table, None
    names = list(table.feature_names)
    if name not in names:
        raise ValueError(f"{where}: no {what} column {name!r}; the feature columns are {', '.join(names)}")
    if len(names) == 1:
        raise ValueError(f"{where}: {what}={name!r} is the only feature column; nothing would be left to fit on")
    j = names.index(name)
    x, y = table.read_range(0, table.n_rows)
    x = np.asarray(x)
    rest = ArrayTable(np.ascontiguousarray(np.delete(x, j, axis=1)), y, [n for n in names if n != name],
                      list(table.target_names))
    for attr in ("path",):  # error messages keep naming the file
        if hasattr(table, attr):
            setattr(rest, attr, getattr(table, attr))
    return rest, np.array(x[:, j], dtype=np.float64)


def _take_clusters(table: Table, clusters: Any) -> tuple[Table, np.ndarray, list[str]]:
    """``table`` without its cluster columns (named by ``clusters``: one name or a list of one or two), the
    ``(n, k)`` int64 codes of their values (numbered over every row: the same on every DDP rank), and their names;
    or, for arrays of ids, ``table`` as it is."""
    where = getattr(table, "path", "data")
    names = [clusters] if isinstance(clusters, str) else list(clusters) if isinstance(clusters, (list, tuple)) else []
    if names and all(isinstance(c, str) for c in names):
        if len(names) > 2 or len(set(names)) != len(names):
            raise ValueError(f"{where}: clusters={names}: give one cluster column or two different ones")
        columns = []
        for name in names:
            if name in getattr(table, "text_ids", {}):  # a column of text ids read aside (a CSV's)
                columns.append(table.text_ids[name])
                continue
            if name not in list(table.feature_names):
                raise ValueError(f"{where}: no cluster column {name!r}; the feature columns are "
                                 f"{', '.join(table.feature_names)}")
            table, column = _take_column(table, name, "clusters")
            columns.append(column)
        if table.streamed:  # the ids stay in the files: numbered in setup's pass (cluster_values)
            return table, None, names
        ids = np.stack(columns, axis=1)
    else:
        ids = np.asarray(clusters)
        if ids.ndim not in (1, 2) or len(ids) != table.n_rows or ids.ndim == 2 and ids.shape[1] not in (1, 2):
            raise ValueError(f"clusters: shape {ids.shape} for {table.n_rows} rows; give one id per row, or two "
                             "(an (n, 2) array) for two-way clustering")
        ids = ids[:, None] if ids.ndim == 1 else ids
        names = [f"cluster{j}" for j in range(ids.shape[1])] if ids.shape[1] > 1 else ["cluster"]
    if ids.dtype.kind == "f" and not np.isfinite(ids).all():
        row = int(np.argwhere(~np.isfinite(ids))[0][0])
        raise ValueError(f"{where}: clusters: row {row + 1} (1-based) has cluster id {ids[row].tolist()}; ids must "
                         "be finite")
    if ids.dtype.kind not in "biuf":  # text, or objects (a pandas column): no missing id, one kind of id per column
        ids = np.stack([_text_or_number_ids(ids[:, j], where, names[j]) for j in range(ids.shape[1])], axis=1)
    if ids.shape[1] == 1:  # one column: its codes as they come (a stack copied 2M ids in 25 ms)
        codes = cluster_codes(np.ascontiguousarray(ids[:, 0]))[:, None]
    else:
        codes = np.stack([cluster_codes(ids[:, j]) for j in range(ids.shape[1])], axis=1)
    return table, codes.astype(np.int64, copy=False), names


def _missing(value: Any) -> bool:
    """None, NaN (or pandas' NA, NaT) or blank text: no cluster id."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(value != value)  # NaN and NaT differ from themselves
    except TypeError:  # pandas.NA: its comparisons are NA, which has no truth value
        return True


def _text_or_number_ids(ids: np.ndarray, where: Any, name: str) -> np.ndarray:
    """An array of cluster ids given as text or objects: refused in one line naming the first row of a missing id
    (None, NaN, empty text) or of an id of another kind than the first row's (text among numbers: ``1`` and ``"1"``
    would be two clusters); else the ids, an object array that sorts."""
    values = ids.tolist()
    label = "clusters" if name == "cluster" else f"clusters ({name})"
    for row, value in enumerate(values):
        if _missing(value):
            raise ValueError(f"{where}: {label}: row {row + 1} (1-based) has no cluster id ({value!r}); fill it or "
                             "drop the row")
    text = [isinstance(v, str) for v in values]
    if any(text) and not all(text):
        row = text.index(not text[0])
        raise ValueError(f"{where}: {label}: row {row + 1} (1-based) has cluster id {values[row]!r} but row 1 has "
                         f"{values[0]!r}; give ids of one kind, all text or all numbers")
    odd = next((row for row, v in enumerate(values) if not isinstance(v, (str, numbers.Real))), None)
    if odd is not None:
        raise ValueError(f"{where}: {label}: row {odd + 1} (1-based) has cluster id {values[odd]!r}; ids are numbers "
                         "or text")
    return np.array(values, dtype=object)


def cluster_codes(ids: np.ndarray) -> np.ndarray:
    """Each id's rank among the distinct ids, 0 for the smallest: ``np.unique``'s inverse. Integers spread over at
    most four times as many values as there are rows are ranked by a lookup table instead of a sort (2M ids in
    1,000 clusters: 15 ms against 200 ms).

    >>> cluster_codes(np.array([30, 10, 30, 20])).tolist()
    [2, 0, 2, 1]
    """
    if ids.dtype.kind in "iu" and len(ids):
        low, high = int(ids.min()), int(ids.max())
        if high - low < 4 * len(ids):
            at = ids - ids.dtype.type(low) if low else ids
            seen = np.zeros(high - low + 1, bool)
            seen[at] = True
            if not low and seen.all():  # ids 0..G-1 already: they are their codes
                return ids.astype(np.int64, copy=False)
            return (np.cumsum(seen) - 1)[at]
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


def load(table: Table) -> ArrayTable:
    """A table read into memory block by block, in its own dtype; every value must be finite (the error names the
    file, row and column)."""
    check_memory(table.n_rows * (table.n_inputs + table.n_outputs) * table.dtype.itemsize, f"{table.n_rows} rows")
    xs, ys, sides = [], [], []
    side_names = list(getattr(table, "side_names", []))  # columns read aside (text cluster ids): text_ids
    for a, b in table.blocks(BLOCK_ROWS):
        x, y, *side = table.read_range(a, b, *[True] * bool(side_names))
        sides.append(side[0] if side else [])
        for values, target in ((x, False), (y, True)):
            if not np.isfinite(values).all():
                row, col = np.argwhere(~np.isfinite(values))[0]
                raise ValueError(f"{table.where(a + int(row))}, column {table.column(int(col), target)}: "
                                 f"non-finite value {values[row, col]}")
        xs.append(np.array(x))  # copies: out of the mapping (or the decoded row group) into memory of our own
        ys.append(np.array(y))
        table.release(a, b)
    loaded = ArrayTable(np.concatenate(xs), np.concatenate(ys), table.feature_names, table.target_names)
    if side_names:
        loaded.text_ids = {n: np.concatenate([s[j] for s in sides]) for j, n in enumerate(side_names)}
    return loaded


__all__ = ["RegressionDataModule", "check_roles", "load"]
