"""lr-lightning: linear regression with PyTorch Lightning, from the hand-written loop to multi-device training.

>>> from lr_lightning import LinearRegression, RegressionDataModule, RegressionModule
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lr_lightning.core.lazy import lazy_exports

__version__ = "0.1.0"

# Imported on first use, so `scripts/fit.py --help` answers before torch and Lightning load.
_EXPORTS = {
    "LinearRegression": "lr_lightning.core.networks",
    "MLPRegressor": "lr_lightning.core.networks",
    "RegressionModule": "lr_lightning.core.regression_module",
    "LinearRegressionModule": "lr_lightning.core.linear",
    "StepsPerCallModule": "lr_lightning.core.steps_per_call",
    # The datamodules: from lr_lightning.core.data, whose own table says which file holds each.
    **dict.fromkeys(["RegressionDataModule", "TutorialDataModule", "SyntheticDataModule", "CSVDataModule",
                     "NpyDataModule", "ParquetDataModule", "datamodule_for_path", "DatasetDataModule"],
                    "lr_lightning.core.data"),
    # The exact solver lives in `exact/solver.py`, so that `lr_lightning.least_squares` is the function README
    # documents, not a submodule shadowing it. A copy without lr_lightning/exact: these four are an ImportError
    # (No module named 'lr_lightning.exact') when asked for, and the rest work.
    "least_squares": "lr_lightning.exact.solver",
    "LeastSquaresModule": "lr_lightning.exact.least_squares_module",
    "fit_statistics": "lr_lightning.exact.solver",
    "polynomial_features": "lr_lightning.core.basis",
    "RankDeficientWarning": "lr_lightning.exact.solver",
}
__all__ = ["CSVDataModule", "DatasetDataModule", "LeastSquaresModule", "LinearRegression", "LinearRegressionModule",
           "MLPRegressor", "StepsPerCallModule",
           "NpyDataModule", "ParquetDataModule", "RankDeficientWarning", "RegressionDataModule", "RegressionModule",
           "SyntheticDataModule", "TutorialDataModule", "datamodule_for_path", "fit_statistics", "least_squares",
           "polynomial_features"]

if TYPE_CHECKING:
    from lr_lightning.core.basis import polynomial_features
    from lr_lightning.core.data.csv_file import CSVDataModule
    from lr_lightning.core.data.datamodule import RegressionDataModule
    from lr_lightning.core.data.dataset import DatasetDataModule
    from lr_lightning.core.data.npy import NpyDataModule
    from lr_lightning.core.data.parquet import ParquetDataModule
    from lr_lightning.core.data.paths import datamodule_for_path
    from lr_lightning.core.data.synthetic import SyntheticDataModule
    from lr_lightning.core.data.tutorial import TutorialDataModule
    from lr_lightning.core.linear import LinearRegressionModule
    from lr_lightning.core.networks import LinearRegression, MLPRegressor
    from lr_lightning.core.regression_module import RegressionModule
    from lr_lightning.core.steps_per_call import StepsPerCallModule
    from lr_lightning.exact.least_squares_module import LeastSquaresModule
    from lr_lightning.exact.solver import RankDeficientWarning, fit_statistics, least_squares


__getattr__ = lazy_exports(__name__, _EXPORTS)
