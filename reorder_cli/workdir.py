"""A run's working state: what makes a run resumable. It lives in ``OUTPUT/.reorder/``, or, with the
``work_dir`` config key, in ``WORK_DIR/NAME-HASH/`` (NAME the output folder's name, HASH the start of
the sha256 of the output's absolute path or URL: two runs share one work_dir). An output on an object
store without ``work_dir`` has its folder in a local scratch, ``scratch()/work`` (:func:`locate`; cluster
executors refuse it); :func:`for_output` is the one way to the folder.

``work_dir`` may be a URL (``s3://bucket/reorder-work``): the store then holds the working state, and
each process works in a local mirror of it (``root``: ``$REORDER_SCRATCH/NAME-HASH/CLAIM``, by default
under the system's temporary folder), which :mod:`reorder_cli.work_store` fills with what a task reads
and empties into the store when the task finishes, before its marker. The bookkeeping (state, run.json,
markers, logs) is read and written on the store itself (:meth:`WorkDir.put`, :meth:`WorkDir.get`).

    state.json        who the state belongs to: the run's identity (config + inputs)
    run.json          what every task of a run reads: the config, the inputs, a task's memory budget
    keys/             the keys tasks' outputs, one set of files an input (plan/order_tasks.py)
    order/            the order tasks' outputs: split.json, the sorted key ranges (plan/order_tasks.py)
    plan/             the stored plan (out-of-core runs): arrays and plan.json
    scatter/          one bucket file a scatter task (out-of-core runs)
    shards/           finished output shards, waiting to be published
    done/             one marker a finished task: ``keys-00000.json``, ``scatter-00003.json``, ...;
                      ``upload-00003.json`` once shard 3 was uploaded to a store and read back intact
    input-NNNNN.jsonl decompressed copies of .gz / .zst JSONL inputs
    logs/             a cluster executor's task logs: ``scatter-00003.log``, and ``scatter-00003.failed``
                      when that task failed (removed when it is run again); ``scatter-00003.started``
                      while a task runs (any executor: its host and pid)
    slurm/            the sbatch scripts of ``--executor slurm`` and ``jobs.json``, the ids it submitted
    lock              who runs the run now (:mod:`reorder_cli.run_lock`); kept when the folder is
                      emptied, removed by its holder

Every file is written under a temporary name and renamed when complete (:mod:`reorder_cli.util.atomic`);
a task's marker is written last, after its files were synced to disk, and records each file's bytes,
which every task reading them checks first (:mod:`reorder_cli.task_outputs`). So a task either has a
marker and complete outputs, or is run again. A re-run with the same identity resumes; with another one
it refuses and says what changed. An unreadable or corrupt state file is an error naming it, never "no
run": nothing is deleted unless ``--restart`` asks for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reorder_cli import __version__
from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError, StateError
from reorder_cli.formats import unchanged
from reorder_cli.formats.discover import InputFile
from reorder_cli.tokens import sections
from reorder_cli.util import atomic, state_io, store
from reorder_cli.util.hashing import fingerprint
from reorder_cli.util.state_io import RESTART

WORK_DIR = ".reorder"
STATE = "state.json"
#: A work folder on a store: the object naming the claim (a new one each time the run starts afresh),
#: which names the local mirror, so that a mirror never serves files of an earlier claim.
CLAIM = "claim"
#: The run's lock (:mod:`reorder_cli.run_lock`): removing the folder keeps it; its holder removes it.
LOCK = "lock"
#: The environment variable naming the local folder of the mirrors of work folders on a store.
SCRATCH_ENV = "REORDER_SCRATCH"


def scratch() -> Path:
    """Where the local mirrors of work folders on a store live: ``$REORDER_SCRATCH``, or the system's
    temporary folder (node-local scratch on a cluster)."""
    return Path(os.environ.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / "reorder-scratch").absolute()

#: Config fields that change the output (``workers`` and ``memory_limit`` do not).
_OUTPUT_FIELDS = ("method", "params", "format", "compression_level", "shard_size", "shard_rows",
                  "row_group_size", "row_group_rows", "invalid_scores", "score", "select")

#: Identity fields present only when a run tokenizes or exports (earlier identities stay equal).
_TOKEN_FIELDS = ("tokens", "export")


def token_identity(tokens: dict[str, Any] | None, export: str | None) -> dict[str, Any]:
    """The identity's token fields: the token keys with the tokenizer's sha256 in place of its path (what the
    manifest records), and the export; nothing when the run neither tokenizes nor exports."""
    out = {"tokens": sections.settings_identity(tokens)} if tokens else {}
    return out | ({"export": export} if export else {})


def read_json(path: Path, fix: str = RESTART) -> Any:
    """A state file's JSON object; unreadable or corrupt, one line naming it (:mod:`.util.state_io`)."""
    return state_io.read_json(path, fix)


def identity(cfg: RunConfig, files: list[InputFile]) -> dict[str, Any]:
    """What the output depends on: the tool version, the config, and every input file (its size, the
    fingerprint of its ends, and, for a local file, its modification time and inode: a file edited
    since the run started is another input)."""
    return {
        "tool_version": __version__,
        "config": {name: getattr(cfg, name) for name in _OUTPUT_FIELDS} | token_identity(cfg.tokens, cfg.export),
        "inputs": [{"path": str(f.path.resolve()), "bytes": f.size, "fingerprint": fingerprint(f.path),
                    **unchanged.shared(f.stamp)} for f in files],
    }


#: How :func:`differences` names what changed in an input.
_INPUT_FACTS = {"bytes": "size", "fingerprint": "first or last MiB",
                "mtime_ns": "modification time", "inode": "inode"}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Plain descriptions of what differs between two identities."""
    why = []
    if old.get("tool_version") != new["tool_version"]:
        why.append(f"reorder version {old.get('tool_version')} -> {new['tool_version']}")
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    for name in (*_OUTPUT_FIELDS, *_TOKEN_FIELDS):
        a, b = old_cfg.get(name), new_cfg.get(name)
        if name == "params" and isinstance(a, dict):
            why += [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            why.append(f"{name} {a!r} -> {b!r}")
    old_in = {i["path"]: i for i in old.get("inputs", [])}
    new_in = {i["path"]: i for i in new["inputs"]}
    if list(old_in) != list(new_in):
        added, removed = set(new_in) - set(old_in), set(old_in) - set(new_in)
        why += [f"input added: {p}" for p in sorted(added)] + [f"input removed: {p}" for p in sorted(removed)]
        if not added and not removed:
            why.append("inputs listed in another order")
    for p, i in new_in.items():  # a loop over files
        if p in old_in and old_in[p] != i:
            facts = [name for k, name in _INPUT_FACTS.items() if old_in[p].get(k) != i.get(k)]
            why.append(f"input changed: {p} (its {' and '.join(facts) or 'record'} differ{'s' * (len(facts) < 2)})")
    return why


def run_folder(output: Path | store.URL) -> str:
    """The name of a run's folder inside a ``work_dir``: the output's name and a short hash of its location."""
    where = str(output) if store.is_url(output) else str(Path(output).absolute())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", store.location(output).name)[:40].lstrip(".") or "output"
    return f"{name}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


#: The ``work_dir`` of a run writing to an object store that set none, under :func:`scratch`: a local
#: folder, fine for ``--executor local`` (cluster executors refuse it: :func:`reorder_cli.pipeline.prepare`).
DEFAULT_WORK = "work"


def locate(output: str | Path | store.URL, work_dir: str | Path | None = None) -> WorkDir:
    """The work folder of the run writing ``output``: ``OUTPUT/.reorder/``, or its folder in ``work_dir``;
    for an output on an object store without a ``work_dir``, its folder in ``scratch()/work``."""
    out = store.location(output) if isinstance(output, str) else output
    if isinstance(out, store.URL):
        if work_dir is None:
            work_dir = scratch() / DEFAULT_WORK
    else:
        out = Path(out).absolute()
    if work_dir is None:
        return WorkDir(out)
    if store.is_url(str(work_dir)):
        base_url = store.URL(str(work_dir).rstrip("/"))
        store.filesystem(base_url)  # a missing extra is one line naming the work_dir, before anything else
        return WorkDir(out, None, base_url, base_url / run_folder(out))
    base = Path(work_dir).absolute()
    root = base / run_folder(out)
    if isinstance(out, Path) and (out == root or out in root.parents):
        raise ReorderError(f"work_dir {work_dir}: inside the output folder {out}; choose a folder outside it")
    return WorkDir(out, root, base)


def for_output(output: str | Path | store.URL, cfg: RunConfig | None = None) -> WorkDir:
    """The work folder of a run of ``cfg`` writing ``output`` (its ``work_dir`` key, else ``OUTPUT/.reorder/``)."""
    return locate(output, cfg.work_dir if cfg is not None else None)


class WorkDir:
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

    @property
    def where(self) -> Path | store.URL:
        """Where the working state is kept: ``root``, or the folder on the store."""
        return self.remote if self.remote is not None else self.root

    # ---------------------------------------------------------------- the bookkeeping, where it is kept

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
        return _read_or_none(self.root / name)

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

    def task_args(self) -> list[str]:
        """What ``reorder task`` needs besides the output to find this folder."""
        return [] if self.base is None else ["--work-dir", str(self.base)]

    @property
    def plan(self) -> Path:
        return self.root / "plan"

    @property
    def scatter(self) -> Path:
        return self.root / "scatter"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def spec(self) -> Path:
        """``run.json``: the config, the inputs and a task's budget, for every task of the run."""
        return self.root / "run.json"

    @property
    def order(self) -> Path:
        """The order tasks' files: ``split.json``, the sorted key ranges, the JIT states."""
        return self.root / "order"

    @property
    def keys(self) -> Path:
        """Keys read from each input, spilled when they outgrow the budget."""
        return self.root / "keys"

    def decompressed(self, index: int) -> Path:
        """The decompressed copy of compressed JSONL input ``index``."""
        return self.root / f"input-{index:05d}.jsonl"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, stage: str, index: int) -> Path:
        """The log of task ``(stage, index)`` run by a cluster executor."""
        return self.logs / f"{stage}-{index:05d}.log"

    def failed(self, stage: str, index: int) -> Path:
        """Marker: task ``(stage, index)`` failed under a cluster executor (its log says why)."""
        return self.logs / f"{stage}-{index:05d}.failed"

    def started(self, stage: str, index: int) -> Path:
        """Marker: task ``(stage, index)`` is running (its host and pid); removed when it ends, either way."""
        return self.logs / f"{stage}-{index:05d}.started"

    def failed_tasks(self) -> list[tuple[str, int]]:
        """``(stage, index)`` of every task recorded as failed and not finished since."""
        found = [n.removesuffix(".failed") for n in self.names("logs") if n.endswith(".failed")]
        pairs = [(n.rpartition("-")[0], int(n.rpartition("-")[2])) for n in found]
        return [(s, i) for s, i in pairs if self.finished(s, i) is None]

    def log_where(self, stage: str, index: int) -> Path | store.URL:
        """Where the log of task ``(stage, index)`` is kept (for messages and ``reorder status``)."""
        return self.where / f"logs/{stage}-{index:05d}.log"

    def record_failure(self, stage: str, index: int, text: str) -> None:
        """Keep the log of a task that failed, and its ``.failed`` marker."""
        self.put(f"logs/{stage}-{index:05d}.log", text.encode("utf-8"))
        self.put(f"logs/{stage}-{index:05d}.failed", b"")

    def clear_failure(self, stage: str, index: int) -> None:
        self.delete(f"logs/{stage}-{index:05d}.failed")

    def started_markers(self) -> list[tuple[str, int, dict[str, Any]]]:
        """``(stage, index, {host, pid, started})`` of every task holding its ``.started`` marker."""
        out = []
        for name in self.names("logs"):  # a loop over markers
            if not name.endswith(".started"):
                continue
            data = self.get(f"logs/{name}")
            try:
                info = json.loads(data) if data else None
            except ValueError:
                info = None  # being written just now
            if info is not None:
                stage, _, index = name.removesuffix(".started").rpartition("-")
                out.append((stage, int(index), info))
        return out

    @property
    def slurm(self) -> Path:
        """The sbatch scripts of ``--executor slurm`` and ``jobs.json``."""
        return self.root / "slurm"

    def mark_publishing(self) -> None:
        """Leave the marker: the run has started moving its shards into place."""
        self.put("publishing", b"")

    def is_publishing(self) -> bool:
        return self.get("publishing") is not None

    # the stored plan (plan/stored.py) and the keys ordered out of core (plan/build.py)
    def plan_file(self, name: str) -> Path:
        """``plan.json``, ``schema.arrow``, ``batches.npy`` or one of the plan's arrays (``NAME.npy``)."""
        return self.plan / name

    def plan_keys(self, name: str) -> Path:
        """A column of the keys ordered out of core: ``keys-scores.npy``, ``keys-sizes.npy``."""
        return self.plan / f"keys-{name}.npy"

    # the scatter tasks' outputs (rewrite/scatter.py)
    def scatter_data(self, task: int) -> Path:
        return self.scatter / f"{task:05d}.arrow"

    def scatter_buckets(self, task: int) -> Path:
        return self.scatter / f"{task:05d}.buckets.npy"

    def scatter_schema(self, task: int) -> Path:
        return self.scatter / f"{task:05d}.schema.arrow"

    def has_progress(self) -> bool:
        """Whether the working state holds anything a re-run would reuse."""
        return bool(self.count_finished("keys") + self.count_finished("layout") + self.count_finished("scatter")
                    + self.count_finished("gather")) or self.fetch(self.plan_file("plan.json"))

    def open(self, ident: dict[str, Any], restart: bool = False) -> bool:
        """Claim the folder for the run ``ident``; True when there is earlier work to resume.

        A folder left by a run with another identity is refused (or, with ``restart``,
        cleared). One without ``state.json`` was killed before it started: it is cleared, unless it
        holds finished tasks (then its state file was lost: refused, naming it).
        """
        old = None if restart else self.saved_identity()
        if old is None and not restart and self.names("done"):
            raise StateError(f"{self.where / STATE}: missing, but the folder holds finished tasks; {RESTART}")
        if old == ident:
            self.ensure()  # on a store: this machine's mirror may not exist yet
            return True
        if old is not None:
            why = differences(old, ident) or ["its saved state differs"]
            raise ReorderError(
                f"{self.where}: holds an unfinished run with another config or inputs ({'; '.join(why[:4])}); "
                "re-run with the same config to resume, or pass --restart to discard it"
            )
        self.remove()
        if self.remote is not None:  # a new claim: a new mirror, never one holding an earlier claim's files
            self.put(CLAIM, uuid.uuid4().hex.encode())
            self._root = None
        self.ensure()
        self.put(STATE, atomic.json_bytes(ident))
        return False

    def saved_identity(self) -> dict[str, Any] | None:
        """The identity in ``state.json``; None when there is none. An unreadable or corrupt one is an error
        naming it: taken for "no run", it would discard the run's finished tasks."""
        data = self.get(STATE)
        return None if data is None else state_io.parse_json(data, self.where / STATE)

    def ensure(self) -> None:
        for folder in (self.root, self.done, self.shards):
            folder.mkdir(parents=True, exist_ok=True)

    def marker(self, phase: str, index: int) -> Path:
        return self.done / f"{phase}-{index:05d}.json"

    def task_command(self, stage: str, index: int) -> str:
        """The command that runs task ``(stage, index)`` of this run."""
        return " ".join(["reorder task", str(self.output), stage, str(index), *self.task_args()])

    def finished(self, phase: str, index: int) -> dict[str, Any] | None:
        """The record in the marker of task ``(phase, index)``; None when it has none. An unreadable or
        corrupt marker is an error naming it."""
        path = self.marker(phase, index)
        data, where = _read_or_none(path), path
        if data is None and self.remote is not None:
            data, where = self.get(f"done/{path.name}"), self.remote / f"done/{path.name}"
            if data is not None:
                state_io.parse_json(data, where)  # never kept in the mirror unless sound
                self._keep(path, data)
        if data is None:
            return None
        fix = f"remove it to run that task again (`{self.task_command(phase, index)}`), or {RESTART}"
        return state_io.parse_json(data, where, fix)

    def _keep(self, path: Path, data: bytes) -> None:
        """Keep a marker in the mirror (a marker is never rewritten within a claim), which a process new to
        the run may not have created yet."""
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)

    def finish(self, phase: str, index: int, record: dict[str, Any]) -> None:
        """Write the marker of task ``(phase, index)``, recording the bytes of each file the task wrote,
        once they are durable (:func:`task_outputs.record`); on a store, after they were uploaded."""
        from reorder_cli import task_outputs, work_store  # they know each stage's files

        record = {**record, "files": task_outputs.record(self, phase, index)} if phase in work_store.OUTPUTS \
            else record
        if self.remote is not None:
            work_store.push(self, phase, index, record)
        data = atomic.json_bytes(record)
        self.put(f"done/{self.marker(phase, index).name}", data)
        if self.remote is not None:
            self._keep(self.marker(phase, index), data)

    def finished_indices(self, phase: str) -> set[int]:
        """The indices of the finished tasks of ``phase`` (one listing)."""
        return {int(n[len(phase) + 1 : -5]) for n in self.names("done")
                if n.startswith(f"{phase}-") and n.endswith(".json") and n[len(phase) + 1 : -5].isdigit()}

    @contextlib.contextmanager
    def running(self, stage: str, index: int) -> Iterator[None]:
        """Hold the ``.started`` marker of task ``(stage, index)`` (this host, this pid) while it runs here;
        ``reorder status`` reads it (:mod:`reorder_cli.execute.running`)."""
        name = f"logs/{self.started(stage, index).name}"
        self.put(name, atomic.json_bytes({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}))
        try:
            yield
        finally:
            self.delete(name)

    def count_finished(self, phase: str) -> int:
        return len(self.finished_indices(phase))

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



def _read_or_none(path: Path) -> bytes | None:
    """The bytes of a local state file, or None when there is none (a transient error is retried, then
    reported: :func:`state_io.transient`)."""
    def read() -> bytes | None:
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # not there, or a file where a folder would be
            return None

    return state_io.transient(read, path)
