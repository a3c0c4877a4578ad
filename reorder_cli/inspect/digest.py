"""Reading shard files back, streaming, for ``reorder verify``.

An output shard is read once for what it holds: size, sha256, records, score
min/mean/max and, on request, its row multiset (``rowhash``). JSONL shards are hashed
as their raw bytes go by (one pass); Parquet shards take a raw pass for sha256, then a
batch-by-batch read. An input file is read for its records, its invalid scores and the
multiset of the rows a run keeps. Memory stays at about one block of lines (8 MiB) or
one batch (about 16 MiB, or one row group) a file, whatever its size.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from reorder_cli.errors import ReorderError
from reorder_cli.formats import json_rows, jsonl, parquet, score_expr
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.score_expr import Scoring
from reorder_cli.formats.scores import check_score_type, series_scores
from reorder_cli.inspect.rowhash import RowMultiset
from reorder_cli.metrics.summary import ChunkedStats, ScoreStats
from reorder_cli.util import store
from reorder_cli.util.hashing import file_sha256

BATCH_BYTES = 16 << 20
MAX_BATCH_ROWS = 65536


@dataclass
class ShardDigest:
    size: int
    sha256: str
    rows: int | None = None  # records read from the file (None: unreadable)
    meta_rows: int | None = None  # Parquet: the footer's row count
    scores: ScoreStats = field(default_factory=ScoreStats)
    multiset: RowMultiset | None = None
    schema: pa.Schema | None = None  # Parquet
    unterminated: bool = False  # JSONL: the last record lacks its '\n'
    error: str | None = None


@dataclass
class InputDigest:
    rows: int = 0  # records in the file
    invalid: int = 0  # records whose score is invalid
    multiset: RowMultiset = field(default_factory=RowMultiset)  # the rows a run writes


# ------------------------------------------------------------------ shared readers


class _HashingReader:
    """A raw binary file that hashes and counts what is read through it."""

    def __init__(self, path: Path):
        self._fh = store.open_read(path)  # a file, or an object read back from its store; closed in close()
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(jsonl.BLOCK):
            pass

    def close(self) -> None:
        self.closed = True
        self._fh.close()


@dataclass
class _Records:
    lines: pa.LargeBinaryArray  # the records, each ending with '\n'
    scores: np.ndarray  # float64, NaN where invalid
    line_numbers: np.ndarray  # 1-based line of each record in its file
    lines_read: int  # lines of the block, blank ones included
    unterminated: bool  # the block's last record had no '\n' (one was added)


def _records(data, at_end: bool, score_field: str | Scoring, inp: InputFile, lines_before: int,
             skip_bom: bool) -> _Records:
    """The records of a block. ``skip_bom``: the block starts an input file, whose leading
    byte-order mark is not part of its first record (as in the keys pass); an output shard
    has none, so there it is an error like any other."""
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10) + 1
    unterminated = bool(at_end and (len(ends) == 0 or ends[-1] != len(data)))
    if unterminated:
        data = bytes(data) + b"\n"
        ends = np.append(ends, len(data))
    local = np.concatenate([[0], ends]).astype(np.int64)
    if skip_bom:
        jsonl.skip_bom(data, local)
    keep, scores, _, _ = jsonl.block_scores(data, local, score_expr.of(score_field), inp, lines_before)
    lines = jsonl.lines_array(data, local).filter(pa.array(keep))
    return _Records(lines, scores, np.flatnonzero(keep) + lines_before + 1, len(ends), unterminated and bool(keep[-1]))


def batch_scores(batch: pa.RecordBatch, score_field: str | Scoring) -> np.ndarray:
    """Scores of a Parquet batch by the same rules as the keys pass (NaN where invalid)."""
    scoring = score_expr.of(score_field)
    columns = {}
    for f in scoring.fields:  # a loop over the expression's fields
        if f.split(".")[0] not in batch.schema.names:
            raise KeyError(f"no column '{f}'")
        columns[f] = pl.Series(parquet.nested_column(batch, f))
        try:
            check_score_type(columns[f].dtype, "the shard", f)
        except ValueError as exc:
            raise KeyError(str(exc).removeprefix("the shard: ")) from None
    return scoring.evaluate({f: series_scores(c)[0] for f, c in columns.items()})


def _batch_rows(meta: pq.FileMetaData) -> int:
    """Rows a batch so that a batch is about BATCH_BYTES uncompressed."""
    rows = max(1, meta.num_rows)
    total = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return int(min(MAX_BATCH_ROWS, max(1, BATCH_BYTES // max(1, total // rows))))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# ------------------------------------------------------------------ output shards


def output_shard(path: Path, fmt: str, score_field: str | Scoring, with_rows: bool) -> ShardDigest:
    """Read one output shard back; a file that cannot be read gets ``error`` set."""
    if fmt == "parquet":
        return _parquet_shard(path, score_field, with_rows)
    return _jsonl_shard(path, fmt, score_field, with_rows)


def _jsonl_shard(path: Path, fmt: str, score_field: str | Scoring, with_rows: bool) -> ShardDigest:
    reader = _HashingReader(path)
    inp = InputFile(path, "jsonl", "zstd" if fmt == "jsonl.zst" else None, 0)
    stats, multiset = ChunkedStats(), RowMultiset() if with_rows else None
    rows = lines = 0
    unterminated = False
    try:
        stream = pa.input_stream(reader, compression="zstd") if fmt == "jsonl.zst" else reader
        for data, at_end in jsonl.stream_blocks(stream.read):
            rec = _records(data, at_end, score_field, inp, lines, skip_bom=False)
            rows += len(rec.lines)
            lines += rec.lines_read
            unterminated |= rec.unterminated
            stats.add(rec.scores)
            if multiset is not None:
                multiset.add_lines(rec.lines)
        reader.drain()
    except ReorderError as exc:
        return ShardDigest(store.size(path), file_sha256(path), error=str(exc).removeprefix(f"{path}: "))
    except (OSError, pa.ArrowException) as exc:
        return ShardDigest(store.size(path), file_sha256(path), error=f"cannot decompress: {_first_line(exc)}")
    finally:
        reader.close()
    return ShardDigest(reader.size, reader.digest.hexdigest(), rows=rows, scores=stats.finish(), multiset=multiset,
                       unterminated=unterminated)


def _parquet_shard(path: Path, score_field: str | Scoring, with_rows: bool) -> ShardDigest:
    digest = ShardDigest(store.size(path), file_sha256(path))
    multiset = RowMultiset() if with_rows else None
    stats = ChunkedStats()  # in the manifest's chunks: the same sums, to the last bit
    try:
        rows = 0
        with pq.ParquetFile(store.source(path)) as pf:
            digest.meta_rows, digest.schema = pf.metadata.num_rows, pf.schema_arrow
            for batch in pf.iter_batches(batch_size=_batch_rows(pf.metadata)):
                parquet.validate_batch(batch, path, rows)
                rows += batch.num_rows
                stats.add(batch_scores(batch, score_field))
                if multiset is not None:
                    multiset.add_frame(pl.from_arrow(batch))
        digest.rows, digest.multiset, digest.scores = rows, multiset, stats.finish()
    except KeyError as exc:
        digest.error = str(exc.args[0])
    except ReorderError as exc:
        digest.error = str(exc).removeprefix(f"{path}: ")
    except (OSError, pa.ArrowException, pl.exceptions.PolarsError) as exc:
        digest.error = f"not a readable Parquet file: {_first_line(exc)}"
    return digest


# ------------------------------------------------------------------ inputs


def input_file(inp: InputFile, score_field: str | Scoring, drop_invalid: bool, schema: pa.Schema | None,
               include: np.ndarray | None = None) -> InputDigest:
    """Records, invalid scores and the multiset of the rows a run writes from one input.

    ``schema`` None hashes rows as JSONL records (a Parquet row as Polars serialises it);
    a schema (the output's Arrow schema) hashes row values in it (JSONL records are
    converted to it by the rules of the run, ``json_rows``).
    ``include`` (a mask over the file's rows, e.g. a selection's) says which rows the run writes;
    it replaces ``drop_invalid``. Unreadable input raises ``ReorderError``.
    """
    if inp.format == "parquet":
        return _parquet_input(inp, score_field, drop_invalid, schema, include)
    return _jsonl_input(inp, score_field, drop_invalid, schema, include)


def _jsonl_input(inp: InputFile, score_field: str | Scoring, drop_invalid: bool, schema: pa.Schema | None,
                 include: np.ndarray | None) -> InputDigest:
    out = InputDigest()
    lines = 0
    try:
        stream = store.input_stream(inp.path, compression=inp.compression)
        with stream:
            for data, at_end in jsonl.stream_blocks(stream.read):
                rec = _records(data, at_end, score_field, inp, lines, skip_bom=lines == 0)
                lines += rec.lines_read
                invalid = np.isnan(rec.scores)
                first = out.rows
                out.rows += len(rec.lines)
                out.invalid += int(invalid.sum())
                kept, numbers = rec.lines, rec.line_numbers
                mask = include[first:out.rows] if include is not None else ~invalid if drop_invalid else None
                if mask is not None and not mask.all():
                    kept, numbers = kept.filter(pa.array(mask)), numbers[mask]
                if schema is None:
                    out.multiset.add_lines(kept)
                elif len(kept):
                    table = json_rows.to_table(jsonl.lines_to_bytes(kept), schema,
                                               lambda i, n=numbers: f"{inp.path}: line {int(n[i])}")
                    out.multiset.add_frame(pl.from_arrow(table))
    except (OSError, pa.ArrowException) as exc:
        raise ReorderError(f"{inp.path}: cannot read: {_first_line(exc)}") from None
    return out


def _ndjson_lines(frame: pl.DataFrame) -> pa.LargeBinaryArray:
    """Rows as the JSON lines ``reorder run`` writes for them (Polars' serialisation)."""
    buf = io.BytesIO()
    frame.write_ndjson(buf)
    return jsonl.split_lines(buf.getbuffer())


def _parquet_input(inp: InputFile, score_field: str | Scoring, drop_invalid: bool, schema: pa.Schema | None,
                   include: np.ndarray | None) -> InputDigest:
    out = InputDigest()
    columns = None if schema is None else pl.from_arrow(schema.empty_table()).schema
    try:
        with pq.ParquetFile(store.source(inp.path)) as pf:
            for batch in pf.iter_batches(batch_size=_batch_rows(pf.metadata)):
                parquet.validate_batch(batch, inp.path, out.rows)
                invalid = np.isnan(batch_scores(batch, score_field))
                frame = pl.from_arrow(batch)
                first = out.rows
                out.rows += frame.height
                out.invalid += int(invalid.sum())
                mask = include[first:out.rows] if include is not None else ~invalid if drop_invalid else None
                if mask is not None and not mask.all():
                    frame = frame.filter(pl.Series(mask))
                if schema is None:
                    out.multiset.add_lines(_ndjson_lines(frame))
                else:
                    out.multiset.add_frame(frame.select(list(columns)).cast(dict(columns)))
    except KeyError as exc:
        raise ReorderError(f"{inp.path}: {exc.args[0]}") from None
    except pl.exceptions.ColumnNotFoundError as exc:
        raise ReorderError(f"{inp.path}: does not fit the output's schema: {_first_line(exc)}") from None
    except (OSError, pa.ArrowException, pl.exceptions.PolarsError) as exc:
        raise ReorderError(f"{inp.path}: not a readable Parquet file: {_first_line(exc)}") from None
    return out
