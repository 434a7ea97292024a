"""lr-lightning: linear regression with PyTorch Lightning, from the hand-written loop to multi-device training.

>>> from lr_lightning import LinearRegression, RegressionDataModule, RegressionModule
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use, so `scripts/fit.py --help` answers before torch and Lightning load.
_EXPORTS = {
    "LinearRegression": "lr_lightning.model",
    "MLPRegressor": "lr_lightning.model",
    "RegressionModule": "lr_lightning.module",
    "RegressionDataModule": "lr_lightning.data",
    # The exact least-squares solver lives in `exact`, so that `lr_lightning.least_squares` is the function README
    # documents, not a submodule shadowing it.
    "least_squares": "lr_lightning.exact",
    "fit_statistics": "lr_lightning.exact",
    "polynomial_features": "lr_lightning.exact",
    "RankDeficientWarning": "lr_lightning.exact",
}
__all__ = ["LinearRegression", "MLPRegressor", "RankDeficientWarning", "RegressionDataModule", "RegressionModule",
           "fit_statistics", "least_squares", "polynomial_features"]

if TYPE_CHECKING:
    from lr_lightning.data import RegressionDataModule
    from lr_lightning.exact import RankDeficientWarning, fit_statistics, least_squares, polynomial_features
    from lr_lightning.model import LinearRegression, MLPRegressor
    from lr_lightning.module import RegressionModule


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lr_lightning' has no attribute {name!r}")
