"""Runs on disk: each run's own version folder under the log directory, and finding the newest run to resume.

Also :class:`Interrupted`, what a signal leaves behind (the checkpoint a run can continue from).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path


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
