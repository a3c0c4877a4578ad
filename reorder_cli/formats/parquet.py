"""Parquet shards: the keys pass reads the score column alone; the rewrite reads rows."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reorder_cli.errors import ReorderError
from reorder_cli.formats import score_expr
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.jsonl import split_lines
from reorder_cli.formats.score_expr import Scoring
from reorder_cli.formats.scores import check_score_type, column_tokens, field_hint, series_scores
from reorder_cli.formats.source import Scanned
from reorder_cli.util import store


@dataclass
class ParquetKeys:
    scores: np.ndarray  # float64, NaN where invalid
    sizes: np.ndarray  # int64 estimated uncompressed bytes a row (row-group average)
    invalid: list[tuple[str, str]]  # ("row N", what is wrong) of the first invalid rows
    schema: pa.Schema
    group_starts: np.ndarray  # int64 first row of every row group, and the row count last
    tokens: np.ndarray | None = None  # int64 token counts (a token-budget selection's token_field)

    @property
    def rows(self) -> int:
        return len(self.scores)


def open_file(inp: InputFile) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(store.source(inp.path))
    except (OSError, pa.ArrowException) as exc:
        raise ReorderError(f"{inp.path}: not a readable Parquet file: {exc}") from None


def _columns(pf: pq.ParquetFile, inp: InputFile, fields: list[str]) -> dict[str, pl.Series]:
    """The columns at ``fields`` (dotted paths), read in one projection."""
    for f in fields:
        _check_column(pf, inp, f)
    try:
        table = pf.read(columns=list(dict.fromkeys(f.split(".")[0] for f in fields)))
    except (OSError, pa.ArrowException) as exc:
        raise ReorderError(f"{inp.path}: cannot read column(s) {', '.join(fields)}: {exc}") from None
    out = {}
    for f in fields:
        column = nested_column(table, f)
        out[f] = pl.Series(column.combine_chunks() if column.num_chunks != 1 else column.chunk(0))
    return out


def _check_column(pf: pq.ParquetFile, inp: InputFile, score_field: str) -> None:
    parts = score_field.split(".")
    schema = pf.schema_arrow
    field_type = None
    if parts[0] in schema.names:
        field_type = schema.field(parts[0]).type
        for part in parts[1:]:
            if pa.types.is_list(field_type) or pa.types.is_large_list(field_type):
                raise ReorderError(f"{inp.path}: score_field '{score_field}' reaches into a list ({field_type}); "
                                   "a score must be one number a row")
            if not pa.types.is_struct(field_type) or field_type.get_field_index(part) < 0:
                field_type = None
                break
            field_type = field_type.field(part).type
    if field_type is None:
        raise ReorderError(f"{inp.path}: no column '{score_field}' (columns: {', '.join(schema.names)})"
                           f"{field_hint(score_field, _numeric_paths(schema))}")


def _numeric_paths(fields: pa.Schema | pa.StructType, prefix: str = "") -> list[str]:
    """The dotted paths of the numeric columns of an Arrow schema, struct fields included."""
    out = []
    for f in fields:
        if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type):
            out.append(f"{prefix}{f.name}")
        elif pa.types.is_struct(f.type):
            out += _numeric_paths(f.type, f"{prefix}{f.name}.")
    return out


def nested_column(data: pa.Table | pa.RecordBatch, dotted: str):
    """The column ``a`` of ``data``, or its struct field ``a.b.c`` for a dotted path."""
    first, *rest = dotted.split(".")
    column = data.column(first)
    for part in rest:
        column = pc.struct_field(column, part)
    return column


def scan(
    inp: InputFile,
    score_field: str | Scoring,
    fail_on_invalid: bool,
    advance: Callable[[int], None] = lambda n: None,
    keep_invalid: int = 20,
) -> ParquetKeys:
    pf = open_file(inp)
    meta = pf.metadata
    scoring = score_expr.of(score_field)
    extra = [scoring.token_field] if scoring.token_field else []
    columns = _columns(pf, inp, list(dict.fromkeys([*scoring.fields, *extra])))
    scores, bad = field_scores(scoring, columns, str(inp.path))
    tokens = None
    if scoring.token_field:
        try:
            tokens = column_tokens(columns[scoring.token_field], str(inp.path), scoring.token_field)
        except ValueError as exc:
            raise ReorderError(str(exc)) from None
    if bad and fail_on_invalid:
        row, why = min(bad.items())
        where = "" if scoring.is_expression else f" in column '{scoring.text}'"
        raise ReorderError(f"{inp.path}: row {row}: invalid score{where}: {why}")
    invalid = [(f"row {row}", why) for row, why in list(bad.items())[:keep_invalid]]
    counts = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    sizes = np.repeat(
        np.array([max(1, meta.row_group(i).total_byte_size // max(1, meta.row_group(i).num_rows))
                  for i in range(meta.num_row_groups)], dtype=np.int64),
        counts,
    )
    advance(inp.size)
    starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
    return ParquetKeys(scores, sizes, invalid, pf.schema_arrow, starts, tokens)


def field_scores(scoring: Scoring, columns: dict[str, pl.Series], where: str) -> tuple[np.ndarray, dict[int, str]]:
    """(scores, {row: what is wrong}) of ``scoring`` over Parquet columns (one a field it reads)."""
    values, bad = {}, {}
    for f in scoring.fields:  # a loop over the expression's fields
        try:
            check_score_type(columns[f].dtype, where, f)
        except ValueError as exc:
            raise ReorderError(str(exc)) from None
        values[f], why = series_scores(columns[f])
        for row, what in why.items():
            bad.setdefault(row, f"column '{f}': {what}" if scoring.is_expression else what)
    scores = scoring.evaluate(values)
    for row in np.flatnonzero(np.isnan(scores)).tolist():
        if row not in bad:
            shown = ", ".join(f"{f}={float(values[f][row])!r}" for f in scoring.fields)
            bad[row] = f"the expression gives no finite number ({shown})"
    return scores, dict(sorted(bad.items()))


def validate_batch(batch: pa.RecordBatch, path, first_row: int) -> None:
    """A one-line error naming the row and the column when ``batch`` holds invalid values
    (a string that is not UTF-8: a corrupt or bit-flipped file). Arrow checks in bulk; the
    bisection to the row runs only on the error path."""
    try:
        batch.validate(full=True)
        return
    except pa.ArrowInvalid:
        pass
    for name, column in zip(batch.schema.names, batch.columns, strict=True):  # a loop over columns
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid as exc:
            message = str(exc)
        lo = _first_invalid(column)
        why = "a string that is not valid UTF-8" if "utf" in message.lower() else message.splitlines()[0]
        raise ReorderError(f"{path}: row {first_row + lo}: column '{name}': {why} (the file is corrupt)")
    raise ReorderError(f"{path}: rows {first_row}..{first_row + batch.num_rows - 1}: invalid values (the file is "
                       "corrupt)")


def _first_invalid(column: pa.Array) -> int:
    """Index of the first value of ``column`` that fails full validation (the error path)."""
    if pa.types.is_struct(column.type):  # a struct's slice keeps whole children: look at them
        bad = [_first_invalid(child) for child in column.flatten()]
        return min((b for b in bad if b >= 0), default=0)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):  # likewise a list's values
        bad = _first_invalid(column.flatten())
        offsets = column.offsets.to_numpy()
        return int(np.searchsorted(offsets - offsets[0], bad, side="right") - 1) if bad >= 0 else 0
    try:
        column.validate(full=True)
        return -1
    except pa.ArrowInvalid:
        pass
    lo, hi = 0, len(column)  # column[lo:hi] holds a bad value; find the first
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            column.slice(lo, mid - lo).validate(full=True)
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    return lo


def check_readable(inp: InputFile) -> None:
    """Read ``inp`` through, batch by batch, and raise a one-line error naming what is wrong."""
    try:
        with pq.ParquetFile(store.source(inp.path)) as pf:
            row = 0
            for batch in pf.iter_batches(batch_size=65536, use_threads=False):
                validate_batch(batch, inp.path, row)
                row += batch.num_rows
    except (OSError, pa.ArrowException) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ReorderError(f"{inp.path}: not a readable Parquet file: {first}") from None


class ParquetSource(Scanned):
    """Rows of one Parquet file by index. The file is read whole, once, on first use."""

    def __init__(self, inp: InputFile, keys: ParquetKeys):
        super().__init__(inp, keys)
        self._frame: pl.DataFrame | None = None
        self._lock = threading.Lock()

    @property
    def schema(self) -> pa.Schema:
        return self.keys.schema

    def row_sizes(self) -> np.ndarray:
        return self.keys.sizes

    def group_starts(self) -> np.ndarray:
        """First row of every row group, and the row count last (where a scatter slice may start)."""
        return self.keys.group_starts

    def frame(self) -> pl.DataFrame:
        with self._lock:
            if self._frame is None:
                try:
                    self._frame = pl.read_parquet(store.source(self.inp.path))
                except (OSError, pl.exceptions.PolarsError) as exc:
                    check_readable(self.inp)  # the error path: name the row at fault
                    raise ReorderError(f"{self.inp.path}: cannot read: {str(exc).splitlines()[0]}") from None
            return self._frame

    def take_lines(self, rows: np.ndarray) -> pa.LargeBinaryArray:
        """Rows as JSON lines (what a JSONL output holds for a Parquet input)."""
        return split_lines(self.frame()[rows].write_ndjson().encode("utf-8"))

    def unterminated_row(self) -> None:
        return None


def check_same_schema(schemas: list[tuple]) -> pa.Schema | None:
    """The one schema (without metadata) that every (path, schema) shares; None for none.

    Fields must have the same names, order and types; they may differ in nullability
    alone, and a field nullable in any input is nullable in the output.
    """
    if not schemas:
        return None
    first_path, first = schemas[0]
    schema = first.remove_metadata()
    for path, other in schemas[1:]:
        other = other.remove_metadata()
        if other.names != schema.names:
            raise ReorderError(
                f"{path}: columns {', '.join(other.names)} differ from {first_path}'s "
                f"({', '.join(schema.names)}); Parquet inputs must share one schema"
            )
        fields = []
        for mine, theirs in zip(schema, other, strict=True):
            merged = _merge_nullable(mine.type, theirs.type)
            if merged is None:
                raise ReorderError(
                    f"{path}: column '{mine.name}' is {theirs.type}, but {mine.type} in {first_path}; "
                    "Parquet inputs must share one schema (cast one of them)"
                )
            fields.append(pa.field(mine.name, merged, mine.nullable or theirs.nullable))
        schema = pa.schema(fields)
    return schema


def _merge_nullable(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """``a`` and ``b`` made one type when they differ at most in their fields' nullability."""
    if a.equals(b):
        return a
    if pa.types.is_struct(a) and pa.types.is_struct(b) and [f.name for f in a] == [f.name for f in b]:
        fields = []
        for fa, fb in zip(a, b, strict=True):
            t = _merge_nullable(fa.type, fb.type)
            if t is None:
                return None
            fields.append(pa.field(fa.name, t, fa.nullable or fb.nullable))
        return pa.struct(fields)
    for is_list, make in ((pa.types.is_list, pa.list_), (pa.types.is_large_list, pa.large_list)):
        if is_list(a) and is_list(b):
            t = _merge_nullable(a.value_type, b.value_type)
            if t is None:
                return None
            return make(pa.field(a.value_field.name, t, a.value_field.nullable or b.value_field.nullable))
    return None


# ------------------------------------------------------------------ the output schema


def to_arrow(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    """Rows as one-chunk Arrow columns of the output schema (chunking must not change the bytes)."""
    return cast_to(frame.to_arrow(), schema).combine_chunks()


def cast_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table's columns of ``schema``, cast to it; a one-line error when they do not fit."""
    try:
        table = table.select(schema.names)
        bad = [i for i, f in enumerate(schema) if _struct_holds_null(f.type)]
        if not bad:
            return table.cast(schema)
        plain = table.drop_columns([schema.names[i] for i in bad])
        out = plain.cast(pa.schema([f for i, f in enumerate(schema) if i not in bad]))
        for i in bad:  # a loop over columns
            chunks = [_cast_nested(chunk, schema.field(i).type) for chunk in table.column(i).chunks]
            out = out.add_column(i, schema.field(i), pa.chunked_array(chunks, schema.field(i).type))
        return out
    except (pa.ArrowException, KeyError) as exc:
        raise ReorderError(f"rows do not fit the output Parquet schema: {exc}") from None


def _struct_holds_null(t: pa.DataType, in_struct: bool = False) -> bool:
    """A null-typed struct field somewhere in ``t`` (a chat message's ``"tool_calls": null`` in every record)."""
    if pa.types.is_null(t):
        return in_struct
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _struct_holds_null(t.value_type, in_struct)
    if pa.types.is_struct(t):
        return any(_struct_holds_null(f.type, True) for f in t)
    return False


def _cast_nested(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """``arr`` cast to ``t`` level by level (lists and structs built afresh, their leaves cast).

    Arrow 26's cast of a list of structs with a null-typed field makes that field as long as
    the list, not as its values, and the result fails validation ("Struct child array #3 has
    length smaller than expected"), even to the same type; building the levels avoids it."""
    mask = arr.is_null() if arr.null_count else None
    if pa.types.is_null(t):
        return pa.nulls(len(arr))
    if pa.types.is_struct(t) and pa.types.is_struct(arr.type):
        children = [_cast_nested(arr.field(f.name), f.type) for f in t]
        return pa.StructArray.from_arrays(children, fields=list(t), mask=mask)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
            pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        large = pa.types.is_large_list(t)
        offsets = arr.offsets.cast(pa.int64() if large else pa.int32())  # safe: refuses an overflow
        make = pa.LargeListArray if large else pa.ListArray
        return make.from_arrays(offsets, _cast_nested(arr.values, t.value_type), type=t, mask=mask)
    return arr.cast(t)
