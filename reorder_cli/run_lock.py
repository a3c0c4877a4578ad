"""One run of an output at a time: the run's lock, ``lock`` in its work folder (:mod:`reorder_cli.workdir`).

The lock is a small JSON file naming its holder: ``host``, ``pid`` (and the process's start time, so a
reused pid is not taken for the holder), ``started``, ``command``, and ``slurm_job`` when the holder runs
in a Slurm job. It is created only when absent: ``O_CREAT | O_EXCL`` on a file system (NFS v3 and later,
Lustre, GPFS honour it), a PUT with ``If-None-Match: *`` on a store (S3's conditional write). Whoever
finds it held is refused in one line naming the holder and how to clear it, unless the holder is gone:

- a process of this host that no longer runs (its pid is gone, or is another process now);
- a holder inside a Slurm job that Slurm no longer lists (``squeue``);
- the Slurm jobs the lock was handed to (:meth:`Lock.hand_to_jobs`), none of which Slurm lists any more.

A lock whose holder is gone is taken over by replacing it only if it is still the lock that was judged
(on a store, a PUT with ``If-Match`` its ETag; on a file system, under a ``lock.takeover`` guard created
with ``O_EXCL``), so two runs never both take it. A lock held elsewhere (another host, no Slurm to ask)
is never guessed at: the message says to delete it once its holder is known to be gone.

``--executor slurm`` hands the lock to the jobs it submitted: the chain's submit and publish jobs (whose
``SLURM_JOB_ID`` it lists) take it over and carry on, while any other ``reorder run`` of the output is
refused (``--executor slurm``: the jobs are reported, nothing is submitted) until they ended. The lock is
re-entrant within a thread (``--executor ray`` holds it while its ``reorder run`` publishes).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.util import atomic, squeue, store
from reorder_cli.workdir import WorkDir

#: Seconds a lock may stay unreadable (being written) or a takeover guard may stay before it is old.
SETTLE_SECONDS = 5.0
GUARD_SECONDS = 30.0

_held: dict[tuple[str, int], Lock] = {}  # (lock, thread) -> the lock this thread holds


class Held(ReorderError):
    """The run is held by another; ``jobs``: the Slurm jobs holding it that are queued or running."""

    def __init__(self, message: str, holder: dict[str, Any], jobs: list[str] | None = None):
        super().__init__(message)
        self.holder, self.jobs = holder, jobs or []


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    now = _process_start(pid)
    return started is None or now is None or now == started


def record(command: str) -> dict[str, Any]:
    """What this process writes into the lock it takes."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid), "started": time.time(),
            "command": command, **({"slurm_job": squeue.this_job()} if squeue.this_job() else {})}


def describe(holder: dict[str, Any]) -> str:
    """The holder, for a message: its command, pid, host and since when."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    job = f", Slurm job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    where = f"pid {holder.get('pid')} on host {holder.get('host')}{job}"
    return f"{holder.get('command', 'reorder')} ({where}, since {since})"


def judge(holder: dict[str, Any], where: Path | store.URL) -> str:
    """``"ours"`` (this process is one of the Slurm jobs the lock was handed to) or ``"gone"`` (its holder
    ended); a holder still there is a :class:`Held` naming it."""
    jobs = [str(j) for j in holder.get("slurm_jobs", [])]
    if jobs:
        if squeue.this_job() in jobs:
            return "ours"
        try:
            active = sorted(squeue.active(jobs), key=jobs.index)
        except ReorderError as exc:
            raise Held(f"{where}: held by the Slurm jobs {', '.join(jobs)} of {describe(holder)}, and {exc}; "
                       f"once they ended (squeue, sacct), delete {where}", holder) from None
        if not active:
            return "gone"
        raise Held(f"{where}: this output's Slurm jobs {', '.join(active)} are queued or running "
                   f"({describe(holder)}); wait for them (`reorder status`), or cancel them (scancel "
                   f"{' '.join(active)}) and run again", holder, active)
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _alive(holder["pid"], holder.get("pid_start")):
            return "gone"
    elif holder.get("slurm_job"):
        try:
            if not squeue.active([str(holder["slurm_job"])], attempts=1):
                return "gone"
        except ReorderError:
            pass  # no queue to ask: the holder cannot be judged
    raise Held(f"{where}: another reorder run of this output is in progress: {describe(holder)}; wait for it "
               f"to end, or, if that process is gone, delete {where}", holder)


class Lock:
    """The lock of one work folder, held by this process."""

    def __init__(self, work: WorkDir, command: str):
        self.work, self.where = work, work.lock
        self.data = atomic.json_bytes(record(command))
        self.handed = False
        self.member = False  # taken over from the Slurm jobs it was handed to: this process is one of them
        self.created: Path | None = None  # the outermost folder the lock created (removed when left empty)

    # ---------------------------------------------------------------- the two kinds of places
    def _create(self) -> bool:
        if isinstance(self.where, store.URL):
            return store.create_only(self.where, self.data)
        try:
            fd = os.open(self.where, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self.data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _read(self) -> tuple[bytes, Any] | None:
        """The lock's bytes and what identifies this version of it (an ETag; the bytes on a file system)."""
        if isinstance(self.where, store.URL):
            return store.read_tagged(self.where)
        try:
            data = self.where.read_bytes()
        except FileNotFoundError:
            return None
        return data, data

    def _replace(self, tag: Any) -> bool:
        """Replace the lock with ours if it still is version ``tag``."""
        if isinstance(self.where, store.URL):
            return store.replace_if(self.where, self.data, tag)
        guard = self.where.with_name(self.where.name + ".takeover")
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - guard.stat().st_mtime > GUARD_SECONDS:  # its taker died half-way
                    guard.unlink()
            return False
        try:
            now = self._read()
            if now is None or now[1] != tag:
                return False
            atomic.write_bytes(self.where, self.data)
            return True
        finally:
            guard.unlink(missing_ok=True)

    # ---------------------------------------------------------------- taking and leaving
    def acquire(self) -> None:
        if isinstance(self.where, Path):
            root = self.where.parent
            missing = [p for p in (root, *root.parents) if not p.exists()]
            self.created = missing[-1] if missing else None
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ReorderError(f"{root}: cannot create the work folder: {exc.strerror or exc}") from None
        try:
            self._take()
        except BaseException:
            if isinstance(self.where, Path):
                self._remove_empty()  # refused: the folders created for the lock go
            raise

    def _take(self) -> None:
        unreadable_since, deadline = None, time.monotonic() + 2 * GUARD_SECONDS
        while True:  # a loop over attempts: a lock that vanished or is being written is looked at again
            if time.monotonic() > deadline:
                raise ReorderError(f"{self.where}: the run lock kept changing for {2 * GUARD_SECONDS:.0f} s (other "
                                   "runs of this output starting at once?); run again")
            if self._create():
                return
            found = self._read()
            if found is None:
                continue
            data, tag = found
            try:
                holder = json.loads(data)
            except ValueError:
                unreadable_since = unreadable_since or time.monotonic()
                if time.monotonic() - unreadable_since < SETTLE_SECONDS:
                    time.sleep(0.1)
                    continue
                raise ReorderError(f"{self.where}: an unreadable run lock; if no reorder run of this output is in "
                                   "progress, delete it") from None
            verdict = judge(holder, self.where)
            if self._replace(tag):
                self.member = verdict == "ours"
                return
            time.sleep(0.05)  # taken over by another, or changed meanwhile: look again

    def hand_to_jobs(self, ids: list[str]) -> None:
        """Hand the lock to the Slurm jobs ``ids`` (the chain just submitted): they hold it from now on."""
        holder = {**json.loads(self.data), "slurm_jobs": list(ids)}
        self.data = atomic.json_bytes(holder)
        if isinstance(self.where, store.URL):
            store.write_bytes(self.where, self.data)
        else:
            atomic.write_bytes(self.where, self.data)
        self.handed = True

    def release(self) -> None:
        """Remove the lock (unless handed to Slurm jobs, or no longer ours), then the work folder if it is
        empty (its run removed it), and the folders the lock created above it if they are empty too, up to
        a ``work_dir`` (a failed run's :func:`reorder_cli.publish.output.claimed` removes the rest)."""
        if not self.handed:
            found = self._read()
            if found is not None and found[0] == self.data:
                if isinstance(self.where, store.URL):
                    store.remove(self.where)
                else:
                    self.where.unlink(missing_ok=True)
        if isinstance(self.where, Path):
            self._remove_empty()

    def _remove_empty(self) -> None:
        root, created = self.where.parent, self.created
        above = [p for p in root.parents if created is not None and (p == created or created in p.parents)]
        for folder in [root, *above]:  # a loop up to the created folder
            if folder == self.work.base:
                break
            try:
                folder.rmdir()
            except OSError:
                break


@contextlib.contextmanager
def held(work: WorkDir, command: str) -> Iterator[Lock]:
    """Hold the lock of ``work``'s run while the block runs (``command`` names the holder in messages);
    a :class:`Held` when another holds it. Re-entrant within a thread."""
    key = (str(work.lock), threading.get_ident())
    if key in _held:
        yield _held[key]
        return
    lock = Lock(work, command)
    lock.acquire()
    _held[key] = lock
    try:
        yield lock
    finally:
        del _held[key]
        lock.release()
