"""What a task wrote, recorded in its marker, and checked by every task that reads it.

When a task finishes, :func:`record` makes each file it wrote (:func:`work_store.task_files`) durable
(the file, then its folder) and its marker records the bytes of each (``files``); the marker is written
after that. Before a task runs, :func:`check_inputs` compares the files it reads (:data:`READS`) with
their producers' records: a missing, short or longer file is one line naming it and the task to re-run
(:class:`StateError`: the work folder is kept), never a crash or a silently shifted order. On a store, a
task's files were checked by size when uploaded; the copies in this machine's mirror are checked here.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

from reorder_cli import work_store
from reorder_cli.errors import StateError
from reorder_cli.util import atomic
from reorder_cli.util.state_io import RESTART

if TYPE_CHECKING:
    from reorder_cli.workdir import WorkDir

#: Which files of which earlier stages each stage reads (patterns relative to the work folder).
READS: dict[str, dict[str, tuple[str, ...]]] = {
    "keys": {},
    "split": {"keys": ("keys/*",)},
    "sort": {"keys": ("keys/run-*", "keys/sample-*"), "split": ("order/*",)},
    "place": {"keys": ("keys/scores-*", "keys/sizes-*", "keys/invalid-*"), "split": ("order/*",),
              "sort": ("order/sort-*",)},
    "layout": {"keys": ("keys/schema-*",), "split": ("order/split.json",), "place": ("plan/ends-*", "plan/sample-*")},
    "scatter": {"keys": ("keys/records-*", "input-*"), "place": ("plan/pairs-*",), "layout": ("plan/*",)},
    "combine": {"layout": ("plan/plan.json", "plan/batches.npy", "plan/schema.arrow"), "scatter": ("scatter/*",)},
    "gather": {"layout": ("plan/plan.json", "plan/batches.npy", "plan/schema.arrow"), "scatter": ("scatter/*",),
               "combine": ("combine/*",)},
}


def record(work: WorkDir, stage: str, index: int) -> dict[str, int]:
    """The bytes of each file task ``(stage, index)`` wrote, once each is durable with its folder."""
    names = work_store.task_files(work, stage, index)
    for folder in sorted({(work.root / n).parent for n in names}):  # a loop over folders, then files
        for name in (n for n in names if (work.root / n).parent == folder):
            atomic.sync(work.root / name)
        atomic.sync(folder)
    return {name: (work.root / name).stat().st_size for name in names}


def recorded(work: WorkDir, stage: str, index: int, patterns: tuple[str, ...] = ("*",)) -> dict[str, int]:
    """The files of finished task ``(stage, index)`` that match ``patterns`` and their bytes, as its marker
    recorded them (nothing for a marker older than these records)."""
    files = (work.finished(stage, index) or {}).get("files") or {}
    return {name: want for name, want in files.items() if any(fnmatch.fnmatchcase(name, p) for p in patterns)}


def problem(work: WorkDir, stage: str, index: int, patterns: tuple[str, ...] = ("*",)) -> str | None:
    """What is wrong with the files of finished task ``(stage, index)`` that match ``patterns``, compared
    with its marker (None: nothing, or a marker older than these records)."""
    return _problem(work, stage, index, recorded(work, stage, index, patterns))


def _problem(work: WorkDir, stage: str, index: int, files: dict[str, int]) -> str | None:
    for name, want in files.items():  # a loop over the task's files
        local = work.root / name
        if work.remote is not None and not local.exists():
            continue  # on the store: checked by size when uploaded, read from there
        where = local if work.remote is None else work.remote / name
        try:
            size = local.stat().st_size
        except FileNotFoundError:
            return f"{where}: missing; its task {stage} {index} wrote {want:,} bytes"
        if size != want:
            return f"{where}: {size:,} bytes, its task {stage} {index} recorded {want:,}"
    return None


def check(work: WorkDir, stage: str, index: int, patterns: tuple[str, ...] = ("*",)) -> int:
    """Refuse the files of task ``(stage, index)`` matching ``patterns`` unless they are as it recorded;
    returns their bytes."""
    files = recorded(work, stage, index, patterns)
    found = _problem(work, stage, index, files)
    if found is not None:
        raise StateError(f"{found}; re-run that task (`{work.task_command(stage, index)}`), or {RESTART}")
    return sum(files.values())


def check_inputs(work: WorkDir, stage: str, only: dict[str, list[int]] | None = None) -> int:
    """Check every file a task of ``stage`` reads against its producer's marker (:data:`READS`); ``only``:
    the producers' tasks it reads, by stage, when not all of them (a scatter task: its input's keys).
    Returns the bytes of those files, as recorded (all of each file, where a task reads part of one)."""
    total = 0
    for producer, patterns in READS[stage].items():  # a loop over stages, then their tasks
        indices = (only or {}).get(producer)
        for index in sorted(work.finished_indices(producer)) if indices is None else indices:
            total += check(work, producer, index, patterns)
    return total
