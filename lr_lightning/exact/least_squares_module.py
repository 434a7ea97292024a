"""``LeastSquaresModule``: the exact least-squares fit and its statistics, trained by ``Trainer.fit``.

Least squares needs no gradient steps: its sufficient statistics are sums over rows, and sums are what a Lightning
epoch visits once and what DDP merges. So the module runs :class:`~lr_lightning.exact.solver.LeastSquaresSolver`'s
passes as epochs (pass 1: co-moments; further passes only where they buy digits, or for ``robust=True``), on any of
the package's data modules (in memory, ``.npy`` shards, Parquet), on any accelerator, across any number of DDP
processes and nodes, and stops the Trainer itself when done.

After ``fit``, ``module.model`` is a float64 :class:`~lr_lightning.core.networks.LinearRegression` holding the
solution on the data's features, and the module applies the feature map in ``forward`` as ``RegressionModule``
does: ``module(x_raw)`` predicts in original units, and its checkpoints load with
``RegressionModule.load_from_checkpoint`` (``scripts/predict.py``, ``evaluate.py``). ``module.statistics`` holds
the regression table per target (:func:`~lr_lightning.exact.statistics.regression_statistics`).

>>> import lightning as L, numpy as np
>>> from lr_lightning import RegressionDataModule
>>> x = np.arange(20.0)[:, None]
>>> dm = RegressionDataModule(x, 3 * x[:, 0] + 1 + np.sin(x[:, 0]), val_fraction=0, dtype="float64")
>>> module = LeastSquaresModule()
>>> L.Trainer(max_epochs=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
...           enable_model_summary=False).fit(module, datamodule=dm)
>>> s = module.statistics["y"]
>>> s["names"], [round(c, 4) for c in s["coef"]], s["df_resid"]
(['intercept', 'x0'], [1.2388, 2.9753], 18)
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer
from torchmetrics import MetricCollection

from lr_lightning.core.features import FeatureMap
from lr_lightning.core.intervals import CHECKPOINT_KEY, bounds, check_level, mean_stderr
from lr_lightning.core.networks import LinearRegression
from lr_lightning.core.quiet import quiet_lightning
from lr_lightning.core.regression_module import log_metrics, regression_metrics
from lr_lightning.exact.data import raw_loader, raw_split
from lr_lightning.exact.solver import Design, LeastSquaresSolver, RankDeficientWarning, no_gather
from lr_lightning.exact.statistics import format_table

quiet_lightning()

Batch = tuple[torch.Tensor, torch.Tensor]
# The size of one batch of a pass, in float64 bytes of [basis, targets] (64 MiB: ~200,000 rows of 40 columns). The
# CPU passes work through a batch in cache-sized sub-blocks (exact/gram.py), so a batch needn't fit in a cache, and
# Lightning's cost per batch (~0.5 ms) is paid 10 times for 2M rows, not 80.
PASS_BYTES = 64 << 20
# The table's figures shown as hparams metrics in TensorBoard.
FIGURES = ("r2", "adj_r2", "residual_sd", "f_stat", "log_likelihood", "aic", "bic", "condition_number")


class LeastSquaresModule(L.LightningModule):
    """The exact least-squares fit of a linear model with an intercept (``bias=True``) or without, with classic and,
    with ``robust=True``, heteroscedasticity-consistent (HC0-HC3) standard errors.

    ``Trainer.fit(module, datamodule=dm)`` with one of the package's data modules: the module takes the data's
    feature map (polynomial degree), sizes and names from ``dm.module_inputs()`` and asks it for raw rows
    (``dataloader_for``: :mod:`lr_lightning.exact.data`), since the refinement passes need the raw design. Any
    ``max_epochs`` at least the number of passes it takes works (1 for well-conditioned data, a few more for
    ill-conditioned or polynomial designs, one more for ``robust``); too few is a ValueError naming the number.

    Args:
        bias: fit an intercept; it must agree with the data module's ``bias`` (which centres or not).
        robust: one more pass for the leverages: ``statistics[target]["stderr_hc"]`` gets HC0-HC3 standard errors.
        max_refinements: at most this many refinement passes.
        cluster: cluster-robust (CR1) standard errors by the data module's ``clusters`` (one column, or two for
            two-way clustering), from the same extra pass: ``statistics[target]`` gets ``stderr_cluster``,
            ``n_clusters``, and ``t_cluster``, ``p_cluster``, ``ci95_cluster`` with ``G - 1`` degrees of freedom
            (docs/weights-and-clusters.md).
        cr3: with ``cluster=True`` and one cluster column, also CR3 (cluster jackknife) standard errors:
            ``statistics[target]["stderr_cluster"]["CR3"]`` and ``coefficient_covariance(cov_type="CR3")``; t, p
            and intervals stay CR1's. Keeps one q×q matrix per cluster, refused above
            :data:`~lr_lightning.exact.clusters.CR3_BYTES` (docs/weights-and-clusters.md, "CR3").
    """

    def __init__(self, bias: bool = True, robust: bool = False, max_refinements: int = 6,
                 cluster: bool = False, cr3: bool = False) -> None:
        super().__init__()
        for name, value in (("bias", bias), ("robust", robust), ("cluster", cluster), ("cr3", cr3)):
            if not isinstance(value, bool):
                raise ValueError(f"LeastSquaresModule: {name} must be true or false, got {_shown(value)}")
        if cr3 and not cluster:
            raise ValueError("LeastSquaresModule(cr3=True): CR3 standard errors are clustered ones; give "
                             "cluster=True too (fit.py: --data.clusters NAME)")
        if isinstance(max_refinements, bool) or not isinstance(max_refinements, int) or max_refinements < 0:
            raise ValueError(f"LeastSquaresModule: max_refinements must be a whole number >= 0, got "
                             f"{_shown(max_refinements)}")
        self.save_hyperparameters()
        self.automatic_optimization = False  # no optimizer: the passes are sums, and the solve is closed-form
        self.model: LinearRegression | None = None
        self.feature_map: FeatureMap | None = None
        self.solver: LeastSquaresSolver | None = None
        self.statistics: dict[str, dict[str, Any]] | None = None
        self.output_names: list[str] = []
        self.pass_rows: int | None = None
        self.normalization: dict[str, Any] | None = None
        self.val_metrics: MetricCollection | None = None
        self.test_metrics: MetricCollection | None = None

    # ------------------------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        if self.model is not None and not (stage == "fit" and self.solver is not None and self.solver.done):
            return  # validate/test/predict use the fit as it is
        # A first fit, or a fitted module fitted again (on the same or other data): it starts afresh.
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None or not hasattr(dm, "module_inputs"):
            raise ValueError("LeastSquaresModule takes its data from one of lr_lightning's data modules: "
                             "Trainer.fit(module, datamodule=dm) (it reads the feature map, sizes and names there)")
        design = self.check_data(dm)
        inputs = dm.module_inputs()
        spec = inputs["normalization"]
        # Rows per batch in a pass (read by the data module's loaders): blocks of about PASS_BYTES, since a sum's
        # result doesn't depend on how its rows are batched.
        q = design.n_coefficients + design.n_outputs
        self.pass_rows = max(1024, PASS_BYTES // (8 * q))
        self.solver = LeastSquaresSolver(design, robust=self.hparams.robust,
                                         max_refinements=self.hparams.max_refinements, expected_rows=dm.n_train,
                                         cluster=self.hparams.cluster, cr3=self.hparams.cr3)
        self.solver.cluster_names = list(getattr(dm, "cluster_names", []))
        self.normalization, self.output_names = spec, list(inputs["output_names"])
        self.feature_map = FeatureMap(spec) if spec else None
        self.model = LinearRegression(dm.n_features, dm.n_outputs, self.hparams.bias).double()
        with torch.no_grad():  # nothing is fitted yet: predictions of zero, not of random weights
            for p in self.model.parameters():
                p.zero_()
        metrics = regression_metrics(dm.n_outputs)
        self.val_metrics, self.test_metrics = metrics.clone(prefix="val/"), metrics.clone(prefix="test/")

    def check_data(self, dm: Any) -> Design:
        """What this fit cannot use in data module ``dm``, as a ValueError before any pass (the command line calls it
        before it creates the run's folder): a ``bias`` that differs, non-finite values (streamed data: one scan),
        too few rows, an all-constant design, a ``drop_last`` that would leave rows out of every pass. Returns the
        design the solver fits."""
        if dm.bias != self.hparams.bias:
            raise ValueError(f"LeastSquaresModule(bias={self.hparams.bias}) but the data module has "
                             f"bias={dm.bias}: give both the same (it decides whether the data is centred)")
        inputs = dm.module_inputs()  # fits the feature map; streamed data is scanned for non-finite values here
        spec = inputs["normalization"]
        degree = spec["polynomial_degree"] if spec else None
        design = Design(dm.n_inputs, dm.n_outputs, self.hparams.bias, degree,
                        tuple(spec["centre"]) if degree else None, tuple(spec["scale"]) if degree else None,
                        tuple(map(str, dm.feature_names)), tuple(map(str, dm.target_names)))
        if dm.n_train <= design.n_coefficients:
            raise ValueError(f"least squares: {dm.n_train} training rows for {design.n_coefficients} coefficients; "
                             "it needs more rows than coefficients")
        if not dm.table.streamed and design.n_inputs:
            # In memory, an all-constant design is known before any pass (streamed data: after the first). In the
            # numbers the passes will be served (a column constant only in float32 is no constant column).
            x = raw_split(dm, "train")[0]
            if self.hparams.bias and _all_rows_equal(x):
                names = ", ".join(design.names[1:9]) + (", …" if len(design.names) > 9 else "")
                raise ValueError(f"least squares: every column ({names}) is constant; only the intercept could be "
                                 "estimated")
        if self.hparams.cluster and getattr(dm, "clusters", None) is None and not getattr(dm, "cluster_names", None):
            raise ValueError("LeastSquaresModule(cluster=True): the data module has no cluster column; give it "
                             "clusters= (fit.py: --data.clusters NAME, or [A,B] for two-way)")
        if self.hparams.cr3 and len(getattr(dm, "cluster_names", [])) > 1:
            raise ValueError(f"LeastSquaresModule(cr3=True): CR3 is one-way here, and the data module clusters by "
                             f"{len(dm.cluster_names)} columns ({', '.join(map(str, dm.cluster_names))}); two-way "
                             "clustering has CR1 only")
        _check_drop_last(dm, dm.world_size)
        return design

    def check_trainer(self, trainer: L.Trainer, dm: Any = None) -> None:
        """The Trainer settings this fit cannot run under, as a :class:`TrainerSettingError` (a ValueError) naming the
        setting, before anything runs: Lightning's own checks, or a pass cut short, would say it later and less
        plainly. ``dm``: the data module, for ``drop_last`` under this Trainer's number of processes."""
        _check_trainer(trainer, 1 + (self.hparams.robust or self.hparams.cluster))
        if dm is not None and hasattr(dm, "drop_last"):
            _check_drop_last(dm, trainer.world_size)

    def configure_callbacks(self) -> list[L.Callback]:
        # The last hook before Lightning checks the Trainer's configuration itself (gradient clipping and accumulation
        # are a MisconfigurationException there, about "manual optimization", which is not what the user chose).
        if self.trainer.state.fn == "fit":
            self.check_trainer(self.trainer, self.trainer.datamodule)
        return []

    def dataloader_for(self, datamodule: Any, split: str) -> Any:
        # Asked by RegressionDataModule's *_dataloader hooks: raw rows, not mapped features (exact/data.py says why).
        return raw_loader(datamodule, split, self.pass_rows, clusters=self.hparams.cluster and split == "train")

    def configure_optimizers(self) -> Any:
        return None  # nothing to optimize (Lightning's note about it is silenced in lr_lightning.core.quiet)

    def on_train_start(self) -> None:
        self.solver.to(self.device)  # the basis's constants on the device before the first batch, not in it

    # ------------------------------------------------------------------------------------ passes
    def training_step(self, batch: Batch, batch_idx: int) -> None:
        x, y, *w = batch  # (x, y), or (x, y, w) from a data module with weights: weighted least squares
        g = w.pop() if self.hparams.cluster else None  # clustered: the rows' cluster codes come last
        if y.ndim == 1:
            raise ValueError(f"targets must be (n_samples, n_outputs), got shape {tuple(y.shape)}")
        # In float64 whatever the Trainer's precision: a "-mixed" precision's autocast must not touch the sums.
        with torch.autocast(x.device.type, enabled=False):
            self.solver.update(x, y, *(w or [None]), g)
        if batch_idx + 1 == self.trainer.num_training_batches:
            # The pass ends here, before this epoch's validation: a finished fit is validated at once.
            self._end_pass()

    def _end_pass(self) -> None:
        with warnings.catch_warnings():
            if not self.trainer.is_global_zero:  # every rank solves the same system: rank 0 names aliased columns
                warnings.simplefilter("ignore", RankDeficientWarning)
            done = self.solver.end_pass(_gather if self.trainer.world_size > 1 else no_gather, self.device)
        if done:
            self._finish()

    def on_train_epoch_end(self) -> None:
        if self.solver.done:
            return
        if self.trainer.max_epochs is not None and self.current_epoch + 1 >= self.trainer.max_epochs >= 0:
            extra = self.hparams.robust or self.hparams.cluster
            raise TrainerSettingError("max_epochs", f"LeastSquaresModule needs more passes over the data than "
                                      f"max_epochs={self.trainer.max_epochs} (up to {self.solver.max_passes} here: 1, "
                                      f"up to {self.hparams.max_refinements} refinements"
                                      f"{', 1 for robust or clusters' if extra else ''}); raise max_epochs")

    def on_train_end(self) -> None:
        # Stopped before the solve finished (max_time ran out, or a callback stopped the Trainer): an unsolved module
        # must not pass for a fitted one (its weights are zeros, its statistics none).
        if self.solver is not None and not self.solver.done:
            timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
            if timer is not None and timer.time_remaining() is not None and timer.time_remaining() <= 0:
                raise TrainerSettingError("max_time", f"max_time={_duration(timer)}: ran out in pass "
                                          f"{self.solver.passes + 1}, before the least-squares fit was solved; "
                                          "allow more time (or none: leave max_time unset)")
            raise ValueError(f"LeastSquaresModule: the Trainer stopped after {_passes(self.solver.passes)}, before "
                             "the least-squares fit was solved (a callback stopped it?); nothing was fitted")

    def _finish(self) -> None:
        """Put the solution into ``model`` (on the data's features) and compute the statistics."""
        s = self.solver
        self.statistics = s.statistics()
        weight, bias = _on_features(s, self.feature_map)
        with torch.no_grad():
            self.model.linear.weight.copy_(torch.from_numpy(weight))
            if bias is not None:
                self.model.linear.bias.copy_(torch.from_numpy(bias))
        # Stop now (not at the epoch's end) so that callbacks at this epoch's end know it is the last one.
        self.trainer.should_stop = True
        self._log_statistics()

    def _log_statistics(self) -> None:
        """TensorBoard: the table as text, and its figures (R², F, AIC, ...) as hparams metrics beside the
        hyperparameters."""
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers or not self.trainer.is_global_zero:
            return
        figures = {}
        for target, s in self.statistics.items():
            prefix = "statistics/" if len(self.statistics) == 1 else f"statistics/{target}/"
            figures |= {f"{prefix}{key}": float(s[key]) for key in FIGURES if np.isfinite(s[key])}
        for logger in loggers:
            for target, s in self.statistics.items():
                # Indented: TensorBoard's text tab renders Markdown, and a table must keep its columns.
                text = "\n".join("    " + line for line in format_table(s, target).splitlines())
                logger.experiment.add_text(f"statistics/{target}", text, self.global_step)
            logger.log_hyperparams(dict(self.hparams), figures)

    # ------------------------------------------------------------------------------------ use
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions in original units from raw inputs (float64)."""
        if self.model is None:
            raise ValueError("LeastSquaresModule is not fitted: Trainer.fit(module, datamodule=dm) first")
        x = x.to(torch.float64)
        if self.feature_map is None:
            return self.model(x)
        return self.feature_map.untarget(self.model(self.feature_map.features(x)))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if self.solver is not None and self.solver.done:
            self.val_metrics.update(self(batch[0]), batch[1].to(torch.float64))

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.test_metrics.update(self(batch[0]), batch[1].to(torch.float64))

    def on_validation_epoch_end(self) -> None:
        self._log_split(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_split(self.test_metrics)

    def _log_split(self, metrics: Any) -> None:
        # Least squares minimizes the squared error: its loss (``val/loss``, as RegressionModule logs one, which the
        # summary, the HPARAMS tab and a checkpoint's monitor read) is the MSE, in original units.
        split = metrics.prefix.rstrip("/")
        values = log_metrics(self, metrics, self.output_names)
        if values:
            self.log(f"{split}/loss", values[f"{split}/mse"].reshape(-1).mean(), sync_dist=False)

    def predict_step(self, batch: Batch | torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def coefficients(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(weight (out, in), bias (out,) or None)`` in raw units (raw powers after a polynomial expansion), float64;
        aliased coefficients are 0."""
        if self.solver is None or not self.solver.done:
            raise ValueError("coefficients(): the module has not been fitted (Trainer.fit(module, datamodule=dm))")
        return self.solver.coefficients()

    def default_cov_type(self) -> str:
        """The covariance intervals use unless told otherwise: ``"CR1"`` with ``cluster=True`` (the clustered
        table's own covariance), else ``"HC1"`` with ``robust=True`` (statsmodels' ``cov_type="HC1"``, Stata's
        ``robust``), else ``"nonrobust"`` (the classic ``s² (XᵀX)⁻¹``)."""
        return "CR1" if self.hparams.cluster else "HC1" if self.hparams.robust else "nonrobust"

    def coefficient_covariance(self, cov_type: str | None = None) -> np.ndarray:
        """``(n_outputs, p, p)`` float64 covariance of the raw coefficients (intercept first, then raw powers, the
        order of ``statistics[target]["names"]``); an aliased coefficient's row and column are 0.

        ``cov_type``: ``"nonrobust"`` (``s² (XᵀX)⁻¹``), with ``robust=True`` ``"HC0"`` … ``"HC3"``, with
        ``cluster=True`` ``"CR1"`` (one- or two-way, as the table), with ``cr3=True`` ``"CR3"``; default
        :meth:`default_cov_type`. Intervals take the same covariance, of the intercept at the columns' means
        (docs/intervals.md)."""
        if self.solver is None or not self.solver.done:
            raise ValueError("coefficient_covariance(): the module has not been fitted (Trainer.fit(module, "
                             "datamodule=dm))")
        return self._covariance(cov_type, centred=False)

    def _covariance(self, cov_type: str | None, centred: bool) -> np.ndarray:
        """:meth:`coefficient_covariance`; ``centred``: of the intercept at the solver's ``interval_centre()``."""
        cov_type = cov_type or self.default_cov_type()
        cov = self.solver.covariances(centred=centred)
        keep = self.solver.solution.keep
        p, m = len(keep), self.solver.design.n_outputs
        if cov_type == "nonrobust":
            kept = np.stack([cov["unscaled"].astype(np.float64) * v for v in self._residual_variances()])
        elif cov_type in cov and cov_type != "unscaled":
            kept = cov[cov_type].astype(np.float64)
        else:
            extra = "" if self.hparams.robust else " (HC0-HC3 need LeastSquaresModule(robust=True))"
            known = (" or HC0-HC3" if self.hparams.robust else "") + (" or CR1" if "CR1" in cov else "") + \
                (" or CR3" if "CR3" in cov else "")
            extra += " (CR3 needs LeastSquaresModule(cluster=True, cr3=True))" if cov_type == "CR3" else ""
            raise ValueError(f"cov_type must be 'nonrobust'{known}, got {cov_type!r:.40}{extra}")
        out = np.zeros((m, p, p))
        out[np.ix_(range(m), keep, keep)] = kept
        return out

    def predict_interval(self, x: Any, level: float = 0.95, kind: str = "confidence",
                         cov_type: str | None = None) -> dict[str, np.ndarray]:
        """Predictions for raw rows ``x`` (n, k) with their interval: ``{"mean", "lower", "upper"}``, each an
        (n, n_outputs) float64 numpy array, equal to statsmodels' ``get_prediction(x).summary_frame(alpha=1 - level)``
        (``mean``; ``mean_ci_lower/upper`` for ``kind="confidence"``, ``obs_ci_lower/upper`` for
        ``kind="prediction"``), t quantile on the residual degrees of freedom.

        The confidence interval's standard error comes from :meth:`coefficient_covariance` (``cov_type``: with
        ``cluster=True`` CR1, with ``robust=True`` HC1, unless told otherwise); the prediction interval adds the
        residual variance ``s²``. The t quantile has the residual degrees of freedom in every case, as statsmodels'
        ``get_prediction`` (also for a clustered fit, whose table's t uses ``G - 1``).

        >>> import lightning as L, numpy as np
        >>> from lr_lightning import RegressionDataModule
        >>> x = np.arange(20.0)[:, None]
        >>> dm = RegressionDataModule(x, 3 * x[:, 0] + 1 + np.sin(x[:, 0]), val_fraction=0, dtype="float64")
        >>> module = LeastSquaresModule()
        >>> L.Trainer(max_epochs=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...           enable_model_summary=False).fit(module, datamodule=dm)
        >>> out = module.predict_interval(np.array([[5.0]]), level=0.95, kind="prediction")
        >>> [round(float(out[k][0, 0]), 3) for k in ("mean", "lower", "upper")]
        [16.115, 14.566, 17.665]
        """
        check_level(level, kind)
        if self.solver is None or not self.solver.done:
            raise ValueError("predict_interval(): the module has not been fitted (Trainer.fit(module, datamodule=dm))")
        cov, centre = self._interval_covariance(cov_type)
        try:
            x64 = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"predict_interval: x must be numbers, the {self.solver.design.n_inputs} fitted input "
                             "columns (a categorical column as its dummies, as the data module encodes it: "
                             "dm.feature_names); predict.py --ckpt takes the raw text") from None
        if x64.ndim != 2 or x64.shape[1] != self.solver.design.n_inputs:
            raise ValueError(f"predict_interval: x must be (rows, {self.solver.design.n_inputs}), got shape "
                             f"{tuple(x64.shape)}")
        if not bool(torch.isfinite(x64).all()):  # as predict.py refuses it: a NaN row has no interval
            row = int((~torch.isfinite(x64)).any(dim=1).nonzero()[0, 0])
            raise ValueError(f"predict_interval: row {row} of x is not finite ({x64[row].tolist()})")
        with torch.no_grad():
            mean = self(x64).numpy()
        se = mean_stderr(x64.numpy(), cov, self.solver.design.polynomial_degree, self.hparams.bias, centre)
        return bounds(mean, se, self._residual_variances(), self._df_resid(), level, kind)

    def _interval_covariance(self, cov_type: str | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(covariance, centre)`` for intervals: of the intercept at the solver's ``interval_centre()`` (the
        columns' means, or the powers of the inputs' centres), or without an intercept raw, with centre None."""
        if not self.solver.design.bias:
            return self._covariance(cov_type, centred=False), None
        return self._covariance(cov_type, centred=True), self.solver.interval_centre()

    def _residual_variances(self) -> list[float]:
        return [float(s["residual_sd"]) ** 2 for s in self.statistics.values()]

    def _df_resid(self) -> int:
        return int(next(iter(self.statistics.values()))["df_resid"])

    # ------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Saved as the RegressionModule it now is (a LinearRegression with the data's feature map), so that
        # RegressionModule.load_from_checkpoint, predict.py and evaluate.py read it; what only this module has goes
        # under its own key, as plain data (the file loads with weights_only=True).
        if self.model is None:
            return
        checkpoint["hyper_parameters"] = {
            "model": {"class_path": "lr_lightning.core.networks.LinearRegression",
                      "init_args": {"in_features": self.model.in_features, "out_features": self.model.out_features,
                                    "bias": self.model.bias}},
            "normalization": self.normalization, "output_names": self.output_names, "weights_dtype": "float64"}
        checkpoint["least_squares"] = {"bias": self.hparams.bias, "robust": self.hparams.robust,
                                       "cluster": self.hparams.cluster,
                                       "solved": bool(self.solver is not None and self.solver.done),
                                       "statistics": self.statistics}
        if self.solver is not None and self.solver.done and self._df_resid() > 0:
            # What predict.py --interval and export.py --interval need, as plain data under a key of the core's
            # (lr_lightning.core.intervals), so that they compute intervals without importing this package.
            covariance, centre = self._interval_covariance(None)
            checkpoint[CHECKPOINT_KEY] = {
                "covariance": torch.from_numpy(covariance),
                **({"coordinates": "raw"} if centre is None else
                   {"coordinates": "centred", "centre": torch.from_numpy(centre)}), "cov_type": self.default_cov_type(),
                "residual_variance": self._residual_variances(), "df_resid": self._df_resid(),
                "polynomial_degree": self.solver.design.polynomial_degree, "bias": self.hparams.bias}

    @classmethod
    def load_from_checkpoint(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        raise ValueError("a LeastSquaresModule checkpoint holds the fitted LinearRegression: load it with "
                         "RegressionModule.load_from_checkpoint(path); its statistics are in "
                         "torch.load(path, weights_only=True)['least_squares']['statistics']")


def _shown(value: Any) -> str:
    """``value`` for a one-line message: its repr when short and on one line (``'yes'``, ``-1``), else its class.

    >>> _shown(-1), _shown(torch.nn.Sequential(torch.nn.Linear(2, 1)))
    ('-1', 'a Sequential')
    """
    text = repr(value)
    return text if len(text) <= 60 and "\n" not in text else f"a {type(value).__name__}"


class TrainerSettingError(ValueError):
    """A Trainer setting the exact fit cannot run under; ``setting`` is the Trainer argument's name (the command line
    names its flag)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def _passes(n: int) -> str:
    return f"{n} pass{'' if n == 1 else 'es'}"


def _duration(timer: Timer) -> str:
    seconds = int(timer._duration)  # Lightning keeps max_time as seconds; said back as the DD:HH:MM:SS it accepts
    return f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _check_trainer(trainer: L.Trainer, min_passes: int) -> None:
    """Raise :class:`TrainerSettingError` for a Trainer setting under which the passes cannot run whole, or which only
    means something for gradient steps."""
    if trainer.fast_dev_run:  # first: it sets max_steps and the batch limits, which would be blamed otherwise
        raise TrainerSettingError("fast_dev_run", f"fast_dev_run={trainer.fast_dev_run}: runs a batch or a few; "
                                  "LeastSquaresModule needs whole passes over the data (for a quick check, fit a "
                                  "small file)")
    if trainer.max_epochs is not None and 0 <= trainer.max_epochs < min_passes:
        raise TrainerSettingError("max_epochs", f"LeastSquaresModule needs at least {_passes(min_passes)} over the "
                                  f"data (epochs) but the Trainer stops after max_epochs={trainer.max_epochs}")
    if trainer.min_epochs is not None and trainer.min_epochs > min_passes:
        raise TrainerSettingError("min_epochs", f"min_epochs={trainer.min_epochs}: LeastSquaresModule stops as soon "
                                  f"as the fit is solved, which can be after {_passes(min_passes)}; further epochs "
                                  "would have nothing to do (leave min_epochs unset)")
    if trainer.min_steps not in (None, 0, -1):
        raise TrainerSettingError("min_steps", f"min_steps={trainer.min_steps}: LeastSquaresModule stops as soon as "
                                  "the fit is solved; further steps would have nothing to do (leave min_steps unset)")
    for name in ("limit_train_batches", "overfit_batches"):
        value = getattr(trainer, name)
        if value not in ((1.0, None) if name == "limit_train_batches" else (0, 0.0, None)):
            raise TrainerSettingError(name, f"{name}={value}: LeastSquaresModule needs every training row in every "
                                      f"pass (leave {name} unset)")
    if trainer.max_steps not in (-1, None):
        raise TrainerSettingError("max_steps", f"max_steps={trainer.max_steps}: LeastSquaresModule stops by itself, "
                                  "and a step limit would cut a pass short (leave max_steps unset)")
    if trainer.accumulate_grad_batches != 1:
        raise TrainerSettingError("accumulate_grad_batches", f"accumulate_grad_batches="
                                  f"{trainer.accumulate_grad_batches}: LeastSquaresModule takes no gradient steps, so "
                                  "there is nothing to accumulate (leave it at 1)")
    if trainer.gradient_clip_val:
        raise TrainerSettingError("gradient_clip_val", f"gradient_clip_val={trainer.gradient_clip_val}: "
                                  "LeastSquaresModule takes no gradient steps, so there is nothing to clip (leave it "
                                  "unset)")
    precision = str(trainer.precision)
    if precision.endswith("-true") and precision not in ("32-true", "64-true"):
        raise TrainerSettingError("precision", f"LeastSquaresModule computes in float64; precision={precision} would "
                                  "round the fitted model's weights to it (use 32-true or 64-true)")
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is not None and timer._duration is not None and timer._duration <= 0:
        raise TrainerSettingError("max_time", f"max_time={_duration(timer)}: no time for a single pass over the "
                                  "data (allow more time, or leave max_time unset)")


def _check_drop_last(dm: Any, world_size: int) -> None:
    """``drop_last`` leaves the last, shorter global batch out of every pass: least squares would fit fewer rows than
    the training split holds."""
    if not getattr(dm, "drop_last", False):
        return
    dropped = dm.n_train % (dm.batch_size * world_size)
    if dropped:
        processes = f" over {world_size} processes" if world_size > 1 else ""
        raise ValueError(f"drop_last=True with batch_size {dm.batch_size}{processes} leaves {dropped} of the "
                         f"{dm.n_train} training rows out of every pass; least squares fits every row (set drop_last "
                         "false)")


def _on_features(solver: LeastSquaresSolver, fm: FeatureMap | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The solution as weights on the data module's features (what ``model`` sees): the solver's basis coefficients,
    through the feature map's standardization of features and targets."""
    hi, lo = solver.solution.beta
    beta = (hi + lo).numpy()  # (p_basis, m), intercept first: on the basis the feature map expands to
    bias = solver.design.bias
    b, w = (beta[0], beta[1:].T) if bias else (None, beta.T)  # w: (m, features)
    if fm is None:
        return np.ascontiguousarray(w), b
    spec = fm.spec
    f_mean, f_scale = np.asarray(spec["feature_mean"]), np.asarray(spec["feature_scale"])
    y_mean, y_scale = np.asarray(spec["y_mean"]), np.asarray(spec["y_scale"])
    # basis·w + b = ((basis - f_mean)/f_scale)·(w·f_scale) + b + w·f_mean; then (y - y_mean)/y_scale.
    w_feat = w * f_scale[None, :]
    b_feat = (b + w @ f_mean) if b is not None else None
    w_feat = w_feat / y_scale[:, None]
    if b_feat is not None:
        b_feat = (b_feat - y_mean) / y_scale
    return np.ascontiguousarray(w_feat), b_feat


def _all_rows_equal(x: torch.Tensor, rows: int = 4096) -> bool:
    """Whether every row of ``x`` equals the first, in chunks: data that varies answers in the first chunk, without a
    mask (or a column reduction, ~0.3 s at 2M x 40) the size of the data."""
    return not any(bool((x[i:i + rows] != x[0]).any()) for i in range(0, len(x), rows))


def _gather(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t``, stacked in rank order (torch.distributed's all-gather; no autograd needed, so not
    Lightning's ``all_gather``, which goes through torch's deprecated differentiable one)."""
    parts = [torch.empty_like(t) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, t.contiguous())
    return torch.stack(parts)
