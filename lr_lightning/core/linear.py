"""Where linear regression lives: the module for a linear network, with what only a linear model has.

:class:`LinearRegressionModule` is a :class:`~lr_lightning.core.regression_module.RegressionModule` plus

- :meth:`~LinearRegressionModule.coefficients`: the fitted affine map in raw units (``y = w·x + b``);
- ``reference_mse``: the best linear fit's MSE per split, against which ``val/excess_mse`` says how far training
  is from that optimum (the command line takes it from a registered solver, :mod:`lr_lightning.core.solvers`);
- the LBFGS line-search switch (:meth:`~LinearRegressionModule.on_train_epoch_end`), which keeps LBFGS precise once
  the loss stops falling on a linear least-squares problem.

A copier with another model deletes nothing here: ``RegressionModule`` does not need this file.

>>> import torch
>>> from lr_lightning import LinearRegression
>>> module = LinearRegressionModule(LinearRegression(2))
>>> with torch.no_grad():
...     module.model.linear.weight[:] = torch.tensor([[2.0, -1.0]]); module.model.linear.bias[:] = 0.5
>>> weight, bias = module.coefficients()
>>> weight.tolist(), bias.tolist()
([[2.0, -1.0]], [0.5])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torchmetrics import MeanMetric, MetricCollection

from lr_lightning.core.networks import single_linear
from lr_lightning.core.regression_module import RegressionModule


class LinearRegressionModule(RegressionModule):
    """A :class:`RegressionModule` for a linear network: :meth:`coefficients`, ``val/excess_mse`` and the LBFGS
    line-search switch. Takes every argument ``RegressionModule`` takes, and ``reference_mse``."""

    def __init__(self, model: Any, optimizer: Any = None, lr_scheduler: Any = None, loss: Any = None, *,
                 reference_mse: dict[str, float] | None = None, **kwargs: Any) -> None:
        """
        Args:
            model, optimizer, lr_scheduler, loss, kwargs: as for :class:`RegressionModule`.
            reference_mse: the best linear fit's MSE per split (``{"val": ...}``); with it, ``val/excess_mse`` (and
                ``test/excess_mse``) log how far the module's MSE is from that optimum.
        """
        super().__init__(model, optimizer, lr_scheduler, loss, **kwargs)
        if reference_mse is not None and not (isinstance(reference_mse, Mapping) and all(
                isinstance(v, (int, float)) for v in reference_mse.values())):
            raise ValueError(f"reference_mse: expected a mapping of split names to numbers, got {reference_mse!r}")
        self.hparams["reference_mse"] = dict(reference_mse) if reference_mse is not None else None

    def log_split(self, mean_loss: MeanMetric, metrics: MetricCollection) -> dict[str, torch.Tensor]:
        values = super().log_split(mean_loss, metrics)
        split = metrics.prefix.rstrip("/")
        reference = (self.hparams.get("reference_mse") or {}).get(split)
        if values and reference is not None:  # both in original units, on the same rows
            self.log(f"{split}/excess_mse", values[f"{split}/mse"].reshape(-1).mean() - reference, sync_dist=False)
        return values

    def coefficients(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The model as an affine map from raw inputs to raw predictions: ``(weight (out, in), bias (out,))``.

        In float64; ``in`` counts raw powers after a polynomial expansion (x1, x1², …, x2, …); ``bias`` is None
        without an intercept. Raises ValueError for a network that is not linear.
        """
        layer = single_linear(self.model)
        if layer is None:
            raise ValueError(f"coefficients() needs a linear model (one nn.Linear holding all parameters); "
                             f"{type(self.model).__name__} is not one")
        weight = layer.weight.detach().double().cpu().numpy()
        bias = layer.bias.detach().double().cpu().numpy() if layer.bias is not None else None
        if not np.isfinite(weight).all() or (bias is not None and not np.isfinite(bias).all()):
            raise ValueError("coefficients(): the weights are not finite (training diverged)")
        # Check the whole network really is that affine map (no activation or scaling around the layer).
        # Its own generator: asking for the coefficients must not move the global random state.
        probe = torch.randn(8, layer.in_features, generator=torch.Generator().manual_seed(0)).to(layer.weight)
        with torch.no_grad():
            expected = probe.double().cpu().numpy() @ weight.T + (bias if bias is not None else 0)
            if not np.allclose(self.model(probe).double().cpu().numpy(), expected, rtol=1e-4, atol=1e-4):
                raise ValueError(f"coefficients() needs a linear model; {type(self.model).__name__} is not affine")
        if self.feature_map is None:
            return weight, bias
        return self.feature_map.to_raw(weight, bias)

    def on_train_epoch_end(self) -> None:
        optimizer = self.optimizers().optimizer if self._trainer is not None else None
        if not isinstance(optimizer, torch.optim.LBFGS):
            return
        # The strong-Wolfe line search compares loss values. Once the epoch's loss stops falling, the remaining
        # changes are below what the dtype resolves (on NIST's Wampler5 the loss is ~1 and moves by ~1e-22), and
        # the search drifts in rounding noise. From then on, unit quasi-Newton steps use the gradient alone,
        # which stays precise: measured on Wampler5 in float64, 6.5 correct digits instead of 1.6.
        loss = self.trainer.callback_metrics.get("train/loss")
        previous, self._last_lbfgs_loss = getattr(self, "_last_lbfgs_loss", None), loss
        if loss is not None and previous is not None and not loss < previous:
            for group in optimizer.param_groups:
                group["line_search_fn"] = None
