"""NIST's Statistical Reference Datasets for linear least squares, and LRE, the digits an answer gets right.

The eleven ``.dat`` files (``../shared/nist-strd`` beside the project) hold data and values certified by NIST
in 500-digit arithmetic. This module reads them as they are published; nothing is copied into the project.

>>> round(lre(1.0000001, 1.0), 3)  # 7 correct significant digits (6.99999999975: 1.0000001 is not exact in binary)
7.0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# NIST's own grading of how hard each dataset is.
DIFFICULTY = {"Norris": "lower", "Pontius": "lower", "NoInt1": "average", "NoInt2": "average", "Longley": "higher",
              "Filip": "higher", "Wampler1": "higher", "Wampler2": "higher", "Wampler3": "higher",
              "Wampler4": "higher", "Wampler5": "higher"}
NAMES = list(DIFFICULTY)


@dataclass(frozen=True)
class StRD:
    """One dataset: data, the model to fit, and the certified answers."""

    name: str
    x: np.ndarray  # (n, k) float64
    y: np.ndarray  # (n,) float64
    bias: bool  # the model has an intercept B0
    polynomial_degree: int | None  # for one x: y = B0 + B1 x + ... + Bd x^d
    certified: np.ndarray  # B0 (if bias), B1, ...: intercept first, then the weights in column order
    certified_sd: np.ndarray  # their standard deviations
    residual_sd: float
    r_squared: float  # uncentred (1 - SSE / sum y^2) for the models without intercept, as NIST reports

    @property
    def difficulty(self) -> str:
        return DIFFICULTY[self.name]


def load(path: str | Path) -> StRD:
    """Parse one StRD ``.dat`` file, using the line ranges its header states."""
    path = Path(path)
    lines = path.read_text().splitlines()
    header = "\n".join(lines[:30])
    cert_range = re.search(r"Certified Values\s*\(lines\s+(\d+)\s+to\s+(\d+)\)", header)
    data_range = re.search(r"Data\s*\(lines\s+(\d+)\s+to\s+(\d+)\)", header)
    if not cert_range or not data_range:
        raise ValueError(f"{path}: not a NIST StRD file (no 'Certified Values (lines ..)' and 'Data (lines ..)')")
    c0, c1 = int(cert_range[1]), int(cert_range[2])
    d0, d1 = int(data_range[1]), int(data_range[2])
    params: dict[int, tuple[float, float]] = {}
    residual_sd = r_squared = math.nan
    for line in lines[c0 - 1:c1]:
        if m := re.match(r"\s*B(\d+)\s+(\S+)\s+(\S+)", line):
            params[int(m[1])] = (float(m[2]), float(m[3]))
        elif m := re.search(r"Standard Deviation\s+(\S+)", line):
            residual_sd = float(m[1])
        elif m := re.search(r"R-Squared\s+(\S+)", line):
            r_squared = float(m[1])
    data = np.array([[float(v) for v in line.split()] for line in lines[d0 - 1:d1] if line.strip()])
    y, x = data[:, 0], data[:, 1:]
    bias = 0 in params
    order = sorted(params)
    n_weights = len(order) - bias
    degree = n_weights if x.shape[1] == 1 and n_weights > 1 else None
    return StRD(name=path.stem, x=x, y=y, bias=bias, polynomial_degree=degree,
                certified=np.array([params[k][0] for k in order]), certified_sd=np.array([params[k][1] for k in order]),
                residual_sd=residual_sd, r_squared=r_squared)


def load_all(folder: str | Path) -> list[StRD]:
    """All eleven datasets, in NIST's order of difficulty."""
    return [load(Path(folder) / f"{name}.dat") for name in NAMES]


def lre(estimate: float, certified: float) -> float:
    """Log relative error: -log10(|estimate - certified| / |certified|), absolute when certified is 0.

    Capped at 15, the digits NIST certifies; an estimate that is off entirely scores 0, and NaN scores 0.
    """
    if not math.isfinite(estimate):
        return 0.0
    err = abs(estimate - certified) / (abs(certified) if certified != 0 else 1.0)
    return 15.0 if err == 0 else float(min(15.0, max(0.0, -math.log10(err))))


def min_lre(estimates: np.ndarray, certified: np.ndarray) -> float:
    """The smallest LRE over all parameters: a fit is as good as its worst coefficient."""
    return min(lre(float(e), float(c)) for e, c in zip(np.ravel(estimates), np.ravel(certified), strict=True))


def in_nist_order(weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """A single-output fit as NIST lists its parameters: B0 (the intercept, if any), then B1, B2, …"""
    return np.concatenate([bias, weight[0]]) if bias is not None else weight[0]


def train(d: StRD, *, optimizer: str, precision: str, epochs: int, lr: float) -> np.ndarray:
    """Fit ``d`` with the package (standardized, full batch), return its coefficients as NIST orders them."""
    import lightning as L
    import torch

    from lr_lightning.core.data.datamodules import RegressionDataModule
    from lr_lightning.core.networks import LinearRegression
    from lr_lightning.core.regression_module import RegressionModule

    dtype = torch.float64 if precision.startswith("64") else torch.float32
    dm = RegressionDataModule(d.x, d.y, batch_size=len(d.y), val_fraction=0.0, shuffle=False, standardize=True,
                              polynomial_degree=d.polynomial_degree, bias=d.bias, dtype=dtype)
    torch.manual_seed(0)
    module = RegressionModule(LinearRegression(dm.n_features, bias=d.bias), lr=lr, optimizer=optimizer)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, max_epochs=epochs, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    return in_nist_order(*module.coefficients())
