"""The rows a Parquet output is gathered from, and the schema it is written with.

Only the rows that will be written (the plan's rows; dropped rows never count) are
read, so a dropped row can neither break the conversion nor shape the schema.

- Parquet inputs keep their own Arrow schema (they must all share it).
- JSONL records are parsed by Polars, all files at once, so the inferred schema covers
  every record (an int in one file and a float in another gives a float; a field
  missing somewhere is null there).
- Mixed inputs use the Parquet schema; a JSONL field it lacks is an error.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from reorder_cli.errors import ReorderError
from reorder_cli.formats import jsonl, parquet
from reorder_cli.plan.build import Plan


@dataclass
class OutputTable:
    frame: pl.DataFrame  # the written rows, in global input order
    schema: pa.Schema  # the Arrow schema of the output files
    index: np.ndarray | None  # global input row -> row of ``frame`` (None: the same)

    def rows_at(self, plan: Plan, positions: np.ndarray) -> pl.DataFrame:
        rows = plan.order[positions]
        return self.frame[rows if self.index is None else self.index[rows]]


def build(plan: Plan) -> OutputTable:
    kept = np.zeros(plan.input_rows, dtype=bool)
    kept[plan.order] = True
    local_kept = [
        np.flatnonzero(kept[plan.row_starts[i] : plan.row_starts[i + 1]]) for i in range(len(plan.sources))
    ]
    is_pq = [isinstance(s, parquet.ParquetSource) for s in plan.sources]
    arrow_schema = _parquet_schema([s for s, p in zip(plan.sources, is_pq, strict=True) if p])
    js = [(s, rows) for s, rows, p in zip(plan.sources, local_kept, is_pq, strict=True) if not p]
    js_frame = _parse_jsonl(js) if js else None

    if all(is_pq):  # one read: Polars reads the files in parallel
        frame = _read_parquet([s.inp.path for s in plan.sources])
        frame = frame if kept.all() else frame.filter(pl.Series(kept))
    elif arrow_schema is None:  # JSONL inputs only
        frame = js_frame
        arrow_schema = frame.head(0).to_arrow().schema
    else:
        pl_schema = pl.from_arrow(arrow_schema.empty_table()).schema
        if js_frame is not None:
            js_frame = conform(js_frame, pl_schema)
        frame = _assemble(plan, is_pq, local_kept, js, js_frame)
    index = None if kept.all() else (np.cumsum(kept) - 1).astype(np.int64)
    return OutputTable(frame, arrow_schema, index)


def _read_parquet(paths: list) -> pl.DataFrame:
    try:
        return pl.read_parquet(paths)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ReorderError(f"cannot read the Parquet inputs: {str(exc).splitlines()[0]}") from None


def _parquet_schema(sources: list[parquet.ParquetSource]) -> pa.Schema | None:
    return check_same_schema([(s.inp.path, s.keys.schema) for s in sources])


def check_same_schema(schemas: list[tuple]) -> pa.Schema | None:
    """The one schema (without metadata) that every (path, schema) shares; None for none."""
    if not schemas:
        return None
    first_path, first = schemas[0]
    schema = first.remove_metadata()
    for path, other in schemas[1:]:
        if not other.remove_metadata().equals(schema):
            raise ReorderError(f"{path}: schema differs from {first_path}; Parquet inputs must share one schema")
    return schema


def _parse_jsonl(sources: list[tuple[jsonl.JsonlSource, np.ndarray]]) -> pl.DataFrame:
    pieces = []
    for source, rows in sources:
        if not len(rows):
            continue
        pieces.append(bytes(jsonl.lines_to_bytes(source.take_lines(rows))))
        source.release()
        if source.unterminated_row() is not None and rows[-1] == source.rows - 1:
            pieces.append(b"\n")  # the file's last line has no newline; rows are in file order
    try:
        return pl.read_ndjson(io.BytesIO(b"".join(pieces)), infer_schema_length=None)
    except pl.exceptions.PolarsError as exc:
        raise ReorderError(f"cannot convert the JSONL records to Parquet: {str(exc).splitlines()[0]}") from None


def conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    extra = [name for name in frame.columns if name not in schema]
    if extra:
        raise ReorderError(
            f"JSONL inputs have field '{extra[0]}' that the Parquet inputs' schema lacks; "
            "a Parquet output cannot hold it"
        )
    try:
        return frame.select(
            pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in schema.items()
        )
    except pl.exceptions.PolarsError as exc:
        first_line = str(exc).splitlines()[0]
        raise ReorderError(f"JSONL records do not fit the Parquet inputs' schema: {first_line}") from None


def _assemble(plan: Plan, is_pq: list[bool], local_kept: list[np.ndarray], js, js_frame) -> pl.DataFrame:
    """Concatenate the kept rows of every source, in input order."""
    parts, js_offset = [], 0
    for source, rows, pq in zip(plan.sources, local_kept, is_pq, strict=True):
        if pq:
            frame = source.frame()
            parts.append(frame if len(rows) == source.rows else frame[rows])
        else:
            parts.append(js_frame.slice(js_offset, len(rows)))
            js_offset += len(rows)
    try:
        return pl.concat(parts, how="vertical", rechunk=False)
    except pl.exceptions.PolarsError as exc:
        raise ReorderError(f"cannot combine the inputs into one table: {str(exc).splitlines()[0]}") from None
