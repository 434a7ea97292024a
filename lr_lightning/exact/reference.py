"""The exact solver beside training: the best linear fit on a datamodule's training split, and its MSE per split.

The command line hands ``optimum(dm)["mse"]`` to ``RegressionModule(reference_mse=...)``, which then logs
``val/excess_mse`` (how far training is from the optimum), and prints the fit in its summary. The fit is
:func:`~lr_lightning.exact.solver.least_squares`, the same passes ``LeastSquaresModule`` runs. A copy of the template
without ``lr_lightning/exact`` simply has neither.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lr_lightning.exact import compensated as dd
from lr_lightning.exact.solver import least_squares, raw_design, residuals

CHUNK = 1 << 16  # rows per float64 chunk: no float64 copy of a whole split


def optimum(dm: Any) -> dict[str, Any] | None:
    """The least-squares fit on ``dm``'s training split (raw inputs, the same model) and its MSE on each split.

    ``{"weight", "bias", "mse": {split: MSE}, "rank", "n_coefficients", "aliased"}``, or None when the training split
    has no more rows than coefficients (no exact fit to compare with: training goes on without it). Aliased
    columns (R's ``lm``: constant, or linear combinations of the columns before them) are left out of the fit and
    named in ``aliased``. Data that is not in memory is a ValueError (``raw_split`` says so).
    """
    # Views: the solver widens chunk by chunk. With a weight column, the weighted fit and weighted MSEs (the
    # weighted mean loss, as RegressionModule trains and logs it).
    x, y, *w = (t.numpy() for t in dm.raw_split("train"))
    if len(x) <= dm.n_features + dm.bias:
        return None
    fit = least_squares(x, y, bias=dm.bias, polynomial_degree=dm.polynomial_degree, names=dm.feature_names,
                        weights=w[0] if w else None)
    weight, bias = fit
    beta = np.concatenate([bias[None, :], weight.T]) if bias is not None else weight.T
    beta_dd = dd.from_float(torch.from_numpy(np.ascontiguousarray(beta)))
    mse = {}
    for name, n in (("train", dm.n_train), ("val", dm.n_val), ("test", dm.n_test)):
        if not n:
            continue
        xs, ys, *ws = dm.raw_split(name)
        sse, mass = 0.0, float(ws[0].double().sum()) if ws else len(xs)
        for i in range(0, len(xs), CHUNK):
            r = residuals(raw_design(xs[i:i + CHUNK].double(), dm.polynomial_degree or 1), ys[i:i + CHUNK].double(),
                          beta_dd, dm.bias)
            squares = (r[0] + r[1]) ** 2
            sse += float((squares * ws[0][i:i + CHUNK].double() if ws else squares).sum())
        mse[name] = sse / (mass * ys.shape[1])
    return {"weight": weight, "bias": bias, "mse": mse, "rank": fit.rank, "n_coefficients": fit.n_coefficients,
            "aliased": fit.aliased}
