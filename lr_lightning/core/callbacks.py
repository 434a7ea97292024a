"""The package's callbacks: training that survives its users, and says how it is going.

- :class:`DivergenceGuard` stops training at the first non-finite loss (with a learning rate to try), before
  any checkpoint can be written with the broken weights.
- :class:`SaveLast` writes ``last.ckpt`` every N steps and at every epoch's end: what a resumed run continues from.
  (Lightning's own ``ModelCheckpoint(save_last=True)`` does not, see the class; its checkpoint writes are atomic,
  a temporary file moved into place, so a kill mid-write leaves the previous ``last.ckpt``.)
- :class:`StopOnSignal` ends a run on SIGINT (Ctrl-C) or SIGTERM (what job schedulers send before they kill) at
  the end of the step in flight, with a resumable ``last.ckpt``, by raising ``runs.Interrupted``.
- :class:`ProgressLines` says how far a long run is when there is no progress bar (a log file, a pipe).
- :class:`TensorBoardFigures` logs figures of the fit and weight histograms a few times per run; :class:`LossHistory`
  keeps each epoch's losses for ``fit.py --plot``.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from lr_lightning.core.figures import drawing, fit_figure, have_matplotlib, held_out, predict, predictions_figure
from lr_lightning.core.runs import Interrupted, threading_is_main


def passed(previous_step: int, step: int, every: int) -> bool:
    """Whether the optimizer step count went past a multiple of ``every`` between two calls of a hook
    (``previous_step`` then ``step``): at the step itself when a call takes one step, at the end of the call that
    passed it when a call takes several (a module may take several optimizer steps per ``training_step``).

    >>> passed(3, 4, 2), passed(4, 5, 2), passed(2, 7, 4)
    (True, False, True)
    """
    return step // every > previous_step // every


def steps_per_epoch(trainer: L.Trainer) -> int:
    """Optimizer steps per epoch: Lightning's ``num_training_batches``, unless the module says otherwise with a
    ``steps_per_epoch`` attribute (a module taking several optimizer steps per ``training_step`` has fewer calls
    than steps; None: it does not say)."""
    declared = getattr(trainer.lightning_module, "steps_per_epoch", None)
    return int(declared if isinstance(declared, int) else trainer.num_training_batches)


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or weights."""


class DivergenceGuard(L.Callback):
    """Stop at once when the loss or the weights stop being finite, suggesting a learning rate.

    ``stable_lr`` is a learning rate known to be stable for this problem (see
    :meth:`RegressionDataModule.stable_lr`), or a function computing it only when needed;
    without it, a tenth of the current one is suggested. On a GPU the loss is checked only every
    ``log_every_n_steps`` steps, because each check waits for the device; the message still names the step where
    it first became non-finite. Under DDP the ranks agree before stopping, so that all of them stop together.
    """

    def __init__(self, stable_lr: float | Callable[[], float] | None = None) -> None:
        self.stable_lr = stable_lr
        self.first_bad_step: torch.Tensor | None = None
        self.last_step = 0  # the optimizer step count at the previous call's end

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.last_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        # A call that took several optimizer steps may return each one's loss as outputs["losses"] (the convention
        # of lr_lightning.core.steps_per_call): the first bad one is named, not the call's.
        losses = outputs.get("losses", loss.reshape(1)) if isinstance(outputs, dict) else loss.reshape(1)
        bad = ~torch.isfinite(losses.detach())
        first = trainer.global_step - len(losses) + 1  # the step count after the call's first step
        step = first + bad.long().argmax()  # argmax: the first True
        if self.first_bad_step is None:
            self.first_bad_step = torch.full((), -1, device=loss.device, dtype=torch.long)
        # Remember the first bad step on the device (no sync), and look at it when a sync is cheap.
        self.first_bad_step = torch.where(bad.any() & (self.first_bad_step < 0), step, self.first_bad_step)
        previous, self.last_step = self.last_step, trainer.global_step
        if loss.device.type == "cpu" or passed(previous, trainer.global_step, trainer.log_every_n_steps):
            self.check(trainer, module)

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Never let a checkpoint hold broken weights, even if the loss of the step that broke them was finite.
        self.check(trainer, module)
        if not all(torch.isfinite(p).all() for p in module.parameters()):
            raise DivergenceError(self._message(trainer, trainer.global_step))

    def check(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.first_bad_step is None:
            return
        step = self.first_bad_step
        if trainer.world_size > 1:
            # One rank raising alone would leave the others waiting in their next all-reduce: agree on the first
            # bad step of any rank (none: the largest int64), so that all of them stop together.
            never = torch.iinfo(torch.long).max
            step = trainer.strategy.reduce(torch.where(step < 0, never, step), reduce_op="min")
            step = torch.where(step == never, -1, step)
        if (step := int(step)) >= 0:
            raise DivergenceError(self._message(trainer, step))

    def _message(self, trainer: L.Trainer, step: int) -> str:
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        try:
            stable = self.stable_lr() if callable(self.stable_lr) else self.stable_lr
        except (RuntimeError, ValueError, ArithmeticError):  # advice only: features whose Gram matrix overflows
            stable = None
        suggestion = stable if stable is not None else (lr / 10 if lr else None)
        if suggestion is not None and not (math.isfinite(suggestion) and suggestion > 0):
            suggestion = None  # features too large to compute one (their Gram matrix overflowed): no advice
        per_epoch = max(1, steps_per_epoch(trainer)) if trainer.num_training_batches != float("inf") else 0
        epoch = step // per_epoch if per_epoch else trainer.current_epoch
        text = f"loss became inf/nan at epoch {epoch}, step {step}"
        return text + (f"; try --optimizer.lr ≤ {_round_down(suggestion)}" if suggestion else "")


def _round_down(value: float) -> str:
    """One significant digit, rounded down: a suggestion must not land above the limit."""
    exponent = math.floor(math.log10(value))
    return f"{math.floor(value / 10**exponent) * 10.0**exponent:.{max(0, -exponent)}f}"


class SaveLast(L.Callback):
    """``last.ckpt``, always the newest state: every ``every_n_steps`` steps and at the end of every epoch.

    Lightning 2.6's ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` at an epoch's end only when a
    top-k checkpoint was saved too, i.e. only while the monitored metric improves; resuming needs the newest
    state whatever the metric did.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None) -> None:
        """
        Args:
            dirpath: the folder of ``last.ckpt``.
            every_n_steps: also save every this many training steps; default: about four times an epoch.
        """
        if every_n_steps is not None and not (isinstance(every_n_steps, int) and every_n_steps >= 1):
            raise ValueError(f"checkpoint_every must be a whole number >= 1, got {every_n_steps!r}")
        self.path, self.every_n_steps = Path(dirpath) / "last.ckpt", every_n_steps
        self.saved_at: tuple[int, int] | None = None  # (epoch counted from 1, global step) of the newest last.ckpt

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the optimizer and loops too: resumable
        self.saved_at = (trainer.current_epoch + 1, trainer.global_step)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.last_step = trainer.global_step  # the optimizer step count at the previous call's end
        if self.every_n_steps is None:  # steps per epoch are known now, for this number of processes
            self.every_n_steps = max(1, steps_per_epoch(trainer) // 4)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # The epoch's last batch is saved by on_train_epoch_end, once its validation is done.
        # With several optimizer steps per call, at the end of the call that passed the interval (a checkpoint falls
        # between calls, never inside one).
        previous, self.last_step = self.last_step, trainer.global_step
        if passed(previous, trainer.global_step, self.every_n_steps) and \
                batch_idx + 1 < trainer.num_training_batches:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # After the epoch's validation, which runs before this hook.
        self.save(trainer)




class StopOnSignal(L.Callback):
    """SIGINT and SIGTERM end training at the end of the step in flight, with a resumable ``last.ckpt``.

    A signal in the middle of a step would leave weights and optimizer state out of step with each other, so the
    handler only notes it; at the step's end ``saver`` writes ``last.ckpt`` and :class:`Interrupted` is raised (out
    of ``trainer.fit``). A second signal, or one outside training (set-up, validation at the end), raises at once.
    Under DDP the ranks agree first (every ``log_every_n_steps`` steps, one all-reduce), so that all of them save
    the same step and stop together; a rank stopping alone would leave the others waiting.

    Lightning's own SIGTERM handling ends a run with exit status 0 and nothing saved: during training this
    callback's handler replaces it.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, saver: SaveLast) -> None:
        self.saver = saver
        self.signum: int | None = None
        self.training = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take SIGINT and SIGTERM (from the main thread; elsewhere signals cannot be handled, and this is a no-op)."""
        if threading_is_main():
            for sig in self.SIGNALS:
                self._previous.setdefault(sig, signal.getsignal(sig))
                signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.training and self.signum is None:
            self.signum = signum  # acted on at the end of the step in flight
            return
        raise self.interrupted(signum)

    def interrupted(self, signum: int) -> Interrupted:
        """The exception for ``signum``, naming the newest ``last.ckpt`` this run wrote (if any)."""
        saved = self.saver.saved_at is not None and self.saver.path.is_file()
        return Interrupted(signum, self.saver.path if saved else None, *(self.saver.saved_at or (None, None)))

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.last_step = trainer.global_step  # the optimizer step count at the previous call's end
        # Lightning installs its SIGTERM handler after `on_fit_start`; ours replaces it here, and Lightning's
        # teardown puts back what was there before it.
        self.install()
        self.training = True

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.training = False

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self.training = False

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        signum = self.signum or 0
        if trainer.world_size > 1:
            previous, self.last_step = self.last_step, trainer.global_step
            if not passed(previous, trainer.global_step, trainer.log_every_n_steps):
                return
            signum = int(trainer.strategy.reduce(torch.tensor(signum, device=module.device), reduce_op="max"))
        if signum:
            self.saver.save(trainer)
            raise Interrupted(signum, self.saver.path, trainer.current_epoch + 1, trainer.global_step)

    def on_validation_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        # Validation of a large split can take long: stop there too (single process only: under DDP the ranks
        # agree at training steps), keeping the last.ckpt written before it.
        if self.signum and trainer.world_size == 1:
            raise self.interrupted(self.signum)






class ProgressLines(L.Callback):
    """A plain line on stderr every ``every_seconds`` of training: progress for logs, where a bar is noise."""

    def __init__(self, every_seconds: float = 5.0) -> None:
        self.every_seconds = every_seconds

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = self.last = time.monotonic()

    @rank_zero_only  # under DDP, one process speaks for all
    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every_seconds:
            return
        self.last = now
        # Optimizer steps, also where a call takes several (every epoch has the same number of steps).
        total = steps_per_epoch(trainer)
        done = min(total, max(0, trainer.global_step - trainer.current_epoch * total))
        loss = trainer.callback_metrics.get("train/loss_step")
        line = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: step {done}/{total} " \
               f"({100 * done / total:.0f}%)"
        if loss is not None:
            line += f", train/loss_step {float(loss):.6g}"
        print(f"{line}, {now - self.start:.0f} s", file=sys.stderr, flush=True)


class TensorBoardFigures(L.Callback):
    """Figures and weight histograms in TensorBoard, ``times`` times per run (at evenly spaced epochs' ends,
    the last one included; ``times >= max_epochs``: every epoch).

    Drawing a figure takes about 0.1 s, more than a whole epoch of a small model: a figure every epoch would
    make drawing the main cost of training (the tutorial's 100 epochs: 1.3 s of training, 20 s of figures).
    """

    def __init__(self, times: int = 5) -> None:
        if not (isinstance(times, int) and not isinstance(times, bool) and times >= 0):
            raise ValueError(f"figures must be a whole number >= 0 (0: none), got {times!r}")
        self.times = times

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.times < 1:  # figures off; also no division by zero below
            return
        experiment = next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else self.times
        every = max(1, epochs // self.times)
        last = trainer.current_epoch + 1 >= epochs or trainer.should_stop  # a module that stops itself: its end
        if experiment is None or not ((trainer.current_epoch + 1) % every == 0 or last):
            return
        step = trainer.global_step
        for name, p in module.named_parameters():
            experiment.add_histogram(f"weights/{name}", p.detach().float().cpu(), step)
        dm = trainer.datamodule
        if not have_matplotlib() or dm is None:
            return
        split, x, y = held_out(dm)
        preds = predict(module, x).numpy()
        title = f"epoch {trainer.current_epoch + 1}, {split} rows"
        with drawing():  # add_figure draws the figure
            experiment.add_figure(f"{split}/predictions", predictions_figure(y.numpy(), preds, dm.target_names,
                                                                             title), step)
            if x.shape[1] == 1:
                experiment.add_figure(f"{split}/fit", fit_figure(module, x.numpy(), y.numpy(), (
                    dm.feature_names[0], dm.target_names[0]), title), step)


class LossHistory(L.Callback):
    """Each epoch's ``train/loss`` and ``val/loss`` (after its validation), for :func:`save_png`."""

    def __init__(self) -> None:
        self.epochs: dict[str, list[tuple[int, float]]] = {"train/loss": [], "val/loss": []}

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for key, points in self.epochs.items():
            if key in trainer.callback_metrics:
                points.append((trainer.current_epoch + 1, float(trainer.callback_metrics[key])))
