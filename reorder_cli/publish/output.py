"""The output folder: which folders a run may write, claiming it, publishing into it, cleaning up.

A run writes only under ``OUTPUT/.reorder/`` (see :mod:`reorder_cli.workdir`) until every shard
is complete; :func:`publish` then moves the shards into place and writes the manifest last. A
failed run either keeps its finished tasks (the same command resumes) or leaves the folder as it
found it (:func:`discard`).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.writers import is_shard_name
from reorder_cli.publish import manifest, rerun
from reorder_cli.util import atomic, faults, store
from reorder_cli.workdir import WORK_DIR, WorkDir


def check(out: Path, files: list[InputFile], inputs: list[str], overwrite: bool, publishing: bool) -> None:
    """Refuse dangerous output folders and folders holding files we may not replace."""
    out_abs = out.resolve()
    for arg in (a for a in inputs if not store.is_url(a)):
        p = store.local(arg)
        if p.is_dir() and (out_abs == p.resolve() or p.resolve() in out_abs.parents):
            raise ReorderError(f"{out}: the output folder is inside the input folder {arg}; choose another")
    for f in files:
        if out_abs in f.path.resolve().parents:
            raise ReorderError(f"{out}: the output folder holds the input {f.path}; choose another")
    if out.exists() and not out.is_dir():
        raise ReorderError(f"{out}: exists and is not a folder")
    blocker = next((p for p in out.absolute().parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ReorderError(f"{out}: cannot be created, because {blocker} is a file, not a folder")
    present = [p for p in out.iterdir() if p.name != WORK_DIR] if out.exists() else []
    if not present:
        return
    if not overwrite and not publishing:
        raise ReorderError(f"{out}: the output folder already holds files; pass --overwrite to replace them")
    foreign = [p.name for p in present if not (is_shard_name(p.name) or p.name in manifest.BOOKKEEPING)]
    if foreign:
        raise ReorderError(
            f"{out}: --overwrite replaces only files reorder wrote, but the folder also holds {foreign[0]!r}"
        )


def is_publishing(work: WorkDir, ident: dict, restart: bool) -> bool:
    """Whether this same run had started publishing when it stopped."""
    return not restart and work.publishing.exists() and work.saved_identity() == ident


def already_done(out: Path, ident: dict, workers: int) -> dict[str, Any] | None:
    """The manifest of this very run when ``out`` already holds it intact (a re-run has nothing to do);
    None when ``out`` holds no finished run. A changed output or another run's output is an error."""
    done = rerun.finished(out, ident, workers)
    if done is None:
        return None
    if not done.other_run and not done.changes:
        return done.doc
    raise ReorderError(
        f"{out}: holds the output of this run, but it changed since: {'; '.join(done.changes[:4])}; pass "
        "--overwrite to redo the run" if done.changes else
        f"{out}: already holds files, the output of another run ({'; '.join(done.other_run[:4])}); pass "
        "--overwrite to replace them, or choose another output folder")


def new_root(out: Path) -> Path | None:
    """The outermost folder of ``out`` that does not exist yet (the run creates it and its
    children), or None when ``out`` exists."""
    if out.exists():
        return None
    new = out
    for parent in out.absolute().parents:
        if parent.exists():
            break
        new = parent
    return new


def discard(work: WorkDir, created: Path | None) -> None:
    """Remove the working state, and every folder the run created."""
    work.remove()
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)


@contextmanager
def claimed(out: Path, work: WorkDir, ident: dict, restart: bool):
    """Claim ``out`` for the run ``ident``; yields whether earlier work is resumed.

    On failure inside the block: bad input or config (a :class:`ReorderError`) fails again on a
    re-run, so nothing is kept; a kill, Ctrl-C or a full disk keeps the finished tasks so that the
    same command resumes. An ``OSError`` becomes one line naming the file and what was kept.
    """
    created = new_root(out)
    try:
        resumed = work.open(ident, restart)
    except OSError as exc:
        discard(work, created)
        raise ReorderError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from None
    try:
        yield resumed
    except BaseException as exc:
        kept = not isinstance(exc, ReorderError) and work.has_progress()
        if not kept:
            discard(work, created)
        if isinstance(exc, OSError):  # disk full, permission denied, a file vanished ...
            what = (f"finished tasks are kept in {work.root}; re-run the same command to resume" if kept
                    else "nothing was written")
            raise ReorderError(f"{exc.strerror or exc}: {exc.filename or out} ({what})") from None
        raise


def publish(out: Path, work: WorkDir, shards: list[dict], doc: dict) -> None:
    """Move the staged shards into place and write the manifest; safe to repeat after a kill."""
    work.publishing.touch()
    new = {s["file"] for s in shards}
    for name in manifest.MANIFEST_NAMES:
        (out / name).unlink(missing_ok=True)  # never a manifest whose shards are gone
    for p in out.iterdir():
        if p.is_file() and (is_shard_name(p.name) and p.name not in new or p.name in manifest.RUN_LOG_NAMES):
            p.unlink()
    for s in shards:
        staged = work.shards / s["file"]
        if staged.exists():
            os.replace(staged, out / s["file"])
            faults.pause("publish")
        elif not (out / s["file"]).exists():
            raise ReorderError(f"{work.root}: shard {s['file']} is missing; re-run with --restart")
    atomic.write_text(out / manifest.MANIFEST_NAME, manifest.dumps(doc))


def write_run_log(out: Path, log: dict[str, Any]) -> None:
    """The run log: timings and the path taken, apart from the byte-reproducible manifest."""
    atomic.write_text(out / manifest.RUN_LOG_NAME, manifest.dumps(log))
