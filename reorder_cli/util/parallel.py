"""Running independent tasks on a pool of threads."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def run_parallel(fn: Callable, items: list, workers: int) -> list:
    """``[fn(i) for i in items]``, ``workers`` at a time; the first failure cancels the tasks
    that have not started and is raised once the running ones are over."""
    pool = ThreadPoolExecutor(max(1, workers))
    futures = [pool.submit(fn, item) for item in items]
    try:
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
