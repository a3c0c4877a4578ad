"""The task stages of a planned run, in order, and which of their tasks are unfinished: one place that
the executors (Slurm, Ray) and ``reorder status`` loop over, whatever the stages are."""

from __future__ import annotations

from reorder_cli.plan.stored import StoredPlan
from reorder_cli.rewrite import tasks
from reorder_cli.workdir import WorkDir


def counts(stored: StoredPlan) -> dict[str, int]:
    """Each task stage (``tasks.PHASES``, in order) -> its number of tasks."""
    return {stage: getattr(stored, f"{stage}_tasks") for stage in tasks.PHASES}


def finished(work: WorkDir, stage: str, index: int) -> bool:
    """Task ``(stage, index)`` has its marker (a gather task: and its shard, staged or published)."""
    if stage == "gather":
        return tasks.finished_shard(work, index) is not None
    return work.finished(stage, index) is not None


def unfinished(work: WorkDir, stored: StoredPlan) -> dict[str, list[int]]:
    """Each task stage -> the indices of its tasks that have not finished."""
    return {stage: [i for i in range(n) if not finished(work, stage, i)] for stage, n in counts(stored).items()}
