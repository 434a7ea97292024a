"""Threads for the exact solver's passes over CPU blocks (:mod:`~lr_lightning.exact.gram`,
:mod:`~lr_lightning.exact.cluster_pass`): a pool of ``torch.get_num_threads()`` threads, BLAS held to one thread
while they run, and the split of a block's rows among them.

numpy's element-wise operations and scipy's BLAS and sparse products release the GIL, so Python threads run them
in parallel. Each thread then asks BLAS for one thread: two threads each asking BLAS for two fought over two cores
(20% slower).

>>> shares(10_000, 2, 4096)
[(0, 8192), (8192, 10000)]
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool): a forked child makes its own
_blas: Any = None  # threadpoolctl's controller, found once per process


def pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` threads, made once per process (a forked child's copy has no threads)."""
    global _pool
    if _pool is None or _pool[:2] != (os.getpid(), threads):
        _pool = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="lr-lightning"))
    return _pool[2]


def one_blas_thread() -> Any:
    """A context in which numpy's and scipy's BLAS use one thread each."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def shares(rows: int, threads: int, block: int) -> list[tuple[int, int]]:
    """Rows ``0..rows`` cut into at most ``threads`` ranges of whole ``block``-row sub-blocks (the last one short)."""
    share = -(-rows // (threads * block)) * block
    return [(start, min(start + share, rows)) for start in range(0, rows, share)]
