"""A run's working state: what makes a run resumable. It lives in ``OUTPUT/.reorder/``, or, with the
``work_dir`` config key, in ``WORK_DIR/NAME-HASH/`` (NAME the output folder's name, HASH the start of
the sha256 of the output's absolute path or URL: two runs share one work_dir). An output on an object
store always needs ``work_dir`` (:func:`locate`); :func:`for_output` is the one way to the folder.

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

Every file is written under a temporary name and renamed when complete; a task's
marker is written last, so a task either has a marker and complete outputs, or is run
again. A re-run with the same identity resumes; with another one it refuses and says
what changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reorder_cli import __version__
from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.formats.discover import InputFile
from reorder_cli.util import atomic, store
from reorder_cli.util.hashing import fingerprint

WORK_DIR = ".reorder"
STATE = "state.json"

#: Config fields that change the output (``workers`` and ``memory_limit`` do not).
_OUTPUT_FIELDS = ("method", "params", "format", "compression_level", "shard_size", "shard_rows",
                  "row_group_size", "row_group_rows", "invalid_scores", "score", "select")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def identity(cfg: RunConfig, files: list[InputFile]) -> dict[str, Any]:
    """What the output depends on: the tool version, the config, and every input file."""
    return {
        "tool_version": __version__,
        "config": {name: getattr(cfg, name) for name in _OUTPUT_FIELDS},
        "inputs": [{"path": str(f.path.resolve()), "bytes": f.size, "fingerprint": fingerprint(f.path)}
                   for f in files],
    }


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Plain descriptions of what differs between two identities."""
    why = []
    if old.get("tool_version") != new["tool_version"]:
        why.append(f"reorder version {old.get('tool_version')} -> {new['tool_version']}")
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    for name in _OUTPUT_FIELDS:
        a, b = old_cfg.get(name), new_cfg[name]
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
    why += [f"input changed: {p}" for p, i in new_in.items() if p in old_in and old_in[p] != i]
    return why


def run_folder(output: Path | store.URL) -> str:
    """The name of a run's folder inside a ``work_dir``: the output's name and a short hash of its location."""
    where = str(output) if store.is_url(output) else str(Path(output).absolute())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", store.location(output).name)[:40].lstrip(".") or "output"
    return f"{name}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


def locate(output: str | Path | store.URL, work_dir: str | Path | None = None) -> WorkDir:
    """The work folder of the run writing ``output``: ``OUTPUT/.reorder/``, or its folder in ``work_dir``."""
    out = store.location(output) if isinstance(output, str) else output
    if isinstance(out, store.URL):
        if work_dir is None:
            raise ReorderError(f"{out}: the working state of an output on an object store is in its work_dir: "
                               "pass --work-dir (the run's work_dir)")
    else:
        out = Path(out).absolute()
    if work_dir is None:
        return WorkDir(out)
    if store.is_url(str(work_dir)):
        raise ReorderError(f"{work_dir}: a work folder on an object store is not supported yet; use a local or "
                           "shared folder")
    base = Path(work_dir).absolute()
    root = base / run_folder(out)
    if isinstance(out, Path) and (out == root or out in root.parents):
        raise ReorderError(f"work_dir {work_dir}: inside the output folder {out}; choose a folder outside it")
    return WorkDir(out, root, base)


def for_output(output: str | Path | store.URL, cfg: RunConfig | None = None) -> WorkDir:
    """The work folder of a run of ``cfg`` writing ``output`` (its ``work_dir`` key, else ``OUTPUT/.reorder/``)."""
    return locate(output, cfg.work_dir if cfg is not None else None)


class WorkDir:
    def __init__(self, output: Path | store.URL, root: Path | None = None, base: Path | None = None):
        self.output = output  # where the shards are published
        self.root = root if root is not None else Path(output) / WORK_DIR
        self.base = base  # the work_dir holding ``root`` (None: OUTPUT/.reorder/)

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
        found = sorted(self.logs.glob("*.failed")) if self.logs.exists() else []
        pairs = [(p.stem.rpartition("-")[0], int(p.stem.rpartition("-")[2])) for p in found]
        return [(s, i) for s, i in pairs if self.finished(s, i) is None]

    @property
    def slurm(self) -> Path:
        """The sbatch scripts of ``--executor slurm`` and ``jobs.json``."""
        return self.root / "slurm"

    @property
    def publishing(self) -> Path:
        """Marker: the run had started moving its shards into place."""
        return self.root / "publishing"

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
        return self.plan_file("plan.json").exists() or bool(self.count_finished("scatter")
                                                            + self.count_finished("gather"))

    def open(self, ident: dict[str, Any], restart: bool = False) -> bool:
        """Claim the folder for the run ``ident``; True when there is earlier work to resume.

        A folder left by a run with another identity is refused (or, with ``restart``,
        cleared). One without ``state.json`` was killed before it started: it is cleared.
        """
        old = None if restart else self.saved_identity()
        if old == ident:
            return True
        if old is not None:
            why = differences(old, ident) or ["its saved state differs"]
            raise ReorderError(
                f"{self.root}: holds an unfinished run with another config or inputs ({'; '.join(why[:4])}); "
                "re-run with the same config to resume, or pass --restart to discard it"
            )
        if self.root.exists():
            shutil.rmtree(self.root)
        self.ensure()
        atomic.write_json(self.root / STATE, ident)
        return False

    def saved_identity(self) -> dict[str, Any] | None:
        """The identity in ``state.json`` (None when there is none or it is unreadable)."""
        try:
            return read_json(self.root / STATE)
        except (OSError, ValueError):
            return None

    def ensure(self) -> None:
        for folder in (self.root, self.done, self.shards):
            folder.mkdir(parents=True, exist_ok=True)

    def marker(self, phase: str, index: int) -> Path:
        return self.done / f"{phase}-{index:05d}.json"

    def finished(self, phase: str, index: int) -> dict[str, Any] | None:
        path = self.marker(phase, index)
        return read_json(path) if path.exists() else None

    def finish(self, phase: str, index: int, record: dict[str, Any]) -> None:
        atomic.write_json(self.marker(phase, index), record)

    @contextlib.contextmanager
    def running(self, stage: str, index: int) -> Iterator[None]:
        """Hold the ``.started`` marker of task ``(stage, index)`` (this host, this pid) while it runs here;
        ``reorder status`` reads it (:mod:`reorder_cli.execute.running`)."""
        marker = self.started(stage, index)
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(marker, {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)

    def count_finished(self, phase: str) -> int:
        return len(list(self.done.glob(f"{phase}-*.json"))) if self.done.exists() else 0

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def size(self) -> int:
        """Bytes currently held (for the run log)."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0
