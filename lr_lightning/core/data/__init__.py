"""TEMPORARY SHIM for CLI development (replaced by the data branch)."""
from pathlib import Path
from typing import Any

import torch

from lr_lightning.core.data.datamodules import MissingHeaderError, check_memory, parse_number, read_csv_table
from lr_lightning.core.data.datamodules import RegressionDataModule as _Base  # noqa


def _dt(dtype):
    return {"float32": torch.float32, "float64": torch.float64}.get(dtype, dtype)


class RegressionDataModule(_Base):
    def __init__(self, x: "Any", y: "Any", *args, dtype=None, **kwargs):
        super().__init__(x, y, *args, dtype=_dt(dtype), **kwargs)

    def raw_split(self, name):
        self.setup()
        return self.raw_splits[name]

    def module_inputs(self):
        self.setup("fit")
        return {"normalization": self.feature_map.spec if self.feature_map is not None else None,
                "output_names": list(self.target_names), "weights_dtype": str(self.dtype).removeprefix("torch.")}


class TutorialDataModule(RegressionDataModule):
    """The tutorial."""
    def __init__(self, batch_size: int = 4, val_fraction: float = 0.0, test_fraction: float = 0.0, seed: int = 0,
                 standardize: bool = False, polynomial_degree: int | None = None, bias: bool = False,
                 dtype: str | None = None):
        x = torch.tensor([1.0, 2.0, 3.0, 4.0])
        super().__init__(x, 2 * x, batch_size, val_fraction, test_fraction, True, seed, standardize, polynomial_degree,
                         bias=bias, dtype=dtype)


class SyntheticDataModule(RegressionDataModule):
    """Synthetic."""
    def __init__(self, n_samples: int = 1000, n_features: int = 1, noise: float = 0.1, batch_size: int = 32,
                 val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0, standardize: bool = False,
                 polynomial_degree: int | None = None, bias: bool = True, dtype: str | None = None):
        import numpy as np
        rng = np.random.default_rng(seed)
        w = rng.uniform(-2, 2, n_features); b = float(rng.uniform(-1, 1)) if bias else 0.0
        x = rng.standard_normal((n_samples, n_features)); y = x @ w + b + noise * rng.standard_normal(n_samples)
        super().__init__(x, y, batch_size, val_fraction, test_fraction, True, seed, standardize, polynomial_degree,
                         bias=bias, dtype=dtype or "float32")
        self.true_weight, self.true_bias = torch.tensor(w).reshape(1, -1), torch.tensor([b], dtype=torch.float64)


class CSVDataModule(RegressionDataModule):
    """CSV."""
    def __init__(self, path: str, target: str | None = None, batch_size: int = 32, val_fraction: float = 0.2,
                 test_fraction: float = 0.0, seed: int = 0, standardize: bool = False,
                 polynomial_degree: int | None = None, bias: bool = True, dtype: str | None = None):
        from lr_lightning.core.data.datamodules import read_csv
        self.path = path
        x, y, features, target = read_csv(path, target)
        super().__init__(x, y, batch_size, val_fraction, test_fraction, True, seed, standardize, polynomial_degree,
                         bias=bias, dtype=dtype or "float32", feature_names=features, target_names=[target])


def datamodule_for_path(path):
    p = Path(path)
    if p.suffix == ".csv":
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file")
        return CSVDataModule
    raise ValueError(f"{p}: unknown data format")
