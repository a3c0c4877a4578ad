"""Fault injection for the kill-and-resume tests, and the tests' hook below the memory floor.

With ``REORDER_PAUSE_AT=<point>`` in the environment, the process stops at that named
point, touches the file ``REORDER_PAUSE_FLAG`` and sleeps, so that a test can kill it
there with SIGKILL. Without the variable, :func:`pause` does nothing.

With ``REORDER_FAIL_AT=<point>``, :func:`fail` raises an ``OSError`` there (an upload that breaks
half-way: :data:`FAIL_POINTS`; ``push``: a task's upload to a work folder on a store);
``REORDER_FAIL_SHARD=N`` limits it to output shard N.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

POINTS = ("keys", "scatter", "scatter-done", "gather", "gather-done", "publish", "publish-tokens", "upload", "push")
FAIL_POINTS = ("upload", "push")


def below_floor_allowed() -> bool:
    """With ``REORDER_TEST_BELOW_FLOOR=1``, an out-of-core run whose ``memory_limit`` is below the
    least it needs goes on with the smallest pieces instead of refusing: for the tests of the
    out-of-core mechanics (many buckets from tiny data), never for a real run."""
    return os.environ.get("REORDER_TEST_BELOW_FLOOR") == "1"


def pause(point: str) -> None:
    """Stop here when ``REORDER_PAUSE_AT`` names ``point`` (one of :data:`POINTS`)."""
    assert point in POINTS, point
    if os.environ.get("REORDER_PAUSE_AT") != point:
        return
    flag = os.environ.get("REORDER_PAUSE_FLAG")
    if flag:
        Path(flag).write_text(point)
    time.sleep(float(os.environ.get("REORDER_PAUSE_SECONDS", "60")))


def fail(point: str, shard: int | None = None) -> None:
    """Raise an ``OSError`` here when ``REORDER_FAIL_AT`` names ``point`` (and ``REORDER_FAIL_SHARD``, when set,
    names ``shard``)."""
    assert point in FAIL_POINTS, point
    if os.environ.get("REORDER_FAIL_AT") != point:
        return
    only = os.environ.get("REORDER_FAIL_SHARD")
    if only is not None and shard is not None and int(only) != shard:
        return
    raise OSError(f"injected failure at {point} (REORDER_FAIL_AT)")
