"""Scatter: the first pass of the out-of-core rewrite, one task an input file.

A task reads its input front to back in bounded pieces, tags every kept row with its
output position, and appends the rows to one Arrow IPC file, grouped by bucket:

    scatter/NNNNN.arrow         record batches, rows sorted by position inside each
    scatter/NNNNN.buckets.npy   (bucket, record batch, start, end) of every batch, sorted by bucket,
                                [start, end) the bytes of its IPC message in the file: a gather finds
                                its buckets' batches by binary search, reading a few pages, and, on a
                                store, fetches their bytes by coalesced range requests
    scatter/NNNNN.schema.arrow  (JSONL inputs, Parquet output without Parquet inputs)
                                the Arrow schema inferred from the task's records

Rows are carried as they will be written: the original line bytes for a JSONL output
(and for every JSONL input, parsed later by the gather for a Parquet output), the
columns of the file for a Parquet input with a Parquet output. Files are written under
a temporary name and renamed; the task's marker is written by the caller, last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from reorder_cli.errors import ReorderError
from reorder_cli.formats import json_rows, jsonl, parquet, unchanged
from reorder_cli.plan.stored import StoredPlan
from reorder_cli.util import atomic, faults, store
from reorder_cli.util.atomic import temporary
from reorder_cli.util.npy import save_npy
from reorder_cli.workdir import WorkDir

POS = "_pos"
#: Rows a scatter piece at most: with tiny rows, per-row bookkeeping (positions, sort
#: indices) would otherwise outweigh the bytes the piece was sized by.
MAX_PIECE_ROWS = 1 << 16
LINE = "line"


def run(stored: StoredPlan, work: WorkDir, task: int, settings: dict,
        advance: Callable[[int], None] = lambda n: None) -> dict:
    """Scatter input ``task``; returns its record (rows, bytes written).

    ``settings``: the stored plan's output settings (format, read_bytes, work_compression).
    """
    out_format, read_bytes = settings["format"], settings["read_bytes"]
    compression = settings.get("work_compression", "none")
    options = pa.ipc.IpcWriteOptions(compression=None if compression == "none" else compression)
    work.scatter.mkdir(parents=True, exist_ok=True)
    file, first_row, end_row = stored.slices[task]
    entry = stored.files[file]
    unchanged.check(store.location(entry["path"]), entry.get("stamp"), f"scatter task {task}")
    positions = stored.positions_of(task)
    starts = stored.bucket_starts()
    infer = entry["format"] == "jsonl" and out_format == "parquet" and stored.schema is None
    as_lines = entry["format"] == "jsonl" or out_format != "parquet"
    pieces = _jsonl_pieces(stored, file, first_row, end_row, read_bytes, work.readable(entry["data_path"])) \
        if entry["format"] == "jsonl" \
        else _parquet_pieces(entry, first_row, end_row, read_bytes, as_lines)
    out = IpcOut(work.scatter_data(task), options)
    buckets, spans, schemas, rows = [], [], [], 0
    try:
        for first, table in pieces:
            pos = positions[first : first + table.num_rows]
            advance(table.num_rows)
            keep = np.flatnonzero(pos >= 0)
            by_pos = keep[np.argsort(pos[keep], kind="stable")]
            if not len(by_pos):
                continue
            pos = pos[by_pos]
            table = table.take(pa.array(by_pos)).combine_chunks()
            if infer:
                at = first_row + first + by_pos
                schemas.append(_infer(table.column(LINE).chunk(0), lambda i, at=at: line_of(stored, file, int(at[i]))))
            batch = table.append_column(POS, pa.array(pos)).to_batches()[0]
            bucket = np.searchsorted(starts, pos, side="right") - 1
            cuts = np.concatenate([[0], np.flatnonzero(np.diff(bucket)) + 1, [len(pos)]])
            for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):  # a loop over buckets
                spans.append(out.write(batch.slice(int(lo), int(hi - lo))))  # its message: written through at once
                buckets.append(int(bucket[lo]))
            rows += len(pos)
            faults.pause("scatter")
    except BaseException:
        out.abort()
        raise
    wrote = out.commit()
    if infer:
        merged = merge_schemas(schemas)
        atomic.write_bytes(work.scatter_schema(task), merged.serialize().to_pybytes() if merged is not None else b"")
    batches = np.asarray(buckets, dtype=np.int64)
    by_bucket = np.argsort(batches, kind="stable")  # file order within a bucket
    spans_at = np.asarray(spans, dtype=np.int64).reshape(-1, 2)[by_bucket]
    save_npy(work.scatter_buckets(task), np.column_stack([batches[by_bucket], by_bucket, spans_at]).astype(np.int64))
    return {"rows": rows, "bytes": out.final.stat().st_size if wrote else 0}


class IpcOut:
    """An Arrow IPC file written under a temporary name: opened with its first batch, moved into place whole by
    :meth:`commit` (False: no batch, no file), removed by :meth:`abort`."""

    def __init__(self, final: Path, options: pa.ipc.IpcWriteOptions):
        self.final, self.tmp, self.options = final, temporary(final), options
        self.writer, self.sink = None, None

    def write(self, batch: pa.RecordBatch) -> tuple[int, int]:
        """Write ``batch``; returns the [start, end) bytes of its message in the file."""
        if self.writer is None:
            self.sink = pa.OSFile(str(self.tmp), "wb")
            self.writer = pa.ipc.new_file(self.sink, batch.schema, options=self.options)
        start = self.sink.tell()
        self.writer.write_batch(batch)
        return start, self.sink.tell()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.sink.close()

    def abort(self) -> None:
        self._close()
        self.tmp.unlink(missing_ok=True)

    def commit(self) -> bool:
        self._close()
        if self.writer is not None:
            atomic.commit(self.tmp, self.final)
        return self.writer is not None


# ------------------------------------------------------------------ reading an input in pieces


def _parquet_pieces(entry: dict, first_row: int, end_row: int, read_bytes: int,
                    as_lines: bool) -> Iterator[tuple[int, pa.Table]]:
    """Rows [first_row, end_row) (whole row groups) in pieces; yields (row within the slice, rows)."""
    path = entry["path"]
    try:
        pf = pq.ParquetFile(store.source(path))
        meta = pf.metadata
        starts = np.concatenate([[0], np.cumsum([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])])
        groups = [g for g in range(meta.num_row_groups) if first_row <= starts[g] < end_row]
        total = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        rows_per_piece = min(MAX_PIECE_ROWS, max(1, int(read_bytes // max(1, total // max(1, meta.num_rows)))))
        first = 0
        for batch in pf.iter_batches(batch_size=rows_per_piece, row_groups=groups, use_threads=False):
            parquet.validate_batch(batch, path, first_row + first)
            table = pa.Table.from_batches([batch])
            if as_lines:
                text = pl.from_arrow(table).write_ndjson().encode("utf-8")
                table = pa.table({LINE: jsonl.split_lines(text)})
            yield first, table
            first += batch.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise ReorderError(f"{path}: cannot read: {exc}") from None


def _jsonl_pieces(stored: StoredPlan, file: int, first_row: int, end_row: int, read_bytes: int,
                  data: Path | store.URL) -> Iterator[tuple[int, pa.Table]]:
    """Records [first_row, end_row) of a JSONL input in pieces of about ``read_bytes``, read
    sequentially from ``data`` (its bytes); yields (row within the slice, records)."""
    entry = stored.files[file]
    records = np.load(stored.records(file), mmap_mode="r")[first_row:end_row]
    n, rows = len(records), entry["rows"]
    if n == 0:
        return
    base = int(records[0, 0])
    targets = base + np.arange(1, (int(records[-1, 1]) - base) // max(1, read_bytes) + 2, dtype=np.int64) * read_bytes
    by_rows = np.arange(0, n, MAX_PIECE_ROWS)
    cuts = np.unique(np.concatenate([[0], np.searchsorted(records[:, 0], targets), by_rows, [n]]))
    with store.open_read(data) as fh:
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):  # a loop over pieces, never rows
            rec = np.array(records[a:b])
            base = int(rec[0, 0])
            fh.seek(base)
            data = fh.read(int(rec[-1, 1]) - base)
            lines = _records_array(data, rec - base)
            if entry.get("unterminated") and first_row + b == rows:
                last = lines[len(lines) - 1].as_py() + b"\n"
                lines = pa.concat_arrays([lines.slice(0, len(lines) - 1), pa.array([last], pa.large_binary())])
            yield int(a), pa.table({LINE: lines})


def _records_array(data: bytes, rec: np.ndarray) -> pa.LargeBinaryArray:
    """Binary values data[start:end] for each (start, end) row of ``rec`` (increasing)."""
    if len(rec) == 1 or np.array_equal(rec[1:, 0], rec[:-1, 1]):  # contiguous: no copy
        offsets = np.concatenate([rec[:, 0], rec[-1:, 1]]).astype(np.int64)
        return pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), len(rec), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    segments = pa.LargeBinaryArray.from_buffers(  # records and the blank lines between them
        pa.large_binary(), 2 * len(rec) - 1, [None, pa.py_buffer(rec.ravel().astype(np.int64)), pa.py_buffer(data)])
    return segments.take(pa.array(np.arange(0, 2 * len(rec), 2)))


# ------------------------------------------------------------------ schemas of JSONL records


def line_of(stored: StoredPlan, file: int, record: int) -> str:
    """"path: line N" of record ``record`` of JSONL input ``file`` (the error path only: the
    newlines before the record are counted, a block at a time)."""
    entry = stored.files[file]
    start = int(np.load(stored.records(file), mmap_mode="r")[record, 0])
    newlines, done = 0, 0
    with store.open_read(store.location(entry["data_path"])) as fh:
        while done < start:
            block = fh.read(min(8 << 20, start - done))
            if not block:
                break
            newlines += block.count(b"\n")
            done += len(block)
    return f"{entry['path']}: line {newlines + 1}"


def _infer(lines: pa.LargeBinaryArray, where: Callable[[int], str]) -> pa.Schema | None:
    return json_rows.infer_schema(jsonl.lines_to_bytes(lines), where)


def merge_schemas(schemas: list[pa.Schema | None]) -> pa.Schema | None:
    """One schema for all: fields in order of first appearance (a nested struct's sorted by name:
    ``json_rows.canonical``), types widened as Polars does."""
    frames = [pl.from_arrow(s.empty_table()) for s in schemas if s is not None]
    if not frames:
        return None
    try:
        return json_rows.canonical(pl.concat(frames, how="diagonal_relaxed").head(0).to_arrow().schema)
    except pl.exceptions.PolarsError as exc:  # e.g. a field that is a number in one file and an object in another
        raise ReorderError(f"the JSONL inputs' fields have types that conflict between files: "
                           f"{str(exc).splitlines()[0]}") from None


def read_schema(path: Path) -> pa.Schema | None:
    data = path.read_bytes()
    return pa.ipc.read_schema(pa.py_buffer(data)) if data else None
