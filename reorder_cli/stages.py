"""A run as stages of independent tasks, each addressed by ``(stage, index)``; :func:`run_one` is the
one task entry, whoever calls it (the local pool, ``reorder task``, a Slurm array job, a Ray task).

    keys     one task an input file: its scores, sizes and key runs (``.reorder/keys/``)
    split    one task: the cut of the sorts into key ranges and of the positions into chunks
    sort     one task a key range (of the scores, or of generator draws)
    place    one task a chunk of output positions: the plan's arrays and the scatter's positions
    layout   one task: shards, write batches and buckets: the stored plan (``plan/plan.json``)
    scatter  one task an input slice
    gather   one task an output shard

then publish (``reorder run``, which finds every task finished). split, sort, place and layout are
the order (:mod:`reorder_cli.plan.order_tasks`). A task reads and writes only under
``OUTPUT/.reorder/``; every file it writes appears under its final name only when complete, and its
marker (``done/STAGE-NNNNN.json``) is written last, so a finished task is skipped and a task run twice
at once writes the same bytes twice. How many tasks a stage has is known once the stage before it
has finished (:func:`count`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from reorder_cli import task_outputs, work_store
from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.formats import KeySource, open_keys, score_expr, unchanged
from reorder_cli.formats.discover import InputFile
from reorder_cli.plan import build, order_tasks
from reorder_cli.plan import stored as stored_plan
from reorder_cli.plan.build import SpilledSource
from reorder_cli.rewrite import budget, tasks
from reorder_cli.util import atomic, state_io, store
from reorder_cli.util.parallel import run_parallel
from reorder_cli.util.progress import Progress
from reorder_cli.util.stage_names import ORDER_STAGES, TASK_STAGES
from reorder_cli.workdir import WorkDir, locate

STAGES = TASK_STAGES
ORDER = ORDER_STAGES


@dataclass
class Spec:
    """``.reorder/run.json``: what every task of the run reads."""

    cfg: RunConfig
    files: list[InputFile]
    memory: int  # a task's budget for its keys and order work, bytes
    first_stage: str = "keys"  # the first stage run as tasks: "keys" (a cluster run), "split" (planned here)


def write_spec(work: WorkDir, cfg: RunConfig, files: list[InputFile], first_stage: str = "keys") -> Spec:
    # storage_options may hold credentials: only where the store is goes to tasks elsewhere; they get
    # their credentials from the store's own chain (environment, profile, role)
    config = dataclasses.asdict(cfg) | {"output": str(cfg.output.absolute()),
                                        "storage_options": store.shareable(cfg.storage_options)}
    data = {"config": config, "memory": budget.keys_budget(cfg), "first_stage": first_stage,
            "files": [{"path": str(f.path.absolute()), "format": f.format, "compression": f.compression,
                       "size": f.size, "stamp": f.stamp} for f in files]}
    work.root.mkdir(parents=True, exist_ok=True)
    if work.remote is not None:
        work.put(work.spec.name, atomic.json_bytes(data))
    atomic.write_json(work.spec, data)
    return load_spec(work)


def load_spec(work: WorkDir) -> Spec | None:
    if not work.fetch(work.spec):
        return None
    data = state_io.read_json(work.spec)
    config = data["config"] | {"output": store.location(data["config"]["output"])}
    files = [InputFile(store.location(f["path"]), f["format"], f["compression"], f["size"], f.get("stamp"))
             for f in data["files"]]
    return Spec(RunConfig(**config), files, data["memory"], data.get("first_stage", "keys"))


def _spec(work: WorkDir) -> Spec:
    spec = load_spec(work)
    if spec is None:
        raise ReorderError(f"{work.root}: no run.json; this folder holds no run planned as tasks (if the run was "
                           "submitted from another machine, its output folder must be on a filesystem both share)")
    return spec


# ------------------------------------------------------------------ the stages' sizes


def count(work: WorkDir, stage: str) -> int | None:
    """How many tasks ``stage`` has; None while an earlier stage has not decided it."""
    if stage == "keys":
        spec = load_spec(work)
        return None if spec is None else len(spec.files)
    if stage in ("split", "layout"):
        return 1
    if stage in ("sort", "place"):
        work.fetch(work.order / "split.json")
        meta = order_tasks.load_split(work.order)
        if meta is None:
            return None
        return order_tasks.sort_tasks(meta) if stage == "sort" else order_tasks.place_tasks(meta)
    stored = stored_plan.load(work)
    if stored is None:
        return None
    return stored.scatter_tasks if stage == "scatter" else stored.gather_tasks


def finished(work: WorkDir, stage: str, index: int) -> bool:
    if stage == "gather":
        return tasks.finished_shard(work, index) is not None
    return work.finished(stage, index) is not None


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
    if stage == "gather":
        return [i for i in range(n) if not finished(work, stage, i)]
    done = work.finished_indices(stage)  # one listing
    return [i for i in range(n) if i not in done]


# ------------------------------------------------------------------ the tasks


def _keys(work: WorkDir, spec: Spec, index: int) -> dict:
    cfg, inp = spec.cfg, spec.files[index]
    unchanged.check(inp.path, inp.stamp, f"keys task {index}")
    data = work.decompressed(index) if inp.format == "jsonl" and inp.compression else None
    source = open_keys(inp, score_expr.for_config(cfg), cfg.invalid_scores == "error", data)
    return keys_record(work, cfg, index, source)


def keys_record(work: WorkDir, cfg: RunConfig, index: int, source: KeySource) -> dict:
    """A keys task's files and record, from an input's keys (read by the task, or spilled by a local run)."""
    spilled = source if isinstance(source, SpilledSource) else build.spill(source, index, work.keys)
    valid = order_tasks.write_order_keys(work.keys, index, source.scores(), source.row_sizes(),
                                         order_tasks.run_direction(cfg.method, cfg.params), budget.keys_budget(cfg))
    if source.schema is not None:
        atomic.write_bytes(work.keys / f"schema-{index:05d}.arrow", source.schema.serialize().to_pybytes())
    return {"rows": source.rows, "valid": valid, "invalid": [list(x) for x in source.invalid],
            "data_path": None if spilled.data_path is None else work.portable(spilled.data_path),
            "unterminated": spilled.unterminated}


def sources(work: WorkDir, spec: Spec) -> list[SpilledSource]:
    """Every input's keys as the keys tasks left them."""
    out = []
    for i, inp in enumerate(spec.files):  # a loop over files
        record = work.finished("keys", i)
        schema_file = work.keys / f"schema-{i:05d}.arrow"
        schema = pa.ipc.read_schema(pa.py_buffer(schema_file.read_bytes())) if schema_file.exists() else None
        out.append(SpilledSource(inp, i, work.keys, record["rows"], [tuple(x) for x in record["invalid"]], schema,
                                 None if record["data_path"] is None else store.location(record["data_path"]),
                                 record["unterminated"]))
    return out


def _split(work: WorkDir, spec: Spec) -> dict:
    records = [work.finished("keys", i) for i in range(len(spec.files))]
    cfg = spec.cfg
    meta = order_tasks.split(work.keys, work.order, work.plan, [r["rows"] for r in records],
                             [r["valid"] for r in records], cfg.method, cfg.params, cfg.invalid_scores, cfg.select,
                             spec.memory)
    return {"rows": meta["written"], "sort": order_tasks.sort_tasks(meta), "place": order_tasks.place_tasks(meta)}


def _layout(work: WorkDir, spec: Spec) -> dict:
    cfg, meta = spec.cfg, order_tasks.load_split(work.order)
    order_tasks.assemble(work.plan, meta, spec.memory)
    the_plan = build.from_placed(spec.files, sources(work, spec), cfg, work, meta)
    choice = budget.choose(the_plan, cfg, force="out-of-core")
    cfg = dataclasses.replace(cfg, workers=choice.workers)
    stored = stored_plan.store(the_plan, cfg, work, choice.bucket_bytes, choice.read_bytes,
                               stored_plan.output_schema(the_plan))
    return {"rows": the_plan.rows, "scatter": stored.scatter_tasks, "gather": stored.gather_tasks,
            "warning": choice.warning, "workers": choice.workers}


#: A sort task reads its key range of an input's sorted keys on a store by range requests (three a run),
#: or, for a run under this size, downloads it whole into the node's mirror, where the node's other sort
#: tasks find it: at a store's ~1,000 GET/s and 2.5 GB/s a node, three GETs cost about what 8 MB do.
RUN_COPY_BYTES = 64 << 20


def _run_opener(work: WorkDir) -> Callable[[Path, int], Any]:
    return lambda path, nbytes: work.open_data(path, copy=nbytes < RUN_COPY_BYTES)


def _before(stage: str) -> str | None:
    return STAGES[STAGES.index(stage) - 1] if stage != "keys" else None


def _check_ready(work: WorkDir, stage: str) -> None:
    """A task whose stage's predecessors have not all finished is refused, naming what is missing."""
    before = _before(stage)
    if before is None:
        return
    missing = todo(work, before)
    if missing is None or missing:
        what = f"{before} task {missing[0]} has not finished ({len(missing)} pending)" if missing else \
            f"the {before} stage has not started"
        raise ReorderError(f"{stage} tasks wait for the {before} stage: {what}")


def run_task(work: WorkDir, stage: str, index: int, advance: Callable[[int], None] = lambda n: None,
             own_process: bool = False) -> dict:
    """Run task ``(stage, index)`` (unfinished, its stage ready) and write its marker. A task that has its
    process to itself (``own_process``: ``reorder task``, a cluster job) records the bytes it read from
    stores in its marker (``store_bytes_read``), for the run log of the process that publishes."""
    before = store.total_read()

    def measured() -> dict:
        return {"store_bytes_read": store.total_read() - before} if own_process else {}

    with store.reading(stage):
        if stage in ("scatter", "gather"):  # holds its .started marker
            return tasks.run_task(stored_plan.load(work), work, stage, index, advance, measured)
        return _order_task(work, stage, index, advance, measured)


def _order_task(work: WorkDir, stage: str, index: int, advance: Callable[[int], None],
                measured: Callable[[], dict]) -> dict:
    spec = _spec(work)
    work_store.pull(work, stage)
    task_outputs.check_inputs(work, stage)  # what the earlier stages wrote, as their markers recorded
    with work.running(stage, index):
        if stage == "keys":
            record = _keys(work, spec, index)
        elif stage == "split":
            record = _split(work, spec)
        elif stage == "sort":
            meta = order_tasks.load_split(work.order)
            record = {"rows": order_tasks.sort_task(work.keys, work.order, meta, index, spec.memory, _run_opener(work))}
        elif stage == "place":
            meta = order_tasks.load_split(work.order)
            record = {"rows": order_tasks.place_task(work.keys, work.order, work.plan, meta, index)}
        else:
            record = _layout(work, spec)
        record.update(measured())
        work.finish(stage, index, record)
    advance(1)
    return record


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
        _check_ready(work, stage)
        raise ReorderError(f"{stage} tasks are not known yet: run the stage before it first")
    if not 0 <= index < n:
        raise ReorderError(f"{stage} task {index} does not exist; this run has {stage} tasks 0..{n - 1}")
    if finished(work, stage, index) and (stage == "gather" or task_outputs.problem(work, stage, index) is None):
        return {**(work.finished(stage, index) or {}), "skipped": True}  # else its files were damaged: run again
    _check_ready(work, stage)
    work.ensure()
    spec = load_spec(work)
    if spec is not None:  # a process of its own: where the stores are (run.json holds no credentials)
        store.configure(spec.cfg.storage_options)
    return run_task(work, stage, index, own_process=True)


def bytes_read_by_tasks(work: WorkDir, workers: int = 16) -> dict[str, int]:
    """Bytes read from stores by the tasks that ran in processes of their own, by stage (their markers)."""
    out = {}
    for stage in STAGES:  # a loop over stages
        done = sorted(work.finished_indices(stage))
        records = run_parallel(lambda i, stage=stage: work.finished(stage, i) or {}, done, workers)
        out[stage] = sum(r.get("store_bytes_read", 0) for r in records)
    return out


def run_local(work: WorkDir, stages: tuple[str, ...], workers: int, progress: Progress) -> None:
    """Run every unfinished task of ``stages``, in order, ``workers`` at a time (the local pool)."""
    titles = {"keys": "Reading scores", "split": "Splitting the order", "sort": "Sorting key ranges",
              "place": "Placing rows", "layout": "Laying out shards"}
    for stage in stages:  # a loop over stages: each a barrier
        pending = todo(work, stage) or []
        if not pending:
            continue
        # the label of the bytes read from stores: the stage's, for every thread (one stage at a time)
        with progress.task(titles.get(stage, stage), total=len(pending), unit="tasks") as advance, \
                store.reading(stage):
            run_parallel(lambda i, stage=stage: run_task(work, stage, i, advance), pending, workers)


def describe(output: str | Path, work_dir: str | Path | None = None) -> dict[str, Any]:
    """Each task stage of the run in ``output``: ``{stage: {"tasks": n or None, "done": k}}`` (``reorder task``);
    the stages planned in one process (:func:`progress`) have no tasks and are left out, as in ``reorder status``."""
    work = locate(output, work_dir)
    if not work.exists():
        raise ReorderError(f"{output}: no run here (no {work.where})")
    return {stage: {"tasks": n, "done": done} for stage, (n, done, planned) in progress(work).items() if not planned}


def progress(work: WorkDir) -> dict[str, tuple[int | None, int | None, bool]]:
    """Each stage's (tasks, finished tasks, planned in one process): the tasks are None while an
    earlier stage has not decided them; a stage before the run's first (:func:`start`) was planned in
    one process and has no tasks."""
    first = STAGES.index(start(work))
    out = {}
    for k, stage in enumerate(STAGES):  # a loop over stages
        n = None if k < first else count(work, stage)
        out[stage] = (n, None if n is None else n - len(todo(work, stage)), k < first)
    return out


