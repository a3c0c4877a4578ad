"""Running tasks: :func:`run_task` (any caller), :func:`run_one` (``reorder task``, a cluster job, a Ray task),
:func:`run_local` (the local pool), and what the markers of finished tasks add up to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reorder_cli import task_outputs
from reorder_cli.errors import ReorderError
from reorder_cli.stages.graph import check_ready, count, finished, progress, records, todo
from reorder_cli.stages.record import Task
from reorder_cli.stages.registry import REGISTRY, STAGES
from reorder_cli.stages.spec import load_spec
from reorder_cli.util import store, task_stats
from reorder_cli.util.parallel import run_parallel
from reorder_cli.util.progress import Progress
from reorder_cli.workdir import WorkDir, locate


def run_task(work: WorkDir, stage: str, index: int, advance: Callable[[int], None] = lambda n: None,
             own_process: bool = False) -> dict:
    """Run task ``(stage, index)`` (unfinished, its stage ready) and write its marker, with the task's
    statistics (:mod:`reorder_cli.util.task_stats`). A task that has its process to itself (``own_process``:
    ``reorder task``, a cluster job) records the bytes it read from stores in its marker
    (``store_bytes_read``), for the run log of the process that publishes."""
    started, before = task_stats.clock(), store.total_read()

    def measured() -> dict:
        return {"store_bytes_read": store.total_read() - before} if own_process else {}

    with store.reading(stage):
        return REGISTRY[stage].run(Task(work, index, advance, measured, started))


def run_one(output: str | Path, stage: str, index: int, work_dir: str | Path | None = None) -> dict:
    """Run task ``(stage, index)`` of the run in ``output`` (``reorder task``, a cluster job), whose working
    state is in ``work_dir`` when the run set one; a finished task is skipped."""
    work = locate(output, work_dir)
    if stage not in STAGES:
        raise ReorderError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    if not work.exists():
        raise ReorderError(f"{output}: no run here (no {work.where}); if the run was submitted from another "
                           "machine, its work folder must be on a filesystem both share, or on a store")
    n = count(work, stage)
    if n is None:
        check_ready(work, stage)
        raise ReorderError(f"{stage} tasks are not known yet: run the stage before it first")
    if not 0 <= index < n:
        raise ReorderError(f"{stage} task {index} does not exist; this run has {stage} tasks 0..{n - 1}")
    checks_files = REGISTRY[stage].done is None  # a gather's own check is its shard's
    if finished(work, stage, index) and (not checks_files or task_outputs.problem(work, stage, index) is None):
        return {**(work.finished(stage, index) or {}), "skipped": True}  # else its files were damaged: run again
    check_ready(work, stage)
    work.ensure()
    spec = load_spec(work)
    if spec is not None:  # a process of its own: where the stores are (run.json holds no credentials)
        store.configure(spec.cfg.storage_options)
    return run_task(work, stage, index, own_process=True)


def run_local(work: WorkDir, stages: tuple[str, ...], workers: int, progress: Progress) -> None:
    """Run every unfinished task of ``stages``, in order, ``workers`` at a time (the local pool)."""
    for stage in stages:  # a loop over stages: each a barrier
        pending = todo(work, stage) or []
        if not pending:
            continue
        # the label of the bytes read from stores: the stage's, for every thread (one stage at a time)
        with progress.task(REGISTRY[stage].title, total=len(pending), unit="tasks") as advance, \
                store.reading(stage):
            run_parallel(lambda i, stage=stage: run_task(work, stage, i, advance), pending, workers)


def bytes_read_by_tasks(work: WorkDir, workers: int = 16) -> dict[str, int]:
    """Bytes read from stores by the tasks that ran in processes of their own, by stage (their markers)."""
    return {stage: sum(r.get("store_bytes_read", 0) for r in records(work, stage, workers))
            for stage in STAGES}  # a loop over stages


def stats(work: WorkDir, workers: int = 16) -> dict[str, dict[str, Any]]:
    """Each stage's statistics summed over its tasks' markers (:func:`task_stats.totals`), the stages with
    none left out."""
    out = {}
    for stage in STAGES:  # a loop over stages
        found = task_stats.totals(records(work, stage, workers))
        if found is not None:
            out[stage] = found
    return out


def describe(output: str | Path, work_dir: str | Path | None = None) -> dict[str, Any]:
    """Each task stage of the run in ``output``: ``{stage: {"tasks": n or None, "done": k}}`` (``reorder task``);
    the stages planned in one process (:func:`progress`) have no tasks and are left out, as in ``reorder status``."""
    work = locate(output, work_dir)
    if not work.exists():
        raise ReorderError(f"{output}: no run here (no {work.where})")
    return {stage: {"tasks": n, "done": done} for stage, (n, done, planned) in progress(work).items() if not planned}
