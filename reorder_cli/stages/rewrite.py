"""The rewrite's stages (:mod:`reorder_cli.rewrite.tasks`): scatter (one task an input slice), combine (one
task K scatter files; none when K is 1) and gather (one task an output shard)."""

from __future__ import annotations

from reorder_cli.plan import stored as stored_plan
from reorder_cli.rewrite import tasks
from reorder_cli.stages.record import Stage, Task
from reorder_cli.workdir import WorkDir


def _count(phase: str):
    def count(work: WorkDir) -> int | None:
        stored = stored_plan.load(work)
        if stored is None:
            return None
        return {"scatter": stored.scatter_tasks, "combine": stored.combine_tasks, "gather": stored.gather_tasks}[phase]

    return count


def _run(phase: str):
    def run(task: Task) -> dict:  # holds its .started marker
        return tasks.run_task(stored_plan.load(task.work), task.work, phase, task.index, task.advance,
                              task.measured, task.started)

    return run


SCATTER = Stage("scatter", "Scattering rows", "one task an input slice",
                "its slice's share (by rows) of its input file's bytes", _count("scatter"), _run("scatter"),
                after="layout")
COMBINE = Stage("combine", "Combining scatter files",
                "one task K consecutive scatter files merged into one (the `combine` key; none when K is 1)",
                "the record batches of its K scatter files", _count("combine"), _run("combine"), after="scatter",
                optional=True)
GATHER = Stage("gather", "Writing shards", "one task an output shard",
               "the record batches of its buckets in the scatter files, or the combine files (a run rewritten in "
               "memory: its rows' sizes in the inputs: JSONL lines, or Parquet's uncompressed estimate)",
               _count("gather"), _run("gather"), after="combine",
               done=lambda work, index: tasks.finished_shard(work, index) is not None)
