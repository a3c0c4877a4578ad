"""Where a work folder's files are kept: a local folder, or a folder on an object store with a local mirror.

With ``work_dir`` a URL (``s3://bucket/reorder-work``), the store holds the working state and each process
works in a local mirror of it (``root``: ``$REORDER_SCRATCH/NAME-HASH/CLAIM``, by default under the system's
temporary folder), which :mod:`reorder_cli.work_store` fills with what a task reads and empties into the
store when the task finishes, before its marker. The bookkeeping (state, run.json, markers, logs) is read
and written where it is kept, on the store itself (:meth:`Mirror.put`, :meth:`Mirror.get`); the bulk is
read by range requests (:meth:`Mirror.open_data`). A local work folder is its own ``root``.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from reorder_cli.util import atomic, state_io, store
from reorder_cli.workdir.paths import CLAIM, LOCK, STATE, WORK_DIR, scratch


class Mirror:
    """A work folder where it is kept (``where``), and the folder this process reads and writes (``root``)."""

    def __init__(self, output: Path | store.URL, root: Path | None = None, base: Path | store.URL | None = None,
                 remote: store.URL | None = None):
        self.output = output  # where the shards are published
        self.remote = remote  # the run's folder on a store (work_dir is a URL); ``root`` is then its mirror
        self._root = root if root is not None or remote is not None else Path(output) / WORK_DIR
        self.base = base  # the work_dir holding the folder (None: OUTPUT/.reorder/)

    @property
    def root(self) -> Path:
        """The folder the tasks read and write: the work folder, or the local mirror of one on a store."""
        if self._root is None:
            claim = self.get(CLAIM)
            self._root = scratch() / self.remote.name / (claim.decode() if claim else "unclaimed")
        return self._root

    def new_claim(self, claim: str) -> None:
        """On a store: record a new claim; the mirror is then a new folder, never one of an earlier claim."""
        self.put(CLAIM, claim.encode())
        self._root = None

    @property
    def where(self) -> Path | store.URL:
        """Where the working state is kept: ``root``, or the folder on the store."""
        return self.remote if self.remote is not None else self.root

    def put(self, name: str, data: bytes) -> None:
        """Write ``name`` (a path relative to the folder) whole: renamed into place, or one PUT on a store."""
        if self.remote is not None:
            store.write_bytes(self.remote / name, data)
            return
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)

    def get(self, name: str) -> bytes | None:
        """The bytes of ``name``, or None when there is none (a transient error is retried, then reported)."""
        if self.remote is not None:
            return store.read_or_none(self.remote / name)
        return read_or_none(self.root / name)

    def names(self, folder: str) -> list[str]:
        """The names of the files in ``folder`` (relative to the work folder), sorted."""
        return store.names(self.where / folder)

    def delete(self, name: str) -> None:
        if self.remote is not None:
            store.remove(self.remote / name)
        else:
            (self.root / name).unlink(missing_ok=True)

    def exists(self) -> bool:
        """Whether a run was started here (its folder, or its state on the store)."""
        return self.get(STATE) is not None if self.remote is not None else self.root.is_dir()

    def keep(self, path: Path, data: bytes) -> None:
        """Keep a copy of a file of the store in the mirror (a marker: never rewritten within a claim), whose
        folder a process new to the run may not have created yet."""
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)

    def fetch(self, path: Path) -> bool:
        """Whether ``path`` (a file under ``root``) exists; on a store, it is copied into the mirror first
        when it is there and not yet here (the files a task reads are written once, whole)."""
        if path.exists():
            return True
        if self.remote is None:
            return False
        return store.download(self.remote / path.relative_to(self.root).as_posix(), path)

    def open_data(self, path: Path, copy: bool = False):
        """A file under ``root`` opened for random reads: the local file, or, on a store when the mirror does
        not hold it, the object itself, read by range requests (the bulk of a run is never copied whole);
        with ``copy`` (a small file), a copy downloaded into the mirror first (a few requests a node
        rather than a few a task)."""
        if copy and self.remote is not None and not path.exists():
            self.fetch(path)
        if path.exists() or self.remote is None:
            return open(path, "rb")  # noqa: SIM115 - the caller closes
        return store.open_random(self.remote / path.relative_to(self.root).as_posix())

    def readable(self, recorded: str) -> Path | store.URL:
        """A location recorded by :meth:`portable`: the mirror's copy when this process has it, else the
        recorded path or URL (read by range requests)."""
        prefix = f"{self.remote}/" if self.remote is not None else None
        if prefix and recorded.startswith(prefix) and (self.root / recorded[len(prefix):]).exists():
            return self.root / recorded[len(prefix):]
        return store.location(recorded)

    def portable(self, path: Path | store.URL) -> str:
        """How a file is named in a record any process reads: a URL as it is; a file of the work folder
        by its absolute path, or, on a store, by its URL (the mirror differs from process to process)."""
        if isinstance(path, store.URL):
            return str(path)
        if self.remote is not None and self.root in path.absolute().parents:
            return str(self.remote / path.absolute().relative_to(self.root).as_posix())
        return str(path.absolute())

    def ensure(self) -> None:
        for folder in (self.root, self.root / "done", self.root / "shards"):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def lock(self) -> Path | store.URL:
        """The run's lock (:mod:`reorder_cli.run_lock`): in the folder, or on the store."""
        return self.remote / LOCK if self.remote is not None else self.root / LOCK

    def remove(self) -> None:
        """Remove the working state, all but the run's lock (its holder removes it, then the empty folder)."""
        if self.remote is not None:
            store.remove_tree(self.remote, keep=(LOCK,))
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
            return
        if not self.root.is_dir():
            return
        for child in self.root.iterdir():  # a loop over the folder's few entries
            if child.name == LOCK:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # no lock in it: the folder goes too, as before

    def size(self) -> int:
        """Bytes currently held (for the run log; the local mirror, for a work folder on a store)."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0


def read_or_none(path: Path) -> bytes | None:
    """The bytes of a local state file, or None when there is none (a transient error is retried, then
    reported: :func:`state_io.transient`)."""
    def read() -> bytes | None:
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # not there, or a file where a folder would be
            return None

    return state_io.transient(read, path)
