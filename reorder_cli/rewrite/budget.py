"""How much memory a run may use, which rewrite path fits it, how big its pieces are, how
many workers fit, and how much temporary disk space it needs.

The promise: the peak resident memory of the whole run (all threads) stays within
``memory_limit`` plus ``SLACK_BYTES``, or the run refuses before it writes anything, naming
the smallest budget that works. The estimate of a run's peak is ``BASE_BYTES`` (the
interpreter and libraries) plus the keys (``build.IN_MEMORY_BYTES_PER_ROW`` an input
row while the plan is built in memory; when they do not fit, the plan is built out of
core within the rest of the budget) plus what the rewrite holds:

- in memory, Parquet inputs are held once (1.15 times their estimated uncompressed
  size, measured), JSONL inputs for a Parquet output twice (lines and table), and each
  worker holds a few write batches; a JSONL-to-JSONL rewrite reads through memory maps
  and needs the data to fit the page cache, counted once;
- out of core, the plan is stored and leaves memory; each worker holds one scatter
  piece (``read_bytes``, plus ``GROUP_COPIES`` decoded input row groups for Parquet
  inputs) or one bucket (``bucket_bytes``, never less than the largest write batch: a
  Parquet output row group) at a time, about ``PIECE_COPIES`` times over while it is
  converted, sorted and written.

A write batch (output row group) and an input row group cannot be split, and the bytes
written must not depend on the budget, so when a worker's least need does not fit
``workers`` times the run uses fewer workers (and says so), and when it does not fit
once it refuses. The factors were calibrated with ``scripts/calibrate_budget.py``.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.formats import parquet
from reorder_cli.plan import build
from reorder_cli.plan.build import Plan
from reorder_cli.plan.layout import LINE_BATCH_BYTES
from reorder_cli.plan.stored import ROW_OVERHEAD
from reorder_cli.util import faults, store
from reorder_cli.util.units import fmt_bytes, fmt_mb

BASE_BYTES = 256 << 20
MIN_PIECE = 16 << 10
MIN_KEYS_BUDGET = 64 << 10
PIECE_COPIES = 5
#: A scatter piece of a Parquet input converted to JSON lines (a JSONL output): the table, its JSON text,
#: the bytes, the lines and their sorted copy (measured).
LINES_COPIES = 8
#: A Parquet input row group is decoded whole while it is read in pieces: its pages and its columns.
GROUP_COPIES = 2
#: What the whole run may exceed ``memory_limit`` by (allocator slack, thread stacks, the page cache of
#: memory maps counted as resident): measured, see the README's memory table.
SLACK_BYTES = 64 << 20
MAX_BUCKET = 128 << 20  # bigger buckets only cost memory: sorting and writing them is no faster
MAX_READ = 32 << 20  # a scatter piece: big enough to read efficiently, small enough to leave room to buckets


@dataclass(frozen=True)
class Choice:
    path: str  # "in-memory" or "out-of-core"
    reason: str
    in_memory_bytes: int  # estimated peak of the in-memory path
    bucket_bytes: int = 0
    read_bytes: int = 0
    warning: str | None = None
    workers: int = 1  # workers that fit the budget (at most the config's)


def payload_bytes(plan: Plan) -> int:
    return int(np.sum(plan.sizes, dtype=np.int64))  # an array, or the place tasks' totals (chunked.Sizes)


def in_memory_bytes(plan: Plan, cfg: RunConfig) -> int:
    """Estimated peak of the in-memory path (measured: 8.3 GB for 7.5 GB of Parquet rows)."""
    jsonl_in = any(f.format == "jsonl" for f in plan.files)
    if cfg.format != "parquet" and all(f.format == "jsonl" for f in plan.files):
        factor = 1.0  # read through memory maps: the inputs must fit the page cache
    elif jsonl_in:
        factor = 2.0  # JSONL parsed whole for a Parquet output: the lines and the table
    else:
        factor = 1.15  # Parquet rows held once, plus allocator slack
    batch = largest_batch(plan, cfg)
    keys = build.IN_MEMORY_BYTES_PER_ROW * plan.input_rows
    return int(BASE_BYTES + keys + factor * payload_bytes(plan) + cfg.workers * PIECE_COPIES * batch)


def keys_budget(cfg: RunConfig) -> int:
    """What the keys pass may hold: the budget less the interpreter and libraries."""
    return max(cfg.memory_limit - BASE_BYTES, MIN_KEYS_BUDGET)


def largest_batch(plan: Plan, cfg: RunConfig) -> int:
    """An upper bound of the bytes of one write batch (a Parquet row group, a block of JSONL lines),
    as a gather holds it: at most the configured batch, a shard and all the rows, and one row more."""
    limit = cfg.row_group_size if cfg.format == "parquet" else LINE_BATCH_BYTES
    if cfg.layout_shard_bytes:
        limit = min(limit, cfg.layout_shard_bytes)
    total, largest = _sizes_summary(plan)
    rows = min(plan.rows, cfg.row_group_rows) if cfg.format == "parquet" else plan.rows
    rows = min(rows, 2 * limit * plan.rows // max(1, total) + 1)  # rows of about the mean size
    return int(min(limit, total) + largest + ROW_OVERHEAD * rows)


def largest_input_group(plan: Plan) -> int:
    """Uncompressed bytes of the largest row group of the Parquet inputs (0 for JSONL inputs)."""
    sizes = [0]
    for f in plan.files:
        if f.format == "parquet":
            meta = parquet.open_file(f).metadata
            sizes += [meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)]
    return int(max(sizes))


def _sizes_summary(plan: Plan) -> tuple[int, int]:
    """(sum, max) of the rows' estimated sizes: of an array, or the place tasks' records (chunked.Sizes)."""
    return int(np.sum(plan.sizes, dtype=np.int64)), int(np.max(plan.sizes, initial=0))


@dataclass(frozen=True)
class _Worker:
    """What one out-of-core worker holds at least: the largest write batch, the largest input group."""

    batch: int
    group: int
    read_copies: int

    def gather(self) -> int:
        return PIECE_COPIES * max(MIN_PIECE, self.batch)

    def scatter(self) -> int:
        return self.read_copies * MIN_PIECE + GROUP_COPIES * self.group

    def least(self) -> int:
        return max(self.gather(), self.scatter())

    def why(self, cfg: RunConfig) -> str:
        if self.gather() >= self.scatter():
            what = f"output row groups of up to {fmt_mb(self.batch)}" if cfg.format == "parquet" \
                else f"write blocks of {fmt_mb(self.batch)}"
            return what + (" (lower row_group_size to need less)" if cfg.format == "parquet" else "")
        return f"input row groups of up to {fmt_mb(self.group)} (inputs written with smaller row groups need less)"


def _worker(plan: Plan, cfg: RunConfig) -> _Worker:
    lines = cfg.format != "parquet" and any(f.format == "parquet" for f in plan.files)
    return _Worker(largest_batch(plan, cfg), largest_input_group(plan), LINES_COPIES if lines else PIECE_COPIES)


#: The row_group_size values a refusal tries, largest first, for the one that fits the budget.
ROW_GROUP_STEPS = tuple(n * 10**6 for n in (32, 16, 8, 4, 2, 1))


@dataclass(frozen=True)
class Floor:
    """The least ``memory_limit`` of an out-of-core run (one worker): the runtime plus the larger of
    what a gather holds (output row groups, or write blocks) and what a scatter holds (input row groups);
    ``row_group_size`` and ``with_it``: a smaller row_group_size and the floor with it, when it is lower."""

    total: int
    gather: int
    scatter: int
    batch: int
    group: int
    parquet_out: bool
    row_group_size: int | None = None
    with_it: int | None = None

    def text(self) -> str:
        """Every floor in one phrase."""
        out = (f"output row groups of up to {fmt_mb(self.batch)} (row_group_size sets them)" if self.parquet_out
               else f"write blocks of up to {fmt_mb(self.batch)}")
        parts = [f"{fmt_mb(self.gather)} for {out}"]
        if self.group:
            parts.append(f"{fmt_mb(self.scatter)} for input row groups of up to {fmt_mb(self.group)} (fixed by "
                         "the inputs: files written with smaller row groups need less)")
        text = f"{fmt_mb(BASE_BYTES)} for the runtime plus " + (
            f"the larger of {' and '.join(parts)}" if len(parts) > 1 else parts[0])
        return text

    def setting(self) -> str | None:
        """The smaller row_group_size that lowers the floor, and the floor with it."""
        if self.row_group_size is None:
            return None
        return f"row_group_size={self.row_group_size // 10**6}MB and at least {fmt_mb(self.with_it)}"


def floor(plan: Plan, cfg: RunConfig) -> Floor:
    """The least budget an out-of-core run of ``plan`` needs, every part of it named (:class:`Floor`)."""
    worker = _worker(plan, cfg)
    total = BASE_BYTES + worker.least()
    best = None
    # over the budget: the largest smaller row_group_size that fits it, else the one of the lowest floor
    if cfg.format == "parquet" and total > cfg.memory_limit:
        for step in (r for r in ROW_GROUP_STEPS if r < cfg.row_group_size):  # a loop over a few settings
            batch = largest_batch(plan, dataclasses.replace(cfg, row_group_size=step))
            need = BASE_BYTES + dataclasses.replace(worker, batch=batch).least()
            if need < (total if best is None else best[1]):
                best = (step, need)
            if need <= cfg.memory_limit:
                break
    return Floor(total, worker.gather(), worker.scatter(), worker.batch, worker.group, cfg.format == "parquet",
                 *(best or (None, None)))


def out_of_core_pieces(plan: Plan, cfg: RunConfig) -> tuple[int, int, int, str | None]:
    """(bucket_bytes, read_bytes, workers, warning): pieces and workers that keep the run inside the budget.

    The plan leaves memory before the rewrite (it is stored, then memory-mapped), so the
    pieces share all of the budget but the interpreter and libraries. Refuses (ReorderError)
    when even one worker does not fit, naming every floor at once (:func:`floor`)."""
    worker = _worker(plan, cfg)
    spare = cfg.memory_limit - BASE_BYTES
    least = worker.least()
    fit = spare // least if spare > 0 else 0
    warning = None
    if fit < 1:
        if not faults.below_floor_allowed():
            low = floor(plan, cfg)
            raise ReorderError(
                f"memory_limit {fmt_mb(cfg.memory_limit)} is below the {fmt_mb(low.total)} this run needs with 1 "
                f"worker ({low.text()}); raise --memory-limit to at least {fmt_mb(low.total)}"
                + (f", or set {low.setting()}" if low.setting() else ""))
        fit = cfg.workers  # tests of the out-of-core mechanics: the smallest pieces, whatever the budget
    workers = max(1, min(cfg.workers, fit))
    if workers < cfg.workers:
        warning = (f"memory_limit {fmt_mb(cfg.memory_limit)} fits {workers} of {cfg.workers} workers: each holds at "
                   f"least {fmt_mb(least)} for {worker.why(cfg)}; running {workers} (about "
                   f"{fmt_mb(BASE_BYTES + cfg.workers * least)} would run {cfg.workers})")
    per_worker = max(0, spare) // workers
    bucket = max(MIN_PIECE, per_worker // PIECE_COPIES)
    read = max(MIN_PIECE, (per_worker - GROUP_COPIES * worker.group) // worker.read_copies)
    return int(min(bucket, MAX_BUCKET)), int(min(read, MAX_READ)), workers, warning


def resumed_workers(bucket_bytes: int, cfg: RunConfig) -> int:
    """Workers that fit the budget when a stored plan (its buckets sized by the run that planned it) resumes."""
    return max(1, min(cfg.workers, (cfg.memory_limit - BASE_BYTES) // max(1, PIECE_COPIES * bucket_bytes)))


def choose(plan: Plan, cfg: RunConfig, force: str | None = None) -> Choice:
    need = in_memory_bytes(plan, cfg)
    mode = force or cfg.rewrite
    if mode == "in-memory" or (mode == "auto" and need <= cfg.memory_limit):
        why = "forced" if mode == "in-memory" else f"fits: ~{fmt_mb(need)} of {fmt_mb(cfg.memory_limit)}"
        return Choice("in-memory", why, need, workers=cfg.workers)
    bucket, read, workers, warning = out_of_core_pieces(plan, cfg)
    why = "forced" if mode == "out-of-core" else f"needs ~{fmt_mb(need)} in memory, limit {fmt_mb(cfg.memory_limit)}"
    return Choice("out-of-core", why, need, bucket, read, warning, workers)


# ------------------------------------------------------------------ temporary disk space

#: Fraction of the uncompressed rows that scatter files take (by work_compression): generous guesses for text.
SCATTER_RATIO = {"none": 1.05, "lz4": 0.75, "zstd": 0.5}
#: Compressed shards: at most about the rows themselves (data that does not compress), plus their metadata.
COMPRESSED_RATIO = 1.05
#: A JSON line of a Parquet row is longer than the row's Arrow bytes (field names, quotes, escapes).
JSON_RATIO = 1.5
#: Bytes an input row costs the keys and the order's tasks: the keys tasks' scores, sizes, sorted run
#: (32) and JSONL record offsets (16); the sorted key ranges (24); the place tasks' pieces of the plan
#: (order, scores, running total of sizes: 24; never assembled) and (row, position) pairs (16); the
#: batches. 112 counted, rounded up.
PLAN_BYTES_PER_ROW = 120
#: Bytes a row costs a scatter file beyond its own: its position, offsets, the batches' headers, and
#: the index's row of its batch (32 B, at most one batch a row).
SCATTER_BYTES_PER_ROW = 56


def temporary_bytes(plan: Plan, cfg: RunConfig, path: str) -> int:
    """Bytes the work folder holds at most: the staged shards; out of core, the plan and the scatter
    files too; and the decompressed copies of compressed JSONL inputs."""
    rows_bytes = payload_bytes(plan)
    text = JSON_RATIO if any(f.format == "parquet" for f in plan.files) else 1.0
    shards = {"parquet": COMPRESSED_RATIO, "jsonl.zst": COMPRESSED_RATIO * text, "jsonl": text}[cfg.format]
    need = rows_bytes * shards
    if path == "out-of-core":
        lines = cfg.format != "parquet" or any(f.format == "jsonl" for f in plan.files)
        need += rows_bytes * SCATTER_RATIO[cfg.work_compression] * (text if lines else 1.0)
        need += (PLAN_BYTES_PER_ROW + SCATTER_BYTES_PER_ROW) * plan.input_rows
    if any(f.format == "jsonl" and (f.compression or store.is_url(f.path)) for f in plan.files):
        need += rows_bytes  # copied (decompressed) to the work folder by the keys pass (at most all the rows)
    return int(need)


def check_disk(root: Path, plan: Plan, cfg: RunConfig, path: str, held: int = 0) -> int:
    """The temporary space the run needs (:func:`temporary_bytes`); fails early, with the sizes, when
    the disk holding ``root`` cannot take what is still to be written (``held``: already there)."""
    need = temporary_bytes(plan, cfg, path)
    free = shutil.disk_usage(root).free
    if need - held > free:
        raise ReorderError(
            f"{root}: the rewrite needs about {fmt_bytes(need - held)} more of temporary space ({fmt_bytes(need)} in "
            f"all), but only {fmt_bytes(free)} is free there: free {fmt_bytes(need - held - free)} more, or set "
            "work_dir to a folder on a larger disk"
        )
    return need



