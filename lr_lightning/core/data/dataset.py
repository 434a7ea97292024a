"""``DatasetDataModule``: any ``torch.utils.data.Dataset`` (images, sequences, anything not a 2-D table) through
standard ``DataLoader`` s, so that ``RegressionModule`` and the callbacks work with it unchanged.
:class:`~lr_lightning.core.data.loaders.TensorBatches` (``RegressionDataModule``) stays the fast path for tables in
memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, default_collate, random_split

from lr_lightning.core.data.inputs import SEED_MAX, is_int


def column_collate(samples: list[Any]) -> Any:
    """``default_collate``, with a 1-D target (one number per sample) made a ``(B, 1)`` column: a ``(B, 1)``
    prediction against a ``(B,)`` target broadcasts to ``(B, B)`` in the loss and silently trains the wrong model.

    >>> x, y = column_collate([(torch.zeros(2), torch.tensor(1.0)), (torch.ones(2), torch.tensor(2.0))])
    >>> x.shape, y.shape
    (torch.Size([2, 2]), torch.Size([2, 1]))
    """
    batch = default_collate(samples)
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], torch.Tensor) \
            and batch[1].ndim == 1:
        return batch[0], batch[1][:, None]
    return batch


class DatasetDataModule(L.LightningDataModule):
    """Serves ``(x, y)`` samples of any map-style ``Dataset`` in standard ``DataLoader`` s: ``train``/``val``/``test``
    datasets given (``DatasetDataModule(train, val)``, or by keyword), or one ``dataset`` split by ``val_fraction``
    and ``test_fraction`` with a seeded generator (the same split on every run). ``collate_fn`` (default
    :func:`column_collate`) builds the batches; a target that stays 1-D is refused in one line.
    :meth:`module_inputs` reports the samples' dtype, and :attr:`n_features` their width, so that a module built for
    other data is refused in one line when training starts.

    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(10, 2), torch.randn(10, 1))
    >>> dm = DatasetDataModule(data, batch_size=4, val_fraction=0.2)
    >>> dm.setup("fit")
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> x.shape, y.shape, len(dm.val_dataloader().dataset)
    (torch.Size([4, 2]), torch.Size([4, 1]), 2)
    >>> dm = DatasetDataModule(data, TensorDataset(torch.randn(3, 2), torch.randn(3, 1)))
    >>> len(dm.train), len(dm.val), dm.n_features, dm.module_inputs()
    (10, 3, 2, {'weights_dtype': 'float32'})

    Args:
        dataset: one dataset, split into train/val/test by the fractions; with ``val`` or ``test`` given, the
            training dataset as it is (``DatasetDataModule(train, val)``).
        val: the validation dataset (default: none, or the split of ``dataset``).
        test: the test dataset (default: none, or the split of ``dataset``).
        train: the training dataset, by keyword (instead of ``dataset``).
        batch_size: samples per step per device.
        val_fraction: share of ``dataset`` held out for validation.
        test_fraction: share of ``dataset`` held out for testing.
        shuffle: visit the training samples in a fresh random order each epoch.
        seed: seed of the split.
        num_workers: DataLoader worker processes.
        collate_fn: builds a batch from a list of samples.
        output_names: names of the target columns, handed to the module (default: the module's).
        predict: the dataset ``trainer.predict`` serves (default: every sample, in order: ``dataset`` as given, or
            train, val and test one after another).
    """

    def __init__(self, dataset: Dataset | None = None, val: Dataset | None = None, test: Dataset | None = None, *,
                 train: Dataset | None = None, batch_size: int = 32, val_fraction: float = 0.0,
                 test_fraction: float = 0.0, shuffle: bool = True, seed: int = 0, num_workers: int = 0,
                 collate_fn: Callable[[list[Any]], Any] = column_collate,
                 output_names: Sequence[str] | None = None, predict: Dataset | None = None) -> None:
        super().__init__()
        if (dataset is None) == (train is None):
            raise ValueError("DatasetDataModule: give either dataset (split by the fractions) or train (and val, test)")
        if dataset is not None and (val is not None or test is not None):
            if val_fraction or test_fraction:
                raise ValueError("DatasetDataModule: give val/test datasets or val_fraction/test_fraction, not both")
            dataset, train = None, dataset  # DatasetDataModule(train, val): the first is the training set as it is
        if not (is_int(batch_size) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not (is_int(seed) and 0 <= seed <= SEED_MAX):
            raise ValueError(f"seed must be an integer from 0 to {SEED_MAX}, got {seed!r}")
        if not (is_int(num_workers) and num_workers >= 0):
            raise ValueError(f"num_workers must be a whole number >= 0, got {num_workers!r}")
        for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0.0 <= f < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {f!r}")
        # What trainer.predict serves: ``predict``, else every sample in its order (the one dataset as given, or
        # train, val and test one after another).
        self.predict = predict if predict is not None else dataset if dataset is not None else \
            ConcatDataset([d for d in (train, val, test) if d is not None])
        if dataset is not None:
            n = len(dataset)
            n_val, n_test = round(n * val_fraction), round(n * test_fraction)
            if n - n_val - n_test < 1:
                raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training "
                                 f"samples out of {n}; lower them")
            train, val, test = random_split(dataset, [n - n_val - n_test, n_val, n_test],
                                            generator=torch.Generator().manual_seed(seed))
        self.train, self.val, self.test = train, val, test
        self.batch_size, self.shuffle, self.num_workers, self.collate_fn = batch_size, shuffle, num_workers, collate_fn
        self.output_names = list(output_names) if output_names is not None else None
        self.save_hyperparameters({"batch_size": batch_size, "val_fraction": val_fraction,
                                   "test_fraction": test_fraction, "shuffle": shuffle, "seed": seed,
                                   "num_workers": num_workers})

    def _first_x(self) -> Any:
        return self.train[0][0] if len(self.train) > 0 else None

    @property
    def n_features(self) -> int | None:
        """The width of the samples' ``x`` when each is an ``(in_features,)`` vector (from the first training
        sample), else None (images, sequences: nothing to compare with the network's first layer)."""
        x = self._first_x()
        return int(x.shape[0]) if isinstance(x, torch.Tensor) and x.ndim == 1 else None

    def module_inputs(self) -> dict[str, Any]:
        """What ``RegressionModule`` needs from the data: ``RegressionModule(net, **dm.module_inputs())``; the
        samples' dtype (``weights_dtype``, from the first training sample: float64 samples train a float64 network)
        and the target names when given (no feature map: the samples are served as they are)."""
        inputs: dict[str, Any] = {}
        x = self._first_x()
        if isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.float64):
            inputs["weights_dtype"] = str(x.dtype).removeprefix("torch.")
        if self.output_names is not None:
            inputs["output_names"] = list(self.output_names)
        return inputs

    def _loader(self, data: Dataset | None, shuffle: bool = False) -> DataLoader | list:
        if data is None or len(data) == 0:
            return []  # no split, no loop
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=self._checked, persistent_workers=self.num_workers > 0)

    def _checked(self, samples: list[Any]) -> Any:
        batch = self.collate_fn(samples)
        if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], torch.Tensor) \
                and batch[1].ndim == 1:
            raise ValueError(f"DatasetDataModule: targets of shape {tuple(batch[1].shape)}; a batch's y must be "
                             "(batch, outputs): make collate_fn give (B, 1) (column_collate does)")
        return batch

    def train_dataloader(self) -> DataLoader | list:
        return self._loader(self.train, self.shuffle)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader(self.test)

    def predict_dataloader(self) -> DataLoader | list:
        return self._loader(self.predict)


__all__ = ["DatasetDataModule", "column_collate"]
