"""Running independent tasks on a pool of threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait


class _Skipped(Exception):
    """A task not started because another had failed."""


def run_parallel(fn: Callable, items: list, workers: int) -> list:
    """``[fn(i) for i in items]``, ``workers`` at a time. The first failure, whichever item it is, stops
    the run at once: no task starts after it, and it is raised as soon as the tasks running then are
    over (a thread cannot be stopped; none of them writes after this returns)."""
    stop = threading.Event()

    def guarded(item):
        if stop.is_set():
            raise _Skipped
        try:
            return fn(item)
        except BaseException:
            stop.set()  # before its future says so: the next queued item of this thread sees it
            raise

    pool = ThreadPoolExecutor(max(1, workers))
    futures = [pool.submit(guarded, item) for item in items]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        if stop.is_set():
            pool.shutdown(wait=True, cancel_futures=True)  # the running ones end; the queued ones never start
            raise next(f.exception() for f in futures
                       if f.done() and not f.cancelled() and f.exception() is not None
                       and not isinstance(f.exception(), _Skipped))
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
