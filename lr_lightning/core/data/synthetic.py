"""``SyntheticDataModule``: ``y = x @ w + b + noise``, with the true ``w`` and ``b`` kept."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lr_lightning.core.data.datamodule import RegressionDataModule
from lr_lightning.core.data.inputs import SEED_MAX, check_memory, is_int, torch_dtype


class SyntheticDataModule(RegressionDataModule):
    """``y = x @ w + b + noise * N(0, 1)`` with ``x ~ N(0, 1)``; the true ``w`` and ``b`` are drawn from ``seed``
    unless given (``b = 0`` for a model without an intercept, ``bias=False``), and kept (float64) as
    ``true_weight`` ``(1, n_features)`` and ``true_bias`` ``(1,)``. Served in float32 unless ``dtype`` says.

    >>> dm = SyntheticDataModule(n_samples=10, n_features=2, true_weight=[1.0, -1.0], true_bias=0.5)
    >>> dm.n_train, dm.n_val, dm.true_weight.tolist(), dm.dtype
    (8, 2, [[1.0, -1.0]], torch.float32)

    Args:
        n_samples: rows to generate.
        n_features: input columns.
        noise: standard deviation of the noise added to y.
        true_weight: the weights (one number for all columns, or one per column; default: drawn from seed).
        true_bias: the intercept (default: drawn from seed, or 0 with bias=false).
        seed: seed of the data, the split and the shuffling.
        bias: whether the model has an intercept.
        **kwargs: the other arguments of :class:`~lr_lightning.core.data.datamodule.RegressionDataModule`.
    """

    def __init__(self, n_samples: int = 1000, n_features: int = 1, noise: float = 0.1,
                 true_weight: float | list[float] | None = None, true_bias: float | None = None, seed: int = 0, *,
                 bias: bool = True, **kwargs: Any) -> None:
        if not (is_int(n_samples) and is_int(n_features) and n_samples >= 1 and n_features >= 1):
            raise ValueError(f"n_samples and n_features must be >= 1, got {n_samples} and {n_features}")
        if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {noise}")
        check_memory(n_samples * (n_features + 1) * 8 * 3, f"{n_samples} x {n_features} synthetic samples")
        rng = np.random.default_rng(seed if is_int(seed) and 0 <= seed <= SEED_MAX else 0)  # seed checked later
        w = rng.uniform(-2, 2, n_features) if true_weight is None else \
            np.broadcast_to(np.asarray(true_weight, float), n_features)
        b = float(rng.uniform(-1, 1)) if true_bias is None else float(true_bias)
        if true_bias is None and bias is False:
            b = 0.0
        x = rng.standard_normal((n_samples, n_features))
        y = x @ w + b + noise * rng.standard_normal(n_samples)
        # Generated, not given: served in torch's default float32 unless dtype= says otherwise.
        kwargs["dtype"] = torch_dtype(kwargs.get("dtype")) or torch.float32
        super().__init__(x, y, seed=seed, bias=bias, **kwargs)
        self._source_hparams(n_samples=n_samples, n_features=n_features, noise=noise, true_weight=true_weight,
                             true_bias=true_bias)
        self.true_weight = torch.tensor(w).reshape(1, -1)
        self.true_bias = torch.tensor([b], dtype=torch.float64)
