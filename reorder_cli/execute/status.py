"""``reorder status OUTPUT``: each stage's tasks, done, running, pending or failed (with their logs).

The stages are the task stages of :mod:`reorder_cli.stages` (keys; split, sort, place and layout, the
order; scatter; gather) that run as tasks, the names ``reorder task`` lists (a stage planned in one
process, e.g. the order of a run planned with ``--plan-only``, has no tasks and is left out), then
``submit`` (only for ``--executor slurm``: its job that submits the next stages once their sizes are
known) and ``publish``. A stage whose size is not known yet shows ``tasks: null``.

A stage is *failed* when one of its tasks failed (and has not finished since), *done* when all its tasks
finished, *running* when one runs (:mod:`reorder_cli.execute.running` says which), else *pending*.
``pending`` counts the tasks neither finished nor running (failed ones included).

``stats`` adds up what each stage's finished tasks recorded in their markers (:mod:`reorder_cli.util.task_stats`):
while the run is in progress, and after it when its work folder was kept (``--keep-work``); a published run
whose work folder is gone has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reorder_cli import stages as graph
from reorder_cli.errors import ReorderError
from reorder_cli.execute import running as run_state
from reorder_cli.publish import manifest
from reorder_cli.util import store
from reorder_cli.util.stage_names import SLURM_JOBS, TASK_STAGES
from reorder_cli.workdir import WorkDir, locate


def _stage(total: int | None, done: int | None, failed: list[dict], running: list[dict] | None = None
           ) -> dict[str, Any]:
    running = running or []
    pending = None if total is None or done is None else total - done - len(running)
    state = ("failed" if failed else "done" if total is not None and done == total else
             "running" if running else "pending")
    return {"state": state, "tasks": total, "done": done, "running": running, "pending": pending, "failed": failed}


def _failed(work: WorkDir, stage: str) -> list[dict]:
    return [{"index": i, "log": str(work.log_where(s, i))} for s, i in work.failed_tasks() if s == stage]


def _running(work: WorkDir, now: dict[str, dict[int, str | None]], stage: str, failed: list[dict]) -> list[dict]:
    """The running tasks of ``stage`` that have neither finished nor failed; ``host`` when on another host."""
    gone = {t["index"] for t in failed}
    out = []
    for index, host in sorted(now.get(stage, {}).items()):
        if index in gone or (stage in TASK_STAGES and graph.finished(work, stage, index)):
            continue
        out.append({"index": index, "log": str(work.log_where(stage, index)), **({"host": host} if host else {})})
    return out


def _read_state(work: WorkDir, finished: bool = False, stats: bool = True
                ) -> tuple[dict, dict[str, tuple], dict[str, dict]]:
    """The running tasks, each stage's progress and, with ``stats``, statistics (only the statistics of a
    ``finished`` run), read from the run's files (``run.json``, the plan, the markers, ``slurm/jobs.json``):
    untrusted, so a malformed one is one line, not a traceback."""
    try:
        sums = graph.stats(work) if stats else {}
        if finished:
            return {}, {}, sums
        return run_state.running(work), graph.progress(work), sums
    except ReorderError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise ReorderError(f"{work.where}: a file of the run's state (run.json, the plan, the task markers or "
                           f"slurm/jobs.json) is malformed ({type(exc).__name__}: {str(exc)[:120]}); "
                           "re-run with --restart to start the run again") from None


def status(output: str | Path, work_dir: str | Path | None = None, stats: bool = True) -> dict[str, Any]:
    """``{"output", "finished", "stages": {stage: {state, tasks, done, running, pending, failed}}, "stats"}``;
    ``running`` and ``failed`` list tasks as ``{index, log}`` (``host`` too for a task running on another host).
    ``stats`` sums the statistics in the markers of each stage's finished tasks (:func:`graph.stats`:
    ``{stage: {tasks, rows, bytes_in, bytes_out, seconds, peak_rss_max}}``; stages without any left out), or
    nothing without ``stats`` (``--wait`` polls: it would read every marker each time)."""
    output = store.location(output) if isinstance(output, str) else output
    work = locate(output, work_dir)  # logs named by absolute paths: they are read from anywhere
    found = set(store.names(output))
    published = next((output / n for n in manifest.MANIFEST_NAMES if n in found), None)
    # the manifest is written last, after the old one is removed: with the publishing marker (a run kept
    # with --keep-work) or without a run in progress, it is this run's
    if published is not None and (work.is_publishing() or work.saved_identity() is None):
        shards = len(manifest.read(published)[0].shards)  # checked like every reader's manifest
        # the work folder is gone: what the manifest tells, its shards (the gather tasks) and the publish
        stages = {"gather": _stage(shards, shards, []), "publish": _stage(1, 1, [])}
        kept = _read_state(work, True, stats)[2] if work.exists() else {}  # kept with --keep-work: its markers
        return {"output": str(output), "finished": True, "stages": stages, "stats": kept}
    if not work.exists():
        where = f"{work.root.name}/ folder" if work.base is None else f"work folder {work.where}"
        hint = "; pass --work-dir when the run set work_dir" if work_dir is None else ""
        raise ReorderError(f"{output}: no run here (no {manifest.MANIFEST_NAME} and no {where}){hint}")
    now, progress, sums = _read_state(work, stats=stats)
    stages = {}
    for stage, (n, done, planned) in progress.items():  # n None: not known yet
        if not planned:  # a stage planned in one process has no tasks: not shown
            failed = _failed(work, stage)
            stages[stage] = _stage(n, done, failed, _running(work, now, stage, failed))
    for job in SLURM_JOBS if work.slurm.is_dir() else SLURM_JOBS[1:]:  # submit: --executor slurm's job
        failed = _failed(work, job)
        stages[job] = _stage(1, 0, failed, _running(work, now, job, failed))
    return {"output": str(output), "finished": False, "stages": stages, "stats": sums}


def first_failure(report: dict[str, Any]) -> tuple[str, dict] | None:
    """The first failed task of a status report: (stage, {index, log})."""
    return next(((s, v["failed"][0]) for s, v in report["stages"].items() if v["failed"]), None)
