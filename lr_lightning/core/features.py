"""Feature maps: polynomial expansion and standardization, fitted on the training split, carried by the model.

A ``FeatureMap`` turns raw inputs into the features the network trains on, and raw targets into training
units and back. ``RegressionDataModule(standardize=..., polynomial_degree=...)`` fits one on its training split
(and only there: statistics of validation or test rows would leak into training); ``RegressionModule`` adopts
it, stores it in its hyperparameters and applies it in ``forward``, so ``module(x_raw)`` predicts in original
units and checkpoints carry it.

``polynomial_degree=d`` expands each input column into d features spanning its powers ``x, x², …, x^d`` (no
cross terms; columns ordered by input, then degree). They are not the raw powers: ``x¹⁰`` of Filip's ``x ≈ -9``
is 3·10⁹ and nearly parallel to ``x⁹``, which no optimizer handles well. Each column is first scaled to
[-1, 1] and the features are its Chebyshev polynomials T1..Td, an equally expressive, well-conditioned basis.
Without an intercept the columns are only scaled (not centred) and the features are plain powers of the
scaled x: centring, or T2's constant term, would smuggle an intercept in. ``RegressionModule.coefficients()``
maps a linear model back to raw powers exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch import nn

from lr_lightning.core.basis import basis_to_raw, scaling


@dataclass(frozen=True)
class Moments:
    """Per-column count, mean, sum of squared deviations and sum of squares of some rows.

    ``a + b`` merges the moments of two chunks as if they had been computed at once (Chan, Golub & LeVeque's
    update, stable where ``Σx² - n·mean²`` is not), so statistics stream over data larger than memory.
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray
    sumsq: np.ndarray

    @classmethod
    def of(cls, a: np.ndarray) -> Moments:
        a = np.asarray(a, dtype=np.float64)
        mean = a.mean(axis=0)
        return cls(len(a), mean, ((a - mean) ** 2).sum(axis=0), (a * a).sum(axis=0))

    def __add__(self, other: Moments) -> Moments:
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * (other.n / n), self.m2 + other.m2 + delta**2 * (self.n * other.n / n),
                       self.sumsq + other.sumsq)

    def centre_and_scale(self, bias: bool) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (n - 1), or without an intercept no centre and the root mean square: a
        shift would smuggle an intercept in. A constant column keeps scale 1."""
        std = np.sqrt(self.m2 / max(self.n - 1, 1)) if bias else np.sqrt(self.sumsq / self.n)
        return (self.mean if bias else np.zeros_like(self.mean)), np.where(std > 0, std, 1.0)


def _standardization(x: Moments, y: Moments, bias: bool) -> dict[str, list[float]]:
    (f_mean, f_scale), (y_mean, y_scale) = x.centre_and_scale(bias), y.centre_and_scale(bias)
    return {"feature_mean": f_mean.tolist(), "feature_scale": f_scale.tolist(), "y_mean": y_mean.tolist(),
            "y_scale": y_scale.tolist()}


def check_spec(spec: Any) -> None:
    """Raise ValueError (one line, naming the key) unless ``spec`` is a feature map :class:`FeatureMap` can apply.

    The keys and list lengths it needs: ``centre`` and ``scale`` per input column (k), ``feature_mean`` and
    ``feature_scale`` per feature (k × degree), ``y_mean`` and ``y_scale`` per output; all finite numbers, the
    scales > 0 (they divide). ``polynomial_degree`` is None or an integer >= 1, ``bias`` a bool.
    """
    where = "normalization"
    keys = ("polynomial_degree", "bias", "centre", "scale", "feature_mean", "feature_scale", "y_mean", "y_scale")
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping with the keys {', '.join(keys)}, got {type(spec).__name__}")
    missing = [k for k in keys if k not in spec]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    degree = spec["polynomial_degree"]
    if degree is not None and (isinstance(degree, (bool, np.bool_)) or not isinstance(degree, Integral) or degree < 1):
        raise ValueError(f"{where}: polynomial_degree must be None or an integer >= 1, got {degree!r}")
    if not isinstance(spec["bias"], (bool, np.bool_)):
        raise ValueError(f"{where}: bias must be true or false, got {spec['bias']!r}")
    for key in keys[2:]:
        values = spec[key]
        if not isinstance(values, (list, tuple)) or not values or not all(map(_finite_number, values)):
            raise ValueError(f"{where}: {key} must be a non-empty list of finite numbers, got {values!r:.80}")
        if key.endswith("scale") and not all(v > 0 for v in values):
            raise ValueError(f"{where}: {key} must hold numbers > 0 (they divide), got {values!r:.80}")
    k, n_features, n_out = len(spec["centre"]), len(spec["centre"]) * (degree or 1), len(spec["y_mean"])
    for key, n in (("scale", k), ("feature_mean", n_features), ("feature_scale", n_features), ("y_scale", n_out)):
        if len(spec[key]) != n:
            raise ValueError(f"{where}: {key} has {len(spec[key])} values, expected {n} "
                             f"({k} input column(s), polynomial_degree {degree}, {n_out} output(s))")


def _finite_number(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


class FeatureMap(nn.Module):
    """``features = (basis(x) - feature_mean) / feature_scale`` and ``y_train = (y - y_mean) / y_scale``.

    Built from :meth:`spec` (plain lists, so it lives in hyperparameters and loads with ``weights_only``).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        check_spec(spec)  # it may come from a checkpoint: one clear line, not a KeyError or a shape error later
        self.spec = spec
        self.degree, self.bias = spec["polynomial_degree"], spec["bias"]
        for name in ("centre", "scale", "feature_mean", "feature_scale", "y_mean", "y_scale"):
            self.register_buffer(name, torch.tensor(spec[name], dtype=torch.float64), persistent=False)

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, *, polynomial_degree: int | None, standardize: bool,
            bias: bool = True) -> FeatureMap:
        """Statistics from these (training) rows only."""
        x64, y64 = x.double(), y.double()
        degree = polynomial_degree or 1
        if polynomial_degree is not None:  # the same scaling onto [-1, 1] as least_squares uses
            centre, scale = scaling(x64.cpu().numpy(), bias)
        else:
            centre, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
        spec = {"polynomial_degree": polynomial_degree, "bias": bias, "centre": centre.tolist(),
                "scale": scale.tolist(), "feature_mean": [0.0] * (x.shape[1] * degree),
                "feature_scale": [1.0] * (x.shape[1] * degree), "y_mean": [0.0] * y.shape[1],
                "y_scale": [1.0] * y.shape[1]}
        if standardize:
            features = cls(spec).basis(x64)
            spec |= _standardization(Moments.of(features.cpu().numpy()), Moments.of(y64.cpu().numpy()), bias)
        return cls(spec)

    @classmethod
    def standardizer(cls, x: Moments, y: Moments, bias: bool = True) -> FeatureMap:
        """Standardization alone (no polynomial) from statistics gathered elsewhere, e.g. streamed over a file."""
        k = len(x.mean)
        spec = {"polynomial_degree": None, "bias": bias, "centre": [0.0] * k, "scale": [1.0] * k}
        return cls(spec | _standardization(x, y, bias))

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Polynomial expansion of scaled columns (identity without a degree)."""
        t = (x - self.centre.to(x.dtype)) / self.scale.to(x.dtype)
        if self.degree is None:
            return t
        if not self.bias:
            return torch.cat([t[:, [j]] ** torch.arange(1, self.degree + 1, device=x.device) for j in
                              range(t.shape[1])], dim=1)
        columns = []
        for j in range(t.shape[1]):
            prev, cur = torch.ones_like(t[:, j]), t[:, j]
            columns.append(cur)
            for _ in range(2, self.degree + 1):
                prev, cur = cur, 2 * t[:, j] * cur - prev
                columns.append(cur)
        return torch.stack(columns, dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (self.basis(x) - self.feature_mean.to(x.dtype)) / self.feature_scale.to(x.dtype)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.y_mean.to(y.dtype)) / self.y_scale.to(y.dtype)

    def untarget(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.y_scale.to(y.dtype) + self.y_mean.to(y.dtype)

    def to_raw(self, weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """A linear model on these features as a linear model on raw powers of the raw inputs (float64)."""
        if bias is not None and not self.bias:
            raise ValueError("a model with a bias needs a feature map fitted with bias=True")
        k = len(self.spec["centre"])
        degree = self.degree or 1
        # features = D (basis - m) with D = diag(1/feature_scale); basis coefficients -> raw ones via T.
        w = np.asarray(weight, np.float64) / np.asarray(self.spec["feature_scale"])
        b = (np.zeros(w.shape[0]) if bias is None else np.asarray(bias, np.float64)) - w @ np.asarray(
            self.spec["feature_mean"])
        t = basis_to_raw(self.spec["centre"], self.spec["scale"], k, degree, self.bias,
                         chebyshev=self.degree is not None)  # (1 + k d, 1 + k d) with an intercept row/column
        full = np.concatenate([b[:, None], w], axis=1) if self.bias else w
        raw = full @ t.T.astype(np.float64)
        y_scale, y_mean = np.asarray(self.spec["y_scale"]), np.asarray(self.spec["y_mean"])
        raw = raw * y_scale[:, None]
        if self.bias:
            return raw[:, 1:], raw[:, 0] + y_mean
        return raw, None
