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
    combine/          one bucket file a combine task: K scatter files merged (``combine`` > 1)
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

The package: :mod:`.paths` (where the folder is, the name of each file), :mod:`.mirror` (where the files
are kept: the folder, or a store and this process's mirror), :mod:`.identity` (``state.json``: what the
output depends on, the claim) and :mod:`.markers` (done, started, failed, publishing); :class:`WorkDir`
puts them together.
"""

from __future__ import annotations

from pathlib import Path

from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.util import store
from reorder_cli.workdir.identity import Identity, differences, identity, token_identity
from reorder_cli.workdir.markers import Markers
from reorder_cli.workdir.mirror import Mirror
from reorder_cli.workdir.paths import (
    CLAIM,
    DEFAULT_WORK,
    LOCK,
    SCRATCH_ENV,
    STATE,
    WORK_DIR,
    Paths,
    run_folder,
    scratch,
)

__all__ = ["CLAIM", "DEFAULT_WORK", "LOCK", "SCRATCH_ENV", "STATE", "WORK_DIR", "WorkDir", "differences",
           "for_output", "identity", "locate", "run_folder", "scratch", "token_identity"]


class WorkDir(Markers, Identity, Paths, Mirror):
    """A run's work folder: where it is kept (:class:`.mirror.Mirror`), the names of its files
    (:class:`.paths.Paths`), its claim by one run (:class:`.identity.Identity`) and its markers
    (:class:`.markers.Markers`). Each concept is owned by its module; this class only puts them together,
    so that a task is handed one object."""


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
