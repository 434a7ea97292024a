"""The exact answer: least squares to nearly every digit float64 holds, with its statistics, and NIST's datasets.

``solver.py`` is the solver (its passes, :func:`least_squares`, :func:`fit_statistics`), ``least_squares_module.py``
runs it under the Trainer (:class:`LeastSquaresModule`), ``statistics.py`` makes the regression table, ``moments.py``
and ``compensated.py`` are its arithmetic; ``nist.py`` reads the NIST StRD files and scores fits against them;
``reference.py`` puts the solver beside training (``val/excess_mse``).
"""

from __future__ import annotations

from lr_lightning.core.lazy import lazy_exports

# Imported on first use: `scripts/nist.py --help` answers before torch loads.
_EXPORTS = {"LeastSquaresResult": "lr_lightning.exact.solver", "RankDeficientWarning": "lr_lightning.exact.solver",
            "fit_statistics": "lr_lightning.exact.solver", "least_squares": "lr_lightning.exact.solver",
            "LeastSquaresModule": "lr_lightning.exact.least_squares_module"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
