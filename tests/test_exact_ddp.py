"""``LeastSquaresModule`` across processes and machines: 2 DDP processes (gloo) give one process's statistics to
1e-10 relative, and README's two-machine ``torchrun`` commands, run as two nodes over loopback, give one process's
statistics (``--solver exact``) and weights (SGD).

Two ranks' sums merge in another order than one process's (a binary tree over other leaves), so the last bits may
differ: the comparisons are relative, key by key and element by element, with null and NaN in the same places.
"""

from __future__ import annotations

import math
import os
import pickle
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lr_lightning.core.cli import fit_main

from .conftest import make_trainer, run_main

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed")

RTOL = 1e-10  # the bound; measured max relative difference is in README ("Several machines")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    from lr_lightning import LeastSquaresModule, NpyDataModule, RegressionDataModule

    x, y = _offset_data()
    cases = {
        "in_memory_offset_robust": (RegressionDataModule(x, y, val_fraction=0, dtype="float64"), True),
        "uneven_shards_robust": (NpyDataModule(_shards(tmp / "shards"), val_fraction=0, dtype="float64"), True),
        "uneven_shards_no_bias": (NpyDataModule(tmp / "shards", val_fraction=0, dtype="float64", bias=False), False),
        # A polynomial basis always takes refinement passes: their double-double sums are merged across ranks too.
        "in_memory_quadratic": (RegressionDataModule(x[:, :2], y, val_fraction=0, dtype="float64",
                                                     polynomial_degree=2), False),
    }
    out: dict[str, Any] = {}
    for name, (dm, robust) in cases.items():
        module = LeastSquaresModule(bias=dm.bias, robust=robust)
        t = make_trainer(max_epochs=20, **trainer)
        t.fit(module, datamodule=dm)
        out[name] = {"statistics": module.statistics, "world_size": t.world_size, "passes": t.current_epoch + 1,
                     "batches": t.num_training_batches}
    return out


def _ddp_worker(rank: int, port: int, tmp: str) -> None:
    """One of 2 gloo ranks, started by torch.multiprocessing.spawn: the environment torchrun would give, so that
    Lightning joins this process group instead of starting processes itself."""
    import lr_lightning.exact.least_squares_module as lsm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    lsm.PASS_BYTES = 0  # passes of 1024-row batches: several per rank, so merges within a rank are tested too
    torch.set_num_threads(1)  # two processes on a 2-core machine
    results = _fit_cases(Path(tmp), strategy="ddp", devices=2)
    if rank == 0:
        (Path(tmp) / "ddp.pkl").write_bytes(pickle.dumps(results))


@pytest.mark.slow  # ~8 s: two new Pythons (spawn) importing torch and Lightning, then 3 fits each
def test_two_ddp_processes_give_one_process_statistics_on_uneven_data(tmp_path, monkeypatch):
    import lr_lightning.exact.least_squares_module as lsm

    _shards(tmp_path / "shards")
    torch.multiprocessing.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp = pickle.loads((tmp_path / "ddp.pkl").read_bytes())
    monkeypatch.setattr(lsm, "PASS_BYTES", 0)
    single = _fit_cases(tmp_path)
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
@pytest.mark.parametrize(("flags", "message"), [
    (["--num_nodes", "1"], "error: --num_nodes 1: torchrun started 2 node(s) (--nnodes 2); give --num_nodes the same"),
    (["--num_nodes", "2", "--devices", "2"], "error: --devices 2: torchrun started 1 process(es) on this node"),
])
def test_flags_that_disagree_with_torchrun_are_one_line_before_any_process_group(tmp_path, monkeypatch, flags,
                                                                                   message):
    # What torchrun --nnodes 2 --nproc-per-node 1 sets; without the check, Lightning raises in every process once
    # the fit starts, and the nodes that started wait for the missing ones.
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    for key, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    result = run_main(fit_main, "--data", "synthetic", "--accelerator", "cpu", "--strategy", "ddp", *flags,
                      cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and not any(tmp_path.iterdir())  # one line, nothing written
