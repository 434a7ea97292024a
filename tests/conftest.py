"""Shared test helpers: a quiet CPU Trainer, and the CLI run as a real subprocess.

A numeric threshold in these tests must hold on any x86-64 CPU and thread count. "Measured" beside one gives the
value seen over torch's CPU kernels (ATEN_CPU_CAPABILITY default, avx2, avx512), MKL's and OpenBLAS's code paths
(MKL_CBWR, OPENBLAS_CORETYPE), and 1 and 2 threads, simulated on a 2-core AMD EPYC; the threshold keeps a margin.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# Under pytest-xdist (`pytest -n 2`) each worker is a process of its own: one thread each, as the DDP tests' ranks
# have, so that two workers do not run four threads on a 2-core machine. The thresholds hold at 1 thread (above).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

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


# Generated hostile input (hypothesis): derandomized and bounded by default ("ci": the same examples on every
# machine); `HYPOTHESIS_PROFILE=hostile pytest tests/core` searches longer, with fresh random examples.
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("hostile", max_examples=300, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def run(main: Any, argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit status, stdout, stderr); the commands return their status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return int(code or 0), out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str, ok: tuple[int, ...] = (0,)) -> None:
    """Exit 0 (or ``ok``), or exit 2 with one ``error:`` line; never a traceback."""
    assert "Traceback" not in err, err
    if code == 2:
        lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    else:
        assert code in ok, (code, err)


def assert_one_line_error(e: BaseException, *words: str) -> None:
    assert isinstance(e, (ValueError, FileNotFoundError)), repr(e)
    text = str(e)
    assert text and "\n" not in text, repr(text)
    for w in words:
        assert w in text, (w, text)


# Strings a user might type where a number is wanted (hypothesis).
numbers = st.one_of(st.sampled_from(["0", "-1", "1", "nan", "inf", "-inf", "1e400", "0.5", "1e-12", "2", "3.7",
                                     "abc", "", "1,2", "0,0", "-0", "4294967296", "99999999999999999999"]),
                    st.integers(-5, 5).map(str), st.floats(-10, 10).map(repr))


# ------------------------------------------------------------------------------------------------- CSV
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=6)


cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e400", "NaN", "n/a", "1,5", "0x10", "1_000", "٣", "\x00",
                     '"1"', '"2,3"', "True", "١٢", "1e-400", "  7  "]),
    st.text(max_size=4),
)


@st.composite
def hostile_csv(draw: Any) -> bytes:
    n_cols = draw(st.integers(1, 4))
    header = draw(st.lists(names, min_size=n_cols, max_size=n_cols))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=n_cols + 1), max_size=6))
    lines = [",".join(header)] + [",".join(r) for r in rows]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "# a comment", "   ", ",,"])))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))
    data = text.encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data  # a UTF-8 byte-order mark, as spreadsheet programs write
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=4))
    return data


# ------------------------------------------------------------------------------------------------- NPY
dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.int64, np.uint8, np.bool_, np.complex64,
                          "U3", object])


@st.composite
def hostile_npy(draw: Any) -> tuple[bytes, str]:
    shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple))
    dtype = draw(dtypes)
    n = math.prod(shape)
    if dtype == "U3":
        a = np.array(draw(st.lists(st.text(max_size=3), min_size=n, max_size=n)) or [""], dtype="U3")[:n]
    elif dtype is object:
        a = np.array([None] * n, dtype=object)
    else:
        values = draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n))
        a = np.asarray(values).astype(dtype)
    a = a.reshape(shape)
    if n and draw(st.booleans()) and np.issubdtype(a.dtype, np.floating):
        a.flat[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    data = buf.getvalue()
    if draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]  # truncated
    return data, draw(st.sampled_from(["memory-mapped", "in-memory"]))



@pytest.fixture(autouse=True)
def _seed() -> None:
    L.seed_everything(0, verbose=False)
