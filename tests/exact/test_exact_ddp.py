"""``LeastSquaresModule`` across processes and machines: 2 DDP processes (gloo) give one process's statistics to
1e-10 relative, and README's two-machine ``torchrun`` commands, run as two nodes over loopback, give one process's
statistics (``--solver exact``) and weights (SGD).

Two ranks' sums merge in another order than one process's (a binary tree over other leaves), so the last bits may
differ: the comparisons are relative, key by key and element by element, with null and NaN in the same places.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lr_lightning.benchmark.make_data import write_synthetic
from lr_lightning.core.cli import fit_main

from ..conftest import ROOT, make_trainer, run_main

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed")

RTOL = 1e-10  # the bound; measured max relative difference is in README ("Several machines")


def _free_port() -> int:
    """A port free now, below Linux's ephemeral range (32768-60999): a port the kernel handed out (bind to 0) is the
    kind it hands out again, to the gloo connections of other DDP runs on this machine, before torchrun binds it."""
    rng = random.Random()  # not the tests' seeds: two sessions must not draw the same ports
    for _ in range(100):
        port = rng.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


def assert_same_statistics(a: Any, b: Any, where: str = "") -> float:
    """``a`` and ``b`` equal in structure, every key, every element: null and NaN in the same places, strings
    equal, numbers within ``RTOL`` relative. Returns the largest relative difference seen."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        return max((assert_same_statistics(a[k], b[k], f"{where}.{k}") for k in a), default=0.0)
    if isinstance(a, (list, tuple, np.ndarray)):
        a, b = list(np.asarray(a, dtype=object).ravel()), list(np.asarray(b, dtype=object).ravel())
        assert len(a) == len(b), f"{where}: {len(a)} elements != {len(b)}"
        return max((assert_same_statistics(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True))),
                   default=0.0)
    if a is None or isinstance(a, str):
        assert a == b, f"{where}: {a!r} != {b!r}"
        return 0.0
    a, b = float(a), float(b)
    if math.isnan(a) or math.isinf(a) or a == b:
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{where}: {a!r} != {b!r}"
        return 0.0
    rel = abs(a - b) / max(abs(a), abs(b))
    assert rel <= RTOL, f"{where}: {a!r} != {b!r} ({rel:.2g} relative)"
    return rel

# ------------------------------------------------------------------------------- 2 DDP processes, one spawn
def _offset_data() -> tuple[np.ndarray, np.ndarray]:
    # x0 = 1000 + u: an offset 3,500 times its spread, which the textbook sums of squares would pay digits for; the
    # noise grows with x2, so HC0-HC3 differ from the classic errors.
    rng = np.random.default_rng(7)
    n = 5003  # odd, and not a multiple of 2 ranks x 1024 rows
    x = np.column_stack([1000 + rng.uniform(size=n), rng.normal(size=n), rng.uniform(1, 3, size=n)])
    y = 2 + x @ [3.0, -1.5, 0.5] + rng.normal(size=n) * x[:, 2]
    return x, y


def _tiny_spread_data() -> tuple[np.ndarray, np.ndarray]:
    # x0 = 1000 + 0.001·u: the offset is 10⁶ times the spread, so a float64 mean of it is exact only to 1e-10 of the
    # spread. With blocks' means merged in float64, 2 ranks were 6.3e-10 (relative) off 1 process in the intercept,
    # beyond RTOL (with a tenth of this noise); with them in double-double, within 6e-13 in every statistic.
    # This noise keeps each p-value either moderate or 0: a p-value of a t near 10 (p ~ 1e-23) moves by about t²
    # times t's last-bit differences, 1.6e-9 between two ways of cutting the same rows with a tenth of the noise.
    # That is the statistic's conditioning, not a merge's loss, and it would make the bound a matter of luck.
    x, y = _offset_data()
    x[:, 0] = 1000 + 0.001 * np.random.default_rng(8).normal(size=len(x))
    return x, 2 + x @ [3.0, -1.5, 0.5] + 0.1 * np.random.default_rng(9).normal(size=len(x)) * x[:, 2]


def _shards(folder: Path) -> Path:
    # Shards of 1300, 700 and 1003 rows (3003, not a multiple of 2 x 1024), float32 on disk as make_data writes them.
    if not folder.exists():
        rng = np.random.default_rng(3)
        x = rng.normal(size=(3003, 3))
        data = np.column_stack([x, x @ [1.0, -2.0, 0.5] + 4 + 0.1 * rng.normal(size=3003)]).astype(np.float32)
        folder.mkdir()
        for i, (lo, hi) in enumerate([(0, 1300), (1300, 2000), (2000, 3003)]):
            np.save(folder / f"part-{i:05d}.npy", data[lo:hi])
    return folder


def _fit_cases(tmp: Path, **trainer: Any) -> dict[str, Any]:
    """Each case's statistics (and the world it ran in), fitted by a Trainer with ``trainer``'s settings."""
    from lr_lightning import NpyDataModule, RegressionDataModule

    x, y = _offset_data()
    tiny_x, tiny_y = _tiny_spread_data()
    cases = {
        "in_memory_offset_robust": (RegressionDataModule(x, y, val_fraction=0, dtype="float64"), True),
        "in_memory_tiny_spread_robust": (RegressionDataModule(tiny_x, tiny_y, val_fraction=0, dtype="float64"), True),
        "uneven_shards_robust": (NpyDataModule(_shards(tmp / "shards"), val_fraction=0, dtype="float64"), True),
        "uneven_shards_no_bias": (NpyDataModule(tmp / "shards", val_fraction=0, dtype="float64", bias=False), False),
        # A polynomial basis always takes refinement passes: their double-double sums are merged across ranks too.
        # Not of the offset column: the condition number of 1000 + u's powers (1.4e13) moves by 6e-10 with how the
        # rows are cut, the conditioning of an eigenvalue ratio, not a merge's loss (the offset cases test that).
        "in_memory_quadratic": (RegressionDataModule(x[:, 1:], y, val_fraction=0, dtype="float64",
                                                     polynomial_degree=2), False),
    }
    return fit_each(cases, trainer)


def fit_each(cases: dict[str, Any], trainer: dict[str, Any], **module: Any) -> dict[str, Any]:
    """``{name: (datamodule, robust)}`` each fitted by ``LeastSquaresModule(bias=dm.bias, robust=robust, **module)``
    with a Trainer of ``trainer``'s settings: its statistics, the world it ran in, its passes and batches."""
    from lr_lightning import LeastSquaresModule

    out: dict[str, Any] = {}
    for name, (dm, robust) in cases.items():
        fitted = LeastSquaresModule(bias=dm.bias, robust=robust, **module)
        t = make_trainer(max_epochs=20, **trainer)
        t.fit(fitted, datamodule=dm)
        out[name] = {"statistics": fitted.statistics, "world_size": t.world_size, "passes": t.current_epoch + 1,
                     "batches": t.num_training_batches}
    return out


@pytest.mark.slow  # the two-process job (conftest.ddp_results, shared with the weighted and clustered tests): 8 s
def test_two_ddp_processes_give_one_process_statistics_on_uneven_data(ddp_results, monkeypatch):
    import lr_lightning.exact.least_squares_module as lsm

    results, tmp = ddp_results
    ddp = results["plain"]
    monkeypatch.setattr(lsm, "PASS_BYTES", 0)
    single = _fit_cases(tmp)  # the shards the two processes read
    worst = 0.0
    for name, one in single.items():
        two = ddp[name]
        assert (one["world_size"], two["world_size"]) == (1, 2)
        print(name, "passes", one["passes"], two["passes"])
        # Robust or refinement: a second pass merged across ranks. Not always the same count: refinement stops when
        # a correction stops shrinking, which at the last bits depends on the order of the sums.
        assert min(one["passes"], two["passes"]) >= 2
        assert one["batches"] >= 2 * two["batches"] - 1  # each rank took about half of the single process's rows
        worst = max(worst, assert_same_statistics(one["statistics"], two["statistics"], name))
    print(f"max relative difference, 2 ranks vs 1: {worst:.2g}")
    s = single["in_memory_offset_robust"]["statistics"]["y"]
    assert "stderr_hc" in s and s["coef"][1] == pytest.approx(3, abs=0.1)  # the fit is a fit, not zeros


# ------------------------------------------------------------------------------- torchrun's world vs the flags
@pytest.mark.parametrize(("local", "flags", "message"), [
    (1, ["--num_nodes", "1"], "error: --num_nodes 1: torchrun started 2 node(s) (--nnodes 2); give --num_nodes the"),
    (1, ["--num_nodes", "2", "--devices", "2"], "error: --devices 2: torchrun started 1 process(es) on this node"),
    # --nnodes 1 --nproc-per-node 2 on the CPU, where Lightning's --devices auto is one process.
    (2, ["--num_nodes", "1"], "error: --devices auto: torchrun started 2 process(es) on this node"),
])
def test_flags_that_disagree_with_torchrun_are_one_line_before_any_process_group(tmp_path, monkeypatch, local,
                                                                                   flags, message):
    # What torchrun sets for 2 processes in all, `local` on each node; without the check, Lightning raises in every
    # process once the fit starts, and the nodes that started wait for the missing ones.
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    for key, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": str(local), "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    result = run_main(fit_main, "--data", "synthetic", "--accelerator", "cpu", "--strategy", "ddp", *flags,
                      cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and not any(tmp_path.iterdir())  # one line, nothing written


# ------------------------------------------------------------------------------- README's two machines, on one
def readme_torchrun_commands() -> dict[tuple[str, int], list[str]]:
    """README's "Several machines" commands, ``{(solver, node_rank): argv}``."""
    text = (ROOT / "docs" / "devices.md").read_text().split("### Several machines", 1)[1]
    block = text.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    commands = {}
    for line in block.splitlines():
        if line.startswith("torchrun"):
            argv = shlex.split(line)
            solver = "exact" if "--solver" in argv else "sgd"
            commands[solver, int(argv[argv.index("--node_rank") + 1])] = argv
    assert sorted(commands) == [("exact", 0), ("exact", 1), ("sgd", 0), ("sgd", 1)], "README lost a command"
    return commands


def _on_loopback(argv: list[str], port: int, log_dir: Path) -> list[str]:
    """A README command, run here: this Python's torchrun, this checkout's fit.py, machine 0 at 127.0.0.1."""
    argv = list(argv)
    argv[argv.index("--master_addr") + 1] = "127.0.0.1"
    argv[argv.index("--master_port") + 1] = str(port)
    argv[argv.index("scripts/fit.py")] = str(ROOT / "scripts/fit.py")
    # Test-only: no progress bar, a folder per run, and few epochs (the default is 100).
    return [sys.executable, "-m", "torch.distributed.run", *argv[1:], "--progress_bar", "false",
            "--log_dir", str(log_dir), "--max_epochs", "3"]


def _one_process(argv: list[str], log_dir: Path, *extra: str) -> list[str]:
    """The fit.py part of a README command, without the nodes: one process."""
    args = argv[argv.index("scripts/fit.py") + 1:]
    for flag in ("--num_nodes", "--strategy"):
        i = args.index(flag)
        del args[i:i + 2]
    return [*args, "--progress_bar", "false", "--log_dir", str(log_dir), "--max_epochs", "3", *extra]


def _kill_if_running(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # 11-14 s: two torchrun pairs at once (4 torchrun agents, 4 fit.py) on 2 cores
def test_readme_two_machine_commands_on_loopback_equal_one_process(tmp_path):
    write_synthetic(tmp_path / "shards", 600, 3, shard_rows=250)  # README's --data shards/: 250, 250, 100 rows
    commands = readme_torchrun_commands()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes: dict[tuple[str, int], tuple[subprocess.Popen[bytes], Path]] = {}
    with contextlib.ExitStack() as stack:
        for solver in ("exact", "sgd"):  # both pairs at once: their start-up is most of the time
            port = _free_port()
            for rank in (0, 1):
                out = tmp_path / f"{solver}-{rank}"
                # Each node its own --log_dir, as on its own machine: node 1's must stay unwritten.
                log_dir = tmp_path / (solver if rank == 0 else f"{solver}-node1")
                argv = _on_loopback(commands[solver, rank], port, log_dir)
                stdout, stderr = (stack.enter_context(open(f"{out}.{ext}", "w")) for ext in ("out", "err"))
                proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=stdout, stderr=stderr)
                stack.callback(_kill_if_running, proc)  # a failed assertion must not leave a node waiting
                nodes[solver, rank] = (proc, out)
        # Meanwhile one process, in this one: the exact fit, and SGD at the 2 nodes' global batch (2 x 32).
        one = {"exact": run_main(fit_main, *_one_process(commands["exact", 0], tmp_path / "one-exact"),
                                 cwd=tmp_path),
               "sgd": run_main(fit_main, *_one_process(commands["sgd", 0], tmp_path / "one-sgd", "--data.batch_size",
                                                       "64"), cwd=tmp_path)}
        assert all(r.returncode == 0 for r in one.values()), [r.stderr[-2000:] for r in one.values()]
        for proc, out in nodes.values():
            assert proc.wait(timeout=120) == 0, Path(f"{out}.err").read_text()[-3000:]
    stdout = {key: Path(f"{out}.out").read_text() for key, (_, out) in nodes.items()}
    for solver in ("exact", "sgd"):
        assert " LinearRegression " in stdout[solver, 0] and "2 processes" in stdout[solver, 0]
        assert "LinearRegression" not in stdout[solver, 1]  # global rank 0 alone speaks ...
        assert [p.name for p in (tmp_path / solver).iterdir()] == ["version_0"]  # ... and writes one run folder
        assert not (tmp_path / f"{solver}-node1").exists()

    def stats(folder: Path) -> Any:
        return json.loads((folder / "version_0/statistics.json").read_text())

    worst = assert_same_statistics(stats(tmp_path / "one-exact"), stats(tmp_path / "exact"), "statistics.json")
    one_sgd = torch.load(tmp_path / "one-sgd/version_0/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    two_sgd = torch.load(tmp_path / "sgd/version_0/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    gap = max(float((one_sgd[k] - two_sgd[k]).abs().max()) for k in one_sgd)
    print(f"exact: {worst:.2g} relative; SGD weights: {gap:.2g} apart")
    # float32 SGD: the all-reduce averages 2 ranks' mean gradients where one process takes one mean of 64, so each of
    # the 24 steps may round differently by an ulp (6e-8) times the learning rate. Measured: 7.5e-9 apart. A wrong
    # batch split (e.g. 32 a step instead of 64) moves the weights by ~1e-2.
    assert gap <= 1e-6
