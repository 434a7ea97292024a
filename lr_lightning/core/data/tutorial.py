"""``TutorialDataModule``: the classic tutorial's four points, ``y = 2x``."""

from __future__ import annotations

from typing import Any

import torch

from lr_lightning.core.data.datamodule import RegressionDataModule


class TutorialDataModule(RegressionDataModule):
    """The classic tutorial's data, ``x = 1, 2, 3, 4`` and ``y = 2x``: full batch, no validation split, and a model
    without an intercept (``y = w·x``). Served in float32 unless ``dtype`` says. The run's summary predicts at
    ``example_x = 5``, the tutorial's ``f(5)`` (other data: at the largest training input).

    >>> dm = TutorialDataModule()
    >>> dm.n_samples, dm.n_val, dm.bias
    (4, 0, False)

    Args:
        batch_size: samples per step (4: the whole set).
        val_fraction: share of the samples held out for validation (0: none).
        bias: whether the model has an intercept (false: y = w·x).
        **kwargs: the other arguments of :class:`~lr_lightning.core.data.datamodule.RegressionDataModule`.
    """

    example_x, example_why = 5.0, "the tutorial's f(5)"

    def __init__(self, batch_size: int = 4, val_fraction: float = 0.0, *, bias: bool = False, **kwargs: Any) -> None:
        x = torch.tensor([1.0, 2.0, 3.0, 4.0])
        super().__init__(x, 2 * x, batch_size=batch_size, val_fraction=val_fraction, bias=bias, **kwargs)
