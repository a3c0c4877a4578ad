"""A work folder on an object store: what each task reads into its local mirror before it runs, and
uploads from it when it has finished (before its marker: the marker is the proof).

A store has no rename and no positioned write, so every file of a work folder is one task's alone,
written once, whole (the place tasks write their pieces of the plan, which nothing assembles). A task's files
are uploaded with :func:`store.upload` (a failed upload is aborted, never completed) and checked by
size; then :meth:`WorkDir.finish` writes the marker. A file in a mirror is therefore always complete:
it was written there whole, or downloaded whole from an object whose task had finished. Mirrors are
per claim (:data:`workdir.CLAIM`), so a restarted run never reads an earlier run's files.

What each stage reads (``NEEDS``) and writes (``OUTPUTS``), as patterns relative to the work folder
(``{i}``: the task's index, 5 digits). The bulk of a run is not copied: a gather reads the record
batches of its buckets from the scatter files by range requests (:meth:`WorkDir.open_data`), a sort
task its key range of each input's sorted keys, and a scatter a JSONL input's decompressed copy.
``manifest`` and ``publish`` are the driver's part: the stored plan's small files for the manifest of a
resumed run (its scores' summaries, profile and metrics are merged from the gathers' records, which hold
each shard's partial: no array of the plan is read), and the shards finished elsewhere, for an output
elsewhere than the work folder's store (on the same store, the store copies them itself:
:mod:`reorder_cli.publish.to_store`). What a stage reads
can depend on the run's config (:func:`needs`): the split reads the samples alone, unless the config
makes it read more.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

from reorder_cli.config import selection_token_field
from reorder_cli.errors import ReorderError
from reorder_cli.util import faults, state_io, store
from reorder_cli.util.atomic import TMP_SUFFIX
from reorder_cli.util.parallel import run_parallel

if TYPE_CHECKING:
    from reorder_cli.workdir import WorkDir

_KEYS_SMALL = ("keys/sample-*", "keys/scores-*", "keys/sizes-*", "keys/tokens-*", "keys/invalid-*",
               "keys/records-*", "keys/schema-*")
_PLAN = ("plan/plan.json", "plan/batches.npy", "plan/schema.arrow", "keys/records-*")

NEEDS: dict[str, tuple[str, ...]] = {
    "keys": (),
    "split": ("keys/sample-*",),  # and what the config asks for: _split_needs
    "sort": ("keys/sample-*", "order/split.json", "order/gumbel.json"),  # the runs: by range requests
    "place": (*_KEYS_SMALL, "order/*"),
    # the pieces' samples; the windows of their running totals that the cuts fall in: by range requests
    "layout": ("keys/schema-*", "order/split.json", "plan/sample-*"),
    "scatter": (*_PLAN, "plan/pairs-*"),
    "combine": (*_PLAN, "scatter/*.buckets.npy", "scatter/*.schema.arrow"),
    "gather": (*_PLAN, "scatter/*.buckets.npy", "scatter/*.schema.arrow", "combine/*.buckets.npy",
               "combine/*.schema.arrow"),
    "manifest": ("plan/plan.json", "plan/batches.npy", "plan/schema.arrow"),  # the gathers' records hold the rest
    "publish": ("shards/*",),
}

#: Each stage's files, the proof of the stage's work last (``split.json``, ``plan.json``): a reader that
#: finds it finds the rest.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "keys": ("keys/*-{i}.*", "input-{i}.jsonl"),
    "split": ("order/jit.json", "order/gumbel.json", "order/picks.npy", "order/kept.npy", "order/split.json"),
    "sort": ("order/sort-{i}.bin",),
    "place": ("plan/order-{i}.bin", "plan/scores-{i}.bin", "plan/ends-{i}.bin", "plan/sample-{i}.bin",
              "plan/pairs-{i}.bin"),
    "layout": ("plan/schema.arrow", "plan/batches.npy", "plan/plan.json"),
    "scatter": ("scatter/{i}.*",),
    "combine": ("combine/{i}.*",),
    "gather": ("shards/{i}.*",),
}


def _split_needs(config: dict[str, Any]) -> tuple[str, ...]:
    """What the split reads besides the samples, by the run's config (``run.json``): every score for a
    selection, whose cut is exact (a few passes over all of them: :mod:`reorder_cli.plan.select`), and
    every token count for a token budget; the invalid rows' indices for ``shuffle`` and ``input``
    (``order/kept.npy``: the rows that are not invalid); nothing more otherwise."""
    if config.get("select"):
        return ("keys/scores-*", *(("keys/tokens-*",) if selection_token_field(config["select"]) else ()))
    return ("keys/invalid-*",) if config.get("method") in ("shuffle", "input") else ()


def needs(work: WorkDir, stage: str) -> tuple[str, ...]:
    """The files ``stage``'s tasks read (:data:`NEEDS`), with what the run's config adds (the split's), less
    the shards when the output is on the work folder's store (copied there by the store itself), and less
    the scatter indexes for a gather that reads the combine stage's files."""
    if stage == "publish" and store.same_store(work.remote, work.output):
        return ()
    if stage == "split":
        work.fetch(work.spec)
        return (*NEEDS[stage], *_split_needs(state_io.read_json(work.spec)["config"]))
    if stage == "gather" and work.fetch(work.plan_file("plan.json")) \
            and int(state_io.read_json(work.plan_file("plan.json")).get("combine", 1)) > 1:
        return tuple(p for p in NEEDS[stage] if not p.startswith("scatter/"))  # the combine files only
    return NEEDS[stage]


def pull(work: WorkDir, stage: str, workers: int = 4) -> int:
    """Copy into the mirror the files ``stage``'s tasks read (:func:`needs`) that it does not hold yet;
    returns how many."""
    patterns = needs(work, stage) if work.remote is not None else ()
    if not patterns:
        return 0
    wanted = []
    for folder in sorted({p.partition("/")[0] for p in patterns}):  # one listing a folder
        wanted += [f"{folder}/{n}" for n in store.find(work.remote / folder)
                   if any(fnmatch.fnmatchcase(f"{folder}/{n}", p) for p in patterns)
                   and not (work.root / folder / n).exists()]
    run_parallel(lambda n: store.download(work.remote / n, work.root / n), wanted, workers)
    return len(wanted)


def task_files(work: WorkDir, stage: str, index: int) -> list[str]:
    """The files task ``(stage, index)`` wrote (relative to the work folder; in the mirror, on a store), in
    the order of :data:`OUTPUTS`: its stage's proof last. Each file of the folder is one task's."""
    ordered: list[str] = []
    for pattern in (p.format(i=f"{index:05d}") for p in OUTPUTS.get(stage, ())):  # a loop over patterns
        found = sorted(p.relative_to(work.root).as_posix() for p in work.root.glob(pattern)
                       if p.is_file() and not p.name.endswith(TMP_SUFFIX))
        ordered += [n for n in found if n not in ordered]
    return ordered


def push(work: WorkDir, stage: str, index: int, record: dict[str, Any] | None = None, workers: int = 4) -> int:
    """Upload the files task ``(stage, index)`` wrote into the mirror, each checked by size, its stage's
    proof last; returns how many. ``record`` (the task's marker, written next) gets the store's checksum
    of each object (``stored``: :func:`store.content_tag`), when the store gives one: what a server-side
    copy of it is checked against (a shard published to the same store). Nothing for the bookkeeping
    stages (``upload``)."""
    ordered = task_files(work, stage, index)
    if not ordered:
        return 0
    proof, rest = ordered[-1:], ordered[:-1]
    tags = run_parallel(lambda n: _upload(work, n), rest, workers) + [_upload(work, n) for n in proof]
    if record is not None and any(tags):
        record["stored"] = {n: t for n, t in zip(ordered, tags, strict=True) if t is not None}
    faults.pause("push")  # uploaded, the marker not yet written
    return len(ordered)


def _upload(work: WorkDir, name: str) -> str | None:
    """Upload one file of the mirror, checked by size; returns the store's checksum of the object."""
    local, target = work.root / name, work.remote / name
    store.upload(local, target, lambda written: faults.fail("push"))
    size, tag = store.content_tag(target) or (0, None)
    want = local.stat().st_size
    if size != want:
        store.remove(target)
        raise ReorderError(f"{target}: the uploaded object has {size:,} bytes, the file {want:,}; removed; re-run "
                           "the same command")
    return tag
