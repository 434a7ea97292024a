"""exact/threads.py: a block's rows shared among threads, each holding BLAS and torch to one thread while it runs
(two threads each starting threads of their own fought over the cores), and the caller's settings restored."""

import numpy as np
import torch
from threadpoolctl import threadpool_info

from lr_lightning.exact.threads import each_share, shares


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_each_share_covers_every_row_once_in_row_order() -> None:
    for rows, block in ((10_000, 4096), (4095, 4096), (3 * 4096, 4096), (1, 4096)):
        got = each_share(lambda lo, hi: (lo, hi), rows, block)
        assert got[0][0] == 0 and got[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(got[:-1], got[1:], strict=True))
        assert all(lo % block == 0 for lo, _ in got)  # whole sub-blocks per share
    assert shares(10_000, 2, 4096) == [(0, 8192), (8192, 10000)]


def test_work_runs_on_one_torch_and_one_blas_thread_and_the_callers_settings_come_back() -> None:
    before, blas_before = torch.get_num_threads(), _blas_threads()
    try:
        torch.set_num_threads(2)
        seen = each_share(lambda lo, hi: (torch.get_num_threads(), _blas_threads()), 3 * 4096, 4096)
        assert len(seen) == 2  # two threads at 2 torch threads, for 3 sub-blocks
        assert all(t == 1 and all(b == 1 for b in blas) for t, blas in seen)
        assert torch.get_num_threads() == 2
        assert _blas_threads() == blas_before
        short = each_share(lambda lo, hi: torch.get_num_threads(), 100, 4096)  # on the calling thread
        assert short == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_an_error_in_the_work_restores_the_settings() -> None:
    before = torch.get_num_threads()

    def fail(lo: int, hi: int) -> None:
        raise ValueError("boom")

    try:
        each_share(fail, 3 * 4096, 4096)
    except ValueError as e:
        assert str(e) == "boom"
    else:
        raise AssertionError("the work's error was lost")
    assert torch.get_num_threads() == before


def test_gram_sums_leaves_torch_threads_as_it_found_them() -> None:
    from lr_lightning.exact.gram import gram_sums

    before = torch.get_num_threads()
    a = torch.from_numpy(np.random.default_rng(0).normal(size=(3 * 4096, 3)))
    n, mean, _, comoment = gram_sums([a])
    assert torch.get_num_threads() == before
    assert n == len(a)
    np.testing.assert_allclose(comoment, np.cov(a.numpy().T, bias=True) * len(a), rtol=1e-12)
    np.testing.assert_allclose(mean, a.numpy().mean(axis=0), rtol=0, atol=1e-15)


class _FakeBLAS:
    """threadpoolctl's controller for one process-wide BLAS setting. The real one can't be read reliably here: called
    from a Python thread, OpenBLAS's pthreads build takes or ignores the limit by turns (threadpoolctl#205)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def limit(self, limits: int, user_api: str):
        blas, saved = self, self.threads
        blas.threads = limits

        class Limiter:
            def restore_original_limits(self) -> None:
                blas.threads = saved

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                self.restore_original_limits()

        return Limiter()


def test_overlapping_calls_from_two_threads_restore_blas_once_both_are_done(monkeypatch) -> None:
    """Two fits at once in two user threads: the second to enter saw BLAS already at one thread, and restoring that
    on leaving (after the first had restored the caller's) left the process at one thread."""
    import threading

    import lr_lightning.exact.threads as threads

    blas = _FakeBLAS(2)
    monkeypatch.setattr(threads, "_blas", blas)
    entered = [threading.Event(), threading.Event()]
    leave = [threading.Event(), threading.Event()]

    def fit(i: int) -> None:
        with threads.one_thread_each():
            entered[i].set()
            leave[i].wait(10)

    workers = [threading.Thread(target=fit, args=(i,)) for i in (0, 1)]
    for t, event in zip(workers, entered, strict=True):
        t.start()
        event.wait(10)
    assert blas.threads == 1
    leave[0].set()
    workers[0].join(10)
    assert blas.threads == 1  # the first has left; the second still runs on one thread
    leave[1].set()
    workers[1].join(10)
    assert blas.threads == 2
