"""A run as stages of independent tasks, each addressed by ``(stage, index)``; :func:`run_one` is the
one task entry, whoever calls it (the local pool, ``reorder task``, a Slurm array job, a Ray task).

Each stage is one record (:class:`~.record.Stage`: its name, title, what a task is, how many tasks it has,
what it waits for, how a task runs, what its ``bytes_in`` counts), in the module that owns it: :mod:`.keys`
(keys), :mod:`.order` (split, sort, place, layout: the order, :mod:`reorder_cli.plan.order_tasks`) and
:mod:`.rewrite` (scatter, gather); :mod:`.registry` puts them in order (:data:`STAGES`). :mod:`.graph` says
where a run stands, :mod:`.run` runs tasks, :mod:`.spec` reads and writes ``run.json``.

Then publish (``reorder run``, which finds every task finished). A task reads and writes only under
``OUTPUT/.reorder/``; every file it writes appears under its final name only when complete, and its marker
(``done/STAGE-NNNNN.json``, with the task's statistics: :mod:`reorder_cli.util.task_stats`) is written
last, so a finished task is skipped and a task run twice at once writes the same files twice. How many
tasks a stage has is known once the stage before it has finished (:func:`count`).
"""

from reorder_cli.stages.graph import check_ready, count, finished, progress, records, start, todo
from reorder_cli.stages.keys import keys_record, sources
from reorder_cli.stages.record import Stage, Task
from reorder_cli.stages.registry import ORDER, REGISTRY, STAGES
from reorder_cli.stages.run import bytes_read_by_tasks, describe, run_local, run_one, run_task, stats
from reorder_cli.stages.spec import Spec, load_spec, require_spec, write_spec

__all__ = ["ORDER", "REGISTRY", "STAGES", "Spec", "Stage", "Task", "bytes_read_by_tasks", "check_ready", "count",
           "describe", "finished", "keys_record", "load_spec", "progress", "records", "require_spec", "run_local",
           "run_one", "run_task", "sources", "start", "stats", "todo", "write_spec"]
