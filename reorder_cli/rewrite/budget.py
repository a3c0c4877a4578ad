"""How much memory a run may use, which rewrite path fits it, and how big its pieces are.

The estimate of a run's peak is ``BASE_BYTES`` (the interpreter and libraries) plus the
keys (``keys_ooc.IN_MEMORY_BYTES_PER_ROW`` an input row while the plan is built in
memory; when they do not fit, the plan is built out of core within the rest of the
budget) plus what the rewrite holds:

- in memory, Parquet inputs are held once (1.15 times their estimated uncompressed
  size, measured), JSONL inputs for a Parquet output twice (lines and table), and each
  worker holds a few write batches; a JSONL-to-JSONL rewrite reads through memory maps
  and needs the data to fit the page cache, counted once;
- out of core, the plan is stored and leaves memory; each worker holds one scatter
  piece (``read_bytes``) or one bucket (``bucket_bytes``) at a time, about
  ``PIECE_COPIES`` times over while it is converted, sorted and written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reorder_cli.config import RunConfig
from reorder_cli.plan import keys_ooc
from reorder_cli.plan.build import Plan
from reorder_cli.plan.stored import LINE_BATCH_BYTES
from reorder_cli.util.npy import DiskArray

BASE_BYTES = 256 << 20
MIN_PIECE = 16 << 10
MIN_KEYS_BUDGET = 64 << 10
PIECE_COPIES = 5
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


def payload_bytes(plan: Plan) -> int:
    sizes = plan.sizes
    if isinstance(sizes, DiskArray):
        return sum(int(np.sum(chunk, dtype=np.int64)) for chunk in sizes.chunks(1 << 20))
    return int(np.sum(sizes, dtype=np.int64))


def in_memory_bytes(plan: Plan, cfg: RunConfig) -> int:
    """Estimated peak of the in-memory path (measured: 8.3 GB for 7.5 GB of Parquet rows)."""
    jsonl_in = any(f.format == "jsonl" for f in plan.files)
    if cfg.format != "parquet" and all(f.format == "jsonl" for f in plan.files):
        factor = 1.0  # read through memory maps: the inputs must fit the page cache
    elif jsonl_in:
        factor = 2.0  # JSONL parsed whole for a Parquet output: the lines and the table
    else:
        factor = 1.15  # Parquet rows held once, plus allocator slack
    batch = cfg.row_group_size if cfg.format == "parquet" else LINE_BATCH_BYTES
    keys = keys_ooc.IN_MEMORY_BYTES_PER_ROW * plan.input_rows
    return int(BASE_BYTES + keys + factor * payload_bytes(plan) + cfg.workers * PIECE_COPIES * batch)


def keys_budget(cfg: RunConfig) -> int:
    """What the keys pass may hold: the budget less the interpreter and libraries."""
    return max(cfg.memory_limit - BASE_BYTES, MIN_KEYS_BUDGET)


def out_of_core_pieces(plan: Plan, cfg: RunConfig) -> tuple[int, int, str | None]:
    """(bucket_bytes, read_bytes, warning): pieces that keep every worker inside the budget.

    The plan leaves memory before the rewrite (it is stored, then memory-mapped), so the
    pieces share all of the budget but the interpreter and libraries."""
    spare = cfg.memory_limit - BASE_BYTES
    piece = spare // max(1, cfg.workers) // PIECE_COPIES
    warning = None
    if piece < MIN_PIECE:
        piece = MIN_PIECE
        least = BASE_BYTES + cfg.workers * PIECE_COPIES * MIN_PIECE
        warning = (f"memory_limit {_mb(cfg.memory_limit)} is below the least this run needs ({_mb(least)}); "
                   "going on with the smallest pieces")
    elif cfg.format == "parquet" and min(piece, MAX_BUCKET) < cfg.row_group_size:
        warning = (f"a row group (row_group_size {_mb(cfg.row_group_size)}) is larger than a bucket "
                   f"({_mb(piece)}) under memory_limit {_mb(cfg.memory_limit)}; lower row_group_size to stay "
                   "inside the budget")
    return int(min(piece, MAX_BUCKET)), int(min(piece, MAX_READ)), warning


def choose(plan: Plan, cfg: RunConfig, force: str | None = None) -> Choice:
    need = in_memory_bytes(plan, cfg)
    mode = force or cfg.rewrite
    if mode == "in-memory" or (mode == "auto" and need <= cfg.memory_limit):
        why = "forced" if mode == "in-memory" else f"fits: ~{_mb(need)} of {_mb(cfg.memory_limit)}"
        return Choice("in-memory", why, need)
    bucket, read, warning = out_of_core_pieces(plan, cfg)
    why = "forced" if mode == "out-of-core" else f"needs ~{_mb(need)} in memory, limit {_mb(cfg.memory_limit)}"
    return Choice("out-of-core", why, need, bucket, read, warning)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"
