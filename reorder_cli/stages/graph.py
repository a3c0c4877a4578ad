"""Where a run stands: each stage's size, its unfinished tasks, whether a task may run yet."""

from __future__ import annotations

from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.stages.registry import REGISTRY, STAGES
from reorder_cli.stages.spec import load_spec
from reorder_cli.util.parallel import run_parallel
from reorder_cli.workdir import WorkDir


def count(work: WorkDir, stage: str) -> int | None:
    """How many tasks ``stage`` has; None while an earlier stage has not decided it."""
    return REGISTRY[stage].count(work)


def finished(work: WorkDir, stage: str, index: int) -> bool:
    done = REGISTRY[stage].done
    return done(work, index) if done is not None else work.finished(stage, index) is not None


def start(work: WorkDir) -> str:
    """The first stage the run goes through as tasks; the stages before it were planned in one process
    and count as finished. A run prepared for a cluster (``run.json`` says so) starts at keys; a run planned
    here (out of core, or stored by ``--plan-only``) at scatter once its plan is stored (its order was
    worked out while planning), else at split; a run planned in memory (no ``run.json``) records only
    its shards (gather)."""
    spec = load_spec(work)
    if spec is None:
        return "gather"
    if spec.first_stage == "keys":
        return "keys"
    return "scatter" if work.fetch(work.plan_file("plan.json")) else "split"


def todo(work: WorkDir, stage: str) -> list[int] | None:
    """The unfinished tasks of ``stage``; None while their number is not known."""
    if STAGES.index(stage) < STAGES.index(start(work)):
        return []
    n = count(work, stage)
    if n is None:
        return None
    if REGISTRY[stage].done is not None:
        return [i for i in range(n) if not finished(work, stage, i)]
    done = work.finished_indices(stage)  # one listing
    return [i for i in range(n) if i not in done]


def check_ready(work: WorkDir, stage: str) -> None:
    """A task whose stage's predecessors have not all finished is refused, naming what is missing."""
    before = REGISTRY[stage].after
    if before is None:
        return
    missing = todo(work, before)
    if missing is None or missing:
        what = f"{before} task {missing[0]} has not finished ({len(missing)} pending)" if missing else \
            f"the {before} stage has not started"
        raise ReorderError(f"{stage} tasks wait for the {before} stage: {what}")


def progress(work: WorkDir) -> dict[str, tuple[int | None, int | None, bool]]:
    """Each stage's (tasks, finished tasks, no tasks to show): the tasks are None while an earlier stage
    has not decided them; a stage before the run's first (:func:`start`) was planned in one process and
    has no tasks, and an optional stage with none (combine, when K is 1) is left out too."""
    first = STAGES.index(start(work))
    out = {}
    for k, stage in enumerate(STAGES):  # a loop over stages
        n = None if k < first else count(work, stage)
        out[stage] = (n, None if n is None else n - len(todo(work, stage)),
                      k < first or (n == 0 and REGISTRY[stage].optional))
    return out


def records(work: WorkDir, stage: str, workers: int = 16) -> list[dict[str, Any]]:
    """The markers of the finished tasks of ``stage`` (one listing, then the markers ``workers`` at a time)."""
    done = sorted(work.finished_indices(stage))
    return run_parallel(lambda i: work.finished(stage, i) or {}, done, workers)
