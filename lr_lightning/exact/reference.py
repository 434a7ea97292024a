"""The exact solver beside training: the best linear fit on a datamodule's training split, and its MSE per split.

The command line hands ``optimum(dm)["mse"]`` to ``RegressionModule(reference_mse=...)``, which then logs
``val/excess_mse`` (how far training is from the optimum), and prints the fit in its summary. A copy of the template
without ``lr_lightning/exact`` simply has neither.
"""

from __future__ import annotations

from typing import Any

from lr_lightning.core.basis import polynomial_features
from lr_lightning.exact.solver import least_squares

CHUNK = 1 << 16  # rows per float64 chunk: no float64 copy of a whole split


def optimum(dm: Any) -> dict[str, Any]:
    """The least-squares fit on ``dm``'s training split (raw inputs, the same model) and its MSE on each split.

    ``{"weight", "bias", "mse": {split: MSE}, "rank", "n_coefficients", "dependent"}``. With dependent columns the
    fit is the minimum-norm one and ``dependent`` names the columns involved
    (:func:`~lr_lightning.exact.solver.least_squares`). Data that is not in memory is a ValueError (``raw_split``
    says so): the solver needs the rows at hand.
    """
    x, y = (t.numpy() for t in dm.raw_split("train"))  # views: least_squares widens chunk by chunk
    fit = least_squares(x, y, bias=dm.bias, polynomial_degree=dm.polynomial_degree, names=dm.feature_names)
    weight, bias = fit
    mse = {}
    for name, n in (("train", dm.n_train), ("val", dm.n_val), ("test", dm.n_test)):
        if not n:
            continue
        xs, ys = dm.raw_split(name)
        sse = sum(float(((polynomial_features(xs[i:i + CHUNK].double().numpy(), dm.polynomial_degree) @ weight.T
                          + (bias if bias is not None else 0) - ys[i:i + CHUNK].double().numpy()) ** 2).sum())
                  for i in range(0, len(xs), CHUNK))
        mse[name] = sse / (len(xs) * ys.shape[1])
    return {"weight": weight, "bias": bias, "mse": mse, "rank": fit.rank, "n_coefficients": fit.n_coefficients,
            "dependent": fit.dependent}



