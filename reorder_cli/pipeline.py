"""One run, start to finish: check the output folder, plan, rewrite, publish.

Nothing is written before the keys pass has validated every input. Shards are written
into ``OUTPUT/.reorder/`` and moved into place only when all of them are complete; the
manifest is written last. A failure removes what the run wrote and leaves any previous
output untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import manifest, plan, rewrite
from .config import RunConfig
from .errors import ReorderError
from .progress import Progress
from .shards.discover import InputFile, discover

WORK_DIR = ".reorder"
RUN_LOG = "run_log.json"
_OURS = re.compile(r"^\d{5}\.(parquet|jsonl|jsonl\.zst)$")


@dataclass
class Result:
    manifest: dict
    output: Path
    seconds: float


def _check_output(out: Path, files: list[InputFile], inputs: list[str], overwrite: bool) -> list[Path]:
    """Refuse dangerous output folders; return the old files an --overwrite will replace."""
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
    if not out.exists():
        return []
    present = [p for p in out.iterdir() if p.name != WORK_DIR]
    if not present:
        return []
    if not overwrite:
        raise ReorderError(f"{out}: the output folder already holds files; pass --overwrite to replace them")
    foreign = [p.name for p in present if not (_OURS.match(p.name) or p.name in (manifest.MANIFEST_NAME, RUN_LOG))]
    if foreign:
        raise ReorderError(
            f"{out}: --overwrite replaces only files reorder wrote, but the folder also holds {foreign[0]!r}"
        )
    return present


def run(cfg: RunConfig, overwrite: bool = False, progress: Progress | None = None) -> Result:
    progress = progress or Progress(enabled=False)
    started = time.perf_counter()
    files = discover(cfg.inputs)
    out = cfg.output
    old = _check_output(out, files, cfg.inputs, overwrite)
    created = not out.exists()
    work = out / WORK_DIR
    timings: dict[str, float] = {}
    try:
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with progress.task("Reading scores", total=sum(f.size for f in files), unit="bytes") as advance:
            sources = plan.read_keys(files, cfg, work, advance)
        the_plan = plan.build(files, sources, cfg)
        timings["plan_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        staging = work / "shards"
        staging.mkdir(exist_ok=True)
        with progress.task("Writing shards", total=the_plan.rows, unit="rows") as advance:
            shards = rewrite.write_shards(the_plan, cfg, staging, advance)
        timings["rewrite_seconds"] = time.perf_counter() - t0
        doc = manifest.build(the_plan, cfg, shards, out)
        # The old manifest goes first: a folder never holds a manifest whose shards are gone.
        for path in sorted(old, key=lambda p: p.name != manifest.MANIFEST_NAME):
            path.unlink()
        for s in shards:
            os.replace(staging / s["file"], out / s["file"])
        manifest.write_atomic(out / manifest.MANIFEST_NAME, manifest.dumps(doc))
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, OSError):  # disk full, permission denied, a file vanished ...
            raise ReorderError(f"{exc.strerror or exc}: {exc.filename or out} (nothing was written)") from None
        raise
    shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    log = {"seconds": round(seconds, 3), **{k: round(v, 3) for k, v in timings.items()},
           "workers": cfg.workers, "rows": the_plan.rows, "shards": len(shards)}
    manifest.write_atomic(out / RUN_LOG, json.dumps(log, indent=2) + "\n")
    return Result(doc, out, seconds)
