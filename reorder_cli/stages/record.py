"""The record of a stage (:class:`Stage`) and of one of its tasks as it runs (:class:`Task`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reorder_cli import task_outputs, work_store
from reorder_cli.stages.spec import Spec, require_spec
from reorder_cli.workdir import WorkDir


@dataclass(frozen=True)
class Task:
    """Task ``(stage, index)`` as it runs: ``advance`` moves the progress bar; ``measured()`` is what its
    marker records besides (``store_bytes_read``); ``started`` its start (:func:`task_stats.clock`)."""

    work: WorkDir
    index: int
    advance: Callable[[int], None]
    measured: Callable[[], dict[str, Any]]
    started: float


@dataclass(frozen=True)
class Stage:
    """Every fact about a stage of tasks.

    ``count`` is how many tasks it has, None while an earlier stage has not decided it; ``after`` the stage
    whose tasks must all have finished before one of its tasks runs (None: the first); ``run`` runs one
    task, writing its marker last, and returns the marker's record (with ``rows`` and ``bytes_in``:
    :mod:`reorder_cli.util.task_stats`); ``done`` says whether a task has finished, when a marker is not
    enough (a gather task's shard must still be there); ``reads`` says what ``bytes_in`` counts; an
    ``optional`` stage may have no tasks (combine, when K is 1): then it is not shown, like a stage planned
    in one process."""

    name: str
    title: str  # the local pool's progress bar
    description: str  # what a task of the stage is (the reference's stages page)
    reads: str  # what its bytes_in counts (the status guide)
    count: Callable[[WorkDir], int | None]
    run: Callable[[Task], dict[str, Any]]
    after: str | None
    order: bool = False  # one of the order's steps (split, sort, place, layout)
    done: Callable[[WorkDir, int], bool] | None = None
    optional: bool = False


def in_work_folder(name: str, body: Callable[[WorkDir, Spec, int], dict[str, Any]]) -> Callable[[Task], dict]:
    """A task of a stage that reads ``run.json`` (keys and the order's steps): the files it reads copied into
    the mirror and checked against their producers' markers, its ``.started`` marker held while ``body``
    runs, then its marker. ``bytes_in`` is ``body``'s own, else the bytes of the files checked."""
    def run(task: Task) -> dict[str, Any]:
        work = task.work
        spec = require_spec(work)
        work_store.pull(work, name)
        checked = task_outputs.check_inputs(work, name)  # what the earlier stages wrote, as their markers say
        with work.running(name, task.index):
            record = body(work, spec, task.index)
            record.setdefault("bytes_in", checked)
            record.update(task.measured())
            record = work.finish(name, task.index, record, task.started)
        task.advance(1)
        return record

    return run
