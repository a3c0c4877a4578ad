"""Where a run's working state is, and the name of every file in it.

The folder is ``OUTPUT/.reorder/``, or, with the ``work_dir`` config key, ``WORK_DIR/NAME-HASH/``
(:func:`run_folder`); for a work folder on a store, each process works in a local mirror of it under
:func:`scratch` (:mod:`.mirror`). :class:`Paths` names the files under the folder the tasks read and
write (``root``); nothing else in the package builds those names.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from reorder_cli.util import store

WORK_DIR = ".reorder"
STATE = "state.json"
#: A work folder on a store: the object naming the claim (a new one each time the run starts afresh),
#: which names the local mirror, so that a mirror never serves files of an earlier claim.
CLAIM = "claim"
#: The run's lock (:mod:`reorder_cli.run_lock`): removing the folder keeps it; its holder removes it.
LOCK = "lock"
#: The environment variable naming the local folder of the mirrors of work folders on a store.
SCRATCH_ENV = "REORDER_SCRATCH"
#: The ``work_dir`` of a run writing to an object store that set none, under :func:`scratch`: a local
#: folder, fine for ``--executor local`` (cluster executors refuse it: :func:`reorder_cli.pipeline.prepare`).
DEFAULT_WORK = "work"


def scratch() -> Path:
    """Where the local mirrors of work folders on a store live: ``$REORDER_SCRATCH``, or the system's
    temporary folder (node-local scratch on a cluster)."""
    return Path(os.environ.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / "reorder-scratch").absolute()


def run_folder(output: Path | store.URL) -> str:
    """The name of a run's folder inside a ``work_dir``: the output's name and a short hash of its location."""
    where = str(output) if store.is_url(output) else str(Path(output).absolute())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", store.location(output).name)[:40].lstrip(".") or "output"
    return f"{name}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


class Paths:
    """The files of a work folder, under ``root`` (the folder, or its local mirror: :class:`.mirror.Mirror`)."""

    root: Path
    output: Path | store.URL
    base: Path | store.URL | None

    @property
    def plan(self) -> Path:
        return self.root / "plan"

    @property
    def scatter(self) -> Path:
        return self.root / "scatter"

    @property
    def combine(self) -> Path:
        return self.root / "combine"

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

    def marker(self, phase: str, index: int) -> Path:
        """Marker: task ``(phase, index)`` finished (:mod:`.markers`)."""
        return self.done / f"{phase}-{index:05d}.json"

    @property
    def slurm(self) -> Path:
        """The sbatch scripts of ``--executor slurm`` and ``jobs.json``."""
        return self.root / "slurm"

    # the stored plan (plan/stored.py)
    def plan_file(self, name: str) -> Path:
        """``plan.json``, ``schema.arrow``, ``batches.npy`` or one of the plan's arrays (``NAME.npy``)."""
        return self.plan / name

    # the scatter tasks' outputs (rewrite/scatter.py)
    def scatter_data(self, task: int) -> Path:
        return self.scatter / f"{task:05d}.arrow"

    def scatter_buckets(self, task: int) -> Path:
        return self.scatter / f"{task:05d}.buckets.npy"

    def scatter_schema(self, task: int) -> Path:
        return self.scatter / f"{task:05d}.schema.arrow"

    # the combine tasks' outputs (rewrite/combine.py): the same three files, for K scatter files merged
    def combine_data(self, task: int) -> Path:
        return self.combine / f"{task:05d}.arrow"

    def combine_buckets(self, task: int) -> Path:
        return self.combine / f"{task:05d}.buckets.npy"

    def combine_schema(self, task: int) -> Path:
        return self.combine / f"{task:05d}.schema.arrow"

    def task_args(self) -> list[str]:
        """What ``reorder task`` needs besides the output to find this folder."""
        return [] if self.base is None else ["--work-dir", str(self.base)]

    def task_command(self, stage: str, index: int) -> str:
        """The command that runs task ``(stage, index)`` of this run."""
        return " ".join(["reorder task", str(self.output), stage, str(index), *self.task_args()])
