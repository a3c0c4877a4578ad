"""``reorder status OUTPUT``: each stage's tasks, done, running, pending or failed (with their logs).

A stage is *failed* when one of its tasks failed (and has not finished since), *done* when all its tasks
finished, *running* when one runs (:mod:`reorder_cli.execute.running` says which), else *pending*.
``pending`` counts the tasks neither finished nor running (failed ones included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.execute import running as run_state
from reorder_cli.execute import stages as task_stages
from reorder_cli.plan import stored as stored_plan
from reorder_cli.publish import manifest
from reorder_cli.rewrite import tasks
from reorder_cli.workdir import WorkDir, read_json

STAGES = ("plan", *tasks.PHASES, "publish")


def _stage(total: int | None, done: int | None, failed: list[dict], running: list[dict] | None = None
           ) -> dict[str, Any]:
    running = running or []
    pending = None if total is None or done is None else total - done - len(running)
    state = ("failed" if failed else "done" if total is not None and done == total else
             "running" if running else "pending")
    return {"state": state, "tasks": total, "done": done, "running": running, "pending": pending, "failed": failed}


def _failed(work: WorkDir, stage: str) -> list[dict]:
    return [{"index": i, "log": str(work.log(s, i))} for s, i in work.failed_tasks() if s == stage]


def _running(work: WorkDir, now: dict[str, dict[int, str | None]], stage: str, failed: list[dict]) -> list[dict]:
    """The running tasks of ``stage`` that have neither finished nor failed; ``host`` when on another host."""
    gone = {t["index"] for t in failed}
    out = []
    for index, host in sorted(now.get(stage, {}).items()):
        if index in gone or (stage in tasks.PHASES and task_stages.finished(work, stage, index)):
            continue
        out.append({"index": index, "log": str(work.log(stage, index)), **({"host": host} if host else {})})
    return out


def status(output: Path) -> dict[str, Any]:
    """``{"output", "finished", "stages": {stage: {state, tasks, done, running, pending, failed}}}``; ``running``
    and ``failed`` list tasks as ``{index, log}`` (``host`` too for a task running on another host)."""
    output = Path(output)
    work = WorkDir(output.absolute())  # logs named by absolute paths: they are read from anywhere
    published = next((output / n for n in manifest.MANIFEST_NAMES if (output / n).is_file()), None)
    # the manifest is written last, after the old one is removed: with the publishing marker (a run kept
    # with --keep-work) or without a run in progress, it is this run's
    if published is not None and (work.publishing.exists() or work.saved_identity() is None):
        shards = len(read_json(published).get("shards", []))
        stages = {"plan": _stage(1, 1, []), **{s: _stage(None, None, []) for s in tasks.PHASES},
                  "gather": _stage(shards, shards, []), "publish": _stage(1, 1, [])}
        for stage in tasks.PHASES:
            stages[stage]["state"] = "done"
        return {"output": str(output), "finished": True, "stages": stages}
    if not work.root.is_dir():
        raise ReorderError(f"{output}: no run here (no {manifest.MANIFEST_NAME} and no {work.root.name}/ folder)")
    stored = stored_plan.load(work)
    now = run_state.running(work)
    stages = {"plan": _stage(1, int(stored is not None), _failed(work, "plan"))}
    counts = task_stages.counts(stored) if stored is not None else {}
    for stage in tasks.PHASES:
        if stage not in counts:
            stages[stage] = _stage(None, None, [])
            stages[stage]["state"] = "pending"
            continue
        done = sum(task_stages.finished(work, stage, i) for i in range(counts[stage]))
        failed = _failed(work, stage)
        stages[stage] = _stage(counts[stage], done, failed, _running(work, now, stage, failed))
    failed = _failed(work, "publish")
    stages["publish"] = _stage(1, 0, failed, _running(work, now, "publish", failed))
    return {"output": str(output), "finished": False, "stages": stages}


def first_failure(report: dict[str, Any]) -> tuple[str, dict] | None:
    """The first failed task of a status report: (stage, {index, log})."""
    return next(((s, report["stages"][s]["failed"][0]) for s in STAGES if report["stages"][s]["failed"]), None)
