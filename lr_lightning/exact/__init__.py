"""The exact answer: least squares to nearly every digit float64 holds, and NIST's certified datasets.

``solver.py`` is the solver (:func:`least_squares`, :func:`fit_statistics`); ``nist.py`` reads the NIST StRD files
and scores fits against them; ``reference.py`` puts the solver beside training (``val/excess_mse``).
"""

from lr_lightning.exact.solver import LeastSquaresResult, RankDeficientWarning, fit_statistics, least_squares

__all__ = ["LeastSquaresResult", "RankDeficientWarning", "fit_statistics", "least_squares"]
