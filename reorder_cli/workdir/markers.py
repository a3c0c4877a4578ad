"""A work folder's markers: the proof of what has happened to a run, read and written where the state is kept.

    done/STAGE-NNNNN.json     task (STAGE, NNNNN) finished: its record, with the bytes of each file it wrote
                              (``files``), written after they are durable (on a store: uploaded); also
                              ``upload-NNNNN.json`` once shard NNNNN was on the output's store and checked
                              (read back, or copied by the store and checked by its checksum)
    logs/STAGE-NNNNN.started  the task runs now (its host and pid); removed when it ends, either way
    logs/STAGE-NNNNN.failed   the task failed under a cluster executor (``.log`` beside it says why)
    publishing                the run has started moving its shards into place

Markers are read and written where the working state is kept (:class:`.mirror.Mirror`: on a store, the
store itself; a sound finished-marker is kept in the mirror too, as it is never rewritten within a claim).
An unreadable or corrupt marker is an error naming it, never "not finished".
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reorder_cli.util import atomic, state_io, store, task_stats
from reorder_cli.util.state_io import RESTART
from reorder_cli.workdir.mirror import read_or_none


class Markers:
    """The markers of a work folder (mixed into :class:`reorder_cli.workdir.WorkDir` with its
    :class:`.paths.Paths` and :class:`.mirror.Mirror`)."""

    def finished(self, phase: str, index: int) -> dict[str, Any] | None:
        """The record in the marker of task ``(phase, index)``; None when it has none. An unreadable or
        corrupt marker is an error naming it."""
        path = self.marker(phase, index)
        data, where = read_or_none(path), path
        if data is None and self.remote is not None:
            data, where = self.get(f"done/{path.name}"), self.remote / f"done/{path.name}"
            if data is not None:
                state_io.parse_json(data, where)  # never kept in the mirror unless sound
                self.keep(path, data)
        if data is None:
            return None
        fix = f"remove it to run that task again (`{self.task_command(phase, index)}`), or {RESTART}"
        return state_io.parse_json(data, where, fix)

    def finish(self, phase: str, index: int, record: dict[str, Any], started: float | None = None
               ) -> dict[str, Any]:
        """Write the marker of task ``(phase, index)``, recording the bytes of each file the task wrote,
        once they are durable (:func:`task_outputs.record`); on a store, after they were uploaded. A task
        that ``started`` (:func:`task_stats.clock`) records its statistics too (:mod:`.util.task_stats`:
        ``record`` holds its ``rows`` and ``bytes_in``). Returns the record written."""
        from reorder_cli import task_outputs, work_store  # they know each stage's files

        record = {**record, "files": task_outputs.record(self, phase, index)} if phase in work_store.OUTPUTS \
            else record
        if self.remote is not None:
            work_store.push(self, phase, index, record)
        if started is not None:
            record = {**record, **task_stats.measured(started, sum((record.get("files") or {}).values()))}
        data = atomic.json_bytes(record)
        self.put(f"done/{self.marker(phase, index).name}", data)
        if self.remote is not None:
            self.keep(self.marker(phase, index), data)
        return record

    def finished_indices(self, phase: str) -> set[int]:
        """The indices of the finished tasks of ``phase`` (one listing)."""
        return {int(n[len(phase) + 1 : -5]) for n in self.names("done")
                if n.startswith(f"{phase}-") and n.endswith(".json") and n[len(phase) + 1 : -5].isdigit()}

    def count_finished(self, phase: str) -> int:
        return len(self.finished_indices(phase))

    def has_progress(self) -> bool:
        """Whether the working state holds anything a re-run would reuse."""
        return bool(self.count_finished("keys") + self.count_finished("layout") + self.count_finished("scatter")
                    + self.count_finished("gather")) or self.fetch(self.plan_file("plan.json"))

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

    def mark_publishing(self) -> None:
        """Leave the marker: the run has started moving its shards into place."""
        self.put("publishing", b"")

    def is_publishing(self) -> bool:
        return self.get("publishing") is not None

