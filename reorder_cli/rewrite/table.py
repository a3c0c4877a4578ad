"""The rows a Parquet output is gathered from, and the schema it is written with.

Only the rows that will be written (the plan's rows; dropped rows never count) are
read, so a dropped row can neither break the conversion nor shape the schema.

- Parquet inputs keep their own Arrow schema (they must all share it).
- JSONL records are converted by ``shards.json_rows``, all files at once, so the
  inferred schema covers every record; every value must fit its column exactly.
- Mixed inputs use the Parquet schema; a JSONL field it lacks is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from reorder_cli.errors import ReorderError
from reorder_cli.formats import json_rows, jsonl, parquet
from reorder_cli.plan.build import Plan
from reorder_cli.util import store


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
    is_pq = [f.format == "parquet" for f in plan.files]
    arrow_schema = _parquet_schema([s for s, p in zip(plan.sources, is_pq, strict=True) if p])
    js = [(s, rows, f.path) for s, rows, p, f in zip(plan.sources, local_kept, is_pq, plan.files, strict=True)
          if not p]
    js_frame, js_schema = _parse_jsonl(js, arrow_schema) if js else (None, None)

    if all(is_pq):  # one read: Polars reads the files in parallel
        frame = _read_parquet([s.inp for s in plan.sources])
        frame = frame if kept.all() else frame.filter(pl.Series(kept))
    elif arrow_schema is None:  # JSONL inputs only
        frame, arrow_schema = js_frame, js_schema
    else:
        frame = _assemble(plan, is_pq, local_kept, js, js_frame)
    index = None if kept.all() else (np.cumsum(kept) - 1).astype(np.int64)
    return OutputTable(frame, arrow_schema, index)


def _read_parquet(inputs: list) -> pl.DataFrame:
    try:
        return pl.read_parquet(store.sources([inp.path for inp in inputs]))
    except (OSError, pl.exceptions.PolarsError) as exc:
        for inp in inputs:  # the error path: name the file (and the row) at fault
            parquet.check_readable(inp)
        raise ReorderError(f"cannot read the Parquet inputs: {str(exc).splitlines()[0]}") from None


def _parquet_schema(sources: list[parquet.ParquetSource]) -> pa.Schema | None:
    return parquet.check_same_schema([(s.inp.path, s.schema) for s in sources])


def _parse_jsonl(sources: list[tuple[jsonl.JsonlSource, np.ndarray, object]],
                 schema: pa.Schema | None) -> tuple[pl.DataFrame, pa.Schema]:
    """The kept records of every JSONL source as rows of ``schema`` (None: the inferred one)."""
    pieces, files, lines = [], [], []
    for source, rows, _ in sources:
        if not len(rows):
            continue
        pieces.append(bytes(jsonl.lines_to_bytes(source.take_lines(rows))))
        source.release()
        if source.unterminated_row() is not None and rows[-1] == source.rows - 1:
            pieces.append(b"\n")  # the file's last line has no newline; rows are in file order
        files.append(np.full(len(rows), len(files), dtype=np.int64))
        lines.append(source.keys.row_lines[rows] + 1)
    named = [path for _, rows, path in sources if len(rows)]
    at_file = np.concatenate(files) if files else np.zeros(0, dtype=np.int64)
    at_line = np.concatenate(lines) if lines else np.zeros(0, dtype=np.int64)

    def where(i: int) -> str:
        return f"{named[int(at_file[i])]}: line {int(at_line[i])}"

    data = b"".join(pieces)
    inferred = schema is None
    schema = json_rows.infer_schema(data, where) if inferred else schema
    if schema is None:  # no record at all
        return pl.DataFrame(), pa.schema([])
    return pl.from_arrow(json_rows.to_table(data, schema, where, inferred)), schema


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
