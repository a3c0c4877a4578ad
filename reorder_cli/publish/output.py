"""The output folder: which folders a run may write, claiming it, publishing into it, cleaning up.

A run writes only in its work folder (``OUTPUT/.reorder/``, or its folder in ``work_dir``: see
:mod:`reorder_cli.workdir`) until every shard is complete; :func:`publish` then moves the shards into
place and writes the manifest last. A failed run either keeps its finished tasks (the same command
resumes) or leaves the folders as it found them (:func:`discard`). An output on an object store is
published by :mod:`reorder_cli.publish.to_store` (no rename there).
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reorder_cli.errors import KeepsWork, ReorderError
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.writers import is_shard_name
from reorder_cli.publish import manifest, rerun, to_store, token_output
from reorder_cli.util import atomic, faults, store
from reorder_cli.workdir import WORK_DIR, WorkDir


def check(out: Path | store.URL, files: list[InputFile], inputs: list[str], overwrite: bool,
          publishing: bool) -> None:
    """Refuse dangerous output folders and folders holding files we may not replace."""
    if isinstance(out, store.URL):
        if any(str(f.path) == str(out) or str(f.path).startswith(str(out).rstrip("/") + "/") for f in files):
            raise ReorderError(f"{out}: the output holds an input; choose another")
        to_store.check(out, overwrite, publishing)
        return
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
    foreign = [p.name for p in present if not (is_shard_name(p.name) or p.name in manifest.BOOKKEEPING
                                               or p.is_dir() and p.name in token_output.folders())]
    if foreign:
        raise ReorderError(
            f"{out}: --overwrite replaces only files reorder wrote, but the folder also holds {foreign[0]!r}"
        )


def is_publishing(work: WorkDir, ident: dict, restart: bool) -> bool:
    """Whether this same run had started publishing when it stopped."""
    return not restart and work.is_publishing() and work.saved_identity() == ident


def already_done(out: Path | store.URL, ident: dict, workers: int) -> manifest.Manifest | None:
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


def new_root(out: Path | store.URL) -> Path | None:
    """The outermost folder of ``out`` that does not exist yet (the run creates it and its
    children), or None when ``out`` exists."""
    if isinstance(out, store.URL) or out.exists():
        return None
    new = out
    for parent in out.absolute().parents:
        if parent.exists():
            break
        new = parent
    return new


def discard(work: WorkDir, *created: Path | None) -> None:
    """Remove the working state, and every folder the run created."""
    work.remove()
    for folder in created:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def claimed(out: Path, work: WorkDir, ident: dict, restart: bool, locked: Path | None = None):
    """Claim ``out`` for the run ``ident``; yields whether earlier work is resumed. ``locked``: the folder
    the run's lock created for the work folder (:mod:`reorder_cli.run_lock`), removed like the others.

    On failure inside the block: bad input or config (a :class:`ReorderError`) fails again on a
    re-run, so nothing is kept; a kill, Ctrl-C, a full disk, damaged working state or an input that
    changed under the run (a :class:`KeepsWork`: it may be put back) keeps the finished tasks so that
    the same command resumes. An ``OSError``
    becomes one line naming the file and what was kept.
    """
    # the output, a work_dir, what the lock created
    created = new_root(out), (new_root(work.root) if isinstance(work.base, Path) else None), locked
    try:
        resumed = work.open(ident, restart)
    except OSError as exc:
        discard(work, *created)
        raise ReorderError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from None
    try:
        yield resumed
    except BaseException as exc:
        publishing = work.is_publishing()  # a failure while publishing (a store refusing an upload) is no bad input
        kept = (publishing or not isinstance(exc, ReorderError) or isinstance(exc, KeepsWork)) and work.has_progress()
        if not kept:
            discard(work, *created)
        if publishing and isinstance(exc, ReorderError) and kept:
            raise ReorderError(f"{exc} (the finished shards are kept in {work.where}; re-run the same command to "
                               "finish publishing)") from None
        if isinstance(exc, OSError):  # disk full, permission denied, a file vanished ...
            what = (f"finished tasks are kept in {work.root}; re-run the same command to resume" if kept
                    else "nothing was written")
            raise ReorderError(f"{exc.strerror or exc}: {exc.filename or out} ({what})") from None
        raise


def publish(out: Path | store.URL, work: WorkDir, shards: list[dict], doc: manifest.Manifest, workers: int = 1) -> None:
    """Move the staged shards into place (upload them, to a store) and write the manifest; safe to repeat
    after a kill."""
    if isinstance(out, store.URL):
        to_store.publish(out, work, shards, doc, workers)
        return
    work.mark_publishing()
    out.mkdir(parents=True, exist_ok=True)  # the work folder may live elsewhere (work_dir)
    new = {s["file"] for s in shards}
    for name in manifest.MANIFEST_NAMES:
        (out / name).unlink(missing_ok=True)  # never a manifest whose shards are gone
    for p in out.iterdir():
        if p.is_file() and (is_shard_name(p.name) and p.name not in new or p.name in manifest.RUN_LOG_NAMES):
            p.unlink()
    for s in shards:
        staged = work.shards / s["file"]
        if staged.exists():
            _move(staged, out / s["file"])
            faults.pause("publish")
        elif not (out / s["file"]).is_file():
            raise ReorderError(f"{work.root}: shard {s['file']} is missing; re-run with --restart")
        elif (why := rerun.shard_differs(out, s["file"], s["bytes"], s["sha256"], "its record")) is not None:
            # not this run's bytes
            raise ReorderError(f"{out / s['file']}: not the shard this run made ({why}) and its staged copy is "
                               "gone; re-run the same command to make it again")
    token_output.place(out, work, shards, (doc.export or {}).get("format"), _move)
    atomic.write_text(out / manifest.MANIFEST_NAME, doc.dumps())


def _move(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``; across file systems (a ``work_dir`` elsewhere), copy it beside the
    target under a temporary name, rename that, then remove the staged copy."""
    try:
        os.replace(staged, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with atomic.replacing(target) as tmp:
            shutil.copyfile(staged, tmp)
        staged.unlink()


def write_run_log(out: Path | store.URL, log: dict[str, Any]) -> None:
    """The run log: timings and the path taken, apart from the byte-reproducible manifest."""
    if isinstance(out, store.URL):
        to_store.write_run_log(out, manifest.dumps(log))
    else:
        atomic.write_text(out / manifest.RUN_LOG_NAME, manifest.dumps(log))
