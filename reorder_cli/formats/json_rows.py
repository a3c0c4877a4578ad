"""JSONL records -> Arrow rows of a Parquet output schema, exactly, or a one-line error.

One function for every path that converts records (the in-memory rewrite, the gather of
the out-of-core rewrite, and ``verify``), so what a run accepts ``verify`` proves.

- The schema of JSONL-only inputs is inferred by Polars from all records (an int in one
  record and a float in another make a float column; a field missing somewhere is null).
- Every record is then parsed against the output schema by Arrow's JSON reader, which
  refuses a value of another JSON kind than its column (number, string, boolean,
  object, array: ``5`` or ``{"a": 1}`` never becomes a string), a field the schema
  lacks, a key given twice, a lone surrogate escape (``\\ud800``: no UTF-8 form) and an
  integer that does not fit its integer column. A number written with a fraction or an
  exponent (``1000.7``, ``1000.0``, ``1e3``) goes only into a float column.
- An integer going into a float column must be exactly representable there, and a
  float going into a 32-bit float column must keep its value.

A refused record stops with ``FILE: line N: field 'F': why``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pj

from reorder_cli.errors import ReorderError

#: record index (0-based, in ``data``) -> "path: line N"
Locate = Callable[[int], str]

_COLUMN = re.compile(r"Column\((/[^)]*)\) changed from (\w+) to (\w+)")
_TWICE = re.compile(r"Column\((/[^)]*)\) was specified twice")
#: an integer literal of 16 digits or more used as a value: the only ones a float64 may not hold
_BIG_INT = r"[:\[,]\s*-?\d{16,}\s*[,\]}]"


def _ends(data) -> np.ndarray:
    return np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1


def _records(data) -> list[tuple[int, int]]:
    ends = _ends(data)
    starts = np.concatenate([[0], ends[:-1]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


# ------------------------------------------------------------------ the schema of JSONL-only inputs


def infer_schema(data, where: Locate) -> pa.Schema | None:
    """The Arrow schema Polars infers from all records (None: no record)."""
    if not len(data):
        return None
    try:
        schema = pl.scan_ndjson(io.BytesIO(bytes(data)), infer_schema_length=None).collect_schema()
    except pl.exceptions.PolarsError as exc:
        _raise_conflict(data, where)
        raise ReorderError(f"{where(0)}...: cannot convert to Parquet: {str(exc).splitlines()[0]}") from None
    # Integers beyond 64 bits have no Parquet type: an int64 column makes the strict parse name them.
    fields = {name: pl.Int64 if dtype in (pl.Int128, pl.UInt128) else dtype for name, dtype in schema.items()}
    return canonical(pl.DataFrame(schema=fields).to_arrow().schema)


def canonical(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the fields of every nested struct sorted by name (the columns keep their order).

    Polars orders a struct's fields by how it met them, which depends on how the records were cut
    into pieces (all at once in memory, piece by piece out of core): sorted, the inferred schema,
    and so the output's bytes, are the same on every path."""
    return pa.schema([f.with_type(_sorted_structs(f.type)) for f in schema])


def _sorted_structs(t: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(t):
        return pa.struct(sorted((f.with_type(_sorted_structs(f.type)) for f in t), key=lambda f: f.name))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        make = pa.large_list if pa.types.is_large_list(t) else pa.list_
        return make(t.value_field.with_type(_sorted_structs(t.value_type)))
    return t


def _raise_conflict(data, where: Locate) -> None:
    """The first record whose field types conflict with the records before it (Arrow's
    inference is strict about JSON kinds); returns when there is none."""
    records = _records(data)

    def fails(k: int) -> str | None:  # the error of the first k records, if any
        try:
            pj.read_json(io.BytesIO(bytes(data[: records[k - 1][1]])),
                         read_options=pj.ReadOptions(block_size=max(1 << 22, records[k - 1][1] + 1)))
        except pa.ArrowException as exc:
            return str(exc)
        return None

    if not records or fails(len(records)) is None:
        return
    lo, hi = 0, len(records)  # fails(hi), not fails(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fails(mid) else (mid, hi)
    message = fails(hi) or ""
    line = bytes(data[records[hi - 1][0] : records[hi - 1][1]])
    m = _COLUMN.search(message)
    why = (f"field '{_field(m.group(1))}': a JSON {m.group(3)} where earlier records have a {m.group(2)}; "
           "a Parquet column holds one type (give the field one type in every record)") if m else (
        _describe(line, None) or "its fields' types conflict with earlier records")
    raise ReorderError(f"{where(hi - 1)}: cannot convert to Parquet: {why}")


# ------------------------------------------------------------------ records -> rows of a schema


def _readable(t: pa.DataType) -> pa.DataType:
    """The type Arrow's JSON reader builds (it has no large variants); cast losslessly afterwards."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.list_(_readable(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(_readable(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_readable(f.type)) for f in t])
    return t


def _widened(t: pa.DataType) -> pa.DataType:
    """``t`` with its 16/32-bit float leaves made float64 (to compare values after narrowing)."""
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return pa.float64()
    if pa.types.is_list(t):
        return pa.list_(_widened(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_widened(f.type)) for f in t])
    return t


def _has(t: pa.DataType, pred: Callable[[pa.DataType], bool]) -> bool:
    if pred(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has(t.value_type, pred)
    if pa.types.is_struct(t):
        return any(_has(f.type, pred) for f in t)
    return False


def _schema_of(schema: pa.Schema, fn) -> pa.Schema:
    return pa.schema([f.with_type(fn(f.type)) for f in schema])


def _read(data, schema: pa.Schema) -> pa.Table:
    ends = _ends(data)
    longest = int(np.diff(np.concatenate([[0], ends])).max()) if len(ends) else len(data)
    return pj.read_json(
        io.BytesIO(bytes(data)) if not isinstance(data, bytes) else io.BytesIO(data),
        read_options=pj.ReadOptions(block_size=max(1 << 22, 2 * longest + 2)),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    )


def to_table(data, schema: pa.Schema, where: Locate, inferred: bool = False) -> pa.Table:
    """``data`` (newline-terminated records, no blank line) as rows of ``schema``, exactly.

    ``inferred``: the schema was inferred from these records, so a refused record is
    described as a conflict with the records before it where that is what it is."""
    if not len(data):
        return schema.empty_table()
    readable = _schema_of(schema, _readable)
    try:
        table = _read(data, readable)
    except pa.ArrowException:
        if inferred:
            _raise_conflict(data, where)
        _raise_first_bad(data, readable, where)
    if any(_has(f.type, pa.types.is_floating) for f in schema):
        _check_floats(data, readable, table, where)
    return table.cast(schema) if not table.schema.equals(schema) else table


def _raise_first_bad(data, readable: pa.Schema, where: Locate) -> None:
    records = _records(data)

    def fails(lo: int, hi: int) -> bool:
        try:
            _read(data[records[lo][0] : records[hi - 1][1]], readable)
        except pa.ArrowException:
            return True
        return False

    lo, hi = 0, len(records)  # records[lo:hi] holds a refused record; find the first
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fails(lo, mid) else (mid, hi)
    line = bytes(data[records[lo][0] : records[lo][1]])
    why = _describe(line, readable) or "does not fit the output schema"
    raise ReorderError(f"{where(lo)}: cannot convert to Parquet: {why}")


def _describe(line: bytes, readable: pa.Schema | None) -> str | None:
    """Why one record is refused, naming the field (the error path only)."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"malformed JSON: {exc.args[0].split(':')[0]}"
    if not isinstance(record, dict):
        return "not a JSON object"
    try:
        _read(line, readable) if readable is not None else pj.read_json(io.BytesIO(line))
        return None
    except pa.ArrowException as exc:
        message = str(exc)
    if "surrogate" in message:
        return "a string holds a lone surrogate escape (\\ud800-\\udfff), which has no UTF-8 form"
    if m := _TWICE.search(message):
        return f"field '{_field(m.group(1))}': the key appears twice in the record"
    if readable is None:
        return None
    if "unexpected field" in message:
        extra = next((k for k in record if k not in readable.names), None)
        if extra is not None:
            return f"field '{extra}': the output schema (the Parquet inputs') has no such column"
    if m := _COLUMN.search(message):
        column = _field(m.group(1))
        return (f"field '{column}': a JSON {m.group(3)} cannot be stored in the output column of type "
                f"{_type_at(readable, column)}")
    for f in readable:  # a value the column's type cannot hold: find its field
        try:
            pj.read_json(io.BytesIO(line), parse_options=pj.ParseOptions(
                explicit_schema=pa.schema([f]), unexpected_field_behavior="ignore"))
        except pa.ArrowException:
            return f"field '{f.name}': {_value(record.get(f.name))} does not fit the output column of type {f.type}"
    return message.splitlines()[0]


def _field(pointer: str) -> str:
    return ".".join(p for p in pointer.split("/") if p) or "(the record)"


def _type_at(schema: pa.Schema, dotted: str) -> str:
    t: pa.DataType | None = None
    for i, part in enumerate(dotted.split(".")):
        while t is not None and (pa.types.is_list(t) or pa.types.is_large_list(t)):
            t = t.value_type
        if i == 0:
            t = schema.field(part).type if part in schema.names else None
        elif t is not None and pa.types.is_struct(t) and t.get_field_index(part) >= 0:
            t = t.field(part).type
        else:
            t = None
    return str(t) if t is not None else "?"


def _value(v) -> str:
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_floats(data, readable: pa.Schema, table: pa.Table, where: Locate) -> None:
    """Integers into float columns must be exact; floats into 32/16-bit columns must keep their value."""
    bad: list[int] = []
    lines = pl.Series(pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(table), [None, pa.py_buffer(np.concatenate([[0], _ends(data)]).astype(np.int64)),
                                        pa.py_buffer(bytes(data))])).cast(pl.String)
    bad += np.flatnonzero(lines.str.contains(_BIG_INT).to_numpy()).tolist()
    if any(_has(f.type, lambda t: pa.types.is_float16(t) or pa.types.is_float32(t)) for f in readable):
        wide = _read(data, _schema_of(readable, _widened))
        back = pl.from_arrow(table.cast(wide.schema))
        ref = pl.from_arrow(wide)
        for name in ref.columns:  # a loop over columns
            bad += np.flatnonzero(~ref[name].eq_missing(back[name]).to_numpy()).tolist()
    for i in sorted(set(bad)):  # only suspicious records reach Python
        record = json.loads(lines[i])
        for f in readable:
            why = _inexact(record.get(f.name), f.type, f.name)
            if why is not None:
                raise ReorderError(f"{where(i)}: cannot convert to Parquet: {why}")


def _inexact(value, t: pa.DataType, name: str) -> str | None:
    if value is None:
        return None
    if pa.types.is_floating(t) and isinstance(value, int | float) and not isinstance(value, bool):
        narrow = {16: np.float16, 32: np.float32}.get(t.bit_width, np.float64)
        try:
            exact = float(narrow(value)) == value  # Python compares an int with a float exactly
        except OverflowError:
            exact = False
        if not exact:
            return f"field '{name}': {_value(value)} cannot be stored exactly in the output column of type {t}"
    if pa.types.is_struct(t) and isinstance(value, dict):
        for f in t:
            why = _inexact(value.get(f.name), f.type, f"{name}.{f.name}")
            if why is not None:
                return why
    if pa.types.is_list(t) and isinstance(value, list):
        for v in value:
            why = _inexact(v, t.value_type, name)
            if why is not None:
                return why
    return None
