"""Gather: the second pass of the out-of-core rewrite, one task an output shard.

For each bucket of its shard, a task reads the bucket's record batches from every
scatter file, sorts the rows by output position, checks that every position of the
bucket is there exactly once, and writes the rows in the same batches (row groups) as
the in-memory path, so both paths give the same bytes. Memory: about two buckets.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reorder_cli.errors import ReorderError
from reorder_cli.formats import json_rows, jsonl, parquet
from reorder_cli.formats.writers import ShardWriter, shard_name
from reorder_cli.plan.stored import StoredPlan
from reorder_cli.rewrite import scatter
from reorder_cli.util import faults
from reorder_cli.workdir import WorkDir


class _Scattered:
    """The scatter files, opened lazily; which record batches of each hold which bucket of one shard.

    Each scatter file's index lists (bucket, batch) sorted by bucket; the shard's buckets are found in
    it by binary search, so a gather reads a few pages of each index, not the whole of it."""

    def __init__(self, stored: StoredPlan, work: WorkDir, buckets: np.ndarray):
        self.stored, self.work = stored, work
        self.index: list[dict[int, np.ndarray]] = []
        for t in range(stored.scatter_tasks):  # a loop over scatter files
            pairs = np.load(work.scatter_buckets(t), mmap_mode="r").reshape(-1, 2)
            lo, hi = np.searchsorted(pairs[:, 0], [buckets.min(), buckets.max() + 1]) if len(buckets) else (0, 0)
            mine = np.array(pairs[lo:hi])
            del pairs
            cuts = np.flatnonzero(np.diff(mine[:, 0])) + 1
            self.index.append({int(part[0, 0]): part[:, 1] for part in np.split(mine, cuts) if len(part)})
        self._readers: dict[int, pa.ipc.RecordBatchFileReader] = {}

    def batches(self, task: int, bucket: int) -> list[pa.RecordBatch]:
        ids = self.index[task].get(bucket)
        if ids is None or not len(ids):
            return []
        if task not in self._readers:
            path = self.work.scatter_data(task)  # on a store, not in the mirror: read by range requests
            self._readers[task] = pa.ipc.open_file(pa.OSFile(str(path)) if path.exists() else self.work.open_data(path))
        reader = self._readers[task]
        return [reader.get_batch(int(i)) for i in ids]

    @cached_property
    def jsonl_schema(self) -> pa.Schema | None:
        """The output schema of JSONL-only inputs: merged from what each scatter task inferred."""
        return scatter.merge_schemas([scatter.read_schema(self.work.scatter_schema(t))
                                      for t in range(self.stored.scatter_tasks)])


def run(stored: StoredPlan, work: WorkDir, settings: dict, shard: int,
        advance: Callable[[int], None] = lambda n: None) -> dict:
    """Write output shard ``shard`` into ``work.shards``; returns its record for the manifest.

    ``settings``: the stored plan's output settings (format, compression_level).
    """
    fmt = settings["format"]
    scattered = _Scattered(stored, work, stored.shard_buckets(shard))
    schema = stored.schema if fmt != "parquet" or stored.schema is not None else scattered.jsonl_schema
    start, end = stored.shards[shard]
    writer = ShardWriter(work.shards / shard_name(shard, fmt), fmt, settings["compression_level"],
                         schema if fmt == "parquet" else None)
    try:
        for k in stored.shard_buckets(shard):  # a loop over buckets, then over write batches
            lo, hi = stored.bucket_range(int(k))
            rows = _bucket(stored, scattered, int(k), lo, hi, fmt, schema)
            _, first, last = stored.buckets[k]
            for a, b in stored.batches[first:last]:
                piece = rows.slice(int(a - lo), int(b - a))
                if fmt == "parquet":
                    writer.write_table(piece.combine_chunks())
                else:
                    writer.write_lines(jsonl.lines_to_bytes(piece.column(scatter.LINE).combine_chunks()))
                advance(int(b - a))
                faults.pause("gather")
            del rows
        return writer.finish(shard, start, end - start)
    except BaseException:
        writer.abort()
        raise


def _bucket(stored: StoredPlan, scattered: _Scattered, k: int, lo: int, hi: int, fmt: str,
            schema: pa.Schema | None) -> pa.Table:
    """The rows of positions [lo, hi), in position order, as they will be written."""
    parts = []
    for t, (file, _, _) in enumerate(stored.slices):  # a loop over scatter tasks
        entry = stored.files[file]
        batches = scattered.batches(t, k)
        if not batches:
            continue
        table = pa.Table.from_batches(batches)
        if fmt == "parquet":
            pos = table.column(scatter.POS)
            if entry["format"] == "jsonl":
                table = _parse_lines(stored, t, table.column(scatter.LINE), pos, schema)
            else:
                table = parquet.cast_to(table.drop_columns([scatter.POS]), schema)
            table = table.append_column(scatter.POS, pos)
        parts.append(table)
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    order = pc.sort_indices(table.column(scatter.POS))
    table = table.take(order)
    got = table.column(scatter.POS).to_numpy()
    if len(got) != hi - lo or not np.array_equal(got, np.arange(lo, hi, dtype=np.int64)):
        raise ReorderError(
            f"bucket {k}: the scattered rows do not cover positions {lo}..{hi - 1} exactly once "
            f"({len(got)} rows); the working state is damaged: re-run with --restart"
        )
    return table.drop_columns([scatter.POS])


def _parse_lines(stored: StoredPlan, task: int, lines: pa.ChunkedArray, pos: pa.ChunkedArray,
                 schema: pa.Schema) -> pa.Table:
    """Scattered JSONL records as rows of the output schema (``json_rows``: exactly, or an error)."""
    file, first_row, _ = stored.slices[task]

    def where(i: int) -> str:  # the error path: output position -> record -> line
        row = int(np.flatnonzero(stored.positions_of(task) == pos[i].as_py())[0])
        return scatter.line_of(stored, file, first_row + row)

    inferred = stored.schema is None  # JSONL inputs only: the schema was inferred from the records
    return json_rows.to_table(jsonl.lines_to_bytes(lines.combine_chunks()), schema, where, inferred).combine_chunks()
