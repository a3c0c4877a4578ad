"""Gather: the second pass of the out-of-core rewrite, one task an output shard.

For each bucket of its shard, a task reads the bucket's record batches from every
scatter file, sorts the rows by output position, checks that every position of the
bucket is there exactly once, and writes the rows in the same batches (row groups) as
the in-memory path, so both paths give the same bytes. Memory: about two buckets.

With a combine stage (``combine`` > 1: :mod:`reorder_cli.rewrite.combine`), a gather reads the combine
tasks' files instead, S / K of them: the same format, one record batch a bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reorder_cli.errors import ReorderError
from reorder_cli.formats import json_rows, jsonl, parquet
from reorder_cli.formats.writers import ShardWriter, shard_name
from reorder_cli.metrics import shards as score_shards
from reorder_cli.plan.stored import StoredPlan
from reorder_cli.rewrite import scatter
from reorder_cli.tokens import piece as token_piece
from reorder_cli.util import faults, store
from reorder_cli.workdir import WorkDir

#: Columns of a scatter file's index (scatter.py): bucket, record batch, the batch's bytes [start, end).
INDEX_COLUMNS = 4
#: What the rows of a bucket file are: JSONL lines (a JSONL output, or JSONL inputs), a Parquet input's
#: columns (a Parquet output), or rows of the output schema already (a combine task's, Parquet output).
KINDS = ("lines", "input", "output")


@dataclass(frozen=True)
class Source:
    """A bucket file a gather reads: a scatter task's (``task``) or a combine task's (``task`` None)."""

    data: Path
    index: Path
    schema: Path
    kind: str
    task: int | None = None


def scatter_sources(stored: StoredPlan, work: WorkDir, tasks: range | None = None) -> list[Source]:
    """The scatter tasks' files (``tasks``: all by default)."""
    fmt = stored.meta["output"]["format"]
    out = []
    for t in range(stored.scatter_tasks) if tasks is None else tasks:  # a loop over scatter tasks
        kind = "input" if fmt == "parquet" and stored.files[stored.slices[t][0]]["format"] != "jsonl" else "lines"
        out.append(Source(work.scatter_data(t), work.scatter_buckets(t), work.scatter_schema(t), kind, t))
    return out


def combined_kind(stored: StoredPlan) -> str:
    """What a combine task's rows are: the output schema's for a Parquet output with a known schema, else lines."""
    return "output" if stored.meta["output"]["format"] == "parquet" and stored.schema is not None else "lines"


def sources(stored: StoredPlan, work: WorkDir) -> list[Source]:
    """The files a gather reads: the combine tasks' when there are any, else the scatter tasks'."""
    if not stored.combine_tasks:
        return scatter_sources(stored, work)
    kind = combined_kind(stored)
    return [Source(work.combine_data(c), work.combine_buckets(c), work.combine_schema(c), kind)
            for c in range(stored.combine_tasks)]


class Scattered:
    """The bucket files (:class:`Source`: the scatter tasks', or the combine tasks'), opened lazily; which
    record batches of each hold which bucket of one shard (:meth:`select`: of other buckets later; a combine
    task selects shard after shard, its indexes kept memory-mapped). ``opened`` counts the files opened.

    Each scatter file's index lists (bucket, batch, start, end) sorted by bucket; the shard's buckets
    are found in it by binary search, so a gather reads a few pages of each index, not the whole of it.
    A local file is read batch by batch. From a store, the batches of a window of the shard's next
    buckets (at most ``bucket_bytes`` in all) are fetched at once, by concurrent range requests: within
    a scatter piece the batches of consecutive buckets lie end to end, so a window's batches of one
    piece are one request (:meth:`bucket`)."""

    def __init__(self, stored: StoredPlan, work: WorkDir, buckets: np.ndarray, files: list[Source],
                 keep_maps: bool = False):
        self.stored, self.work, self.files = stored, work, files
        self.opened = 0  # files opened: each index once, each data file once if it holds rows of the buckets
        self.nbytes = 0  # the bytes of the record batches selected, in all the files
        self.requests = 0  # range requests made to the store
        #: the indexes' memory maps, kept (a combine task: its K files, shard after shard), or not (a gather)
        self._maps: dict[int, np.ndarray] | None = {} if keep_maps else None
        self._readers: dict[int, pa.ipc.RecordBatchFileReader] = {}
        self._ranged: dict[int, bool] = {}
        self.select(buckets)

    def select(self, buckets: np.ndarray) -> None:
        """Find the record batches of ``buckets`` (increasing) in every file's index."""
        self.order = [int(b) for b in buckets]
        self._at = {b: i for i, b in enumerate(self.order)}  # a loop over buckets
        self.index: list[dict[int, np.ndarray]] = []
        self._fetched: dict[int, dict[int, list[pa.RecordBatch]]] = {}
        for t, source in enumerate(self.files):  # a loop over files
            rows = self._maps.get(t) if self._maps is not None else None
            if rows is None:
                rows = np.load(source.index, mmap_mode="r").reshape(-1, INDEX_COLUMNS)
                self.opened += 1
                if self._maps is not None:
                    self._maps[t] = rows
            lo, hi = np.searchsorted(rows[:, 0], [buckets.min(), buckets.max() + 1]) if len(buckets) else (0, 0)
            mine = np.array(rows[lo:hi])
            del rows
            self.nbytes += int((mine[:, 3] - mine[:, 2]).sum())
            cuts = np.flatnonzero(np.diff(mine[:, 0])) + 1
            self.index.append({int(part[0, 0]): part for part in np.split(mine, cuts) if len(part)})

    def _reader(self, task: int) -> pa.ipc.RecordBatchFileReader:
        if task not in self._readers:
            path = self.files[task].data
            self._readers[task] = pa.ipc.open_file(pa.OSFile(str(path)) if path.exists() else self.work.open_data(path))
            self.opened += 1
        return self._readers[task]

    def bucket(self, bucket: int) -> dict[int, list[pa.RecordBatch]]:
        """Every scatter file's record batches of ``bucket`` (file -> batches, in file order)."""
        wanted = {t: rows for t in range(len(self.files)) if (rows := self.index[t].get(bucket)) is not None}
        local = {t: [self._reader(t).get_batch(int(i)) for i in rows[:, 1]]
                 for t, rows in wanted.items() if not self._by_ranges(t)}
        if bucket not in self._fetched and len(local) < len(wanted):
            self._fetched = self._fetch_window(bucket)
        return local | self._fetched.pop(bucket, {})

    def _by_ranges(self, task: int) -> bool:
        """Whether scatter file ``task`` is read from a store by byte ranges (not in the mirror, and no
        dictionary-encoded column, whose batches need the file's dictionaries)."""
        if self.work.remote is None:
            return False
        if task not in self._ranged:
            self._ranged[task] = not self.files[task].data.exists() and \
                not any(_has_dictionary(f.type) for f in self._reader(task).schema)
        return self._ranged[task]

    def _fetch_window(self, first: int) -> dict[int, dict[int, list[pa.RecordBatch]]]:
        """The batches, from the store, of the shard's buckets from ``first`` on, as many as fit
        ``bucket_bytes`` (one at least): bucket -> file -> batches."""
        budget, window, size = self.stored.meta["bucket_bytes"], [], 0
        for b in self.order[self._at[first]:]:  # a loop over the selected buckets from ``first`` on
            more = sum(int((rows[:, 3] - rows[:, 2]).sum()) for t in range(len(self.files))
                       if (rows := self.index[t].get(b)) is not None and self._by_ranges(t))
            if window and size + more > budget:
                break
            window.append(b)
            size += more
        wanted = {}
        for t in range(len(self.files)):  # a loop over files: the window's rows in file order
            parts = [rows for b in window if (rows := self.index[t].get(b)) is not None]
            if parts and self._by_ranges(t):
                rows = np.concatenate(parts)
                wanted[t] = rows[np.argsort(rows[:, 2], kind="stable")]
        out: dict[int, dict[int, list]] = {b: {} for b in window}
        self.requests += sum(len(_runs(rows)) for rows in wanted.values())
        for t, bucket, batch in _fetch(self.work, wanted, {t: self.files[t].data for t in wanted},
                                       {t: self._reader(t).schema for t in wanted}):
            out[bucket].setdefault(t, []).append(batch)
        return out

    @cached_property
    def jsonl_schema(self) -> pa.Schema | None:
        """The output schema of JSONL-only inputs: merged from what each scatter task inferred (or each combine
        task merged)."""
        return scatter.merge_schemas([scatter.read_schema(source.schema) for source in self.files])


def run(stored: StoredPlan, work: WorkDir, settings: dict, shard: int,
        advance: Callable[[int], None] = lambda n: None) -> dict:
    """Write output shard ``shard`` into ``work.shards``; returns its record for the manifest (with its score
    partial: :mod:`reorder_cli.metrics.shards`), with the bytes of the record batches it read (``bytes_in``,
    for its marker only).

    ``settings``: the stored plan's output settings (format, compression_level).
    """
    fmt = settings["format"]
    scattered = Scattered(stored, work, stored.shard_buckets(shard), sources(stored, work))
    schema = stored.schema if fmt != "parquet" or stored.schema is not None else scattered.jsonl_schema
    start, end = stored.shards[shard]
    writer = ShardWriter(work.shards / shard_name(shard, fmt), fmt, settings["compression_level"],
                         schema if fmt == "parquet" else None)
    tokens: token_piece.PieceWriter | token_piece.NoPiece = token_piece.NoPiece()
    try:
        tokens = token_piece.writer(writer.path, fmt, settings.get("tokens"),
                                    lambda row: _input_row(stored, start + row))
        for k in stored.shard_buckets(shard):  # a loop over buckets, then over write batches
            lo, hi = stored.bucket_range(int(k))
            rows = _bucket(stored, scattered, int(k), lo, hi, fmt, schema)
            _, first, last = stored.buckets[k]
            for a, b in stored.batches[first:last]:
                piece = rows.slice(int(a - lo), int(b - a))
                batch = piece.combine_chunks() if fmt == "parquet" else \
                    jsonl.lines_to_bytes(piece.column(scatter.LINE).combine_chunks())
                (writer.write_table if fmt == "parquet" else writer.write_lines)(batch)
                tokens.add(batch)
                advance(int(b - a))
                faults.pause("gather")
            del rows
        record = tokens.finish(writer.finish(shard, start, end - start))
        # the shard's score partial, for the manifest: its 8 bytes a row of the plan's scores
        partial = score_shards.of_shard(stored.array("scores"), stored.shards, stored.meta["valid_prefix"], shard,
                                        start)
        return record | {score_shards.KEY: partial, "bytes_in": scattered.nbytes, "files_opened": scattered.opened,
                         "requests": scattered.requests}
    except BaseException:
        writer.abort()
        tokens.abort()
        raise


def _input_row(stored: StoredPlan, position: int) -> str:
    """"FILE: line N" (JSONL) or "FILE: row N" (Parquet) of the input row at output ``position`` (the error path)."""
    row = int(stored.array("order")[position])
    starts = np.asarray(stored.meta["row_starts"], dtype=np.int64)
    file = int(np.searchsorted(starts, row, side="right") - 1)
    entry = stored.files[file]
    if entry["format"] == "jsonl":
        return scatter.line_of(stored, file, row - int(starts[file]))
    return f"{entry['path']}: row {row - int(starts[file])}"


def _bucket(stored: StoredPlan, scattered: Scattered, k: int, lo: int, hi: int, fmt: str,
            schema: pa.Schema | None) -> pa.Table:
    """The rows of positions [lo, hi), in position order, as they will be written."""
    found = scattered.bucket(k)
    parts = [as_output(stored, scattered.files[t], found[t], fmt, schema) for t in sorted(found) if found[t]]
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


def as_output(stored: StoredPlan, source: Source, batches: list[pa.RecordBatch], fmt: str,
              schema: pa.Schema | None) -> pa.Table:
    """Record batches of ``source`` as the rows will be written (with their positions): for a Parquet
    output, JSONL lines parsed and a Parquet input's columns cast to ``schema``."""
    table = pa.Table.from_batches(batches)
    if fmt == "parquet" and source.kind != "output":
        pos = table.column(scatter.POS)
        if source.kind == "lines":
            table = _parse_lines(stored, source.task, table.column(scatter.LINE), pos, schema)
        else:
            table = parquet.cast_to(table.drop_columns([scatter.POS]), schema)
        table = table.append_column(scatter.POS, pos)
    return table


def _parse_lines(stored: StoredPlan, task: int | None, lines: pa.ChunkedArray, pos: pa.ChunkedArray,
                 schema: pa.Schema) -> pa.Table:
    """Scattered JSONL records (of scatter task ``task``; None: of a combine task's file) as rows of the output
    schema (``json_rows``: exactly, or an error)."""

    def where(i: int) -> str:  # the error path: output position -> record -> line
        if task is None:
            return _input_row(stored, int(pos[i].as_py()))
        file, first_row, _ = stored.slices[task]
        row = int(np.flatnonzero(stored.positions_of(task) == pos[i].as_py())[0])
        return scatter.line_of(stored, file, first_row + row)

    inferred = stored.schema is None  # JSONL inputs only: the schema was inferred from the records
    return json_rows.to_table(jsonl.lines_to_bytes(lines.combine_chunks()), schema, where, inferred).combine_chunks()


def _has_dictionary(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return True
    return any(_has_dictionary(kind.field(i).type) for i in range(kind.num_fields))


def _runs(rows: np.ndarray) -> list[np.ndarray]:
    """Index rows (in file order) cut where their byte ranges stop lying end to end: one request each."""
    return np.split(rows, np.flatnonzero(rows[1:, 2] != rows[:-1, 3]) + 1)


def _fetch(work: WorkDir, wanted: dict[int, np.ndarray], paths: dict[int, Path],
           schemas: dict[int, pa.Schema]) -> list[tuple[int, int, pa.RecordBatch]]:
    """(file, bucket, batch) of the index rows ``wanted`` (file -> rows of (bucket, batch, start, end) in
    file order), from the store: the byte ranges that lie end to end in a file fetched as one, all of
    them concurrently; each batch's IPC message decoded (a file's first batch follows its magic and
    schema)."""
    plan = []  # (file, rows, start, end) of each request
    for t, rows in wanted.items():  # a loop over files, then over runs of adjacent ranges
        plan += [(t, part, int(part[0, 2]), int(part[-1, 3])) for part in _runs(rows)]
    urls = [work.remote / paths[t].relative_to(work.root).as_posix() for t, _, _, _ in plan]
    blocks = store.read_ranges(urls, [a for _, _, a, _ in plan], [b for _, _, _, b in plan])
    out = []
    for (t, rows, first, _), block in zip(plan, blocks, strict=True):  # a loop over requests, then batches
        data = pa.py_buffer(block)
        for bucket, _, start, end in rows:
            reader = pa.BufferReader(data.slice(int(start - first), int(end - start)))
            if start == 0:
                reader.seek(8)  # the file's magic; its schema message follows, then the batch
            message = pa.ipc.read_message(reader)
            while message.type != "record batch":
                message = pa.ipc.read_message(reader)
            out.append((t, int(bucket), pa.ipc.read_record_batch(message, schemas[t])))
    return out
