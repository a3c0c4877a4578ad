"""The plan of an out-of-core run, stored under ``OUTPUT/.reorder/plan/``.

Everything a scatter or gather task needs lives in these files (and in the keys tasks' ``records-NNNNN.npy``,
[start, end) bytes of each record of JSONL input NNNNN, read where they are: each file of the work
folder is one task's), not in the memory of
the process that planned the run, so any process (``reorder task``, a cluster job) can
run any task by its index:

    plan.json          inputs, shards, write batches, buckets, output settings, and the pieces of the plan
                       (each place task's rows, total and largest size, in the order of their positions)
    order-AAAAA.bin    place task A's piece of the plan (plan/order_tasks.py): the input row (global index),
    scores-AAAAA.bin   score and running total of the estimated bytes at each of its output positions,
    ends-AAAAA.bin     and a sample of that total; one piece for a plan made in memory. The plan's
    sample-AAAAA.bin   arrays are views over them (:mod:`reorder_cli.util.chunked`), never assembled
    pairs-AAAAA.bin    (input row, output position) pairs sorted by input row: one file a place task
                       (plan/order_tasks.py), or one for a plan made in memory
    schema.arrow       the output's Arrow schema (Parquet outputs with Parquet inputs)

A *batch* is what the writer writes at once (a Parquet row group, a few MB of JSONL):
the same batches as the in-memory path, which is why both give the same bytes. A
*bucket* is a run of consecutive batches of one shard, at most ``bucket_bytes``: the
unit a gather task holds in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from reorder_cli.config import RunConfig
from reorder_cli.formats import parquet
from reorder_cli.formats.discover import InputFile
from reorder_cli.plan import build, order_tasks
from reorder_cli.plan.build import Plan
from reorder_cli.plan.layout import layout, shard_batches
from reorder_cli.tokens import tokenizer
from reorder_cli.util import atomic, state_io
from reorder_cli.util.chunked import Chunked, Opener, Piece, open_local, plan_arrays
from reorder_cli.util.npy import save_npy, write_array
from reorder_cli.util.store import is_url
from reorder_cli.workdir import WorkDir

#: A scatter task reads one input file, or a slice of about this many (uncompressed) bytes of a
#: bigger one (whole row groups for Parquet), so that big files scatter in parallel too.
SCATTER_SLICE_BYTES = 1 << 30
#: Bytes a row costs a gather beyond its estimated size: its position, sort index and offsets.
ROW_OVERHEAD = 32
#: ``combine: 0`` (by the task count): no combine stage up to this many scatter tasks (a gather opens
#: each scatter file: ~0.2-0.5 ms a file here, scripts/bench_fanin.py), else K scatter files merged a
#: combine task, the fewest that leave a gather at most COMBINE_FILES files (each: its marker, index and
#: data opened). At 156,250 scatter and gather tasks: K = 814, 3 x 192 x 156,250 = 9.0e7 opens in all
#: (docs/scale.md section 4); a combine task holds K files open (under the usual 1,024 descriptors).
COMBINE_FROM = 4096
COMBINE_FILES = 192


def combine_width(combine: int, scatter_tasks: int) -> int:
    """K, the scatter files a combine task merges (1: no combine stage), for the config's ``combine``."""
    if combine > 0:
        return combine
    return 1 if scatter_tasks <= COMBINE_FROM else -(-scatter_tasks // COMBINE_FILES)


@dataclass
class StoredSource:
    """What the manifest needs of an input once the keys pass is over."""

    rows: int


@dataclass
class StoredPlan:
    folder: Path
    meta: dict[str, Any]
    batches: np.ndarray  # (B, 2) int64 [start, end) positions of every write batch, in order
    schema: pa.Schema | None = field(default=None)
    keys: Path | None = field(default=None)  # the keys tasks' folder (the JSONL inputs' records)
    opener: Opener = field(default=open_local)  # how the pieces are read: here, or on the store by range requests

    def records(self, file: int) -> Path:
        """JSONL input ``file``'s ``records-NNNNN.npy``: the [start, end) bytes of each record (its keys task's)."""
        return self.keys / f"records-{file:05d}.npy"

    # ---------------------------------------------------------------- the task graph

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.meta["files"]

    @property
    def shards(self) -> list[tuple[int, int]]:
        return [tuple(s) for s in self.meta["shards"]]

    @property
    def buckets(self) -> np.ndarray:
        """(K, 3) int64: shard, first batch, end batch of every bucket, in order."""
        return np.asarray(self.meta["buckets"], dtype=np.int64).reshape(-1, 3)

    def bucket_range(self, k: int) -> tuple[int, int]:
        _, first, end = self.buckets[k]
        return int(self.batches[first, 0]), int(self.batches[end - 1, 1])

    def bucket_starts(self) -> np.ndarray:
        return self.batches[self.buckets[:, 1], 0]

    def shard_buckets(self, shard: int) -> np.ndarray:
        """The buckets of shard ``shard`` (the buckets are in shard order)."""
        return np.arange(*np.searchsorted(self.buckets[:, 0], [shard, shard + 1]))

    @property
    def slices(self) -> list[tuple[int, int, int]]:
        """(input file, first row, end row) of every scatter task."""
        return [tuple(s) for s in self.meta["slices"]]

    @property
    def scatter_tasks(self) -> int:
        return len(self.meta["slices"])

    @property
    def gather_tasks(self) -> int:
        return len(self.meta["shards"])

    @property
    def combine_width(self) -> int:
        """K: the scatter files a combine task merges; 1: none (a gather reads the scatter files)."""
        return int(self.meta.get("combine", 1))

    @property
    def combine_tasks(self) -> int:
        """The combine tasks: one for every K consecutive scatter tasks; none when K is 1."""
        k = self.combine_width
        return 0 if k <= 1 else -(-self.scatter_tasks // k)

    def combined(self, task: int) -> range:
        """The scatter tasks that combine task ``task`` merges."""
        k = self.combine_width
        return range(task * k, min(self.scatter_tasks, (task + 1) * k))

    def positions_of(self, task: int) -> np.ndarray:
        """Output position of every row of scatter task ``task`` (-1: dropped)."""
        file, first, end = self.slices[task]
        base = self.meta["row_starts"][file]
        return order_tasks.positions(self.folder, base + first, base + end)

    @property
    def pieces(self) -> list[Piece]:
        """The place tasks' pieces of the plan, in the order of their positions."""
        return [order_tasks.piece(self.folder, t, {"rows": rows, "total": total, "largest": largest})
                for t, rows, total, largest in self.meta["pieces"]]

    def array(self, name: str) -> Chunked:
        """The plan's ``order``, ``scores`` or ``sizes``: a view over the pieces, read on demand."""
        return getattr(plan_arrays(self.pieces, self.opener), name)

    @property
    def rows(self) -> int:
        return int(self.meta["shards"][-1][1]) if self.meta["shards"] else 0

    def as_plan(self, files: list[InputFile]) -> Plan:
        """A :class:`Plan` for the manifest and the rewrite, its arrays views over the pieces, read on demand
        (``files``: the run's inputs; a mixture's plan lists them once per epoch, as its stored files say). On
        a store a view reads by range requests what is read of it: the manifest reads none."""
        m, arrays = self.meta, plan_arrays(self.pieces, self.opener)
        if m.get("mixture"):
            by_path = {str(f.path.absolute()): f for f in files}
            files = [by_path[f["path"]] for f in m["files"]]

        return Plan(
            files=files, sources=[StoredSource(f["rows"]) for f in m["files"]],
            row_starts=np.asarray(m["row_starts"], dtype=np.int64), order=arrays.order,
            scores=arrays.scores, sizes=arrays.sizes, shards=self.shards,
            invalid_count=m["invalid_count"], invalid_samples=m["invalid_samples"], dropped=m["dropped"],
            selection=m.get("selection"), mixture=m.get("mixture"), valid_prefix=m["valid_prefix"],
        )


def store(plan: Plan, cfg: RunConfig, work: WorkDir, bucket_bytes: int, read_bytes: int,
          schema: pa.Schema | None, placed: list[tuple[int, dict]], opener: Opener) -> StoredPlan:
    """Write the plan of an out-of-core run (the layout task: its pieces and (row, position) pairs are
    already in the plan folder, written by the order's tasks, and its sources are the keys tasks' files
    and records, the scatter slices of each input among them);
    ``placed``: (place task, its record) of every piece, in the order of their positions. The write
    batches are cut by binary searches of the pieces' running total (:class:`chunked.Ends`), reading
    (``opener``) the windows the cuts fall in. plan.json goes last and marks it complete."""
    folder = work.plan
    pieces = [order_tasks.piece(folder, t, record) for t, record in placed]
    files, slices = [], []
    for i, (inp, source) in enumerate(zip(plan.files, plan.sources, strict=True)):
        # Absolute paths, so that a task runs from any working directory (``reorder task``).
        entry = {"path": str(inp.path.absolute()), "format": inp.format, "compression": inp.compression,
                 "rows": source.rows, "stamp": inp.stamp}
        if inp.format == "jsonl":
            data = source.data_path
            entry.update(data_path=str(data) if is_url(data) else str(Path(data).absolute()),
                         unterminated=source.unterminated)
        files.append(entry)
        cuts = source.cuts  # its keys task's (slice_cuts): no input's sizes are read here
        slices += [[i, int(a), int(b)] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    if schema is not None:
        atomic.write_bytes(work.plan_file("schema.arrow"), schema.serialize().to_pybytes())

    batches, buckets = [], []
    ends = plan_arrays(pieces, opener).ends  # the running total of sizes, read where the cuts fall
    for s, (start, end) in enumerate(plan.shards):  # a loop over shards and buckets, never rows
        first = len(batches)
        shard = shard_batches(plan.sizes, start, end, cfg, ends)
        batches += shard
        before = ends.at(start - 1) if start else 0
        batch_bytes = np.diff(np.asarray([before] + [ends.at(b - 1) for _, b in shard], dtype=np.int64))
        batch_bytes += ROW_OVERHEAD * np.diff(np.asarray([start] + [b for _, b in shard]))
        for a, b in layout(batch_bytes, bucket_bytes, 0):
            buckets.append([s, first + a, first + b])
    save_npy(folder / "batches.npy", np.asarray(batches, dtype=np.int64).reshape(-1, 2))
    meta = {
        "files": files,
        "slices": slices,
        "row_starts": [int(x) for x in plan.row_starts],
        "shards": [list(map(int, s)) for s in plan.shards],
        "buckets": buckets,
        "bucket_bytes": int(bucket_bytes),
        "combine": combine_width(cfg.combine, len(slices)),
        "output": {"format": cfg.format, "compression_level": cfg.compression_level, "read_bytes": int(read_bytes),
                   "work_compression": cfg.work_compression,
                   **({"tokens": tokenizer.resolve(cfg.tokens)} if cfg.tokens else {})},
        "invalid_count": plan.invalid_count,
        "invalid_samples": plan.invalid_samples,
        "dropped": plan.dropped,
        "valid_prefix": plan.valid_prefix,
        "selection": plan.selection,
        **({"mixture": plan.mixture} if plan.mixture else {}),
        "pieces": [[t, p.rows, p.total, p.largest] for (t, _), p in zip(placed, pieces, strict=True)],
    }
    atomic.write_json(work.plan_file("plan.json"), meta)
    return load(work)


def store_planned(plan: Plan, cfg: RunConfig, work: WorkDir, bucket_bytes: int, read_bytes: int) -> StoredPlan:
    """Store a plan made in one process (a mixture's, :mod:`reorder_cli.plan.mixture`) as the order's tasks would
    have left it: every input's keys in ``work.keys`` (as its keys task's), the plan as one piece (place task
    0's) and one file of (input row, output position) pairs; then :func:`store`."""
    spilled = [build.spill(source, i, work.keys) for i, source in enumerate(plan.sources)]  # a loop over files
    spilled = [replace(source, cuts=slice_cuts(source)) for source in spilled]
    folder = work.plan
    folder.mkdir(parents=True, exist_ok=True)
    record = order_tasks.write_piece(folder, 0, plan.order, plan.scores, plan.sizes)
    pairs = np.empty(plan.rows, dtype=order_tasks.PAIR)
    pairs["row"], pairs["pos"] = plan.order, np.arange(plan.rows, dtype=np.int64)
    pairs = pairs[np.argsort(pairs["row"], kind="stable")]
    with atomic.open_atomic(order_tasks.pairs_path(folder, 0), "wb") as fh:
        write_array(fh, pairs, order_tasks.pairs_path(folder, 0))
    schema = output_schema(plan)
    return store(replace(plan, sources=spilled), cfg, work, bucket_bytes, read_bytes, schema, [(0, record)],
                 open_local)


def slice_cuts(source: build.SpilledSource) -> list[int]:
    """Row boundaries of the scatter slices of one input, from its keys (a keys task records them, with
    the sizes at hand, so that the layout reads no input's sizes)."""
    if source.inp.format == "jsonl":
        records = np.load(source.path("records"), mmap_mode="r")  # [start, end) bytes of each record
        return _cuts(records[:, 1] - records[:, 0], np.arange(source.rows + 1))
    return _cuts(np.load(source.path("sizes"), mmap_mode="r"), source.groups)  # at row-group starts


def _cuts(row_sizes: np.ndarray, allowed: np.ndarray) -> list[int]:
    """Row boundaries of the slices of one file: at ``allowed`` boundaries (every row, or the
    row-group starts), each slice about ``SCATTER_SLICE_BYTES``; [0, rows] for a small file."""
    rows = int(allowed[-1])
    cum = np.concatenate([[0], np.cumsum(row_sizes, dtype=np.int64)])
    if rows == 0 or cum[-1] <= SCATTER_SLICE_BYTES:
        return [0, rows]
    at = cum[allowed]  # bytes before each allowed boundary
    targets = np.arange(1, int(cum[-1] // SCATTER_SLICE_BYTES) + 1, dtype=np.int64) * SCATTER_SLICE_BYTES
    picks = allowed[np.clip(np.searchsorted(at, targets), 0, len(allowed) - 1)]
    return sorted({0, rows, *map(int, picks)})


def load(work: WorkDir) -> StoredPlan | None:
    """The stored plan, or None when there is none (or it was never completed)."""
    if not work.fetch(work.plan_file("plan.json")):
        return None
    schema_file = work.plan_file("schema.arrow")
    schema = pa.ipc.read_schema(pa.py_buffer(schema_file.read_bytes())) if work.fetch(schema_file) else None
    work.fetch(work.plan_file("batches.npy"))
    return StoredPlan(work.plan, state_io.read_json(work.plan_file("plan.json")),
                      np.load(work.plan_file("batches.npy")), schema, work.keys, work.open_data)


def output_schema(plan: Plan) -> pa.Schema | None:
    """The Parquet inputs' shared schema (None when every input is JSONL)."""
    return parquet.check_same_schema([(f.path, s.schema) for f, s in zip(plan.files, plan.sources, strict=True)
                                      if f.format == "parquet"])
