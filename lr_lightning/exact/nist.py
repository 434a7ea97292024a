"""NIST's Statistical Reference Datasets for linear least squares, and LRE, the digits an answer gets right.

The eleven ``.dat`` files (``../shared/nist-strd`` beside the project) hold data and values certified by NIST
in 500-digit arithmetic. This module reads them as they are published; nothing is copied into the project, and
scores the package on them: :func:`train` fits one the way the package trains, :func:`report` is ``scripts/nist.py``.

>>> round(lre(1.0000001, 1.0), 3)  # 7 correct significant digits (6.99999999975: 1.0000001 is not exact in binary)
7.0
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jsonargparse.typing import PositiveInt

from lr_lightning.core.commands import Parser, entry_point, quiet

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
    f_statistic: float = math.nan  # the ANOVA table's F (inf for the exact fits Wampler1 and Wampler2)

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
    residual_sd = r_squared = f_statistic = math.nan
    for line in lines[c0 - 1:c1]:
        if m := re.match(r"\s*B(\d+)\s+(\S+)\s+(\S+)", line):
            params[int(m[1])] = (float(m[2]), float(m[3]))
        elif m := re.search(r"Standard Deviation\s+(\S+)", line):
            residual_sd = float(m[1])
        elif m := re.search(r"R-Squared\s+(\S+)", line):
            r_squared = float(m[1])
    for line in lines[c0 - 1:d0 - 1]:  # the certified ANOVA table: "Regression  df  SS  MS  F"
        if m := re.match(r"\s*Regression\s+\d+\s+\S+\s+\S+\s+(\S+)", line):
            f_statistic = float(m[1])  # Python reads NIST's "Infinity"
    data = np.array([[float(v) for v in line.split()] for line in lines[d0 - 1:d1] if line.strip()])
    y, x = data[:, 0], data[:, 1:]
    bias = 0 in params
    order = sorted(params)
    n_weights = len(order) - bias
    degree = n_weights if x.shape[1] == 1 and n_weights > 1 else None
    return StRD(name=path.stem, x=x, y=y, bias=bias, polynomial_degree=degree,
                certified=np.array([params[k][0] for k in order]), certified_sd=np.array([params[k][1] for k in order]),
                residual_sd=residual_sd, r_squared=r_squared, f_statistic=f_statistic)


def load_all(folder: str | Path) -> list[StRD]:
    """All eleven datasets, in NIST's order of difficulty."""
    return [load(Path(folder) / f"{name}.dat") for name in NAMES]


def lre(estimate: float, certified: float) -> float:
    """Log relative error: -log10(|estimate - certified| / |certified|), absolute when certified is 0.

    Capped at 15, the digits NIST certifies; an estimate that is off entirely scores 0, and NaN scores 0.
    """
    if estimate == certified:  # also an infinite F certified as infinite (an exact fit)
        return 15.0
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


def lbfgs(dtype: str = "float64") -> Callable[..., Any]:
    """torch's LBFGS as the NIST runs use it (``LinearRegressionModule(optimizer=lbfgs())``): full batch, strong-Wolfe
    line search, and a stop when the gradient reaches the precision of ``dtype``, not when the loss stops falling by
    eps: near the optimum the loss changes with the square of the weights' error, so that rule would stop at
    sqrt(eps), half the digits. (LinearRegressionModule turns the line search off once the loss stalls.)"""
    from functools import partial

    import torch

    return partial(torch.optim.LBFGS, lr=1.0, line_search_fn="strong_wolfe", max_iter=20, history_size=20,
                   tolerance_grad=100 * torch.finfo(getattr(torch, dtype)).eps, tolerance_change=0.0)


def train(d: StRD, optimizer: Callable[..., Any], *, precision: str, epochs: int) -> np.ndarray:
    """Fit ``d`` with the package (standardized, full batch), return its coefficients as NIST orders them.

    ``optimizer``: ``params -> Optimizer`` (:func:`lbfgs`, ``functools.partial(torch.optim.SGD, lr=0.1)``).
    ``precision``: the Trainer's, ``"64-true"`` (data and network in float64) or ``"32-true"``.
    """
    import lightning as L
    import torch

    from lr_lightning.core.data.datamodule import RegressionDataModule
    from lr_lightning.core.linear import LinearRegressionModule
    from lr_lightning.core.networks import LinearRegression

    dtype = "float64" if precision.startswith("64") else "float32"
    dm = RegressionDataModule(d.x, d.y, batch_size=len(d.y), val_fraction=0.0, shuffle=False, standardize=True,
                              polynomial_degree=d.polynomial_degree, bias=d.bias, dtype=getattr(torch, dtype))
    dm.setup("fit")  # fits the feature map (standardization) on the data, which the module then applies
    torch.manual_seed(0)
    module = LinearRegressionModule(LinearRegression(dm.n_features, bias=d.bias), optimizer,
                                    normalization=dm.feature_map.spec, output_names=dm.target_names,
                                    weights_dtype=dtype)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, max_epochs=epochs, logger=False,
                        enable_checkpointing=False, limit_val_batches=0, log_every_n_steps=1,  # no validation split
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    return in_nist_order(*module.coefficients())


# ------------------------------------------------------------------------------------ scripts/nist.py
# NIST's files are not shipped with the package: --data_dir, else LR_LIGHTNING_NIST_DIR, else ../shared/nist-strd
# beside a clone of the project.
NIST_URL = "https://www.itl.nist.gov/div898/strd/"
DATA_DIR = Path(os.environ.get("LR_LIGHTNING_NIST_DIR") or Path(__file__).resolve().parents[3] / "shared" / "nist-strd")


def report(data_dir: Path | None = None, lbfgs_epochs: PositiveInt = 50, sgd_epochs: PositiveInt = 500) -> int:
    """LRE (correct significant digits) of this package on NIST's linear least-squares reference datasets,
    NIST-style, with numpy.linalg.lstsq as the well-known reference.

    Args:
        data_dir: folder of the NIST StRD .dat files (default: $LR_LIGHTNING_NIST_DIR, else ../shared/nist-strd
            beside the checkout)
        lbfgs_epochs: epochs of the float64 LBFGS fit
        sgd_epochs: epochs of the float32 SGD fit (lr 0.1)
    """
    from functools import partial

    import torch

    from lr_lightning.exact.solver import least_squares, polynomial_features

    data_dir = DATA_DIR if data_dir is None else data_dir
    missing = [f"{name}.dat" for name in NAMES if not (Path(data_dir) / f"{name}.dat").is_file()]
    if missing:
        print(f"error: --data_dir {data_dir}: no {', '.join(missing)} there (the eleven NIST StRD .dat files, from "
              f"{NIST_URL})", file=sys.stderr)
        return 2
    try:
        datasets = load_all(data_dir)
    except (OSError, ValueError) as e:
        print(f"error: --data_dir {data_dir}: {e}", file=sys.stderr)
        return 2
    print(f"{'dataset':<9} {'difficulty':<10} {'lstsq raw':>9} {'least_sq':>9} {'std err':>8} {'resid SD':>9} "
          f"{'R²':>6} {'F':>6} {'lbfgs f64':>9} {'sgd f32':>8}")
    for d in datasets:
        design = polynomial_features(d.x, d.polynomial_degree)
        design = np.column_stack([np.ones(len(design)), design]) if d.bias else design
        reference = np.linalg.lstsq(design, d.y, rcond=None)[0]
        fit = least_squares(d.x, d.y, bias=d.bias, polynomial_degree=d.polynomial_degree)
        table = fit.statistics["y"]
        lbfgs_fit = train(d, lbfgs("float64"), precision="64-true", epochs=lbfgs_epochs)
        sgd_fit = train(d, partial(torch.optim.SGD, lr=0.1), precision="32-true", epochs=sgd_epochs)
        print(f"{d.name:<9} {d.difficulty:<10} {min_lre(reference, d.certified):9.1f} "
              f"{min_lre(in_nist_order(*fit), d.certified):9.1f} {min_lre(table['stderr'], d.certified_sd):8.1f} "
              f"{lre(table['residual_sd'], d.residual_sd):9.1f} {lre(table['r2'], d.r_squared):6.1f} "
              f"{lre(table['f_stat'], d.f_statistic):6.1f} {min_lre(lbfgs_fit, d.certified):9.1f} "
              f"{min_lre(sgd_fit, d.certified):8.1f}")
    print("LRE: the smallest number of correct significant digits over all certified values (15 = all).\n"
          "lstsq raw: numpy.linalg.lstsq on the raw design; least_sq: lr_lightning.least_squares (LeastSquaresModule's "
          "passes), with its std err, residual SD, R² and F;\nlbfgs f64 / sgd f32: RegressionModule on standardized "
          "data, full batch, in float64 with LBFGS / float32 with SGD (lr 0.1).")
    return 0


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``scripts/nist.py``: the flags are :func:`report`'s parameters."""
    parser = Parser(prog="nist.py", description=report.__doc__.split("\n\n")[0])
    parser.add_function_arguments(report, as_group=False)
    args = parser.parse_args(argv)
    args.data_dir = DATA_DIR if args.data_dir is None else args.data_dir  # (--help says it in words, not this path)
    if not args.data_dir.is_dir():
        parser.error(f"--data_dir {args.data_dir}: no such folder (the NIST StRD .dat files), and they are not "
                     f"shipped: get the linear regression datasets from {NIST_URL} and pass --data_dir DIR or set "
                     "LR_LIGHTNING_NIST_DIR")
    quiet()
    return report(**args.as_dict())


if __name__ == "__main__":
    sys.exit(main())
