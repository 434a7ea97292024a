"""Shared test helpers: a quiet CPU Trainer, and the CLI run as a real subprocess.

A numeric threshold in these tests must hold on any x86-64 CPU and thread count. "Measured" beside one gives the
value seen over torch's CPU kernels (ATEN_CPU_CAPABILITY default, avx2, avx512), MKL's and OpenBLAS's code paths
(MKL_CBWR, OPENBLAS_CORETYPE), and 1 and 2 threads, simulated on a 2-core AMD EPYC; the threshold keeps a margin.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# The banners (GPU available, a litlogger tip) are INFO; tests want warnings only.
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


# LBFGS as README gives it for float64 accuracy: full batch (automatic on the command line), strong-Wolfe line
# search, and a gradient tolerance near float64's precision.
LBFGS = ["--optimizer", "LBFGS", "--optimizer.lr", "1", "--optimizer.line_search_fn", "strong_wolfe",
         "--optimizer.tolerance_grad", "1e-14", "--optimizer.tolerance_change", "0", "--optimizer.history_size", "20"]


def sgd(lr: float, **kwargs: Any) -> functools.partial:
    """``RegressionModule(net, optimizer=sgd(0.1))``: plain SGD at ``lr``, as a factory the module records."""
    return functools.partial(torch.optim.SGD, lr=lr, **kwargs)


def lbfgs(dtype: torch.dtype = torch.float64) -> functools.partial:
    """The LBFGS that reaches float64's digits (the command line's ``LBFGS`` flags, through the API)."""
    return functools.partial(torch.optim.LBFGS, lr=1.0, line_search_fn="strong_wolfe", max_iter=20, history_size=20,
                             tolerance_grad=100 * torch.finfo(dtype).eps, tolerance_change=0.0)


def make_trainer(**kwargs: Any) -> L.Trainer:
    """A CPU Trainer with nothing written to disk unless asked (logger, checkpoints)."""
    defaults: dict[str, Any] = {
        "accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
        "enable_progress_bar": False, "enable_model_summary": False,
    }
    return L.Trainer(**{**defaults, **kwargs})


DDP_VARIABLES = {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK",
                 "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID"}


def run_script(script: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python scripts/<script> args...`` in ``cwd``, as a user runs it."""
    # As a user's shell has it: without the process-group variables an in-process DDP test left in os.environ (a
    # MASTER_PORT whose store still listens made the script's own DDP run fail with EADDRINUSE).
    env = {k: v for k, v in os.environ.items() if k not in DDP_VARIABLES} | {"PYTHONWARNINGS": "default"}
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

def one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """A command's refusal as the brief wants it: exit status 2, one ``error: ...`` line on stderr holding ``words``,
    no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]



@pytest.fixture(autouse=True)
def _seed() -> None:
    L.seed_everything(0, verbose=False)
