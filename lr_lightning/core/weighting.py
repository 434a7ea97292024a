"""Row weights: weighted least squares' ``w`` column, checked once (:func:`check_weights`) and used by the SGD
module's loss (:func:`weighted_loss`): the weighted mean ``Σ w·loss / Σ w`` of the per-row loss, which for the MSE is
the objective weighted least squares minimizes, so ``RegressionModule`` and the exact ``LeastSquaresModule`` fit the
same model on the same column.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

WEIGHT_RANGE = 1e150  # positive weights in [1/WEIGHT_RANGE, WEIGHT_RANGE]: w² r² stays in float64's range


def check_weights(weights: Any, n: int, what: str = "weights", where: Any = None, some_positive: bool = True
                  ) -> np.ndarray:
    """``weights`` as an ``(n, 1)`` float64 array, or a one-line ValueError naming ``what`` and the first bad row
    (``where(row)`` names it, e.g. a table's file and row; else ``row r (1-based)``): not ``n`` real numbers, a
    negative or non-finite weight, a positive weight outside [1e-150, 1e150] (its square, in the robust errors,
    would leave float64's range; WLS doesn't depend on the weights' scale), or (with ``some_positive``: not for
    one block of a file) every weight zero.

    >>> check_weights([1, 0, 2], 3).ravel().tolist()
    [1.0, 0.0, 2.0]
    >>> check_weights([1, -1], 2)
    Traceback (most recent call last):
    ...
    ValueError: weights: row 2 (1-based) has weight -1.0; weights must be finite and >= 0
    """
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().double().numpy()
    try:
        w = np.asarray(weights)
        if np.iscomplexobj(w):
            raise TypeError
        w = np.asarray(w, dtype=np.float64)  # no copy of float64 weights (a fresh 16 MB page-faulted for 20 ms)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: not real numbers") from None
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ValueError(f"{what}: shape {w.shape} for {n} rows; give one weight per row")
    at = (lambda row: f"{where(row)}, {what}:") if where is not None else \
        (lambda row: f"{what}: row {row + 1} (1-based) has")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{at(row)} weight {w[row]}; weights must be finite and >= 0")
    if len(w) and (w.max() > WEIGHT_RANGE or np.min(w, where=w > 0, initial=np.inf) < 1 / WEIGHT_RANGE):
        row = int(np.argmax((w > WEIGHT_RANGE) | ((w > 0) & (w < 1 / WEIGHT_RANGE))))
        raise ValueError(f"{at(row)} weight {w[row]:g}; positive weights must lie in [1e-150, 1e150] (their squares "
                         "leave float64's range): rescale them, which changes no estimate")
    if some_positive and not (w > 0).any():
        raise ValueError(f"{what}: every weight is zero; nothing to fit")
    return np.ascontiguousarray(w[:, None])


def elementwise(loss_fn: Any) -> Any:
    """A copy of ``loss_fn`` that returns the per-element loss: ``reduction="none"`` (every ``torch.nn`` loss has
    that attribute). A loss without one cannot be weighted: a ValueError says so.

    >>> elementwise(torch.nn.MSELoss())(torch.zeros(2, 1), torch.ones(2, 1)).shape
    torch.Size([2, 1])
    """
    if not hasattr(loss_fn, "reduction"):
        raise ValueError(f"weights: the loss {type(loss_fn).__name__} has no 'reduction'; a weighted fit needs the "
                         "per-row loss (a torch.nn loss, or one with reduction='none' support)")
    per_element = copy.copy(loss_fn)
    per_element.reduction = "none"
    return per_element


def weighted_loss(per_element: Any, preds: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``Σ_i w_i Σ_j loss_ij / (m Σ_i w_i)`` over a batch's rows ``i`` and ``m`` outputs ``j``: the plain mean when
    every weight is 1. ``per_element``: :func:`elementwise`'s copy of the loss.

    >>> mse = elementwise(torch.nn.MSELoss())
    >>> weighted_loss(mse, torch.zeros(2, 1), torch.tensor([[1.0], [3.0]]), torch.tensor([[3.0], [1.0]])).item()
    3.0
    """
    loss = per_element(preds, y)
    return (w * loss).sum() / (w.sum() * loss.shape[-1] if loss.ndim > 1 else w.sum())


_PER_ELEMENT: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # loss -> its elementwise copy


def step_loss(loss_fn: Any, preds: torch.Tensor, y: torch.Tensor, w: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """A step's loss: ``loss_fn(preds, y)`` for an ``(x, y)`` batch, :func:`weighted_loss` with ``w = [weights]``
    (the rest of an ``(x, y, w)`` batch). The elementwise copy of ``loss_fn`` is made once per loss.

    >>> mse = torch.nn.MSELoss()
    >>> preds, y = torch.zeros(2, 1), torch.tensor([[1.0], [3.0]])
    >>> step_loss(mse, preds, y).item(), step_loss(mse, preds, y, [torch.tensor([[3.0], [1.0]])]).item()
    (5.0, 3.0)
    """
    if not w:
        return loss_fn(preds, y)
    per_element = _PER_ELEMENT.get(loss_fn)
    if per_element is None:
        per_element = _PER_ELEMENT[loss_fn] = elementwise(loss_fn)
    return weighted_loss(per_element, preds, y, w[0].to(preds.dtype))


__all__ = ["check_weights", "elementwise", "step_loss", "weighted_loss"]
