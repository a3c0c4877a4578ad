"""One run, start to finish: check the output folder, plan, rewrite, publish.

Nothing is written before the keys pass has validated every input. All work happens in
``OUTPUT/.reorder/`` (see :mod:`workdir`); finished shards are moved into place only
when all of them are complete, and the manifest is written last. A run that is killed
or fails while rewriting keeps its finished tasks there, and the same command resumes
it; bad input or a changed config never leaves half-written output behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import budget, faults, manifest, plan, rewrite, stored_plan, tasks
from .config import RunConfig
from .errors import ReorderError
from .progress import Progress
from .shards.discover import InputFile, discover
from .stats import fmt_bytes
from .workdir import WORK_DIR, WorkDir, identity

RUN_LOG = manifest.RUN_LOG_NAME
PUBLISHING = "publishing"
_OURS = re.compile(r"^\d{5}\.(parquet|jsonl|jsonl\.zst)$")
#: Fraction of the uncompressed rows that scatter files (by work_compression) and compressed shards take,
#: for the disk check: generous guesses for text.
SCATTER_RATIO = {"none": 1.05, "lz4": 0.75, "zstd": 0.5}
COMPRESSED_RATIO = 0.4


@dataclass
class Result:
    manifest: dict
    output: Path
    seconds: float
    path: str = ""
    notes: list[str] = field(default_factory=list)


def _check_output(out: Path, files: list[InputFile], inputs: list[str], overwrite: bool, publishing: bool) -> None:
    """Refuse dangerous output folders and folders holding files we may not replace."""
    out_abs = out.resolve()
    for arg in inputs:
        p = Path(arg)
        if p.is_dir() and (out_abs == p.resolve() or p.resolve() in out_abs.parents):
            raise ReorderError(f"{out}: the output folder is inside the input folder {arg}; choose another")
    for f in files:
        if out_abs in f.path.resolve().parents:
            raise ReorderError(f"{out}: the output folder holds the input {f.path}; choose another")
    if out.exists() and not out.is_dir():
        raise ReorderError(f"{out}: exists and is not a folder")
    present = [p for p in out.iterdir() if p.name != WORK_DIR] if out.exists() else []
    if not present:
        return
    if not overwrite and not publishing:
        raise ReorderError(f"{out}: the output folder already holds files; pass --overwrite to replace them")
    foreign = [p.name for p in present if not (_OURS.match(p.name) or p.name in manifest.BOOKKEEPING)]
    if foreign:
        raise ReorderError(
            f"{out}: --overwrite replaces only files reorder wrote, but the folder also holds {foreign[0]!r}"
        )


def _publishing(work: WorkDir, ident: dict, restart: bool) -> bool:
    """Whether this same run had started publishing when it stopped."""
    return not restart and (work.root / PUBLISHING).exists() and work.saved_identity() == ident


def _check_disk(work: WorkDir, the_plan: plan.Plan, cfg: RunConfig, path: str) -> int:
    """Temporary space the rewrite needs; fails early when the disk cannot hold it."""
    rows_bytes = budget.payload_bytes(the_plan)
    need = int(rows_bytes * (1.0 if cfg.format == "jsonl" else COMPRESSED_RATIO))
    if path == "out-of-core":
        need += int(rows_bytes * SCATTER_RATIO[cfg.work_compression])
    free = shutil.disk_usage(work.root).free
    if need > free:
        raise ReorderError(
            f"{work.root}: the rewrite needs about {need / 1e9:.2f} GB of temporary space, "
            f"but only {free / 1e9:.2f} GB is free there"
        )
    return need


def _publish(out: Path, work: WorkDir, shards: list[dict], doc: dict) -> None:
    """Move the staged shards into place and write the manifest; safe to repeat after a kill."""
    (work.root / PUBLISHING).touch()
    new = {s["file"] for s in shards}
    for name in manifest.MANIFEST_NAMES:
        (out / name).unlink(missing_ok=True)  # never a manifest whose shards are gone
    for p in out.iterdir():
        if p.is_file() and (_OURS.match(p.name) and p.name not in new or p.name in manifest.RUN_LOG_NAMES):
            p.unlink()
    for s in shards:
        staged = work.shards / s["file"]
        if staged.exists():
            os.replace(staged, out / s["file"])
            faults.pause("publish")
        elif not (out / s["file"]).exists():
            raise ReorderError(f"{work.root}: shard {s['file']} is missing; re-run with --restart")
    manifest.write_atomic(out / manifest.MANIFEST_NAME, manifest.dumps(doc))


def run(cfg: RunConfig, overwrite: bool = False, progress: Progress | None = None, *, keep_work: bool = False,
        restart: bool = False, plan_only: bool = False) -> Result:
    progress = progress or Progress(enabled=False)
    started = time.perf_counter()
    files = discover(cfg.inputs)
    out = cfg.output
    work = WorkDir(out)
    ident = identity(cfg, files)
    _check_output(out, files, cfg.inputs, overwrite, _publishing(work, ident, restart))
    created = not out.exists()
    resumed = work.open(ident, restart)
    notes: list[str] = []
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        stored = stored_plan.load(work) if resumed else None
        keys_out_of_core = stored is not None and (work.plan / "keys-scores.npy").exists()
        if stored is None:
            keys_budget = budget.keys_budget(cfg)
            with progress.task("Reading scores", total=sum(f.size for f in files), unit="bytes") as advance:
                sources = plan.read_keys(files, cfg, work.root, advance, keys_budget)
            keys_out_of_core = plan.spilled(sources)
            if keys_out_of_core:
                with progress.task("Ordering keys out of core", total=1, unit="steps"):
                    the_plan = plan.build_out_of_core(files, sources, cfg, work.plan, keys_budget)
            else:
                the_plan = plan.build(files, sources, cfg)
            del sources
            faults.pause("keys")
            choice = budget.choose(the_plan, cfg, force="out-of-core" if plan_only or keys_out_of_core else None)
            if choice.warning:
                notes.append(choice.warning)
            if choice.path == "out-of-core":
                stored = stored_plan.store(the_plan, cfg, work, choice.bucket_bytes, choice.read_bytes,
                                           stored_plan.output_schema(the_plan), keys_budget)
                the_plan = stored.as_plan(files)  # the keys leave memory for the rewrite
            path = choice.path
            reason = "the keys do not fit memory_limit" if keys_out_of_core else choice.reason
        else:
            the_plan, path, reason = stored.as_plan(files), "out-of-core", "resumed from the stored plan"
        timings["plan_seconds"] = time.perf_counter() - t0
        if plan_only:
            counts = tasks.status(out)
            notes.append(f"planned {counts['scatter']['tasks']} scatter and {counts['gather']['tasks']} gather "
                         f"tasks in {work.root}")
            return Result({}, out, time.perf_counter() - started, "planned", notes)
        if resumed:
            notes.append(f"resuming: {work.count_finished('scatter')} scatter and "
                         f"{work.count_finished('gather')} gather tasks were already finished")
        temp = _check_disk(work, the_plan, cfg, path)
        notes.append(f"rewrite path: {path} ({reason}); temporary space needed: about {fmt_bytes(temp)}")
        progress.note(notes[-1])
        t0 = time.perf_counter()
        if stored is not None:
            shards = tasks.run_all(stored, work, cfg.workers, progress, timings)
        else:
            with progress.task("Writing shards", total=the_plan.rows, unit="rows") as advance:
                shards = rewrite.write_shards(
                    the_plan, cfg, work.shards, advance, lambda i: tasks.finished_shard(work, i),
                    lambda record: work.finish("gather", record["index"], record))
        timings["rewrite_seconds"] = time.perf_counter() - t0
        work_bytes = work.size()
        doc = manifest.build(the_plan, cfg, shards, out)
        _publish(out, work, shards, doc)
    except BaseException as exc:
        # Bad input or config fails again on a re-run: leave nothing. A kill, Ctrl-C or a full
        # disk keeps the finished tasks, so that the same command resumes.
        kept = not isinstance(exc, ReorderError) and has_progress(work)
        if not kept:
            _discard(work, out, created)
        if isinstance(exc, OSError):  # disk full, permission denied, a file vanished ...
            what = (f"finished tasks are kept in {work.root}; re-run the same command to resume" if kept
                    else "nothing was written")
            raise ReorderError(f"{exc.strerror or exc}: {exc.filename or out} ({what})") from None
        raise
    if not keep_work:
        work.remove()
    seconds = time.perf_counter() - started
    log = {"seconds": round(seconds, 3), **{k: round(v, 3) for k, v in timings.items()}, "path": path,
           "keys": "out-of-core" if keys_out_of_core else "in-memory",
           "workers": cfg.workers, "memory_limit": cfg.memory_limit, "rows": the_plan.rows, "shards": len(shards),
           "work_bytes": work_bytes, "resumed": resumed}
    manifest.write_atomic(out / RUN_LOG, json.dumps(log, indent=2) + "\n")
    return Result(doc, out, seconds, path, notes)


def has_progress(work: WorkDir) -> bool:
    """Whether the working state holds anything a re-run would reuse."""
    return (work.plan / "plan.json").exists() or bool(work.count_finished("scatter") + work.count_finished("gather"))


def _discard(work: WorkDir, out: Path, created: bool) -> None:
    work.remove()
    if created:
        shutil.rmtree(out, ignore_errors=True)
