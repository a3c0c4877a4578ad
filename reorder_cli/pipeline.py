"""One run, start to finish: check the output folder, plan, rewrite, publish.

Nothing is written before the keys pass has validated every input. All work happens in
``OUTPUT/.reorder/`` (see :mod:`workdir`); finished shards are moved into place only
when all of them are complete, and the manifest is written last. A run that is killed
or fails while rewriting keeps its finished tasks there, and the same command resumes
it; bad input or a changed config never leaves half-written output behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reorder_cli import run_lock, stages, work_store
from reorder_cli.config import RunConfig, with_format
from reorder_cli.errors import ReorderError
from reorder_cli.formats import score_expr, unchanged
from reorder_cli.formats.discover import InputFile, discover
from reorder_cli.plan import build, read_keys, shard_bytes
from reorder_cli.plan import mixture as mix_plan
from reorder_cli.plan import stored as stored_plan
from reorder_cli.plan.build import Plan
from reorder_cli.plan.stored import StoredPlan
from reorder_cli.publish import manifest, output, token_output
from reorder_cli.rewrite import budget, tasks
from reorder_cli.rewrite import in_memory as rewrite
from reorder_cli.util import faults, store
from reorder_cli.util.progress import Progress
from reorder_cli.util.units import fmt_bytes
from reorder_cli.workdir import WORK_DIR, WorkDir, for_output, identity, locate

__all__ = ["WORK_DIR", "RunResult", "publish", "run"]

#: The stages of ``store_bytes_read`` in run_log.json: the size sample, the keys pass, the order's and the
#: rewrite's tasks (``rewrite``: the rewrite in memory), and publishing (with a work folder on a store,
#: a local output gets the shards made elsewhere; an output on the work folder's store copies them server-side and
#: reads none).
STORE_STAGES = ("sample", *stages.STAGES, "rewrite", "publish")
#: Names of skipped input files kept in run_log.json (all are counted).
SKIPPED_LOGGED = 100
#: Written in the work folder by ``--plan-only``: the run's tasks are run by ``reorder task``, so a run
#: that later finds them finished was planned, not interrupted (as a run prepared for a cluster).
PLANNED = "planned.json"


@dataclass
class RunResult:
    """What a run did: ``status`` is "done", "already done" or "planned"; ``warnings`` are for the
    user's attention (shown as warnings), ``notes`` are information."""

    status: str
    manifest: manifest.Manifest | None
    output: Path
    seconds: float
    path: str = ""  # the rewrite path: "in-memory" or "out-of-core"
    cfg: RunConfig | None = None  # the config the run used (format decided, workers as the budget allows)
    reused_shards: int = 0  # shards an earlier, interrupted run of the same command had finished
    planned: bool = False  # planned with --plan-only: the shards were made by its tasks, not by an interrupted run
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Planned:
    plan: Plan
    stored: StoredPlan | None  # the stored plan, when the rewrite runs out of core
    cfg: RunConfig  # with the worker count the budget allows
    path: str
    reason: str
    keys_out_of_core: bool


def work_root(cfg: RunConfig) -> Path:
    """The work folder of the run of ``cfg`` (what a Ctrl-C keeps)."""
    return for_output(cfg.output, cfg).root


def _inputs(cfg: RunConfig, skipped: list[str]) -> tuple[RunConfig, list[InputFile]]:
    score_expr.for_config(cfg)  # a score expression that does not parse stops here, before anything is written
    token_output.check(cfg)  # an unknown export, or token settings that cannot be made: before anything is written
    if cfg.mixture:  # every source's files, source by source (a file in two sources is refused)
        files = [f for one in mix_plan.source_files(cfg, skipped) for f in one]
    else:
        files = discover(cfg.inputs, skipped)  # files inside folders or globs not read for their extension: skipped
    return with_format(cfg, [(f.format, f.compression) for f in files]), files


def _already_done(out: Path, ident: dict, cfg: RunConfig, started: float) -> RunResult | None:
    done = output.already_done(out, ident, cfg.workers)
    if done is None:
        return None
    note = (f"nothing to do: {out} already holds the output of this run ({len(done.shards)} shard(s); "
            "sizes and sha256 match its manifest)")
    return RunResult("already done", done, out, time.perf_counter() - started, notes=[note])


@contextlib.contextmanager
def preparing(cfg: RunConfig, overwrite: bool = False, restart: bool = False, command: str = "reorder run",
              check: Callable[[WorkDir, run_lock.Lock], None] | None = None) -> Iterator[RunResult]:
    """A run for a cluster executor: check the inputs and the output folder, take the run's lock
    (:mod:`reorder_cli.run_lock`; ``command`` names its holder), call ``check`` (the executor's own
    refusals, before anything is claimed), claim the work folder and write ``run.json``; the tasks
    (:mod:`reorder_cli.stages`) do the rest, and :func:`run` publishes. Yields status "already done"
    (no lock taken), or "prepared" with the lock held until the block ends."""
    started = time.perf_counter()
    if store.is_url(cfg.output) and cfg.work_dir is None:
        raise ReorderError(f"{cfg.output}: a cluster executor needs a work folder every node shares for an output on "
                           "an object store: set work_dir to a shared folder or a URL (--set work_dir=s3://.../work)")
    store.configure(cfg.storage_options)  # how URLs reach their object store (util/store.py)
    cfg, files = _inputs(cfg, [])
    out, work, ident = cfg.output, for_output(cfg.output, cfg), identity(cfg, files)
    publishing = output.is_publishing(work, ident, restart)
    done = None if publishing or overwrite else _already_done(out, ident, cfg, started)
    if done is not None:
        yield done
        return
    output.check(out, files, cfg.inputs, overwrite, publishing)
    with run_lock.held(work, command) as lock:
        if check is not None:
            check(work, lock)
        with output.claimed(out, work, ident, restart, lock.created):
            if stages.load_spec(work) is None and not work.plan_file("plan.json").exists():
                cfg = shard_bytes.for_layout(cfg, files)
                if cfg.mixture:  # its order is planned here; the tasks start at scatter
                    the_plan = mix_plan.plan(cfg, mix_plan.order_sources(cfg, work, Progress(enabled=False).task,
                                                                         _mixture_keys_budget(cfg)))
                    _store_mixture(the_plan, cfg, files, work, budget.choose(the_plan, cfg, force="out-of-core"))
                else:
                    stages.write_spec(work, cfg, files)
        yield RunResult("prepared", None, out, time.perf_counter() - started, cfg=cfg)


def prepare(cfg: RunConfig, overwrite: bool = False, restart: bool = False) -> RunResult:
    """:func:`preparing`, the lock released at once."""
    with preparing(cfg, overwrite, restart) as prepared:
        return prepared


def run(cfg: RunConfig, overwrite: bool = False, progress: Progress | None = None, *, keep_work: bool = False,
        restart: bool = False, plan_only: bool = False, report_done: bool = False) -> RunResult:
    """The stages of a run in order: inputs, output folder, plan, rewrite, publish. With ``plan_only``,
    ``report_done`` still says "already done" when the output holds this run."""
    progress = progress or Progress(enabled=False)
    started = time.perf_counter()
    store.configure(cfg.storage_options)  # how URLs reach their object store (util/store.py)
    read_before = store.bytes_read()  # bytes read from object stores, by stage
    skipped: list[str] = []  # files inside folders or globs not read for their extension
    cfg, files = _inputs(cfg, skipped)
    out, work, ident = cfg.output, for_output(cfg.output, cfg), identity(cfg, files)
    publishing = output.is_publishing(work, ident, restart)
    skip_done = (plan_only and not report_done) or publishing or overwrite
    done = None if skip_done else _already_done(out, ident, cfg, started)
    if done is not None:
        return done
    output.check(out, files, cfg.inputs, overwrite, publishing)
    with run_lock.held(work, "reorder run") as lock:  # one run of an output at a time, till its folder is gone
        return _run_locked(cfg, files, skipped, work, ident, (restart, plan_only, keep_work), lock.created,
                           progress, started, read_before)


def _run_locked(cfg: RunConfig, files: list[InputFile], skipped: list[str], work: WorkDir, ident: dict,
                flags: tuple[bool, bool, bool], locked: Path | None, progress: Progress, started: float,
                read_before: dict[str, int]) -> RunResult:
    """:func:`run` once the run's lock is held; ``flags``: restart, plan_only, keep_work."""
    (restart, plan_only, keep_work), out, timings = flags, cfg.output, {}
    result = RunResult("done", None, out, 0.0, cfg=cfg)
    if store.is_url(out) and cfg.work_dir is None:
        result.notes.append(f"work folder: {work.root}, a local scratch ($REORDER_SCRATCH or the system's temporary "
                            "folder) as no work_dir is set; `reorder status`/`task`/`publish` find it on this machine")
        progress.note(result.notes[-1])
    with output.claimed(out, work, ident, restart, locked) as resumed:
        with store.reading("keys"):
            planned = _plan(files, cfg, work, resumed, plan_only, progress, result, timings)
        if plan_only:
            work.put(PLANNED, b"{}\n")
            counts = tasks.status(work)
            result.notes.append(f"{counts['scatter']['tasks']} scatter and {counts['gather']['tasks']} gather "
                                f"tasks in {work.root}")
            result.status, result.seconds = "planned", time.perf_counter() - started
            return result
        spec = stages.load_spec(work) if resumed else None  # prepared for a cluster: its tasks ran elsewhere
        result.cfg = planned.cfg
        result.planned = work.get(PLANNED) is not None or (spec is not None and spec.first_stage == "keys")
        with store.reading("rewrite"):
            shards = _rewrite(planned, work, resumed, progress, result, timings)
        with store.reading("publish"):
            unchanged.check_all(files, "publish", planned.cfg.workers)  # the inputs the manifest describes
            work_store.pull(work, "publish")  # a work folder on a store: the shards made elsewhere
            work_bytes = work.size()
            export = token_output.stage_export(planned.cfg, work, out, shards)
            result.manifest = manifest.build(planned.plan, planned.cfg, shards, out, export)
            elsewhere = stages.bytes_read_by_tasks(work)  # before publishing: a publish removes staged shards
            output.publish(out, work, shards, result.manifest, planned.cfg.workers)
    if not keep_work:
        work.remove()
    result.seconds, result.path = time.perf_counter() - started, planned.path
    output.write_run_log(out, {
        "seconds": round(result.seconds, 3), **{k: round(v, 3) for k, v in timings.items()}, "path": planned.path,
        "keys": "out-of-core" if planned.keys_out_of_core else "in-memory", "workers": planned.cfg.workers,
        "memory_limit": cfg.memory_limit, "rows": planned.plan.rows, "shards": len(shards),
        "work_bytes": work_bytes, "resumed": resumed,
        "skipped_inputs": {"count": len(skipped), "files": skipped[:SKIPPED_LOGGED]},
        "store_bytes_read": {k: store.bytes_read().get(k, 0) - read_before.get(k, 0) + elsewhere.get(k, 0)
                             for k in STORE_STAGES}})
    return result


def _plan(files: list[InputFile], cfg: RunConfig, work: WorkDir, resumed: bool, plan_only: bool,
          progress: Progress, result: RunResult, timings: dict[str, float]) -> _Planned:
    """Keys -> order -> layout, and the rewrite path that fits the budget; a resumed run reloads its plan."""
    t0 = time.perf_counter()
    stored = stored_plan.load(work) if resumed else None
    if stored is not None:
        with store.reading("publish"):  # a work folder on a store: the plan's small files (not its arrays)
            work_store.pull(work, "manifest")
        cfg = dataclasses.replace(cfg, workers=budget.resumed_workers(stored.meta["bucket_bytes"], cfg))
        keys_ooc = work.fetch(work.order / "split.json")
        planned = _Planned(stored.as_plan(files), stored, cfg, "out-of-core", "resumed from the stored plan",
                           keys_ooc)
    elif cfg.mixture:  # every source ordered as its own run, then merged, in this process (plan/mixture.py)
        cfg = shard_bytes.for_layout(cfg, files)
        the_plan = mix_plan.plan(cfg, mix_plan.order_sources(cfg, work, progress.task, _mixture_keys_budget(cfg)))
        faults.pause("keys")
        choice = budget.choose(the_plan, cfg, force="out-of-core" if plan_only else None)
        if choice.warning:
            result.warnings.append(choice.warning)
        cfg = dataclasses.replace(cfg, workers=choice.workers)
        stored = _store_mixture(the_plan, cfg, files, work, choice) if choice.path == "out-of-core" else None
        the_plan = stored.as_plan(files) if stored is not None else the_plan
        planned = _Planned(the_plan, stored, cfg, choice.path, choice.reason, False)
    else:
        cfg = shard_bytes.for_layout(cfg, files)
        keys_budget = budget.keys_budget(cfg)
        sources = read_keys(files, cfg, work, keys_budget, progress.task)
        faults.pause("keys")
        spilled = build.spilled(sources)
        the_plan = None if spilled else build.build(files, sources, cfg)
        choice = None if spilled else budget.choose(the_plan, cfg, force="out-of-core" if plan_only else None)
        if spilled or choice.path == "out-of-core":  # the order as tasks, through the local pool, as on a cluster
            the_plan = None  # the keys leave memory: the tasks read them from the work folder
            stored = _order_as_tasks(files, sources, cfg, work, progress)
            laid_out = work.finished("layout", 0)
            warning, workers = laid_out["warning"], laid_out["workers"]
            reason = "the keys do not fit memory_limit" if spilled else choice.reason
            the_plan, path = stored.as_plan(files), "out-of-core"
        else:
            warning, workers, reason, path = choice.warning, choice.workers, choice.reason, "in-memory"
        if warning:
            result.warnings.append(warning)
        cfg = dataclasses.replace(cfg, workers=workers)
        planned = _Planned(the_plan, stored, cfg, path, reason, spilled)
    timings["plan_seconds"] = time.perf_counter() - t0
    return planned


def _mixture_keys_budget(cfg: RunConfig) -> int:
    """What a mixture's keys may take in the process that plans it (0: unchecked, in the tests of the
    out-of-core mechanics, whose memory_limit is below any real run's)."""
    return 0 if faults.below_floor_allowed() else budget.keys_budget(cfg)


def _store_mixture(the_plan: Plan, cfg: RunConfig, files: list[InputFile], work: WorkDir,
                   choice: budget.Choice) -> StoredPlan:
    """A mixture's plan, made here, stored for the scatter and gather tasks (run here or on a cluster)."""
    stages.write_spec(work, cfg, files, first_stage="split")  # the order was planned here: tasks start at scatter
    return stored_plan.store_planned(the_plan, cfg, work, choice.bucket_bytes, choice.read_bytes)


def _order_as_tasks(files: list[InputFile], sources: list, cfg: RunConfig, work: WorkDir,
                    progress: Progress) -> StoredPlan:
    """The plan of an out-of-core run: the keys read here are recorded as the keys tasks would have
    (spilled, or written now), then the order's tasks (split, sort, place, layout) run through the
    local pool, as a cluster runs them. ``sources`` is emptied as it goes (the keys leave memory)."""
    stages.write_spec(work, cfg, files, first_stage="split")
    for i in range(len(sources)):  # a loop over files
        work.finish("keys", i, stages.keys_record(work, cfg, i, sources[i]))
        sources[i] = None
    stages.run_local(work, stages.ORDER, cfg.workers, progress)
    return stored_plan.load(work)


def _rewrite(planned: _Planned, work: WorkDir, resumed: bool, progress: Progress, result: RunResult,
             timings: dict[str, float]) -> list[dict]:
    """Every output shard, staged in the work folder: in memory, or by the scatter and gather tasks."""
    cfg = planned.cfg
    n_shards = len(planned.plan.shards)
    if resumed:
        result.reused_shards = sum(tasks.finished_shard(work, j) is not None for j in range(n_shards))
        if not result.planned:
            result.notes.append(f"resuming: {work.count_finished('scatter')} scatter and "
                                f"{result.reused_shards} gather tasks were already finished")
    if result.reused_shards == n_shards and n_shards:  # every shard made: no progress bars for work not done
        timings["rewrite_seconds"] = 0.0
        return [work.finished("gather", j) for j in range(n_shards)]
    temp = budget.check_disk(work.root, planned.plan, cfg, planned.path, work.size())
    if result.reused_shards < len(planned.plan.shards):
        result.notes.append(f"rewrite path: {planned.path} ({planned.reason}); temporary space needed: about "
                            f"{fmt_bytes(temp)}")
        progress.note(result.notes[-1])
    t0 = time.perf_counter()
    if planned.stored is not None:
        shards = tasks.run_all(planned.stored, work, cfg.workers, progress, timings)
    else:
        unchanged.check_all(planned.plan.files, "the rewrite", cfg.workers)  # it reads them again
        with progress.task("Writing shards", total=planned.plan.rows, unit="rows") as advance:
            shards = rewrite.write_shards(
                planned.plan, cfg, work.shards, advance, lambda i: tasks.finished_shard(work, i),
                lambda record, started: work.finish("gather", record["index"], record, started))
    timings["rewrite_seconds"] = time.perf_counter() - t0
    return shards


def publish(output: str | Path, work_dir: str | Path | None = None, progress: Progress | None = None, *,
            keep_work: bool = False) -> RunResult:
    """``reorder publish OUTPUT``: publish a run planned as tasks whose tasks have all finished; its config
    and inputs are the ones in its work folder (``run.json``). Unfinished tasks: one line naming them."""
    work = locate(output, work_dir)
    where = f" --work-dir {work_dir}" if work_dir else ""
    if not work.exists():
        raise ReorderError(f"{output}: no run to publish here (no {work.where}); a run planned with "
                           "`reorder run --plan-only` keeps its work there until it is published")
    spec = stages.load_spec(work)
    if spec is None or not work.fetch(work.plan_file("plan.json")):
        raise ReorderError(f"{work.where}: no planned run here (no stored plan); plan it with `reorder run "
                           "--plan-only`, or finish an interrupted run with the `reorder run` command that started it")
    store.configure(spec.cfg.storage_options)
    pending = []
    for stage, (n, done, planned) in stages.progress(work).items():  # a loop over stages
        if planned:  # planned in one process: no tasks
            continue
        if n is None:
            pending.append(f"{stage} onwards (not known yet)")
            break
        if done < n:
            left = stages.todo(work, stage) or []
            shown = ", ".join(map(str, left[:5])) + (", ..." if len(left) > 5 else "")
            pending.append(f"{stage} {shown} ({n - done} of {n})")
    if pending:
        raise ReorderError(f"{output}: tasks not finished: {'; '.join(pending)}; run each with "
                           f"`reorder task {output} STAGE INDEX{where}`, then publish again")
    return run(spec.cfg, progress=progress, keep_work=keep_work)
