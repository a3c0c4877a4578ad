"""Is an input still the one the keys pass read? Its *stamp*: what the file system or the store says of
it without reading a byte, taken when the run discovers it (before the keys pass reads it), recorded in
``run.json`` and the stored plan, and compared by :func:`check` in every task that reads an input (keys,
scatter, the rewrite in memory) and before publishing.

    a local file      size, modification time (ns), inode; the device too when checked on the host
                      that took the stamp (another host may number a shared file system's device
                      differently)
    an object         size and version: its ETag (S3, GCS), generation or modification time

What a stamp does not see: a file rewritten in place at the same size whose modification time was
set back afterwards (``touch -d``, ``os.utime``). ``reorder verify --with-inputs`` reads every input
and is the full proof.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reorder_cli.errors import KeepsWork, ReorderError
from reorder_cli.util import store
from reorder_cli.util.parallel import run_parallel

#: The facts every host sees alike: what a run's identity holds (``workdir.identity``).
SHARED = ("mtime_ns", "inode")


class InputChanged(KeepsWork):
    """An input is no longer the one the keys pass read. A run keeps its finished tasks (the file may be
    put back as it was); a re-run refuses until it is, or until ``--restart``."""


def of_stat(st: os.stat_result) -> dict[str, Any]:
    """The stamp of a local file from its ``stat``."""
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "device": st.st_dev,
            "host": socket.gethostname()}


def of_url(url: store.URL) -> dict[str, Any]:
    """The stamp of an object: its size and version as listed at discovery (asked for when not known)."""
    size, version = url.size, url.version
    if size is None or version is None:
        meta = store.info(url)
        size, version = meta.get("size"), store.version(meta)
    return {"bytes": size, "version": version}


def take(path: Path | store.URL) -> dict[str, Any]:
    return of_url(path) if isinstance(path, store.URL) else of_stat(path.stat())


def shared(stamp: dict[str, Any] | None) -> dict[str, Any]:
    """The facts of ``stamp`` that a run's identity holds (an object's version is in its fingerprint)."""
    return {k: stamp[k] for k in SHARED if stamp and k in stamp}


def _why(path: Path | store.URL, recorded: dict[str, Any]) -> str | None:
    """How ``path`` now differs from its stamp ``recorded``; None when it does not."""
    if isinstance(path, store.URL):
        now = store.object_version(path)  # "SIZE:VERSION", asked of the store now
        if now is None:
            return "it is gone"
        return None if now == f"{recorded['bytes']}:{recorded['version']}" else "its size or ETag/version differs"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "it is gone"
    now = of_stat(st)
    if now["bytes"] != recorded["bytes"]:
        return f"{recorded['bytes']:,} -> {now['bytes']:,} bytes"
    if now["mtime_ns"] != recorded["mtime_ns"]:
        return "its modification time differs"
    if now["inode"] != recorded["inode"] or (now["host"] == recorded["host"] and now["device"] != recorded["device"]):
        return "another file now has its name (its inode or device differs)"
    return None


def check(path: Path | store.URL, recorded: dict[str, Any] | None, who: str) -> None:
    """Refuse, in one line naming the input and ``who`` (``scatter task 3``, ``publish``), an input that is
    no longer the one the keys pass read (its stamp ``recorded``); the one answer to that question."""
    if not recorded:
        raise ReorderError(f"{path}: {who}: the work folder records no stamp of this input (made by an older "
                           "reorder?); re-run with --restart")
    why = _why(path, recorded)
    if why is not None:
        raise InputChanged(f"{path}: changed since the keys pass read it ({why}); {who} stops: the plan no longer "
                           "describes it; put the file back as it was, or re-run with --restart to plan it afresh")


def check_all(files: Iterable[Any], who: str, workers: int = 8) -> None:
    """:func:`check` every input (``InputFile``: its path and stamp), ``workers`` at a time (one stat, or one
    request to a store, each)."""
    run_parallel(lambda f: check(f.path, f.stamp, who), list(files), max(1, workers))
