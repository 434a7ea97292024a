"""Runs on disk: each run's own version folder under the log directory, and finding the newest run to resume.

Also :class:`Interrupted`, what a signal leaves behind (the checkpoint a run can continue from), and
:class:`RunLogger`, the TensorBoard logger a run writes with.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger


class Interrupted(Exception):
    """Training was stopped by a signal; ``checkpoint`` is the resumable ``last.ckpt`` (None: nothing saved yet),
    written in ``epoch`` (counted from 1, as progress lines count) after optimizer step ``step``."""

    def __init__(self, signum: int, checkpoint: Path | None = None, epoch: int | None = None,
                 step: int | None = None) -> None:
        self.signum, self.checkpoint, self.epoch, self.step = signum, checkpoint, epoch, step
        where = f" in epoch {epoch}, after step {step}" if step is not None else ""
        super().__init__(f"interrupted by {signal.Signals(signum).name}{where}")

    @property
    def exit_status(self) -> int:
        """128 + the signal's number: what a shell reports for a process the signal ended (130, 143)."""
        return 128 + self.signum


def threading_is_main() -> bool:

    return threading.current_thread() is threading.main_thread()


def claim_version(log_dir: str | Path) -> int:
    """Create ``log_dir/version_N`` for the next free N and return N.

    ``mkdir`` either creates the folder or fails because it exists, atomically, so two runs started together into
    one ``log_dir`` never share a folder (TensorBoardLogger's own choice lists the folders and picks the next
    number: two runs can both pick it). Raises ValueError naming ``log_dir`` when it is a file, is under a file,
    or cannot be written.
    """
    root = Path(log_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        n = 1 + max((int(p.name[8:]) for p in root.glob("version_*") if p.name[8:].isdigit()), default=-1)
        while True:
            try:
                (root / f"version_{n}").mkdir()
                return n
            except FileExistsError:
                n += 1
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{root}: is a file or lies under one; expected a directory for logs") from None
    except PermissionError:
        raise ValueError(f"{root}: cannot write there (permission denied)") from None
    except OSError as e:
        raise ValueError(f"{root}: cannot create it ({e.strerror})") from None


def find_last_checkpoint(log_dir: str | Path) -> Path | None:
    """The ``last.ckpt`` written most recently under ``log_dir`` (one TensorBoard version folder per run)."""
    candidates = list(Path(log_dir).glob("*/checkpoints/last.ckpt"))
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger as a run's first look in TensorBoard should be: the loss curves first.

    - No ``hp_metric`` card (``default_hp_metric=False``: Lightning's -1 at step 0, drawn as a line to the final value,
      sorted before the loss cards). :meth:`RegressionModule.on_fit_end` logs the hyperparameters once with the metric
      ``val/loss`` (``train/loss`` without a validation split): a tag the run already draws, so the HPARAMS tab reads
      its last value and no card of its own is written.
    - No ``epoch`` card: Lightning adds ``epoch`` to every logged dict, and TensorBoard's Time Series sorts cards by
      tag, so ``epoch`` came before ``train/loss``. The x axis is the optimizer step, as in every card.

    >>> import tempfile
    >>> logger = RunLogger(tempfile.mkdtemp(), name="", version=0)
    >>> logger.log_metrics({"train/loss": 0.5, "epoch": 0}, step=1)  # writes train/loss only
    >>> logger.finalize("success")
    """

    def __init__(self, save_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(save_dir, **{"default_hp_metric": False, **kwargs})
        self.tags: set[str] = set()  # the scalar tags written so far: the run's curves
        self.drawn: set[str] = set()  # during log_hyperparams: its metrics that are curves, not written again

    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None) -> None:
        self.drawn = set(metrics or ()) & self.tags  # a new tag (a final statistic) is still written, once
        try:
            super().log_hyperparams(params, metrics, step)
        finally:
            self.drawn = set()

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch" and k not in self.drawn}
        self.tags |= set(metrics)
        super().log_metrics(metrics, step)
