"""The exact least-squares fit, pass by pass: what :class:`LeastSquaresModule` runs under the Trainer and what
:func:`least_squares` runs over arrays. One machinery, on any device, over data of any size, across DDP ranks.

How, and why not the textbook formula ``(XᵀX) β = Xᵀy``:

1. **The design is solved on a well-conditioned basis.** Raw polynomial columns ``x, x², …, x¹⁰`` are nearly
   parallel (NIST's Filip loses every digit in them); each input is mapped to [-1, 1] and expanded in Chebyshev
   polynomials, which span the same models. :func:`~lr_lightning.core.basis.basis_to_raw_exact` maps coefficients
   back to raw powers exactly. Without a polynomial the basis is the raw columns.
2. **Pass 1 accumulates centred co-moments** (:mod:`~lr_lightning.exact.moments`) of ``[basis, y]`` in float64,
   batch by batch, merged pairwise, on the batches' device; ranks merge theirs with one all-gather. Centring keeps
   the digits an offset in the data would cancel, and the unit-scaled centred system of a well-conditioned basis
   is solved by Cholesky without loss.
3. **Aliasing the way R's ``lm`` does it**: columns are taken in order, and one that is constant or (nearly) a
   linear combination of the columns before it is *aliased*: not estimable, reported as null, left out of the fit.
   R's rule (remaining norm below 10⁻⁷ of the column's, :data:`ALIAS_TOL`) needs a QR to be decided; the squared
   system of co-moments only tells when no column comes near it. So where one does, one more pass builds R of the
   centred columns batch by batch (TSQR: each batch stacked under the R so far, merged across ranks the same way).
4. **Further passes only where they buy digits**: iterative refinement, with the residuals ``y - Xβ`` and the
   gradient ``Xᵀr`` of the *raw* design computed in double-double arithmetic (:mod:`~lr_lightning.exact.compensated`,
   ~32 digits from float64 on any device), and each correction solved on the basis. It converges on the exact
   least-squares solution of the raw problem (``Xᵀr = 0``), not of its float64 rounding. Taken when the basis is
   polynomial, when the system's condition number costs digits, or when the residual sum of squares would cancel
   (R² near 1); well-conditioned data is done in one pass. ``robust=True`` adds one pass for the leverages and
   the HC0-HC3 "meat".

>>> import numpy as np
>>> x = np.arange(10.0)
>>> w, b = least_squares(x, 3 * x + 1)
>>> np.round(w, 12).tolist(), np.round(b, 12).tolist()
([[3.0]], [1.0])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from lr_lightning.core.basis import (
    _columns,
    _validate,
    basis_to_raw_exact,
    check_degree,
    labels,
    polynomial_features,
    scaling,
)
from lr_lightning.core.features import FeatureMap
from lr_lightning.core.weighting import check_weights
from lr_lightning.exact import compensated as dd
from lr_lightning.exact.clusters import ClusterSums, check_cr3_budget, cluster_keys, jackknife
from lr_lightning.exact.moments import CoMoments, PairwiseSum, merge_in_order

__all__ = ["ALIAS_TOL", "Design", "LeastSquaresResult", "LeastSquaresSolver", "RankDeficientWarning",
           "check_degree", "check_weights", "fit_statistics", "least_squares", "polynomial_features"]

EPS = float(np.finfo(np.float64).eps)
# R's lm: a column whose part not explained by the columns before it is below 10⁻⁷ of its own size is aliased (here:
# of its spread, since the columns are centred). Decided on a QR, where the co-moments put that in doubt.
ALIAS_TOL = 1e-7
# The co-moments decide alone when every column's unexplained part is above 10⁻²·⁵ of its spread (a Cholesky pivot
# of the unit-scaled system above 10⁻⁵). Below, a QR pass over the rows gives the factor: the aliasing decision
# (ALIAS_TOL) needs it, and so do the covariances, whose error from the squared system's factor is ~eps/pivot²
# (nearly collinear columns at a pivot² of 1e-8: standard errors 3e-8 off; from the QR, 1e-11).
QR_BELOW = 1e-5
# Refine when pass 1's coefficients or residual sum of squares may have lost digits beyond this relative error.
REFINE_BELOW = 1e-11
# A leverage within this of 1 is 1: the row's residual is 0 up to rounding, and HC2/HC3 divide it by 1 - h.
LEVERAGE_ONE = 1e-10
# A column (or target) whose RMS is below this has products below 1e-300: near float64's subnormal range (2.2e-308),
# where they keep fewer than 53 bits. Silently: x at 1e-160 gave slopes 1e-4 off, at 1e-170 "every column constant".
TINY = 1e-150
# Rows per piece in the double-double passes: their temporaries are (rows × coefficients × targets).
PIECE = 1 << 20

Gather = Callable[[torch.Tensor], torch.Tensor]


def no_gather(t: torch.Tensor) -> torch.Tensor:
    """One process: the "gathered" stack holds this rank's tensor alone."""
    return t[None]


class RankDeficientWarning(UserWarning):
    """Some coefficients are aliased: their columns are constant or linear combinations of the columns before them
    (a duplicated column, fewer distinct x values than a polynomial's degree needs). They are not estimable and
    reported as such (null, "—"); the others are estimated without them, as R's ``lm`` does."""


@dataclass(frozen=True)
class Design:
    """What is being fitted: ``y ≈ intercept + Σ raw coefficients · raw columns``, raw columns being each input's
    powers ``x, x², …, x^d`` (or the inputs themselves), solved on the basis of ``centre``/``scale``.

    >>> Design(n_inputs=2, n_outputs=1, polynomial_degree=2, input_names=("a", "b")).names
    ['intercept', 'a', 'a^2', 'b', 'b^2']
    """

    n_inputs: int
    n_outputs: int
    bias: bool = True
    polynomial_degree: int | None = None
    centre: tuple[float, ...] | None = None  # the basis's scaling of each input (the data module's feature map's)
    scale: tuple[float, ...] | None = None
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None

    @property
    def degree(self) -> int:
        return self.polynomial_degree or 1

    @property
    def n_coefficients(self) -> int:
        return self.bias + self.n_inputs * self.degree

    @property
    def names(self) -> list[str]:
        """Coefficient names: ``intercept`` first, then features in data order, raw powers as ``x``, ``x^2``, …"""
        inputs = self.input_names or tuple(f"x{j}" for j in range(self.n_inputs))
        return (["intercept"] if self.bias else []) + [n if m == 1 else f"{n}^{m}" for n in inputs
                                                       for m in range(1, self.degree + 1)]

    @property
    def targets(self) -> list[str]:
        return list(self.output_names or [f"y{j}" for j in range(self.n_outputs)] if self.n_outputs > 1 else
                    self.output_names or ["y"])

    def feature_map(self) -> FeatureMap:
        """The basis (the data module's feature map without its standardization: the co-moments centre, and the
        solve scales each column to unit size)."""
        k = self.n_inputs
        nf = k * self.degree
        spec = {"polynomial_degree": self.polynomial_degree, "bias": self.bias,
                "centre": list(self.centre or [0.0] * k), "scale": list(self.scale or [1.0] * k),
                "feature_mean": [0.0] * nf, "feature_scale": [1.0] * nf, "y_mean": [0.0] * self.n_outputs,
                "y_scale": [1.0] * self.n_outputs}
        return FeatureMap(spec)

    def to_raw(self) -> list[list[Fraction]]:
        """T, exactly: raw coefficients (intercept first) = T @ basis coefficients."""
        k = self.n_inputs
        return basis_to_raw_exact(list(self.centre or [0.0] * k), list(self.scale or [1.0] * k), k, self.degree,
                                  self.bias, chebyshev=self.polynomial_degree is not None)


@dataclass
class _Solution:
    """Everything after pass 1 that later passes and the statistics use (float64, on the host)."""

    n: int
    mean: np.ndarray  # (q,) means of [basis columns, targets]; their low parts in double-double are mean_lo
    comoment: np.ndarray  # (q, q)
    keep: np.ndarray  # (p_basis,) bool over basis coefficients (intercept first): estimated, not aliased
    chol: np.ndarray  # L of the unit-scaled kept system, A_kk = D L Lᵀ D
    unit: np.ndarray  # D
    beta: tuple[torch.Tensor, torch.Tensor]  # basis coefficients (p_basis, m) in double-double
    sse: np.ndarray  # (m,) residual sums of squares
    condition: float  # of the unit-scaled kept system
    meats: np.ndarray | None = None  # (3, m, 1+k, 1+k): HC0, HC2, HC3 of the whitened rows K·d (covariances)
    # Clustered: per clustering (one-way: 1; two-way: a, b and their intersection) its number of clusters and its
    # meat Σ_g s_g s_gᵀ (m, 1+k, 1+k) of the per-cluster score sums, in the same coordinates and units.
    cluster_meats: list[tuple[int, np.ndarray]] | None = None
    # CR3 (one-way): G and Σ_g u_g u_gᵀ (m, 1+k, 1+k), u_g = (A - A_g)⁻¹ s_g, in those coordinates (NaN: undefined).
    cluster_jackknife: tuple[int, np.ndarray] | None = None
    history: list[float] = field(default_factory=list)  # refinement: relative size of each correction
    # With weights ``n`` is the total weight (the co-moments' count); ``rows`` counts the rows of positive weight
    # (the observations: degrees of freedom, AIC/BIC) and ``log_weights`` is their Σ log w (the log-likelihood's).
    rows: int = 0
    log_weights: float = 0.0
    weighted: bool = False
    mean_lo: np.ndarray | None = None  # (q,): the means are mean + mean_lo


class LeastSquaresSolver:
    """The passes of one exact fit: ``update(x, y)`` for every batch of raw rows, then ``end_pass()``; repeat while
    it returns False. The stages are ``"moments"``, then ``"refine"`` (as often as it buys digits, at most
    ``max_refinements``), then ``"robust"`` if asked, then ``"done"``.

    ``gather`` (at ``end_pass``) stacks a tensor from every DDP rank (``LightningModule.all_gather``); every rank
    then computes the same answer from the same merged sums.
    """

    def __init__(self, design: Design, *, robust: bool = False, max_refinements: int = 6,
                 expected_rows: int | None = None, cluster: bool = False, cr3: bool = False) -> None:
        self.design, self.robust, self.max_refinements = design, robust, max_refinements
        self.cluster = cluster  # the robust pass also sums each cluster's scores (update's g)
        self.cr3 = cr3  # ... and each cluster's Gram matrix, for CR3 (one-way only)
        if cr3 and not cluster:
            raise ValueError("cr3=True: CR3 standard errors are clustered ones; they need cluster=True")
        self.cluster_names: list[str] = []  # the cluster columns' names, for the statistics (the module sets them)
        self.expected_rows = expected_rows
        self.stage = "moments"
        self.passes = 0
        self._map: FeatureMap | None = None
        self._device = torch.device("cpu")
        self._dev: dict[str, Any] = {}
        self._t, self._t_ld = raw_transform(design)  # T in double-double (host) and in long double
        self.solution: _Solution | None = None
        self._begin()

    @property
    def max_passes(self) -> int:
        return 1 + self.max_refinements + (self.robust or self.cluster)

    @property
    def done(self) -> bool:
        return self.stage == "done"

    # ------------------------------------------------------------------------------------ per batch
    def to(self, device: torch.device | str) -> LeastSquaresSolver:
        """Put what the passes need on ``device`` before the first batch: moving it later, inside a pass, would be a
        host-to-device copy (a sync) in a batch."""
        self._device = torch.device(device)
        self._map = self.design.feature_map().to(self._device)
        self._prepare()
        return self

    def _basis(self, x: torch.Tensor) -> torch.Tensor:
        if self.design.polynomial_degree is None:
            return x  # the raw columns are the basis: no copy (the co-moments convert to float64 as they copy)
        x = x.double()
        if self._map is None or self._map.centre.device != x.device:  # not moved ahead (least_squares, on the CPU)
            self.to(x.device)
        return self._map.basis(x)

    def _prepare(self) -> None:
        """The device's copies of what the coming pass reads in every batch, made once between passes."""
        dev, s = self._device, self.solution
        self._dev: dict[str, Any] = {}
        if self.stage == "refine":
            self._dev["beta"] = tuple(t.to(dev) for t in self.raw_beta())
        elif self.stage == "qr":
            n, mean, _, _, candidates, unit = self._pending
            self._dev["columns"] = torch.from_numpy(np.flatnonzero(candidates)).to(dev)
            self._dev["mean"] = torch.from_numpy(mean[:len(candidates)][candidates]).to(dev)
            self._dev["unit"] = torch.from_numpy(unit).to(dev)
        elif self.stage == "robust":
            bias = self.design.bias
            k = np.flatnonzero(s.keep[bias:])
            f = len(s.keep) - bias
            mean = np.stack([s.mean[:f][k], s.mean_lo[:f][k]]) if bias else np.zeros((2, len(k)))
            self._dev["robust"] = (torch.from_numpy(k).to(dev), torch.from_numpy(mean).to(dev),
                                   torch.from_numpy(s.chol).to(dev), torch.from_numpy(s.unit).to(dev),
                                   s.beta[0][bias:][torch.from_numpy(k)].to(dev), self._centred_intercept(k).to(dev),
                                   torch.from_numpy(self._residual_scale()).to(dev))

    def _centred_intercept(self, k: np.ndarray) -> torch.Tensor:
        """``(2, m)``: the intercept at the kept columns' means, ``β₀ + meanᵀβ``, in double-double (hi, lo; 0
        without one). The residual subtracts both from ``y`` first, ``(y - hi) - lo``: with ``y`` at 1e10 the
        intercept's float64 rounding alone was 1e-6 of a unit residual, and the robust errors lost those digits.

        The robust pass takes its residuals from the centred columns, ``y - c - (z - mean)ᵀβ``: with columns far from
        zero (1e6, spread 0.01) ``y - β₀ - zᵀβ`` is a small difference of large terms, whose rounding (a unit in the
        last place of 1e6·β) is 1e-8 of the residual, and CR1 and HC0-HC3 inherit it. For the same reason the pass's
        design is centred on the mean in double-double, ``(z - mean) - mean_lo`` (the first subtraction is exact):
        the bread ``diag(1/n, A⁻¹)`` holds in those coordinates only, and ``mean_lo`` (1e-10 at 1e6) is 1e-8 of a
        spread of 0.01.
        """
        s = self.solution
        if not self.design.bias:
            return torch.zeros(2, self.design.n_outputs, dtype=torch.float64)
        hi, lo = (part[1:][torch.from_numpy(k)] for part in s.beta)
        mean = torch.from_numpy(s.mean[:len(s.keep) - 1][k].copy())[:, None]
        explained = dd.total(dd.mul((mean, torch.zeros_like(mean)), (hi, lo)), dim=0)
        c = dd.add((s.beta[0][0], s.beta[1][0]), explained)
        return torch.stack(dd.normalize(c[0], c[1]))

    def _begin(self) -> None:
        self._rows = 0
        self._positive: torch.Tensor | None = None  # with weights: rows of positive weight, Σ log w (pass 1)
        self._low: torch.Tensor | None = None  # with weights: the least positive weight (pass 1)
        self._weighted = False
        self._moments = PairwiseSum()
        self._sums: dict[str, Any] = {}
        self._work: torch.Tensor | None = None  # pass 1's block buffer, reused by every batch of the pass
        # Each batch is centred on the previous one's mean (the first on its own): a nearby point, as good as the
        # batch's own mean for the digits (CoMoments.of corrects for it exactly) and one read of the batch fewer.
        self._shift: torch.Tensor | None = None

    def update(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None,
               g: torch.Tensor | None = None) -> None:
        """Take one batch of raw inputs ``(rows, n_inputs)`` and targets ``(rows, n_outputs)``, and for weighted least
        squares their weights ``w`` (``(rows, 1)``, >= 0; the same rows' in every pass); no host sync. ``g``: with
        ``cluster=True``, the rows' cluster codes ``(rows, k)`` int64 (k = 1 or 2), read by the robust pass (which
        then syncs once per batch: its per-cluster sums grow on the host)."""
        self._rows += len(x)  # a Python int: the batch's length is known on the host
        if w is not None:
            w = w.reshape(-1, 1).double()
            self._weighted = True
        if self.stage == "moments":
            basis = self._basis(x)
            if w is not None:
                self._add_moments(CoMoments.of(basis, y, weights=w, shift=self._shift))
                if w.device.type == "cpu":  # one pass of numpy over the weights (torch's four ops took 4 % of pass 1)
                    v = w.numpy().reshape(-1)
                    positive = v > 0
                    logs = np.log(v, out=np.zeros_like(v), where=positive)
                    counts = torch.tensor([float(positive.sum()), float(logs.sum())], dtype=torch.float64)
                    low = torch.tensor(float(np.min(v, where=positive, initial=np.inf)), dtype=torch.float64)
                else:
                    positive = w > 0
                    logs = torch.where(positive, w, torch.ones_like(w)).log()
                    counts = torch.stack([positive.sum().double(), logs.sum()])
                    low = torch.where(positive, w, torch.full_like(w, math.inf)).min()
                self._positive = counts if self._positive is None else self._positive + counts
                self._low = low if self._low is None else torch.minimum(self._low, low)  # the least positive weight
                return
            q = basis.shape[1] + y.shape[1]
            if x.device.type != "cpu" and (self._work is None or self._work.shape[0] < len(x)
                                           or self._work.device != x.device):
                self._work = x.new_empty(len(x), q, dtype=torch.float64)
            self._add_moments(CoMoments.of(basis, y, work=self._work, shift=self._shift))
            return
        if (self.stage == "robust" and not self.robust and not self.cr3 and g is not None and x.device.type == "cpu"
                and x.dtype in (torch.float32, torch.float64)):
            self._cluster_pass(x, y, w, g)
            return
        x, y = x.double(), y.double()
        if self.stage == "refine":
            step = max(1, PIECE // (self.design.n_coefficients * y.shape[1]))
            for i in range(0, len(x), step):
                self._refine_update(x[i:i + step], y[i:i + step], None if w is None else w[i:i + step])
        elif self.stage == "qr":
            z = self._basis(x)[:, self._dev["columns"]]
            if self.design.bias:
                z = z - self._dev["mean"]
            z = z / self._dev["unit"]
            if w is not None:  # rows scaled by √w: RᵀR = Σ w z zᵀ, the weighted system
                z = z * w.sqrt()
            r = self._sums.get("r")
            self._sums["r"] = torch.linalg.qr(z if r is None else torch.cat([r, z]), mode="r").R
        elif self.stage == "robust":
            self._robust_update(x, y, w, g)
        else:
            raise RuntimeError("the fit is done; no further pass takes data")

    def _add_moments(self, moments: CoMoments) -> None:
        self._moments.add(moments)
        if moments.mean.device.type == "cpu" and moments.n > 0:  # a GPU block is centred on its own mean: no sync
            self._shift = moments.mean

    def _refine_update(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> None:
        bias = self.design.bias
        raw = raw_design(x, self.design.degree)
        r = residuals(raw, y, self._dev["beta"], bias)
        if w is not None:  # the weighted gradient Xᵀ W r and Σ w r² (r·w in double-double: w is exact in float64)
            plain = r[0] + r[1]
            r = dd.mul(r, dd.from_float(w.expand_as(r[0]).contiguous()))
            sse = (plain * (r[0] + r[1])).sum(dim=0)
        g = dd.total(dd.mul((raw[0][:, :, None], raw[1][:, :, None]), (r[0][:, None, :], r[1][:, None, :])), dim=0)
        if bias:
            g0 = dd.total(r, dim=0)
            g = (torch.cat([g0[0][None], g[0]]), torch.cat([g0[1][None], g[1]]))
        if w is None:
            sse = ((r[0] + r[1]) ** 2).sum(dim=0)
        if "g" in self._sums:
            self._sums["g"] = dd.add(self._sums["g"], g)
            self._sums["sse"] = self._sums["sse"] + sse
        else:
            self._sums["g"], self._sums["sse"] = g, sse

    def _robust_update(self, x: torch.Tensor, y: torch.Tensor, wt: torch.Tensor | None = None,
                       g: torch.Tensor | None = None) -> None:
        s = self.solution
        k, mean, chol, unit, beta, offset, rscale = self._dev["robust"]
        z = self._basis(x)
        bias = self.design.bias
        if not self.robust:  # clusters only: CR1 needs no leverages (HC2/HC3 do), so no triangular solve
            # [1, D⁻¹(z - mean)] written once into one block (no column gather when every column is kept).
            design = z.new_empty(len(z), bias + len(k))
            if bias:
                design[:, 0] = 1.0
            kept = design[:, bias:]
            torch.sub(z if len(k) == z.shape[1] else z[:, k], mean[0], out=kept)
            r = ((y - offset[0]) - offset[1] - kept @ beta) / rscale  # centred (see _centred_intercept)
            kept.sub_(mean[1]).div_(unit)  # centred on the mean in double-double (see _centred_intercept)
            self._cluster_update(design, r if wt is None else r * wt, g, wt)
            return
        u = z[:, k] - mean[0]
        r = (y - offset[0]) - offset[1] - u @ beta  # (rows, m), centred (see _centred_intercept)
        scaled = (u - mean[1]) / unit  # unit-sized columns (D⁻¹u): the meat's products neither overflow nor underflow
        w = torch.linalg.solve_triangular(chol, scaled.T, upper=False)  # L⁻¹ D⁻¹ uᵀ
        h = (w * w).sum(dim=0) + (1.0 / s.n if bias else 0.0)  # leverages
        if wt is not None:  # of the whitened design √w·x (statsmodels' WLS): w·x(XᵀWX)⁻¹xᵀ
            h = h * wt[:, 0]
        # A leverage of 1 (a row only its own coefficient fits) leaves HC2 and HC3 undefined: 0/0, not a number
        # that rounding made finite. Such rows divide by 0 here, and end_pass turns the result into NaN.
        free = torch.where(h >= 1.0 - LEVERAGE_ONE, torch.zeros_like(h), 1.0 - h)
        design = torch.cat([u.new_ones(len(u), 1), scaled], dim=1) if bias else scaled
        r = r / rscale  # residuals in units of the residual SD, for the same reason
        if self.cluster:
            self._cluster_update(design, r if wt is None else r * wt, g, wt)
        # The meats of the rows K·d, K = diag(1/√n, L⁻¹) (the bread is KᵀK): a meat of d itself, sandwiched between
        # (KᵀK), lost digits with the condition number squared on nearly collinear columns (as XᵀX does).
        white = torch.cat([u.new_full((len(u), 1), 1.0 / math.sqrt(s.n)), w.T], dim=1) if bias else w.T
        meats = []
        for power in (0, 1, 2):  # HC0 (and HC1, a rescaling of it), HC2, HC3
            weight = r**2 / free[:, None] ** power  # (rows, m)
            if wt is not None:  # whitened residuals √w·r and rows √w·x: w² r² x xᵀ
                weight = weight * wt**2
            meats.append(torch.einsum("ri,rt,rj->tij", white, weight, white))
        meats = torch.stack(meats)
        self._sums["meats"] = self._sums["meats"] + meats if "meats" in self._sums else meats

    def _cluster_pass(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, g: torch.Tensor) -> None:
        """The clustered pass without HC errors over a CPU batch: :func:`~lr_lightning.exact.cluster_pass.score_sums`
        (the same sums as :meth:`_cluster_update`'s, in cache-sized sub-blocks on every core)."""
        from lr_lightning.exact.cluster_pass import ScoreTables, score_sums

        k, mean, _, unit, beta, offset, rscale = self._dev["robust"]
        bias, m = self.design.bias, self.design.n_outputs
        z = self._basis(x)
        keys = cluster_keys(g.reshape(len(x), -1).to(torch.int64))
        sums = self._cluster_sums(keys, (bias + len(k)) * m)
        tables = self._sums.setdefault("score_tables", ScoreTables(len(keys), (bias + len(k)) * m))
        found = score_sums(
            z, y, None if w is None else w[:, 0], [ids.numpy() for ids in keys], beta=beta, offset=offset[0],
            offset_lo=offset[1], columns=None if len(k) == z.shape[1] else k, mean=mean[0], mean_lo=mean[1],
            unit=unit, scale=rscale, bias=bias, into=tables)
        for acc, part in zip(sums, found, strict=True):
            if part is not None:  # else in the pass's tables, merged at its end (_end_score_tables)
                acc.merge(*part)

    def _end_score_tables(self) -> None:
        """The clustered pass's tables (:class:`~lr_lightning.exact.cluster_pass.ScoreTables`) into its sums."""
        tables = self._sums.pop("score_tables", None)
        if tables is None:
            return
        k, mean, _, unit, *_ = self._dev["robust"]
        bias = self.design.bias
        q = bias + len(k)
        for acc, part in zip(self._sums["clusters"], tables.totals(q, self.design.n_outputs, bias, unit, mean[1]),
                             strict=True):
            acc.merge(*part)

    def _cluster_update(self, design: torch.Tensor, r: torch.Tensor, g: torch.Tensor | None,
                        wt: torch.Tensor | None = None) -> None:
        """Add the rows' scores ``x_i e_i`` (whitened: ``w_i x_i e_i``), ``(rows, q·m)``, to their clusters' sums.
        Rows of weight 0 take no part (as in ``n``): a cluster of such rows only is no cluster."""
        if g is None:
            raise ValueError("cluster=True: the batches carry no cluster ids (the data module needs clusters=)")
        g = g.reshape(len(design), -1).to(torch.int64)
        if self.cr3:
            self._add_cluster_grams(design, g, wt)
        if wt is not None:
            positive = wt[:, 0] > 0
            if not bool(positive.all()):  # the pass syncs per batch anyway (the sums grow on the host)
                design, r, g = design[positive], r[positive], g[positive]
        keys = cluster_keys(g)
        for acc, ids in zip(self._cluster_sums(keys, design.shape[1] * r.shape[1]), keys, strict=True):
            acc.add_products(ids, design, r)

    def _cluster_sums(self, keys: list[torch.Tensor], width: int) -> list[ClusterSums]:
        """The pass's per-cluster score sums, one per clustering in ``keys``, made by the first batch."""
        sums = self._sums.setdefault("clusters", [ClusterSums(width) for _ in keys])
        if len(sums) != len(keys):
            raise ValueError("cluster=True: batches disagree on the number of cluster columns")
        return sums

    def _add_cluster_grams(self, design: torch.Tensor, g: torch.Tensor, wt: torch.Tensor | None) -> None:
        """CR3: add the rows' ``w_i x_i x_iᵀ`` to their clusters' Gram matrices, in the score sums' coordinates."""
        if g.shape[1] != 1:
            raise ValueError(f"cr3=True: CR3 is one-way here, and the batches carry {g.shape[1]} cluster columns; "
                             "two-way clustering has CR1 only")
        grams = self._sums.setdefault("grams", ClusterSums(design.shape[1] ** 2))
        grams.add_grams(g[:, 0], design, wt)
        check_cr3_budget(len(grams.ids), design.shape[1])  # this rank's clusters so far: refused before it grows

    def _end_cr3(self, gather: Gather, device: torch.device | None, q: int, m: int) -> None:
        """CR3's leave-one-cluster-out sums from every rank's Gram matrices and score sums, merged by cluster id."""
        grams = (self._sums.get("grams") or ClusterSums(q * q)).gathered(gather, device)
        scores = (self._sums.get("clusters") or [ClusterSums(q * m)])[0].gathered(gather, device)
        check_cr3_budget(len(grams.ids), q)
        assert np.array_equal(grams.ids, scores.ids)  # the same rows (of positive weight) went into both
        self.solution.cluster_jackknife = (len(grams.ids), jackknife(grams.sums.reshape(-1, q, q),
                                                                     scores.sums.reshape(-1, q, m)))

    def _end_clusters(self, gather: Gather, device: torch.device | None) -> None:
        s, bias = self.solution, self.design.bias
        q = 1 + int(s.keep[bias:].sum()) if bias else int(s.keep.sum())
        m = self.design.n_outputs
        # A rank without rows knows neither how many clusterings there are nor their sums: it asks the others.
        local = self._sums.get("clusters") or []
        ways = int(gather(torch.tensor([float(len(local))], dtype=torch.float64, device=device)).max())
        local = local or [ClusterSums(q * m) for _ in range(ways)]
        s.cluster_meats = []
        for acc in local:
            merged = self._whitened(acc.gathered(gather, device).sums.reshape(-1, q, m))
            s.cluster_meats.append((len(merged), np.einsum("git,gjt->tij", merged, merged)))
        if self.cr3:
            self._end_cr3(gather, device, q, m)

    def _whitened(self, scores: np.ndarray) -> np.ndarray:
        """Per-cluster scores ``(G, q, m)`` of the design ``d`` as those of ``K·d``, ``K = diag(1/√n, L⁻¹)`` (the
        bread is ``KᵀK``): their meat needs no sandwich by the inverse that squares the condition number."""
        s, bias = self.solution, self.design.bias
        out = scores.copy()
        if bias:
            out[:, 0] /= math.sqrt(s.n)
        k = scores.shape[1] - bias
        if k and len(scores):
            rhs = torch.from_numpy(np.ascontiguousarray(scores[:, bias:].transpose(1, 0, 2).reshape(k, -1)))
            solved = torch.linalg.solve_triangular(torch.from_numpy(s.chol), rhs, upper=False).numpy()
            out[:, bias:] = solved.reshape(k, len(scores), -1).transpose(1, 0, 2)
        return out

    # ------------------------------------------------------------------------------------ per pass
    def end_pass(self, gather: Gather = no_gather, device: torch.device | None = None) -> bool:
        """Merge this pass's sums across ranks and decide what comes next; True when the fit is done.

        Every rank must call it (it gathers), with ``gather`` stacking its tensor with every rank's.
        """
        self.passes += 1
        rows = int(gather(torch.tensor([float(self._rows)], dtype=torch.float64, device=device)).sum())
        if self.stage == "moments":
            self._end_moments(gather, device, rows)
        elif self.stage == "refine":
            self._end_refine(gather, device, rows)
        elif self.stage == "qr":
            self._end_qr(gather, device, rows)
        elif self.stage == "robust":
            self._check_rows(rows)
            meats = self._sums.get("meats")
            if meats is None and self.robust:  # a rank without rows
                size = 1 + int(self.solution.keep[self.design.bias:].sum()) if self.design.bias else \
                    int(self.solution.keep.sum())
                meats = torch.zeros(3, self.design.n_outputs, size, size, dtype=torch.float64, device=device)
            if self.robust:
                meats = gather(meats).sum(dim=0).cpu().numpy()
                meats[1:][~np.isfinite(meats[1:])] = math.nan  # HC2, HC3 with a leverage-1 row: undefined
                self.solution.meats = meats
            if self.cluster:
                self._end_score_tables()
                self._end_clusters(gather, device)
            self.stage = "done"
        self._begin()
        self._prepare()
        return self.done

    def _check_rows(self, rows: int) -> None:
        if self.expected_rows is not None and rows != self.expected_rows:
            raise ValueError(f"least squares: a pass saw {rows} rows, the training split has {self.expected_rows}; "
                             "every pass must see every row once (no limit_train_batches, max_steps or "
                             "overfit_batches)")
        first = getattr(self, "_pass1_rows", None)
        if self.solution is not None and first is not None and rows != first:
            raise ValueError(f"least squares: pass {self.passes} saw {rows} rows, pass 1 saw {first}; "
                             "every pass must see every row once")

    def _end_moments(self, gather: Gather, device: torch.device | None, rows: int) -> None:
        q = self.design.n_coefficients - self.design.bias + self.design.n_outputs
        local = self._moments.result()
        if local is None:
            local = CoMoments.of(torch.zeros(0, q, dtype=torch.float64, device=device))
        flat = gather(local.stacked())
        total = merge_in_order([CoMoments.unstack(row, q) for row in flat])
        self._check_rows(rows)
        self._pass1_rows = rows
        self._nobs, self._log_weights, self._least_weight = rows, 0.0, 1.0
        weighted = bool(gather(torch.tensor([float(self._weighted)], dtype=torch.float64, device=device)).max())
        if weighted:  # the total weight is the co-moments' count; the rows of positive weight are the observations
            counts = self._positive if self._positive is not None else \
                torch.zeros(2, dtype=torch.float64, device=device)
            counts = gather(counts).sum(dim=0).cpu().numpy()
            self._nobs, self._log_weights = int(counts[0]), float(counts[1])
            low = self._low if self._low is not None else torch.tensor(math.inf, dtype=torch.float64)
            self._least_weight = float(gather(low.reshape(1).to(device=device, dtype=torch.float64)).min())
            n = float(total.n.item())
            if not n > 0:
                raise ValueError("least squares: every weight is zero; nothing to fit")
        else:
            n = int(total.n.item())
        self._weighted_fit = weighted
        mean, mean_lo, comoment = total.mean.cpu().numpy(), total.mean_lo.cpu().numpy(), total.comoment.cpu().numpy()
        if not (np.isfinite(mean).all() and np.isfinite(comoment).all()):
            raise ValueError("least squares: the sums of squares overflow float64 (values beyond ~1e154 squared); "
                             "rescale the data")
        self._check_underflow(n, mean, comoment)
        candidates, in_doubt = self._screen(n, mean, comoment)
        if in_doubt:  # a column near R's threshold: a QR pass decides
            unit = np.sqrt(np.diag(self._system(n, mean, comoment)[0])[candidates])
            self._pending = (n, mean, mean_lo, comoment, candidates, unit)
            self.stage = "qr"
            return
        self.solution = self._solve(n, mean, mean_lo, comoment, candidates)
        self._next_after_solve()

    def _observations(self, s: _Solution) -> None:
        s.rows, s.log_weights, s.weighted = self._nobs, self._log_weights, self._weighted_fit

    def _check_underflow(self, n: int, mean: np.ndarray, comoment: np.ndarray) -> None:
        """Refuse a column too small for its products to keep float64's digits (the counterpart of the overflow
        check): the co-moments, and with them the coefficients and statistics, would be silently wrong."""
        with np.errstate(under="ignore"):
            size = np.hypot(np.sqrt(np.maximum(np.diag(comoment), 0.0) / max(n, 1)), mean)  # each column's RMS
        small = np.flatnonzero((size > 0) & (size < TINY))
        if len(small):
            j = int(small[0])
            names = self.design.names[self.design.bias:] + self.design.targets
            raise ValueError(f"least squares: column {names[j]!r} has values of size ~{size[j]:.1e} (below "
                             f"{TINY:.0e}), whose squares float64 holds with too few digits; rescale the data")

    def _end_qr(self, gather: Gather, device: torch.device | None, rows: int) -> None:
        self._check_rows(rows)
        n, mean, mean_lo, comoment, candidates, unit = self._pending
        c = int(candidates.sum())
        r = self._sums.get("r")
        if r is None or len(r) < c:  # few rows on this rank: pad to the common shape with zero rows
            r = torch.zeros(c, c, dtype=torch.float64, device=device) if r is None else \
                torch.cat([r, r.new_zeros(c - len(r), c)])
        r = torch.linalg.qr(gather(r).reshape(-1, c), mode="r").R.cpu().numpy()
        # Columns have unit spread here, so |R_jj| is the part of column j not explained by the columns before it.
        aliased = np.abs(np.diag(r)) < ALIAS_TOL
        keep_f = candidates.copy()
        keep_f[np.flatnonzero(candidates)[aliased]] = False
        kept = np.linalg.qr(r[:, ~aliased], mode="r")
        kept = kept * np.sign(np.diag(kept))[:, None]  # a Cholesky factor has a positive diagonal
        self.solution = self._solve(n, mean, mean_lo, comoment, keep_f, chol=kept.T)
        self._pending = None
        self._next_after_solve(force_refine=True)

    def _next_after_solve(self, force_refine: bool = False) -> None:
        s = self.solution
        # Pass 1's answer is final where its digits are: a condition number that costs fewer than ~5 of them in
        # the coefficients, and a residual sum of squares that does not cancel them (it is SST - explained).
        tss = np.diag(s.comoment)[-self.design.n_outputs:] if self.design.bias else \
            np.diag(s.comoment)[-self.design.n_outputs:] + s.n * s.mean[-self.design.n_outputs:] ** 2
        with np.errstate(over="ignore", divide="ignore"):
            cancel = np.max(tss / np.maximum(s.sse, np.finfo(np.float64).tiny)) if len(tss) else 1.0
        error = EPS * s.condition * max(1.0, float(cancel))
        polynomial = self.design.degree > 1
        if (force_refine or polynomial or error > REFINE_BELOW) and self.max_refinements > 0:
            self.stage = "refine"
        else:
            self.stage = "robust" if self.robust or self.cluster else "done"

    def _end_refine(self, gather: Gather, device: torch.device | None, rows: int) -> None:
        self._check_rows(rows)
        s = self.solution
        p, m = len(s.keep), self.design.n_outputs
        g = self._sums.get("g") or dd.from_float(torch.zeros(p, m, dtype=torch.float64, device=device))
        sse = self._sums.get("sse")
        sse = torch.zeros(m, dtype=torch.float64, device=device) if sse is None else sse
        g_all = dd.total((gather(g[0]), gather(g[1])), dim=0)
        s.sse = gather(sse).sum(dim=0).cpu().numpy()
        g_raw = (g_all[0].cpu(), g_all[1].cpu())
        # The gradient on the basis, Tᵀ g, in double-double (T's entries are exact in it), then the correction.
        tt = (self._t[0].T.contiguous(), self._t[1].T.contiguous())
        g_basis = dd.total(dd.mul((tt[0][:, :, None], tt[1][:, :, None]), (g_raw[0][None], g_raw[1][None])), dim=1)
        step = self._correction((g_basis[0] + g_basis[1]).numpy())
        before = self.raw_beta()
        s.beta = dd.add(s.beta, dd.from_float(torch.from_numpy(step)))
        after = self.raw_beta()
        change = np.abs((after[0] - before[0] + (after[1] - before[1])).numpy())
        size = float(np.max(change / np.maximum(np.abs(after[0].numpy()), np.finfo(np.float64).tiny),
                            initial=0.0))
        stalled = bool(s.history) and size > 0.5 * s.history[-1]
        s.history.append(size)
        if size <= 1e-30 or stalled or len(s.history) >= self.max_refinements:
            self.stage = "robust" if self.robust or self.cluster else "done"

    # ------------------------------------------------------------------------------------ algebra
    def _system(self, n: int, mean: np.ndarray, comoment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)``: the centred normal equations of the basis columns (uncentred without an intercept)."""
        f = self.design.n_coefficients - self.design.bias
        a, b = comoment[:f, :f], comoment[:f, f:]
        if not self.design.bias:
            a = a + n * np.outer(mean[:f], mean[:f])
            b = b + n * np.outer(mean[:f], mean[f:])
        return a, b

    def _screen(self, n: int, mean: np.ndarray, comoment: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(candidates, in doubt)``: the basis columns that are not constant, and whether one of them comes near
        R's aliasing threshold (then a QR pass decides). Raises ValueError for what cannot be estimated at all."""
        design = self.design
        p, f = design.n_coefficients, design.n_coefficients - design.bias
        if self._nobs <= p:
            weighted = " of positive weight" if self._weighted_fit else ""
            raise ValueError(f"least squares: {self._nobs} rows{weighted} for {p} coefficients; it needs more rows "
                             "than coefficients")
        a, _ = self._system(n, mean, comoment)
        diag = np.diag(a).copy()
        # Constant columns: spread at the rounding level of their values (with an intercept they are aliased with
        # it; without one only an all-zero column is). Weighted, the rows count at the least positive weight: a
        # column is constant if even rows of that weight could not spread it more. At the total weight, one row
        # weighted 1e30 made every other row's spread look like rounding ("every column is constant").
        floor = min(n, self._nobs * self._least_weight)
        constant = diag <= floor * (1e3 * EPS * np.abs(mean[:f])) ** 2 if design.bias else diag == 0
        if f and constant.all():
            names = design.names[design.bias:]
            raise ValueError(f"least squares: every column ({', '.join(names[:8])}{', …' if len(names) > 8 else ''}) "
                             + ("is constant; only the intercept could be estimated" if design.bias else
                                "is zero; nothing can be estimated"))
        candidates = ~constant
        idx = np.flatnonzero(candidates)
        unit = np.sqrt(diag[idx])
        try:
            chol = np.linalg.cholesky(a[np.ix_(idx, idx)] / np.outer(unit, unit))
            in_doubt = bool(len(idx)) and float(np.min(np.diag(chol))) ** 2 < QR_BELOW
        except np.linalg.LinAlgError:  # not even positive definite: an exact dependency
            in_doubt = True
        return candidates, in_doubt

    def _solve(self, n: int, mean: np.ndarray, mean_lo: np.ndarray, comoment: np.ndarray, keep_f: np.ndarray,
               chol: np.ndarray | None = None) -> _Solution:
        """The first solution from the co-moments (the means in double-double, ``mean + mean_lo``), over the basis
        columns in ``keep_f`` (``chol``: the factor of their unit-scaled system, if a QR pass made it)."""
        design = self.design
        p, f = design.n_coefficients, design.n_coefficients - design.bias
        a, b = self._system(n, mean, comoment)
        keep = np.concatenate([[True], keep_f]) if design.bias else keep_f
        k = np.flatnonzero(keep_f)
        unit = np.sqrt(np.diag(a)[k])
        if chol is None:
            chol = np.linalg.cholesky(a[np.ix_(k, k)] / np.outer(unit, unit))
        sv = np.linalg.svd(chol, compute_uv=False) if len(k) else np.ones(1)  # A's condition is their ratio²
        condition = float((sv[0] / sv[-1]) ** 2) if sv[-1] > 0 else math.inf
        coef = _chol_solve(chol, unit, b[k])  # (kept, m)
        full = np.zeros((p, design.n_outputs))
        full[np.flatnonzero(keep)[design.bias:] if design.bias else k] = coef
        beta = dd.from_float(torch.from_numpy(full))
        if design.bias:
            # ȳ - x̄ᵀβ in double-double: with an offset (x̄ = 1000, spread 0.001) the intercept is a small difference of
            # large terms, and float64 would round each of them to a unit of the offset's last place.
            t = torch.from_numpy
            products = dd.mul((t(mean[:f][k])[:, None], t(mean_lo[:f][k])[:, None]), dd.from_float(t(coef)))
            explained = dd.total(products, dim=0)
            intercept = dd.add((t(mean[f:]), t(mean_lo[f:])), (-explained[0], -explained[1]))
            beta[0][0], beta[1][0] = intercept
        sse = np.diag(comoment)[f:] - np.einsum("km,km->m", b[k], coef) if design.bias else \
            (np.diag(comoment)[f:] + n * mean[f:] ** 2) - np.einsum("km,km->m", b[k], coef)
        self._announce_aliased(keep, n)
        solution = _Solution(n, mean, comoment, keep, chol, unit, beta, np.maximum(sse, 0.0), condition,
                             mean_lo=mean_lo)
        self._observations(solution)
        return solution

    def _announce_aliased(self, keep: np.ndarray, n: int) -> None:
        aliased = [name for name, kept in zip(self.design.names, keep, strict=True) if not kept]
        if not aliased:
            return
        shown = ", ".join(aliased[:12]) + (f" … ({len(aliased) - 12} more)" if len(aliased) > 12 else "")
        verb = "is" if len(aliased) == 1 else "are"
        warnings.warn(f"least squares: {shown} {verb} aliased (constant, or a linear combination of the columns "
                      f"before {'it' if len(aliased) == 1 else 'them'}): not estimable, reported as null; rank "
                      f"{int(keep.sum())} of {len(keep)} coefficients", RankDeficientWarning, stacklevel=4)

    def _correction(self, g_basis: np.ndarray) -> np.ndarray:
        """The basis coefficients' correction from the gradient ``Bᵀ r`` (basis coordinates, intercept first)."""
        s, bias = self.solution, self.design.bias
        f = len(s.keep) - bias
        k = np.flatnonzero(s.keep[bias:])
        step = np.zeros_like(g_basis)
        if bias:
            mean = s.mean[:f][k]
            dc = _chol_solve(s.chol, s.unit, g_basis[1:][k] - np.outer(mean, g_basis[0]))
            step[1:][k] = dc
            step[0] = g_basis[0] / s.n - mean @ dc
        else:
            step[k] = _chol_solve(s.chol, s.unit, g_basis[k])
        return step

    def raw_beta(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw coefficients (intercept first), (p, m), in double-double: T @ basis coefficients."""
        beta = self.solution.beta
        return dd.total(dd.mul((self._t[0][:, :, None], self._t[1][:, :, None]), (beta[0][None], beta[1][None])),
                        dim=1)

    # ------------------------------------------------------------------------------------ results
    def coefficients(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(weight (m, n_inputs·degree), bias (m,) or None)`` in raw units, float64; aliased ones are 0 (they
        take no part in the fit)."""
        hi, lo = self.raw_beta()
        raw = (hi + lo).numpy().T.copy()  # (m, p)
        raw[:, ~self.solution.keep] = 0.0
        if self.design.bias:
            return raw[:, 1:].copy(), raw[:, 0].copy()
        return raw, None

    def _residual_scale(self) -> np.ndarray:
        """Per target, the residuals' RMS (1 for an exact fit): the unit the robust pass sums them in."""
        s = self.solution
        rms = np.sqrt(np.asarray(s.sse, dtype=np.float64) / max(s.n, 1))
        return np.where(rms > 0, rms, 1.0)

    def covariances(self, centred: bool = False) -> dict[str, np.ndarray]:
        """Unscaled and sandwich covariances of the raw coefficients, kept ones only, in long double (also as
        returned: a variance may lie beyond float64's range where its square root, the standard error, does not).

        ``{"unscaled": (p_k, p_k) (XᵀX)⁻¹, and with robust=True "HC0", "HC1", "HC2", "HC3": (m, p_k, p_k)}``.

        ``centred`` (with an intercept): of the intercept at :meth:`interval_centre` instead of the raw one, the
        other coefficients the same. A prediction's variance is then ``(d - c) C (d - c)ᵀ``, which does not cancel
        for columns far from zero as ``d C dᵀ`` does.
        """
        s, bias = self.solution, self.design.bias
        keep = s.keep
        f = len(keep) - bias
        k = np.flatnonzero(keep[bias:])
        ld = np.longdouble
        # Centred coordinates (intercept at the means, then the kept basis columns) -> raw coefficients.
        to_raw = self._t_ld[np.ix_(keep, keep)]
        if centred and not bias:
            raise ValueError("covariances(centred=True) needs an intercept")
        raw_columns = self.design.polynomial_degree is None
        if bias:  # to the raw intercept; centred raw columns: to the intercept at the float64 means (their lo part)
            shift = np.eye(1 + len(k), dtype=ld)
            shift[0, 1:] = -(s.mean_lo if centred and raw_columns else s.mean)[:f][k]
            to_raw = to_raw @ shift
        if centred and not raw_columns:  # raw powers: from the raw intercept to the one at interval_centre()
            to_centre = np.eye(len(to_raw), dtype=ld)
            to_centre[0, 1:] = self.interval_centre()[keep][1:]
            to_raw = to_centre @ to_raw
        # (Gram)⁻¹ in those coordinates: diag(1/n, A⁻¹) with an intercept, A⁻¹ without; A⁻¹ = D⁻¹L⁻ᵀL⁻¹D⁻¹.
        linv = np.linalg.solve(s.chol, np.eye(len(k))) if len(k) else np.zeros((0, 0))
        half = (linv / s.unit[None, :]).T.astype(ld)  # D⁻¹ L⁻ᵀ
        if bias:
            half = _block_diag(np.array([[1 / np.sqrt(s.n)]], dtype=ld), half)
        w = to_raw @ half
        # Kept in long double: a coefficient's variance can exceed float64's range while its standard error does not
        # (x in units of 1e-5 and y near 1e150: variances ~1e310); the table casts after the square root.
        out = {"unscaled": w @ w.T}
        # The meats were summed in whitened units (rows K·d, K = diag(1/√n, L⁻¹), of unit-sized columns; residuals
        # over their SD): the sandwich is w M wᵀ, in long double, whose range holds what float64's would not (data
        # at 1e77 or 1e-100).
        d = np.concatenate([[1.0], s.unit]) if bias else s.unit
        rs = self._residual_scale().astype(ld)
        dof = s.rows - int(keep.sum())
        if s.cluster_meats is not None:
            # CR1 with statsmodels' (and Stata's, fixest's default) factor G/(G-1)·(n-1)/(n-k) per clustering; two-way
            # is Cameron-Gelbach-Miller's V_a + V_b - V_ab, each with its own G, as statsmodels' cov_cluster_2groups.
            names = [*self.cluster_names, "clusters", "clusters"]
            for name, (groups, _) in zip(names, s.cluster_meats[:2], strict=False):
                if groups < 2:  # G - 1 = 0 degrees of freedom: no clustered error exists (statsmodels gives NaN)
                    raise ValueError(f"clusters {name!r}: {groups} cluster among the rows fitted; clustered errors "
                                     "need at least 2 (G - 1 degrees of freedom)")
            cr1 = 0
            for (groups, meat), sign in zip(s.cluster_meats, (1, 1, -1), strict=False):
                factor = ld(groups / (groups - 1) * (s.rows - 1) / dof) if groups > 1 and dof > 0 else ld(math.nan)
                cr1 = cr1 + sign * factor * np.stack([w @ (meat[t].astype(ld) * rs[t] ** 2) @ w.T
                                                      for t in range(self.design.n_outputs)])
            out["CR1"] = cr1
            out["n_clusters"] = [groups for groups, _ in s.cluster_meats[:2]]
        if s.cluster_jackknife is not None:
            # CR3 (MacKinnon, Nielsen and Webb's CV3): (G-1)/G Σ_g (β₍₋g₎ - β)(β₍₋g₎ - β)ᵀ, the changes summed in
            # scaled units: back to raw coefficients by D⁻¹ (the columns' units) and the residuals' scale.
            groups, spread = s.cluster_jackknife
            w3 = to_raw / d.astype(ld)[None, :]
            out["CR3"] = np.stack([w3 @ (spread[t].astype(ld) * rs[t] ** 2) @ w3.T * ld((groups - 1) / groups)
                                   for t in range(self.design.n_outputs)])
        if s.meats is not None:
            for name, meat, factor in (("HC0", 0, 1.0), ("HC1", 0, s.rows / dof if dof > 0 else math.nan),
                                       ("HC2", 1, 1.0), ("HC3", 2, 1.0)):
                out[name] = np.stack([(w @ (s.meats[meat, t].astype(ld) * rs[t] ** 2) @ w.T)
                                      * ld(factor) for t in range(self.design.n_outputs)])
        return out

    def interval_centre(self) -> np.ndarray:
        """``(p,)``: the raw design-row point :meth:`covariances` ``(centred=True)`` is centred on (intercept first:
        0). Raw columns: their means, in float64 (the numbers the centred design subtracts); a polynomial basis: the
        powers ``c, c², …`` of each input's centre (the middle of its range)."""
        from lr_lightning.core.intervals import design_rows

        design, f = self.design, len(self.solution.keep) - self.design.bias
        if design.polynomial_degree is None:
            return np.concatenate([[0.0], self.solution.mean[:f]])
        centre = np.asarray([design.centre or [0.0] * design.n_inputs], dtype=np.float64)
        return np.concatenate([[0.0], design_rows(centre, design.polynomial_degree, False)[0]])  # the rows' order

    def statistics(self) -> dict[str, dict[str, Any]]:
        """The regression table per target (:func:`lr_lightning.exact.statistics.regression_statistics`)."""
        from lr_lightning.exact.statistics import regression_statistics

        s = self.solution
        f = len(s.keep) - self.design.bias
        m = self.design.n_outputs
        tss = np.diag(s.comoment)[f:] if self.design.bias else np.diag(s.comoment)[f:] + s.n * s.mean[f:] ** 2
        hi, lo = self.raw_beta()
        coef = (hi + lo).numpy()
        cov = self.covariances()
        # Residuals below the data's own rounding (|r| ~ eps·|y|) are an exact fit: NIST's Wampler1 certifies a
        # residual SD of 0 and an infinite F, and double-double residuals of 1e-26 would say otherwise.
        sse = np.where(s.sse <= EPS**2 * tss, 0.0, s.sse)
        condition = self.condition_number()
        constant = self.design.bias or self._has_constant()
        if constant and not self.design.bias:
            # statsmodels' k_constant: a constant in the columns' span makes R², adjusted R² and F about the
            # constant-only model, so the total sum of squares is centred as with an intercept.
            tss = np.diag(s.comoment)[f:]
        out = {}
        for t, name in enumerate(self.design.targets):
            # An exact fit's residuals are 0, and so are its sandwich covariances (not the rounding's 1e-17).
            robust = {key: cov[key][t] * (0.0 if sse[t] == 0 else 1.0) for key in ("HC0", "HC1", "HC2", "HC3")
                      if key in cov} or None
            clustered = None if "CR1" not in cov else {"CR1": cov["CR1"][t] * (0.0 if sse[t] == 0 else 1.0),
                                                        "n_clusters": cov["n_clusters"], "names": self.cluster_names}
            if "CR3" in cov:
                clustered["CR3"] = cov["CR3"][t] * (0.0 if sse[t] == 0 else 1.0)
            out[name] = regression_statistics(
                names=self.design.names, coef=coef[:, t], keep=s.keep, unscaled_cov=cov["unscaled"],
                sse=float(sse[t]), tss=float(tss[t]), n=s.rows, bias=self.design.bias, robust=robust,
                condition_number=condition, constant=constant,
                log_weights=s.log_weights if s.weighted else None, clustered=clustered)
        assert len(out) == m
        return out

    def _has_constant(self) -> bool:
        """Whether a model without an intercept has a constant in its columns' span all the same, as statsmodels
        decides ``k_constant``: a constant column (a column of ones given as data), or columns that add up to a
        constant (dummies of every level). Either way the kept columns' centred co-moment matrix is singular: a kept
        column has no spread beyond the rounding of its values, or the Cholesky factor of their correlation matrix
        has a pivot below the aliasing tolerance (R's, the one that decided which columns are kept)."""
        s = self.solution
        k = np.flatnonzero(s.keep)  # no intercept: the design's columns are the first len(keep) co-moments
        if not len(k):
            return False
        spread, mean = np.diag(s.comoment)[k], s.mean[k]
        if np.any(spread <= s.n * (1e3 * EPS * mean) ** 2):  # constant to within the rounding of its values
            return True
        unit = np.sqrt(spread)
        try:
            chol = np.linalg.cholesky(s.comoment[np.ix_(k, k)] / np.outer(unit, unit))
        except np.linalg.LinAlgError:  # not positive definite: the centred columns are dependent
            return True
        return bool(np.min(np.diag(chol)) < ALIAS_TOL)

    def condition_number(self) -> float:
        """statsmodels' condition number, ``sqrt(λmax/λmin)`` of XᵀX for the raw design (the intercept's column of
        ones included), from a square-root factor of XᵀX rebuilt from the co-moments: its singular values are those
        of X, so only one condition number's worth of digits is lost, not two. Infinite when a column is aliased:
        the design is singular, and the ratio of its rounded singular values would be an arbitrary large number."""
        s, bias = self.solution, self.design.bias
        if not s.keep.all():
            return math.inf
        f = len(s.keep) - bias
        lam, vec = np.linalg.eigh(s.comoment[:f, :f])
        root = np.sqrt(np.clip(lam, 0.0, None))[:, None] * vec.T  # rootᵀ root = C
        mean = s.mean[:f][None, :] * math.sqrt(s.n)
        if bias:
            factor = np.block([[np.full((1, 1), math.sqrt(s.n)), mean], [np.zeros((f, 1)), root]])
        else:
            factor = np.vstack([root, mean])  # C + n m mᵀ
        # Basis coefficients = T⁻¹ raw ones: the raw design is the basis times T⁻¹.
        factor = factor @ np.linalg.inv(self._t_ld.astype(np.float64))
        sv = np.linalg.svd(factor, compute_uv=False)
        return float(sv[0] / sv[-1]) if sv[-1] > 0 else math.inf


def raw_transform(design: Design) -> tuple[tuple[torch.Tensor, torch.Tensor], np.ndarray]:
    """``T`` (:meth:`Design.to_raw`) as a double-double pair of float64 tensors and in long double."""
    if design.polynomial_degree is None:  # the raw columns are the basis: T is the identity (no Fractions)
        eye = np.eye(design.n_coefficients)
        return (torch.from_numpy(eye), torch.zeros(eye.shape, dtype=torch.float64)), eye.astype(np.longdouble)
    exact = design.to_raw()
    try:
        hi = [[float(v) for v in row] for row in exact]
    except OverflowError:  # Python's own error, from a Fraction: an input's powers reach beyond float64
        raise ValueError(f"least squares: the inputs' powers up to degree {design.degree} reach beyond float64's "
                         "range (an input spans values too small or too large for them); rescale the inputs") \
            from None
    lo = [[float(v - Fraction(h)) for v, h in zip(row, hrow, strict=True)] for row, hrow in zip(exact, hi, strict=True)]
    t_ld = np.array([[np.longdouble(v.numerator) / np.longdouble(v.denominator) for v in row] for row in exact],
                    dtype=np.longdouble)
    return (torch.tensor(hi, dtype=torch.float64), torch.tensor(lo, dtype=torch.float64)), t_ld


def raw_design(x: torch.Tensor, degree: int) -> dd.DD:
    """Raw columns ``x_j^m`` (m = 1..degree, input by input) in double-double: exact powers, not float64's."""
    his, los = [], []
    for j in range(x.shape[1]):
        power = dd.from_float(x[:, j])
        his.append(power[0]), los.append(power[1])
        for _ in range(2, degree + 1):
            power = dd.mul(power, dd.from_float(x[:, j]))
            his.append(power[0]), los.append(power[1])
    if not his:
        return x.new_zeros(len(x), 0), x.new_zeros(len(x), 0)
    return torch.stack(his, dim=1), torch.stack(los, dim=1)


def residuals(raw: dd.DD, y: torch.Tensor, beta: dd.DD, bias: bool) -> dd.DD:
    """``y - (intercept + raw @ weights)`` in double-double; ``beta`` (p, m) holds the intercept first if ``bias``."""
    weights = (beta[0][int(bias):], beta[1][int(bias):])
    if raw[0].shape[1]:
        products = dd.mul((raw[0][:, :, None], raw[1][:, :, None]), (weights[0][None], weights[1][None]))
        pred = dd.total(products, dim=1)  # (rows, m)
    else:
        pred = dd.from_float(y.new_zeros(y.shape))
    if bias:
        pred = dd.add(pred, (beta[0][0].expand_as(pred[0]), beta[1][0].expand_as(pred[1])))
    return dd.add(dd.from_float(y), (-pred[0], -pred[1]))


def _block_diag(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1]), dtype=np.result_type(a, b))
    out[:a.shape[0], :a.shape[1]], out[a.shape[0]:, a.shape[1]:] = a, b
    return out


def _chol_solve(chol: np.ndarray, unit: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``A⁻¹ rhs`` with ``A = D L Lᵀ D``."""
    if not len(unit):
        return np.zeros_like(rhs)
    z = np.linalg.solve(chol, rhs / unit[:, None])
    return np.linalg.solve(chol.T, z) / unit[:, None]


# ---------------------------------------------------------------------------------------- over arrays
class LeastSquaresResult(tuple):
    """``(weight, bias)``, so that ``weight, bias = least_squares(...)`` unpacks it, plus what the solve found out.

    Attributes:
        weight: ``(n_outputs, n_features)``, in raw powers of the raw inputs; aliased coefficients are 0.
        bias: ``(n_outputs,)``, or ``None`` without an intercept.
        rank: the number of estimated coefficients; ``n_coefficients`` when none is aliased.
        n_coefficients: the number of coefficients, the intercept included.
        aliased: the names of the aliased (not estimable) coefficients (``"x1^2"``, …), in coefficient order.
        statistics: the regression table per target, as ``LeastSquaresModule.statistics``.
    """

    rank: int
    n_coefficients: int
    aliased: tuple[str, ...]
    statistics: dict[str, dict[str, Any]]

    def __new__(cls, weight: np.ndarray, bias: np.ndarray | None, rank: int, n_coefficients: int,
                aliased: tuple[str, ...] = (), statistics: dict[str, dict[str, Any]] | None = None
                ) -> LeastSquaresResult:
        self = super().__new__(cls, (weight, bias))
        self.rank, self.n_coefficients, self.aliased = rank, n_coefficients, tuple(aliased)
        self.statistics = statistics or {}
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickle and copy: a tuple subclass with a __new__ of its own
        return (*self, self.rank, self.n_coefficients, self.aliased, self.statistics)

    @property
    def weight(self) -> np.ndarray:
        return self[0]

    @property
    def bias(self) -> np.ndarray | None:
        return self[1]

    @property
    def full_rank(self) -> bool:
        return self.rank == self.n_coefficients


def run_passes(solver: LeastSquaresSolver, batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
               gather: Gather = no_gather) -> LeastSquaresSolver:
    """Drive ``solver`` over ``batches()`` (a fresh iterator per pass) until it is done."""
    device = None
    while not solver.done:
        for x, y, *w in batches():  # (x, y) or, weighted, (x, y, w)
            device = x.device
            solver.update(x, y, *w)
        solver.end_pass(gather, device)
    return solver


def least_squares(x: Any, y: Any, bias: bool = True, polynomial_degree: int | None = None,
                  max_refinements: int = 6, chunk_rows: int = 1 << 16, *, names: list[str] | None = None,
                  robust: bool = False, weights: Any = None) -> LeastSquaresResult:
    """The least-squares fit ``y ≈ features(x) @ weight.T + bias``, exact to float64, over arrays.

    The same passes as :class:`~lr_lightning.exact.least_squares_module.LeastSquaresModule` runs under the Trainer,
    over chunks of ``chunk_rows`` rows (memory stays O(chunk_rows × features)). ``features`` is the identity or the
    polynomial expansion of :func:`polynomial_features`. Aliased coefficients (R's ``lm``: a constant column, one
    that is a linear combination of the columns before it) are 0 in ``weight``, named in ``.aliased`` and in one
    :class:`RankDeficientWarning`; the others are estimated without them.

    Args:
        x: ``(n_samples, n_inputs)`` real numbers (or ``(n_samples,)``: one input).
        y: ``(n_samples, n_outputs)`` real numbers (or ``(n_samples,)``: one output).
        bias: fit an intercept.
        polynomial_degree: expand each input column into its powers up to this degree (``None``: as it is).
        max_refinements: at most this many refinement passes.
        chunk_rows: rows per chunk.
        names: the input columns' names (default: a pandas DataFrame's column names, else ``x0``, ``x1``, …);
            powers are named ``x1^2``. The targets are named after ``y``'s columns (a DataFrame) or name (a Series),
            else ``y`` (``y0``, ``y1``, … for several); ``.statistics`` is keyed by them.
        robust: also compute HC0-HC3 standard errors (``.statistics``).
        weights: ``(n_samples,)`` weights >= 0: weighted least squares, with statsmodels' ``WLS`` statistics
            (:func:`check_weights` says what is refused). Rows of weight 0 take no part: they are left out of ``n``
            and the degrees of freedom, as R's ``lm`` does (statsmodels keeps them in ``nobs``, and its
            log-likelihood is then -inf).

    Returns:
        ``(weight, bias)`` as a :class:`LeastSquaresResult`, which also carries ``rank``, ``n_coefficients``,
        ``aliased`` and ``statistics``.

    Raises:
        ValueError: no samples, a non-finite, complex or non-numeric value (the argument, row and column are
            named), x and y of different lengths, no more rows than coefficients, every column constant, a masked
            array with masked values, or a bad ``polynomial_degree``, ``names`` or ``chunk_rows``.
    """
    check_degree(polynomial_degree)
    if not isinstance(bias, (bool, np.bool_)):
        raise ValueError(f"bias must be True or False, got {bias!r}")
    if not (isinstance(chunk_rows, int) and chunk_rows >= 1):
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if names is None:
        names = labels(x)  # a DataFrame's columns
    output_names = labels(y)
    x = _columns(x, "x", validate=False)
    if names is not None and len(names) != x.shape[1]:
        raise ValueError(f"names: {len(names)} names for {x.shape[1]} columns of x")
    names = [str(n) for n in names] if names is not None else [f"x{j}" for j in range(x.shape[1])]
    _validate(x, "x", names)
    y = _columns(y, "y")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}; they must match row for row")
    if weights is not None:
        weights = check_weights(weights, len(x))
    centre = scale = None
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    with np.errstate(over="ignore"):
        too_wide = ~np.isfinite(hi - lo)
    if too_wide.any():  # its spread (and the sums of squares) would be inf
        j = int(np.argmax(too_wide))
        raise ValueError(f"x: column {names[j]!r} spans {lo[j]:g} to {hi[j]:g}, a range float64 cannot hold; "
                         "rescale it")
    if polynomial_degree is not None:
        c, s = scaling(x, bool(bias))
        centre, scale = tuple(c.tolist()), tuple(s.tolist())
    design = Design(x.shape[1], y.shape[1], bool(bias), polynomial_degree, centre, scale, tuple(names),
                    tuple(output_names) if output_names and len(output_names) == y.shape[1] else None)
    solver = LeastSquaresSolver(design, robust=robust, max_refinements=max_refinements, expected_rows=len(x))

    def chunk(a: np.ndarray, i: int) -> torch.Tensor:
        # A read-only array (a pandas frame's values under copy-on-write, np.load's mmap_mode="r") would make torch
        # warn that the tensor could write to it: such a chunk is copied, one chunk at a time, not the whole array.
        part = np.asarray(a[i:i + chunk_rows])
        return torch.from_numpy(part if part.flags.writeable else part.copy())

    def batches() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(x), chunk_rows):
            if weights is None:
                yield chunk(x, i), chunk(y, i)
            else:
                yield chunk(x, i), chunk(y, i), chunk(weights, i)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RankDeficientWarning)
        run_passes(solver, batches)
    for w in caught:  # re-issued here, so that the warning points at the caller's line
        warnings.warn(w.message, w.category, stacklevel=2)
    weight, intercept = solver.coefficients()
    if not (np.isfinite(weight).all() and (intercept is None or np.isfinite(intercept).all())):
        raise ValueError("least squares: the solution overflows float64 (are x and y in sensible units?)")
    keep = solver.solution.keep
    aliased = tuple(n for n, kept in zip(design.names, keep, strict=True) if not kept)
    return LeastSquaresResult(weight, intercept, int(keep.sum()), design.n_coefficients, aliased,
                              solver.statistics())


def fit_statistics(x: Any, y: Any, weight: np.ndarray, bias: np.ndarray | None,
                   polynomial_degree: int | None = None, rank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Residual standard deviation and R² of any fit (a trained model's too), per output, with residuals in
    double-double.

    R² is centred (``1 - SSE / Σ(y - ȳ)²``) with an intercept and uncentred (``1 - SSE / Σy²``) without one,
    as NIST reports it. NaN means "undefined", never an error: the residual SD is NaN when no degrees of freedom
    are left (samples <= rank: an exact fit says nothing about the noise), and R² is NaN where the target has no
    variation to explain.

    Args:
        x, y: the data the fit was made on, as for :func:`least_squares`.
        weight, bias: the fit, as :func:`least_squares` returns it.
        polynomial_degree: as for :func:`least_squares`.
        rank: the rank of the design (``least_squares(...).rank``); default: every coefficient counts.
    """
    x, y = _columns(x, "x"), _columns(y, "y")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}; they must match row for row")
    weight = np.asarray(weight, dtype=np.float64)
    beta = np.concatenate([np.asarray(bias, dtype=np.float64)[None], weight.T]) if bias is not None else weight.T
    x64, y64 = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(y.astype(np.float64))
    r = residuals(raw_design(x64, polynomial_degree or 1), y64,
                  dd.from_float(torch.from_numpy(np.ascontiguousarray(beta))), bias is not None)
    sse = ((r[0] + r[1]) ** 2).sum(dim=0).numpy()
    y64 = y.astype(np.float64)
    total = ((y64 - y64.mean(axis=0)) ** 2).sum(axis=0) if bias is not None else (y64**2).sum(axis=0)
    dof = len(y) - (weight.shape[1] + (bias is not None) if rank is None else rank)
    sd = np.sqrt(sse / dof) if dof > 0 else np.full(sse.shape, np.nan)
    r2 = 1 - sse / np.where(total > 0, total, 1)
    return sd.astype(np.float64), np.where(total > 0, r2, np.nan).astype(np.float64)
