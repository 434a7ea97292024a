"""The exact answer: least squares to nearly every digit float64 holds, with its statistics, and NIST's datasets.

``solver.py`` is the solver (its passes, :func:`least_squares`, :func:`fit_statistics`), ``least_squares_module.py``
runs it under the Trainer (:class:`LeastSquaresModule`), ``statistics.py`` makes the regression table, ``moments.py``
and ``compensated.py`` are its arithmetic; ``nist.py`` reads the NIST StRD files and scores fits against them;
``reference.py`` puts the solver beside training (``val/excess_mse``).
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: `scripts/nist.py --help` answers before torch loads.
_EXPORTS = {"LeastSquaresResult": "solver", "RankDeficientWarning": "solver", "fit_statistics": "solver",
            "least_squares": "solver", "LeastSquaresModule": "least_squares_module"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"lr_lightning.exact.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lr_lightning.exact' has no attribute {name!r}")
