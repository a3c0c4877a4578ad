"""``reorder status OUTPUT``: each stage's tasks, done, pending or failed (with their logs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.plan import stored as stored_plan
from reorder_cli.publish import manifest
from reorder_cli.rewrite import tasks
from reorder_cli.workdir import WorkDir, read_json

STAGES = ("plan", "scatter", "gather", "publish")


def _stage(total: int | None, done: int | None, failed: list[dict]) -> dict[str, Any]:
    pending = None if total is None or done is None else total - done
    state = "failed" if failed else "done" if pending == 0 else "pending"
    return {"state": state, "tasks": total, "done": done, "pending": pending, "failed": failed}


def _failed(work: WorkDir, stage: str) -> list[dict]:
    return [{"index": i, "log": str(work.log(s, i))} for s, i in work.failed_tasks() if s == stage]


def status(output: Path) -> dict[str, Any]:
    """``{"output", "finished", "stages": {stage: {state, tasks, done, pending, failed: [{index, log}]}}}``."""
    output = Path(output)
    work = WorkDir(output.absolute())  # logs named by absolute paths: they are read from anywhere
    published = next((output / n for n in manifest.MANIFEST_NAMES if (output / n).is_file()), None)
    # the manifest is written last, after the old one is removed: with the publishing marker (a run kept
    # with --keep-work) or without a run in progress, it is this run's
    if published is not None and (work.publishing.exists() or work.saved_identity() is None):
        shards = len(read_json(published).get("shards", []))
        stages = {"plan": _stage(1, 1, []), "scatter": _stage(None, None, []),
                  "gather": _stage(shards, shards, []), "publish": _stage(1, 1, [])}
        stages["scatter"]["state"] = "done"
        return {"output": str(output), "finished": True, "stages": stages}
    if not work.root.is_dir():
        raise ReorderError(f"{output}: no run here (no {manifest.MANIFEST_NAME} and no {work.root.name}/ folder)")
    stored = stored_plan.load(work)
    stages = {"plan": _stage(1, int(stored is not None), _failed(work, "plan"))}
    if stored is None:
        stages |= {s: _stage(None, None, []) for s in ("scatter", "gather")}
    else:
        scatter_done = sum(work.finished("scatter", t) is not None for t in range(stored.scatter_tasks))
        gather_done = sum(tasks.finished_shard(work, j) is not None for j in range(stored.gather_tasks))
        stages["scatter"] = _stage(stored.scatter_tasks, scatter_done, _failed(work, "scatter"))
        stages["gather"] = _stage(stored.gather_tasks, gather_done, _failed(work, "gather"))
    stages["publish"] = _stage(1, 0, _failed(work, "publish"))
    for stage in ("scatter", "gather"):
        if stages[stage]["tasks"] is None:
            stages[stage]["state"] = "pending"
    return {"output": str(output), "finished": False, "stages": stages}


def first_failure(report: dict[str, Any]) -> tuple[str, dict] | None:
    """The first failed task of a status report: (stage, {index, log})."""
    return next(((s, report["stages"][s]["failed"][0]) for s in STAGES if report["stages"][s]["failed"]), None)
