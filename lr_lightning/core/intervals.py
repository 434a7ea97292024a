"""Confidence and prediction intervals from a fit's coefficient covariance, for ``predict.py`` and ``export.py``.

A fit that knows the covariance ``C`` of its raw coefficients (intercept first, then each input's raw powers
``x, x², …``; the least-squares module stores one in its checkpoints under :data:`CHECKPOINT_KEY`) gives, for a raw
row ``x`` with design row ``d``, the standard error of the predicted mean ``se = sqrt(d C dᵀ)``, and with the residual
variance ``s²`` and residual degrees of freedom ``df``:

- confidence interval (of the mean): ``mean ± t(df) · se``;
- prediction interval (of a new observation): ``mean ± t(df) · sqrt(se² + s²)``,

as statsmodels' ``get_prediction(x).summary_frame(alpha)`` reports them (``mean_ci_*``, ``obs_ci_*``).

Plain data only, and numpy/scipy only at import: the ``--onnx`` path of ``predict.py`` imports this without torch.

>>> import numpy as np
>>> b = bounds(np.array([[1.0]]), np.array([[0.5]]), [4.0], df=10, level=0.95, kind="prediction")
>>> [round(float(v), 4) for v in (b["lower"][0, 0], b["upper"][0, 0])]
[-3.5934, 5.5934]
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The checkpoint key (plain data: tensors, numbers, strings) and the ONNX metadata key of the interval inputs.
CHECKPOINT_KEY = "interval"
KINDS = ("confidence", "prediction")


def design_rows(x: Any, degree: int | None, bias: bool) -> Any:
    """The raw design of rows ``x`` (n, k): a column of ones (``bias``), then each input's powers ``1..degree`` in
    input order (the order of a polynomial fit's coefficient names ``x, x^2, …``). numpy or torch in, same out.

    >>> design_rows(np.array([[2.0, 3.0]]), 2, True).tolist()
    [[1.0, 2.0, 4.0, 3.0, 9.0]]
    """
    d = degree or 1
    cols = [x[:, j:j + 1] ** m if m > 1 else x[:, j:j + 1] for j in range(x.shape[1]) for m in range(1, d + 1)]
    if bias:
        cols.insert(0, x[:, :1] * 0 + 1)
    if isinstance(x, np.ndarray):
        return np.concatenate(cols, axis=1)
    import torch

    return torch.cat(cols, dim=1)


def mean_stderr(x: Any, covariance: Any, degree: int | None, bias: bool, centre: Any = None) -> Any:
    """``sqrt(diag(D C_t Dᵀ))`` per target ``t``: (n, m) standard errors of the predicted means, for rows ``x`` (n, k)
    and covariances ``covariance`` (m, p, p). numpy or torch (the exported ONNX graph is this function, traced).

    ``centre`` (p,): the covariance is of the intercept at this point of the design row (the least-squares fit's
    column means, or the powers of its inputs' centres), and ``D`` is taken less it: with columns at 1e6 and a
    spread of 0.01, ``d C dᵀ`` in raw coordinates cancels to nothing (half-widths 3.7x too narrow), ``(d - c) C
    (d - c)ᵀ`` does not."""
    rows = design_rows(x, degree, bias)  # (n, p)
    if centre is not None:
        rows = rows - centre
    if isinstance(rows, np.ndarray):
        var = np.einsum("np,mpq,nq->nm", rows, covariance, rows)
        return np.sqrt(np.maximum(var, 0.0))
    import torch

    var = torch.einsum("np,mpq,nq->nm", rows, covariance, rows)
    return torch.sqrt(torch.clamp(var, min=0.0))


def check_level(level: Any, kind: str = "confidence") -> float:
    """``level`` as a float strictly between 0 and 1, and ``kind`` one of :data:`KINDS`; else a one-line
    ValueError."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < float(level) < 1:
        raise ValueError(f"interval level must be a number between 0 and 1 (0.95 for 95%), got {level!r:.40}")
    if kind not in KINDS:
        raise ValueError(f"interval kind must be 'confidence' or 'prediction', got {kind!r:.40}")
    return float(level)


def bounds(mean: np.ndarray, se_mean: np.ndarray, residual_variance: Any, df: int, level: float = 0.95,
           kind: str = "confidence") -> dict[str, np.ndarray]:
    """``{"mean", "lower", "upper"}``, each (n, m): the interval of ``kind`` at ``level`` around ``mean``, from the
    means' standard errors ``se_mean`` (n, m), the per-target residual variances (m,) and the residual df."""
    from scipy.special import stdtrit  # the t quantile; scipy.stats would add ~0.5 s to predict.py --onnx

    level = check_level(level, kind)
    se = np.asarray(se_mean, dtype=np.float64)
    if kind == "prediction":
        se = np.sqrt(se**2 + np.asarray(residual_variance, dtype=np.float64)[None, :])
    half = stdtrit(df, 0.5 + level / 2) * se
    mean = np.asarray(mean, dtype=np.float64)
    return {"mean": mean, "lower": mean - half, "upper": mean + half}


def check_interval_spec(spec: Any, n_outputs: int, where: str) -> dict[str, Any]:
    """A stored interval spec (checkpoint or ONNX metadata), checked as plain data: ``residual_variance`` (m
    non-negative numbers), ``df_resid`` (a whole number > 0), ``cov_type`` (a string). One line naming ``where``."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: its {CHECKPOINT_KEY} entry is a {type(spec).__name__}, not a mapping")
    rv, df = spec.get("residual_variance"), spec.get("df_resid")
    if not (isinstance(rv, list) and len(rv) == n_outputs and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v >= 0 for v in rv)):
        raise ValueError(f"{where}: its {CHECKPOINT_KEY} residual_variance must be {n_outputs} finite numbers >= 0, "
                         f"got {rv!r:.80}")
    if isinstance(df, bool) or not isinstance(df, int) or df <= 0:
        raise ValueError(f"{where}: its {CHECKPOINT_KEY} df_resid must be a whole number > 0, got {df!r:.40}")
    if not isinstance(spec.get("cov_type"), str):
        raise ValueError(f"{where}: its {CHECKPOINT_KEY} cov_type must be a string")
    return spec


def checkpoint_interval(path: Any, n_inputs: int, n_outputs: int, flag: str = "--ckpt") -> dict[str, Any]:
    """The interval spec a checkpoint carries under :data:`CHECKPOINT_KEY` (an exact least-squares fit's), checked:
    ``covariance`` a finite float tensor (m, p, p) for ``p = bias + inputs · degree``, and what
    :func:`check_interval_spec` checks. A checkpoint without one (a gradient-trained fit) is a one-line ValueError."""
    import torch

    from lr_lightning.core.checkpoints import read_checkpoint

    where = f"{flag} {path}"
    spec = read_checkpoint(path).get(CHECKPOINT_KEY)
    if spec is None:
        raise ValueError(f"{where}: holds no coefficient covariance, so no intervals (only an exact least-squares fit "
                         "stores one: fit.py --solver exact)")
    spec = check_interval_spec(spec, n_outputs, where)
    degree, bias, cov = spec.get("polynomial_degree"), spec.get("bias"), spec.get("covariance")
    if not isinstance(bias, bool) or not (degree is None or (isinstance(degree, int) and not isinstance(degree, bool)
                                                             and degree >= 1)):
        raise ValueError(f"{where}: its {CHECKPOINT_KEY} bias must be true/false and polynomial_degree null or >= 1")
    p = bias + n_inputs * (degree or 1)
    if not (isinstance(cov, torch.Tensor) and cov.is_floating_point() and tuple(cov.shape) == (n_outputs, p, p)
            and bool(torch.isfinite(cov).all())):
        shape = tuple(cov.shape) if isinstance(cov, torch.Tensor) else type(cov).__name__
        raise ValueError(f"{where}: its {CHECKPOINT_KEY} covariance must be finite numbers of shape "
                         f"({n_outputs}, {p}, {p}), got {shape}")
    centre, coordinates = spec.get("centre"), spec.get("coordinates", "raw")  # no key: a raw covariance
    if coordinates not in ("raw", "centred") or (coordinates == "centred") != (centre is not None):
        raise ValueError(f"{where}: its {CHECKPOINT_KEY} covariance is {coordinates!r:.20} with "
                         f"{'no' if centre is None else 'a'} centre; a centred covariance needs its centre, a raw one "
                         "none")
    if centre is not None and not (isinstance(centre, torch.Tensor) and centre.is_floating_point()
                                   and tuple(centre.shape) == (p,) and bool(torch.isfinite(centre).all())):
        raise ValueError(f"{where}: its {CHECKPOINT_KEY} centre must be {p} finite numbers")
    return spec
