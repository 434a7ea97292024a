"""Threads for the exact solver's passes over CPU blocks (:mod:`~lr_lightning.exact.gram`,
:mod:`~lr_lightning.exact.cluster_pass`): a block's rows cut into shares of whole sub-blocks, one share per thread of
a pool of ``torch.get_num_threads()`` threads, each thread's BLAS and torch operations held to one thread.

torch's operations and numpy's products release the GIL, so Python threads run them in parallel. Each of them would
otherwise start threads of its own: two threads each asking BLAS for two fought over two cores (20% slower), and a
torch ``index_add_`` with its own two threads took 0.5 ms where one thread takes 0.1 ms.

>>> shares(10_000, 2, 4096)
[(0, 8192), (8192, 10000)]
>>> sum(each_share(lambda lo, hi: hi - lo, 10_000, 4096))  # rows of each share, on 1 thread or 2
10000
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

T = TypeVar("T")
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool): a forked child makes its own
_blas: Any = None  # threadpoolctl's controller, found once per process
_held_lock = threading.Lock()
_held: dict[str, Any] = {"count": 0, "limiter": None}  # how many contexts hold BLAS at one thread, and the limit


def each_share(work: Callable[[int, int], T], rows: int, block: int) -> list[T]:
    """``work(start, stop)`` over rows ``0..rows`` cut into :func:`shares`: one share per thread, at most
    ``torch.get_num_threads()`` threads and one per ``block`` rows (a short block runs on the calling thread). Every
    call runs with BLAS and torch held to one thread each; the results come in row order."""
    threads = max(1, min(torch.get_num_threads(), rows // block))
    with one_thread_each():
        if threads == 1:
            return [work(0, rows)]
        return list(pool(threads).map(lambda share: _alone(work, *share), shares(rows, threads, block)))


def shares(rows: int, threads: int, block: int) -> list[tuple[int, int]]:
    """Rows ``0..rows`` cut into at most ``threads`` ranges of whole ``block``-row sub-blocks (the last one short)."""
    share = -(-rows // (threads * block)) * block
    return [(start, min(start + share, rows)) for start in range(0, rows, share)]


def pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` threads, made once per process (a forked child's copy has no threads)."""
    global _pool
    if _pool is None or _pool[:2] != (os.getpid(), threads):
        _pool = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="lr-lightning"))
    return _pool[2]


@contextmanager
def one_thread_each() -> Iterator[None]:
    """A context in which numpy's and scipy's BLAS use one thread each, and so does torch (restored after).

    torch's count is the calling thread's own, saved and restored here. BLAS's is the process's: fits running at
    once in several threads share one limit, set by the first to enter and restored by the last to leave (each
    restoring what it saw on entry left BLAS at one thread when the two overlapped). Called from a Python thread,
    OpenBLAS's pthreads build may not take the limit at all (threadpoolctl#205); the results are the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _hold_blas()
    try:
        yield
    finally:
        _release_blas()
        torch.set_num_threads(threads)


def _hold_blas() -> None:
    global _blas
    with _held_lock:
        if _held["count"] == 0:
            if _blas is None:
                from threadpoolctl import ThreadpoolController

                _blas = ThreadpoolController()
            _held["limiter"] = _blas.limit(limits=1, user_api="blas")
        _held["count"] += 1


def _release_blas() -> None:
    with _held_lock:
        _held["count"] -= 1
        if _held["count"] == 0:
            limiter, _held["limiter"] = _held["limiter"], None
            limiter.restore_original_limits()


def _alone(work: Callable[[int, int], T], start: int, stop: int) -> T:
    # torch keeps a thread count per thread (OpenMP's): the pool's threads set theirs, whatever they started with.
    torch.set_num_threads(1)
    return work(start, stop)
