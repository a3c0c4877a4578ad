"""What a task cost, recorded in its marker (``done/STAGE-NNNNN.json``) and summed by ``reorder status``.

    rows       the rows the task handled (its record's own count: the rows read by a keys task, sorted by a
               sort task, placed by a place task, scattered by a scatter task, written by a gather task)
    bytes_in   the bytes of what the task reads (each stage says what that is: :mod:`reorder_cli.stages`)
    bytes_out  the bytes of the files the task wrote (its marker's ``files``)
    seconds    the task's wall time, from its start to its marker (uploads to a store included)
    peak_rss   the peak resident memory of the task's process (``ru_maxrss``) when the task finished, in bytes:
               tasks run in one process (the local pool's threads, one ``reorder run``) share that process,
               so each records the process's peak so far, not its own

These are measurements, so they differ from run to run: they live in the markers only, never in the
manifest or a shard (which the run's bytes and nothing else decide), and nothing compares them.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterable
from typing import Any

FIELDS = ("rows", "bytes_in", "bytes_out", "seconds", "peak_rss")


def clock() -> float:
    """A task's start, for :func:`measured`."""
    return time.perf_counter()


def peak_rss() -> int:
    """The peak resident memory of this process so far, in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def measured(started: float, bytes_out: int) -> dict[str, Any]:
    """The statistics known when a task's marker is written: ``bytes_out``, ``seconds`` since ``started``
    (:func:`clock`) and ``peak_rss``; the task's record holds ``rows`` and ``bytes_in``."""
    return {"bytes_out": int(bytes_out), "seconds": round(time.perf_counter() - started, 6), "peak_rss": peak_rss()}


def has_stats(record: dict[str, Any]) -> bool:
    return all(isinstance(record.get(f), int | float) and not isinstance(record.get(f), bool) for f in FIELDS)


def totals(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """A stage's sums over the markers that carry statistics: ``{tasks, rows, bytes_in, bytes_out, seconds,
    peak_rss_max}``; None when none does."""
    found = [r for r in records if has_stats(r)]
    if not found:
        return None
    out: dict[str, Any] = {"tasks": len(found)}
    for field in ("rows", "bytes_in", "bytes_out"):
        out[field] = sum(int(r[field]) for r in found)
    out["seconds"] = round(sum(float(r["seconds"]) for r in found), 6)
    out["peak_rss_max"] = max(int(r["peak_rss"]) for r in found)
    return out
