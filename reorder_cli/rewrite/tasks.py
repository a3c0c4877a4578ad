"""The out-of-core rewrite as independent tasks: scatter ``i`` (input file i) and gather
``j`` (output shard j). A task reads and writes only files under ``OUTPUT/.reorder/``,
so any process can run any task: ``reorder run`` runs them all, ``workers`` at a time;
:func:`reorder_cli.stages.run_one` runs one (``reorder task``, a cluster job). A finished task leaves a marker and is
never run again; every gather needs every scatter finished first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reorder_cli import task_outputs, work_store
from reorder_cli.errors import ReorderError
from reorder_cli.formats.writers import shard_differs
from reorder_cli.plan import stored as stored_plan
from reorder_cli.plan.stored import StoredPlan
from reorder_cli.rewrite import gather, scatter
from reorder_cli.tokens import piece
from reorder_cli.util import faults, store, task_stats
from reorder_cli.util.parallel import run_parallel
from reorder_cli.util.progress import Progress
from reorder_cli.workdir import WorkDir

PHASES = ("scatter", "gather")


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


def gather_one(stored: StoredPlan, work: WorkDir, shard: int, advance: Callable[[int], None] = lambda n: None,
               measured: Callable[[], dict] = dict, started: float | None = None) -> dict:
    done = work.finished_indices("scatter")  # one listing
    missing = [t for t in range(stored.scatter_tasks) if t not in done]
    if missing:
        raise ReorderError(f"gather {shard}: scatter task {missing[0]} has not finished ({len(missing)} pending)")
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
        # what the earlier stages wrote, as their markers recorded (a scatter task: its input's keys only)
        task_outputs.check_inputs(work, phase, {"keys": [stored.slices[index][0]]} if phase == "scatter" else None)
        with work.running(phase, index):
            return (scatter_one if phase == "scatter" else gather_one)(stored, work, index, advance, measured,
                                                                         started)


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
    return {phase: {"tasks": stored.scatter_tasks if phase == "scatter" else stored.gather_tasks,
                    "finished": work.count_finished(phase)} for phase in PHASES}
