"""A shard's documents as they are written, batch by batch: the ``text_field`` of the rows as one string array.

Parquet rows: the column (or nested field) of the table. JSONL lines: the records parsed by Arrow's JSON
reader against a schema holding only the field as a string, so a number, object or array there is refused, never
turned into text. A missing or null field is an error too (the error path names the row)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from reorder_cli.errors import ReorderError
from reorder_cli.formats import jsonl
from reorder_cli.formats.parquet import nested_column

#: row of the shard -> "input FILE: row/line N" (the error path)
Locate = Callable[[int], str]


def _schema(dotted: str) -> pa.Schema:
    """A schema holding only the field ``a.b.c`` as a string."""
    parts = dotted.split(".")
    kind: pa.DataType = pa.string()
    for part in reversed(parts[1:]):
        kind = pa.struct([pa.field(part, kind)])
    return pa.schema([pa.field(parts[0], kind)])


def _lookup(record, dotted: str):
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return _MISSING
        record = record[part]
    return record


_MISSING = object()


def _why(value) -> str:
    if value is _MISSING:
        return "is missing"
    if value is None:
        return "is null"
    return f"is a {type(value).__name__} ({json.dumps(value)[:40]}), not a string"


def refuse(field: str, why: str, row: int, shard: Path, where: Locate) -> ReorderError:
    return ReorderError(f"{where(row)} (output shard {shard.name}, row {row}): text_field '{field}' {why}; every "
                        "document needs its text as a string")


def _checked(column: pa.Array | pa.ChunkedArray, field: str, first: int, shard: Path, where: Locate,
             value_of: Callable[[int], object]) -> pa.Array:
    """The column as one string array, or the error naming its first null (missing) row."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise refuse(field, f"is {column.type}, not a string", first, shard, where)
    if column.null_count:
        i = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise refuse(field, _why(value_of(i)), first + i, shard, where)
    return column


def table_column(table: pa.Table | pa.RecordBatch, field: str, first: int, shard: Path, where: Locate) -> pa.Array:
    """The ``field`` of Parquet rows (``table``, the shard's rows from ``first`` on) as one string array."""
    if field.split(".")[0] not in table.schema.names:
        raise refuse(field, "is missing (no such column)", first, shard, where)
    try:
        column = nested_column(table, field)
    except (KeyError, pa.ArrowException):
        raise refuse(field, "is missing (no such field)", first, shard, where) from None
    return _checked(column, field, first, shard, where, lambda i: None)


def lines_column(block, field: str, first: int, shard: Path, where: Locate) -> pa.Array:
    """The ``field`` of JSONL records (``block``: bytes of whole lines, the shard's from line ``first`` on)
    as one string array, parsed by Arrow's JSON reader against a schema holding only the field."""
    data = bytes(block)
    lines = jsonl.split_lines(data if data.endswith(b"\n") else data + b"\n")

    def value_of(i: int):
        return _lookup(json.loads(lines[i].as_py()), field)

    try:
        table = pj.read_json(io.BytesIO(jsonl.lines_to_bytes(lines)),
                             read_options=pj.ReadOptions(block_size=max(1 << 22, 2 * len(data) + 2)),
                             parse_options=pj.ParseOptions(explicit_schema=_schema(field),
                                                           unexpected_field_behavior="ignore"))
    except pa.ArrowException:
        bad = next((i for i in range(len(lines)) if _not_string(lines[i].as_py(), field)), 0)  # error path
        raise refuse(field, _describe(lines[bad].as_py(), field), first + bad, shard, where) from None
    return _checked(nested_column(table, field), field, first, shard, where, value_of)


def _not_string(line: bytes, field: str) -> bool:
    try:
        return not isinstance(_lookup(json.loads(line), field), str)
    except ValueError:
        return True


def _describe(line: bytes, field: str) -> str:
    try:
        value = _lookup(json.loads(line), field)
        return _why(value) if not isinstance(value, str) else "cannot be read by Arrow's JSON reader"
    except ValueError as exc:
        return f"cannot be read: the record is not valid JSON ({str(exc)[:60]})"
