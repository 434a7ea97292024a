"""From scratch to Lightning: the classic tutorial's five stages, each fitting ``y ≈ w·x`` (``+ b`` with ``bias``).

Read it top to bottom. Each stage swaps one hand-written piece of the stage before for a library piece, and
all five produce the same numbers (``tests/test_from_scratch.py`` checks them epoch by epoch). Every stage
starts from ``w = 0`` (and ``b = 0``), takes one full-batch gradient step per epoch in float32, and records
``Step(w, loss, b)``: the weights after the epoch's update, and the loss computed before it, the way the
tutorial prints. ``stop_below`` ends a stage after the first epoch whose loss is below it.

>>> runs = run_all([1, 2, 3, 4], [2, 4, 6, 8], lr=0.01, epochs=2)
>>> [(round(w, 6), round(loss, 4)) for w, loss in runs["numpy"]]  # float32: the last bits differ between CPUs
[(0.3, 30.0), (0.555, 21.675)]
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn

from lr_lightning.core.data.datamodule import RegressionDataModule
from lr_lightning.core.networks import LinearRegression
from lr_lightning.core.regression_module import RegressionModule


class Step(NamedTuple):
    w: float  # after this epoch's update
    loss: float  # computed in this epoch, before the update
    b: float = 0.0


# ------------------------------------------------------------------------ 1. numpy: everything by hand
def numpy_stage(x: Any, y: Any, *, lr: float, epochs: int, bias: bool = False, stop_below: float | None = None,
                buggy_gradient: bool = False) -> list[Step]:
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
    w, b = np.float32(0.0), np.float32(0.0)
    history = []
    for _ in range(epochs):
        y_pred = w * x + b  # prediction
        loss = np.mean((y_pred - y) ** 2)  # MSE
        if buggy_gradient:
            # The tutorial video's form, kept to show what goes wrong: np.dot already sums over the samples and
            # returns one number, so .mean() averages nothing. The gradient is n times too large (4x on four points),
            # and the first step lands on w = 1.2 instead of 0.3.
            dw = np.dot(2 * x, y_pred - y).mean()
        else:
            dw = np.mean(2 * x * (y_pred - y))  # dJ/dw = mean(2·x·(w·x + b − y))
        db = np.mean(2 * (y_pred - y))  # dJ/db = mean(2·(w·x + b − y))
        w -= lr * dw  # the update
        if bias:
            b -= lr * db
        history.append(Step(float(w), float(loss), float(b)))
        if stop_below is not None and loss < stop_below:
            break
    return history


# ------------------------------------------------------------- 2. autograd: torch computes the gradient
def autograd_stage(x: Any, y: Any, *, lr: float, epochs: int, bias: bool = False,
                   stop_below: float | None = None) -> list[Step]:
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    w = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=bias)
    history = []
    for _ in range(epochs):
        loss = ((w * x + b - y) ** 2).mean()
        loss.backward()  # dloss/dw lands in w.grad (and dloss/db in b.grad)
        with torch.no_grad():  # the update itself must not become part of the graph
            w -= lr * w.grad
            if bias:
                b -= lr * b.grad
        w.grad.zero_()  # backward() adds to .grad: without this, every step would add all earlier gradients
        if bias:
            b.grad.zero_()
        history.append(Step(w.item(), loss.item(), b.item()))
        if stop_below is not None and loss.item() < stop_below:
            break
    return history


# ------------------------------------------- 3. nn.MSELoss and torch.optim.SGD replace the loss and the update
def optimizer_stage(x: Any, y: Any, *, lr: float, epochs: int, bias: bool = False,
                    stop_below: float | None = None) -> list[Step]:
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    w = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=bias)
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD([w, b] if bias else [w], lr=lr)
    history = []
    for _ in range(epochs):
        loss = loss_fn(w * x + b, y)
        loss.backward()
        optimizer.step()  # w -= lr * w.grad, under no_grad
        optimizer.zero_grad()
        history.append(Step(w.item(), loss.item(), b.item()))
        if stop_below is not None and loss.item() < stop_below:
            break
    return history


# ------------------------------------ 4. an nn.Module holds w and b; data becomes (n_samples, n_features)
def module_stage(x: Any, y: Any, *, lr: float, epochs: int, bias: bool = False,
                 stop_below: float | None = None) -> list[Step]:
    # Columns: nn.Linear maps (N, in_features) to (N, out_features), so x and y become (N, 1).
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1)
    y = torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)
    model = _zero_model(bias)
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        history.append(_step(model, loss.item()))
        if stop_below is not None and loss.item() < stop_below:
            break
    return history


# ---------- 5. Lightning: RegressionModule owns loss and optimizer, RegressionDataModule the data, Trainer the loop
def lightning_stage(x: Any, y: Any, *, lr: float, epochs: int, bias: bool = False,
                    stop_below: float | None = None) -> list[Step]:
    module = RegressionModule(_zero_model(bias), optimizer=partial(torch.optim.SGD, lr=lr))  # plain SGD, MSE loss
    # Full batch, all data for training, in float32 like the other stages (float64 arrays would stay float64).
    dm = RegressionDataModule(x, y, batch_size=len(x), val_fraction=0.0, shuffle=False, dtype=torch.float32)
    history = _History()
    callbacks: list[L.Callback] = [history]
    if stop_below is not None:  # the tutorial's `if loss < threshold: break`
        callbacks.append(EarlyStopping("train/loss", stopping_threshold=stop_below, patience=epochs + 1,
                                       check_on_train_epoch_end=True))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, limit_val_batches=0, log_every_n_steps=1,  # no validation split
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)  # loss, backward, step and zero_grad happen in there
    return history.steps


class _History(L.Callback):
    """Records a Step after every optimizer step, from the loss that training_step returned."""

    per_step_hooks = True  # it reads one step's loss per call: RegressionModule then takes one step per call

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.steps.append(_step(module.model, outputs["loss"].item()))


def _zero_model(bias: bool) -> LinearRegression:
    model = LinearRegression(1, 1, bias=bias)
    with torch.no_grad():  # start where the hand-written stages start: w = 0, b = 0
        for p in model.parameters():
            p.zero_()
    return model


def _step(model: LinearRegression, loss: float) -> Step:
    b = model.linear.bias.item() if model.linear.bias is not None else 0.0
    return Step(model.linear.weight.item(), loss, b)


# ------------------------------------------------------------------------------------ all stages at once
STAGES = {"numpy": numpy_stage, "autograd": autograd_stage, "optimizer": optimizer_stage, "module": module_stage,
          "lightning": lightning_stage}


def run_stages(x: Any, y: Any, *, lr: float, epochs: int, bias: bool = False,
               stop_below: float | None = None) -> dict[str, list[Step]]:
    """Every stage on the same data with the same hyperparameters: stage name -> one Step per epoch."""
    return {name: stage(x, y, lr=lr, epochs=epochs, bias=bias, stop_below=stop_below)
            for name, stage in STAGES.items()}


def run_all(x: Any, y: Any, *, lr: float, epochs: int, bias: bool = False,
            stop_below: float | None = None) -> dict[str, list[tuple[float, float]]]:
    """Every stage: stage name -> one ``(w, loss)`` per epoch."""
    runs = run_stages(x, y, lr=lr, epochs=epochs, bias=bias, stop_below=stop_below)
    return {name: [(s.w, s.loss) for s in steps] for name, steps in runs.items()}


def first_disagreement(runs: dict[str, list[Step]], rtol: float = 1e-5) -> str | None:
    """The first epoch where some stage differs from the numpy stage by more than ``rtol``, or None.

    w and b are compared relative to the largest magnitude they reach in the run: a bias that crosses zero on its way
    would otherwise be held to float32 noise around 0. The loss is compared relative to itself, above the rounding
    level of a float32 loss: a residual ``r = w·x + b − y`` is computed to about ``δ = 8·eps·√(largest loss)`` (the
    scale of y), so its square to ``2·|r|·δ + δ²``. Near the optimum the stages' losses are that rounding and no
    more (1.31e-13 against 1.07e-13 says nothing about the stages).

    >>> first_disagreement({"numpy": [Step(2.0, 30.0), Step(2.0, 1.07e-13)],
    ...                     "autograd": [Step(2.0, 30.0), Step(2.0, 1.31e-13)]}) is None
    True
    >>> first_disagreement({"numpy": [Step(2.0, 30.0), Step(2.0, 1.0)], "autograd": [Step(2.0, 30.0), Step(2.0, 1.1)]})
    'epoch 2: autograd loss = 1.1, numpy loss = 1'
    """
    reference = runs["numpy"]
    for name, steps in runs.items():
        if len(steps) != len(reference):
            return f"{name} ran {len(steps)} epochs, numpy {len(reference)}"
    scale = {f: max((abs(getattr(s, f)) for s in reference), default=0.0) for f in ("w", "b", "loss")}
    delta = 8 * float(np.finfo(np.float32).eps) * scale["loss"] ** 0.5  # a float32 residual's rounding
    for epoch, ref in enumerate(reference, start=1):
        for name, steps in runs.items():
            for field in Step._fields:
                a, b = getattr(steps[epoch - 1], field), getattr(ref, field)
                if field == "loss":
                    tolerance = rtol * max(a, b) + 2 * max(a, b) ** 0.5 * delta + delta**2
                else:
                    tolerance = rtol * max(abs(a), abs(b), scale[field])
                if abs(a - b) > tolerance:
                    return f"epoch {epoch}: {name} {field} = {a:.9g}, numpy {field} = {b:.9g}"
    return None
