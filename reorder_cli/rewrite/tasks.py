"""The out-of-core rewrite as independent tasks: scatter ``i`` (input file i), combine ``c`` (scatter tasks
cK .. cK+K-1, when the plan has K > 1: :mod:`reorder_cli.rewrite.combine`) and gather ``j`` (output shard j).
A task reads and writes only files under ``OUTPUT/.reorder/``,
so any process can run any task: ``reorder run`` runs them all, ``workers`` at a time;
:func:`reorder_cli.stages.run_one` runs one (``reorder task``, a cluster job). A finished task leaves a marker and is
never run again; every combine (or gather) needs every scatter finished first, every gather every combine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reorder_cli import task_outputs, work_store
from reorder_cli.errors import ReorderError
from reorder_cli.formats.writers import shard_differs
from reorder_cli.plan import stored as stored_plan
from reorder_cli.plan.stored import StoredPlan
from reorder_cli.rewrite import combine, gather, scatter
from reorder_cli.tokens import piece
from reorder_cli.util import faults, store, task_stats
from reorder_cli.util.parallel import run_parallel
from reorder_cli.util.progress import Progress
from reorder_cli.workdir import WorkDir

PHASES = ("scatter", "combine", "gather")


def _settings(stored: StoredPlan):
    return stored.meta["output"]


def scatter_one(stored: StoredPlan, work: WorkDir, task: int, advance: Callable[[int], None] = lambda n: None,
                measured: Callable[[], dict] = dict, started: float | None = None) -> dict:
    record = scatter.run(stored, work, task, _settings(stored), advance) | {"bytes_in": _slice_bytes(stored, task)}
    record = work.finish("scatter", task, record | measured(), started)
    faults.pause("scatter-done")
    return record


def _slice_bytes(stored: StoredPlan, task: int) -> int:
    """What a scatter task reads: its slice's share (by rows) of its input file's bytes."""
    file, first, end = stored.slices[task]
    entry = stored.files[file]
    size = (entry.get("stamp") or {}).get("bytes")
    if size is None:
        size = store.size(store.location(entry["path"]))
    return int(size) * (end - first) // max(1, int(entry["rows"]))


def _require(stored: StoredPlan, work: WorkDir, who: str, phase: str) -> None:
    n = stored.scatter_tasks if phase == "scatter" else stored.combine_tasks
    done = work.finished_indices(phase)  # one listing
    missing = [t for t in range(n) if t not in done]
    if missing:
        raise ReorderError(f"{who}: {phase} task {missing[0]} has not finished ({len(missing)} pending)")


def combine_one(stored: StoredPlan, work: WorkDir, task: int, advance: Callable[[int], None] = lambda n: None,
                measured: Callable[[], dict] = dict, started: float | None = None) -> dict:
    _require(stored, work, f"combine {task}", "scatter")
    record = combine.run(stored, work, task, _settings(stored))
    advance(record["rows"])
    return work.finish("combine", task, record | measured(), started)


def gather_one(stored: StoredPlan, work: WorkDir, shard: int, advance: Callable[[int], None] = lambda n: None,
               measured: Callable[[], dict] = dict, started: float | None = None) -> dict:
    _require(stored, work, f"gather {shard}", "scatter")
    _require(stored, work, f"gather {shard}", "combine")
    record = gather.run(stored, work, _settings(stored), shard, advance)
    record = work.finish("gather", shard, record | measured(), started)
    faults.pause("gather-done")
    return record


def run_task(stored: StoredPlan, work: WorkDir, phase: str, index: int,
             advance: Callable[[int], None] = lambda n: None, measured: Callable[[], dict] = dict,
             started: float | None = None) -> dict:
    """Run task ``(phase, index)``: the one entry, whoever calls it (the local pool, ``reorder task``),
    holding its ``.started`` marker meanwhile (``reorder status`` shows it running); ``measured()``: what
    its marker records besides (:func:`reorder_cli.stages.run_task`); ``started``: when the task started
    (:func:`task_stats.clock`; now, by default), for its statistics."""
    started = task_stats.clock() if started is None else started
    with store.reading(phase):
        work_store.pull(work, phase)
        # what the earlier stages wrote, as their markers recorded: a scatter task, its input's keys only; a
        # combine task, its K scatter tasks' files; a gather, the combine tasks' files if any, else the scatter's
        task_outputs.check_inputs(work, phase, _reads(stored, phase, index))
        with work.running(phase, index):
            one = {"scatter": scatter_one, "combine": combine_one, "gather": gather_one}[phase]
            return one(stored, work, index, advance, measured, started)


def _reads(stored: StoredPlan, phase: str, index: int) -> dict[str, list[int]] | None:
    """The earlier tasks whose files task ``(phase, index)`` reads, by stage, where not all of them."""
    if phase == "scatter":
        return {"keys": [stored.slices[index][0]]}
    if phase == "combine":
        return {"scatter": list(stored.combined(index))}
    return {"scatter": []} if stored.combine_tasks else None


def finished_shard(work: WorkDir, shard: int) -> dict | None:
    """A shard's record if its task finished and its file is still staged, or already published: a shard in
    the output folder (moved there by a publish that was interrupted, or left by an older output) only
    when its size and sha256 are its record's; any other is made again. Its token piece likewise: staged
    with the sizes recorded (as the work folder checks every task's files), or published with the sha256s."""
    record = work.finished("gather", shard)
    if record is None:
        return None
    if "tokens" in record and piece.piece_differs(work.shards, record["tokens"], digest=False) is not None and \
            (store.is_url(work.output) or piece.piece_differs(work.output / "tokens", record["tokens"]) is not None):
        return None  # its token piece is neither staged nor published as recorded: made again
    if (work.shards / record["file"]).exists():
        return record
    if work.remote is not None and store.is_file(work.remote / "shards" / record["file"]):
        return record  # staged on the store (uploaded before the marker)
    if store.is_url(work.output):  # published to a store: uploaded and read back intact
        return record if work.finished("upload", shard) is not None else None
    if not (work.output / record["file"]).is_file():
        return None
    return record if shard_differs(work.output, record["file"], record["bytes"], record["sha256"]) is None else None


def run_all(stored: StoredPlan, work: WorkDir, workers: int, progress: Progress,
            timings: dict[str, float] | None = None) -> list[dict]:
    """Run every unfinished task, ``workers`` at a time; returns the shard records in order
    (and the seconds of each phase in ``timings``)."""
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    todo = [t for t in range(stored.scatter_tasks) if work.finished("scatter", t) is None]
    total = sum(stored.slices[t][2] - stored.slices[t][1] for t in todo)
    with progress.task("Scattering rows", total=total, unit="rows") as advance, store.reading("scatter"):
        run_parallel(lambda t: run_task(stored, work, "scatter", t, advance), todo, workers)
    timings["scatter_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    todo = [c for c in range(stored.combine_tasks) if work.finished("combine", c) is None]
    if todo:
        with progress.task("Combining scatter files", total=len(todo), unit="tasks") as advance, \
                store.reading("combine"):
            run_parallel(lambda c: run_task(stored, work, "combine", c, lambda n: advance(1)), todo, workers)
        timings["combine_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    todo = [j for j in range(stored.gather_tasks) if finished_shard(work, j) is None]
    total = sum(stored.shards[j][1] - stored.shards[j][0] for j in todo)
    with progress.task("Writing shards", total=total, unit="rows") as advance, store.reading("gather"):
        run_parallel(lambda j: run_task(stored, work, "gather", j, advance), todo, workers)
    timings["gather_seconds"] = time.perf_counter() - t0
    return [work.finished("gather", j) for j in range(stored.gather_tasks)]


def status(work: WorkDir) -> dict:
    """Tasks of the planned run in ``work`` and how many have finished."""
    stored = stored_plan.load(work)
    if stored is None:
        raise ReorderError(f"{work.output}: no stored plan in {work.root}; run `reorder run --plan-only` first")
    tasks = {"scatter": stored.scatter_tasks, "combine": stored.combine_tasks, "gather": stored.gather_tasks}
    return {phase: {"tasks": tasks[phase], "finished": work.count_finished(phase)} for phase in PHASES}
