"""Shared test helpers: a quiet CPU Trainer, and the CLI run as a real subprocess.

A numeric threshold in these tests must hold on any x86-64 CPU and thread count. "Measured" beside one gives the
value seen over torch's CPU kernels (ATEN_CPU_CAPABILITY default, avx2, avx512), MKL's and OpenBLAS's code paths
(MKL_CBWR, OPENBLAS_CORETYPE), and 1 and 2 threads, simulated on a 2-core AMD EPYC; the threshold keeps a margin.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# The banners (GPU available, a litlogger tip) are INFO; tests want warnings only.
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def make_trainer(**kwargs: Any) -> L.Trainer:
    """A CPU Trainer with nothing written to disk unless asked (logger, checkpoints)."""
    defaults: dict[str, Any] = {
        "accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
        "enable_progress_bar": False, "enable_model_summary": False,
    }
    return L.Trainer(**{**defaults, **kwargs})


def run_script(script: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python scripts/<script> args...`` in ``cwd``, as a user runs it."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_main(main: Any, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command line's ``main(args)`` in this process, in ``cwd``: ``run_script``'s result without the seconds a new
    Python spends importing torch and Lightning. For tests where the process boundary is not the point."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's own errors
                code = e.code
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess([main.__name__, *args], int(code or 0), out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def _seed() -> None:
    L.seed_everything(0, verbose=False)
