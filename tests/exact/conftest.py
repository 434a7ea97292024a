"""One two-process DDP job for the exact solver's DDP tests: two spawned gloo processes (a new Python each, importing
torch and Lightning: most of the time) fit every case of test_exact_ddp.py, test_weights_ddp.py and
test_clusters_ddp.py once; each test compares its own cases with one process's fits."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch


def _all_cases(tmp: Path, **trainer: Any) -> dict[str, Any]:
    """Every DDP test's cases, ``{"plain" | "weighted" | "clustered": that test's results}``."""
    from .test_clusters_ddp import _clustered_cases
    from .test_exact_ddp import _fit_cases
    from .test_weights_ddp import _weighted_cases

    return {"plain": _fit_cases(tmp, **trainer), "weighted": _weighted_cases(**trainer),
            "clustered": _clustered_cases(**trainer)}


def _worker(rank: int, tmp: str) -> None:
    """One of 2 gloo ranks, started by torch.multiprocessing.spawn. The process group meets through a file, not a
    port (no port to race other runs for); Lightning finds it initialized and joins it, and LOCAL_RANK tells it that
    the processes were started outside (as torchrun would), so it starts none itself."""
    import lr_lightning.exact.least_squares_module as lsm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="1", WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")  # MASTER_PORT: read by Lightning, never bound
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=2)
    lsm.PASS_BYTES = 0  # passes of 1024-row batches: several per rank, so merges within a rank are tested too
    torch.set_num_threads(1)  # two processes on a 2-core machine
    results = _all_cases(Path(tmp), strategy="ddp", devices=2)
    if rank == 0:
        (Path(tmp) / "ddp.pkl").write_bytes(pickle.dumps(results))
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="session")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """Rank 0's results of the one two-process job, and its folder (the shards it fitted, for the one-process side).
    A failure in any case fails every test that uses it, with the spawned process's traceback."""
    from .test_exact_ddp import _shards

    tmp = tmp_path_factory.mktemp("ddp")
    _shards(tmp / "shards")  # written once, before both ranks read them
    torch.multiprocessing.spawn(_worker, args=(str(tmp),), nprocs=2, join=True)
    return pickle.loads((tmp / "ddp.pkl").read_bytes()), tmp
