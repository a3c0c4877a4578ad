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
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.jsonl import split_lines
from reorder_cli.formats.scores import python_score, strings_to_float


@dataclass
class ParquetKeys:
    scores: np.ndarray  # float64, NaN where invalid
    sizes: np.ndarray  # int64 estimated uncompressed bytes a row (row-group average)
    invalid: list[tuple[str, str]]  # ("row N", what is wrong) of the first invalid rows
    schema: pa.Schema

    @property
    def rows(self) -> int:
        return len(self.scores)


def open_file(inp: InputFile) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(inp.path)
    except (OSError, pa.ArrowException) as exc:
        raise ReorderError(f"{inp.path}: not a readable Parquet file: {exc}") from None


def _score_column(pf: pq.ParquetFile, inp: InputFile, score_field: str) -> pa.ChunkedArray:
    parts = score_field.split(".")
    schema = pf.schema_arrow
    field_type = None
    if parts[0] in schema.names:
        field_type = schema.field(parts[0]).type
        for part in parts[1:]:
            if not pa.types.is_struct(field_type) or field_type.get_field_index(part) < 0:
                field_type = None
                break
            field_type = field_type.field(part).type
    if field_type is None:
        raise ReorderError(
            f"{inp.path}: no column '{score_field}' (columns: {', '.join(schema.names)})"
        )
    try:
        column = pf.read(columns=[score_field]).column(0)
    except (OSError, pa.ArrowException) as exc:
        raise ReorderError(f"{inp.path}: cannot read column '{score_field}': {exc}") from None
    for part in parts[1:]:
        column = pc.struct_field(column, part)
    return column


def scan(
    inp: InputFile,
    score_field: str,
    fail_on_invalid: bool,
    advance: Callable[[int], None] = lambda n: None,
    keep_invalid: int = 20,
) -> ParquetKeys:
    pf = open_file(inp)
    meta = pf.metadata
    column = _score_column(pf, inp, score_field)
    series = pl.Series(column.combine_chunks() if column.num_chunks != 1 else column.chunk(0))
    if series.dtype == pl.Boolean or series.dtype.is_numeric():
        scores = series.cast(pl.Float64).to_numpy().astype(np.float64, copy=True)
        scores[~np.isfinite(scores)] = np.nan
    else:
        scores = strings_to_float(series.cast(pl.String, strict=False))
    invalid: list[tuple[str, str]] = []
    bad_rows = np.flatnonzero(np.isnan(scores))
    for row in bad_rows:  # only invalid (or non-plain-numeric) rows reach Python
        value = series[int(row)]
        scores[row], why = python_score(value)
        if why is None:
            continue
        if fail_on_invalid:
            raise ReorderError(f"{inp.path}: row {int(row)}: invalid score in column '{score_field}': {why}")
        if len(invalid) < keep_invalid:
            invalid.append((f"row {int(row)}", why))
    sizes = np.repeat(
        np.array([max(1, meta.row_group(i).total_byte_size // max(1, meta.row_group(i).num_rows))
                  for i in range(meta.num_row_groups)], dtype=np.int64),
        [meta.row_group(i).num_rows for i in range(meta.num_row_groups)],
    )
    advance(inp.size)
    return ParquetKeys(scores, sizes, invalid, pf.schema_arrow)


class ParquetSource:
    """Rows of one Parquet file by index. The file is read whole, once, on first use."""

    def __init__(self, inp: InputFile, keys: ParquetKeys):
        self.inp = inp
        self.keys = keys
        self._frame: pl.DataFrame | None = None
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        return self.keys.rows

    def frame(self) -> pl.DataFrame:
        with self._lock:
            if self._frame is None:
                try:
                    self._frame = pl.read_parquet(self.inp.path)
                except (OSError, pl.exceptions.PolarsError) as exc:
                    raise ReorderError(f"{self.inp.path}: cannot read: {str(exc).splitlines()[0]}") from None
            return self._frame

    def take_lines(self, rows: np.ndarray) -> pa.LargeBinaryArray:
        """Rows as JSON lines (what a JSONL output holds for a Parquet input)."""
        return split_lines(self.frame()[rows].write_ndjson().encode("utf-8"))

    def unterminated_row(self) -> None:
        return None
