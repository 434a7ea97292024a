"""Pictures of a fit: in TensorBoard while training, and in a PNG for people who do not open TensorBoard.

- :func:`predictions_figure` and :func:`fit_figure` draw predictions against targets on held-out rows (one panel
  per output) and the fitted curve over the data points when there is one input column; the callback
  ``callbacks.TensorBoardFigures`` logs them a few times per run.
- :func:`save_png` draws the loss curves that ``callbacks.LossHistory`` kept beside the fit
  (``scripts/fit.py --plot out.png``).

matplotlib is an optional extra (``pip install -e '.[plots]'`` in a clone): without it the figures are skipped and
the histograms (TensorBoard's own) are still logged. Figures are drawn with matplotlib's object API on the Agg
canvas, never through pyplot's global state, so nothing opens a window or leaks figures.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_POINTS = 2000  # rows drawn: enough to see the fit, few enough to draw in a blink


@contextlib.contextmanager
def drawing() -> Iterator[None]:
    """Where a figure is drawn: without matplotlib's "Glyph N missing from font(s)" warning, one per character a
    column name (Chinese, say) has and the default font lacks. Such a name shows as boxes; the figure is fine, and a
    warning per glyph per figure said nothing the user can act on. Only this warning, and only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Glyph \d+ .*missing from", UserWarning)
        yield


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def held_out(dm: Any, limit: int = MAX_POINTS) -> tuple[str, torch.Tensor, torch.Tensor]:
    """``(split, x, y)``: up to ``limit`` raw rows of the validation split (the training split without one)."""
    split = "val" if dm.n_val else "train"
    if dm.table.streamed:  # read the first rows of the split's blocks
        rows = np.concatenate([np.arange(a, b) for a, b in dm.ranges[split]])[:limit]
        x, y = (torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in dm.table.read(rows))
        return split, x, y
    x, y = dm.raw_split(split)[:2]  # a weight column, if any, is no input
    return split, x[:limit].cpu().double(), y[:limit].cpu().double()


def predict(module: L.LightningModule, x: torch.Tensor) -> torch.Tensor:
    """Predictions in original units for raw inputs, on the module's device and dtype, as float64 on the CPU."""
    p = next(module.parameters())
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(x.to(device=p.device, dtype=p.dtype)).double().cpu()
    module.train(was_training)
    return out


def predictions_figure(y: np.ndarray, preds: np.ndarray, names: list[str], title: str) -> Figure:
    """Predicted against actual, one panel per output (at most four): on the diagonal is a perfect fit."""
    from matplotlib.figure import Figure

    k = min(4, y.shape[1])
    fig = Figure(figsize=(4 * k, 4), layout="constrained")
    for j, ax in enumerate(np.atleast_1d(fig.subplots(1, k))):
        _predictions_panel(ax, y[:, j], preds[:, j], names[j])
    fig.suptitle(title)
    return fig


def _predictions_panel(ax: Axes, y: np.ndarray, pred: np.ndarray, name: str) -> None:
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, label="perfect fit")
    ax.scatter(y, pred, s=6, alpha=0.5)
    r2 = 1 - ((y - pred) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-300)
    ax.set(xlabel=f"actual {name}", ylabel=f"predicted {name}", title=f"R² = {r2:.4f}")


def fit_figure(module: L.LightningModule, x: np.ndarray, y: np.ndarray, names: tuple[str, str], title: str) -> Figure:
    """One input column: the data points and the model's curve over their range (first output)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    _fit_panel(fig.subplots(), module, x, y, names)
    fig.suptitle(title)
    return fig


def _fit_panel(ax: Axes, module: L.LightningModule, x: np.ndarray, y: np.ndarray, names: tuple[str, str]) -> None:
    grid = np.linspace(x[:, 0].min(), x[:, 0].max(), 400)[:, None]
    ax.scatter(x[:, 0], y[:, 0], s=6, alpha=0.5, label="data")
    ax.plot(grid[:, 0], predict(module, torch.from_numpy(grid))[:, 0].numpy(), color="C3", lw=2, label="model")
    ax.set(xlabel=names[0], ylabel=names[1])
    ax.legend()


def train_loss_scale(module: L.LightningModule) -> float | None:
    """The factor that puts ``train/loss`` (in the network's standardized units) into the data's units, as
    ``val/loss`` is: 1 without a feature map, ``y_scale²`` for an MSE whose outputs share one scale, None where no
    factor does it (a Huber loss, outputs of different scales).

    >>> from lr_lightning import LinearRegression, RegressionModule
    >>> train_loss_scale(RegressionModule(LinearRegression(1)))  # no feature map: the data's units already
    1.0
    """
    feature_map = getattr(module, "feature_map", None)
    if feature_map is None:
        return 1.0
    scales = set(feature_map.y_scale.tolist())
    if isinstance(getattr(module, "loss_fn", None), torch.nn.MSELoss) and len(scales) == 1:
        return scales.pop() ** 2
    return None


def _loss_panel(ax: Axes, history: Any, module: L.LightningModule) -> None:
    """Both loss curves in the data's units on one axis named by the loss (MSELoss, HuberLoss, ...); a train/loss
    that no factor converts gets its own axis, on the right, in standardized units."""
    from matplotlib.ticker import MaxNLocator

    name = type(getattr(module, "loss_fn", None)).__name__
    scale = train_loss_scale(module)
    right = ax.twinx() if scale is None else None
    for key, points in history.epochs.items():
        if not points:
            continue
        epochs, values = zip(*points, strict=True)
        on = right if key == "train/loss" and right is not None else ax
        factor = scale if key == "train/loss" and scale is not None else 1.0
        color = "C0" if key == "train/loss" else "C1"
        on.plot(epochs, [v * factor for v in values], marker="." if len(points) < 30 else None, color=color,
                label=key + (" (standardized, right)" if on is right else ""))
    ax.set(xlabel="epoch", ylabel=f"{name} (data units)", yscale="log", title="loss")
    if right is not None:
        right.set(ylabel=f"{name} (standardized units)", yscale="log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    lines = ax.get_lines() + (right.get_lines() if right is not None else [])
    ax.legend(lines, [line.get_label() for line in lines])


def save_png(path: str | Path, history: Any, module: L.LightningModule, dm: Any, title: str | None = None) -> Path:
    """The loss curves (``history``: a ``callbacks.LossHistory``) beside the fit (the curve over the points for one
    input column, else predicted against actual for the first output), as a PNG. Without a train/loss curve (the
    exact solver has none: it solves, it does not descend) the fit alone, under ``title``."""
    from matplotlib.figure import Figure

    descended = bool(history.epochs["train/loss"])
    fig = Figure(figsize=(11, 4.5) if descended else (6, 4.5), layout="constrained")
    curves, fit = fig.subplots(1, 2) if descended else (None, fig.subplots())
    if curves is not None:
        _loss_panel(curves, history, module)
    split, x, y = held_out(dm)
    if x.shape[1] == 1:
        _fit_panel(fit, module, x.numpy(), y.numpy(), (dm.feature_names[0], dm.target_names[0]))
        fit.set_title(f"fit ({split} rows)")
    else:
        _predictions_panel(fit, y[:, 0].numpy(), predict(module, x)[:, 0].numpy(), dm.target_names[0])
        fit.set_title(f"{split} rows: " + fit.get_title())
    fig.suptitle(title or f"{type(module.model).__name__}, {len(history.epochs['train/loss'])} epochs")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with drawing():
        fig.savefig(path, dpi=100)
    return path
