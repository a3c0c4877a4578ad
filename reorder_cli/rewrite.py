"""The payload pass: move every row to its output position and write the shards.

Shards are independent and written in parallel threads. Inside a shard, rows are
gathered in batches (a few MB of JSONL lines, or one Parquet row group), so memory stays
around ``workers x batch`` whatever the size of the data.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from .config import RunConfig
from .errors import ReorderError
from .plan import Plan, layout
from .shards import jsonl, parquet
from .shards.writers import COMPRESSION, ShardWriter, shard_name

LINE_BATCH_BYTES = 16 << 20


def _groups(plan: Plan, positions: np.ndarray):
    """Yield (source, rows) per input file in file order, and the permutation that puts
    the concatenated results back in output order (None when already in order)."""
    files, rows = plan.locate(positions)
    if len(files) and files[0] == files[-1] and (files == files[0]).all():
        return [(plan.sources[int(files[0])], rows)], None
    by_file = np.argsort(files, kind="stable")
    sorted_files = files[by_file]
    cuts = np.flatnonzero(np.diff(sorted_files)) + 1
    bounds = np.concatenate([[0], cuts, [len(by_file)]])
    groups = [
        (plan.sources[int(sorted_files[a])], rows[by_file[a:b]]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    back = np.empty(len(by_file), dtype=np.int64)
    back[by_file] = np.arange(len(by_file))
    return groups, back


def gather_lines(plan: Plan, positions: np.ndarray) -> pa.LargeBinaryArray:
    groups, back = _groups(plan, positions)
    parts = [source.take_lines(rows) for source, rows in groups]
    lines = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
    return lines if back is None else lines.take(pa.array(back))


def gather_frame(plan: Plan, positions: np.ndarray, schema: pl.Schema | None) -> pl.DataFrame:
    groups, back = _groups(plan, positions)
    parts = [source.take_frame(rows, schema) for source, rows in groups]
    frame = parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")
    return frame if back is None else frame[back]


# ------------------------------------------------------------------ output schema


def output_schema(plan: Plan) -> tuple[pa.Schema, pl.Schema | None]:
    """The Parquet schema of the output: the Parquet inputs' own schema (they must agree),
    or, for JSONL inputs, the schema Polars infers from all their records."""
    pq_sources = [s for s in plan.sources if isinstance(s, parquet.ParquetSource)]
    js_sources = [s for s in plan.sources if isinstance(s, jsonl.JsonlSource) and s.rows]
    inferred = _infer_jsonl_schema(js_sources) if js_sources else None
    if not pq_sources:
        return pl.DataFrame(schema=inferred).to_arrow().schema, inferred
    first = pq_sources[0]
    schema = first.keys.schema.remove_metadata()
    for other in pq_sources[1:]:
        if not other.keys.schema.remove_metadata().equals(schema):
            raise ReorderError(
                f"{other.inp.path}: schema differs from {first.inp.path}; Parquet inputs must share one schema"
            )
    pl_schema = pl.DataFrame(schema=pl.from_arrow(schema.empty_table()).schema).schema
    if inferred is not None:
        extra = [name for name in inferred if name not in pl_schema]
        if extra:
            raise ReorderError(
                f"JSONL inputs have field '{extra[0]}' that the Parquet inputs' schema lacks; "
                "a Parquet output cannot hold it"
            )
    return schema, pl_schema


def _infer_jsonl_schema(sources: list) -> pl.Schema:
    paths = [str(s.keys.data_path) for s in sources]
    try:
        return pl.scan_ndjson(paths, infer_schema_length=None).collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise ReorderError(f"cannot infer one Parquet schema from the JSONL inputs: {str(exc).splitlines()[0]}") from None


# ------------------------------------------------------------------ writing


def write_shards(plan: Plan, cfg: RunConfig, folder: Path, advance: Callable[[int], None]) -> list[dict]:
    """Write every shard into ``folder``; returns one record a shard, in order."""
    schemas = output_schema(plan) if cfg.format == "parquet" else (None, None)

    def one(index: int) -> dict:
        start, end = plan.shards[index]
        writer = ShardWriter(folder / shard_name(index, cfg.format), cfg.format, cfg.compression_level, schemas[0])
        try:
            _fill(writer, plan, cfg, start, end, schemas, advance)
            size, sha = writer.finish()
        except BaseException:
            writer.abort()
            raise
        return {"index": index, "file": writer.path.name, "rows": end - start, "bytes": size, "sha256": sha,
                "first": start, "compression": COMPRESSION[cfg.format]}

    with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
        return list(pool.map(one, range(len(plan.shards))))


def _fill(writer: ShardWriter, plan: Plan, cfg: RunConfig, start: int, end: int, schemas, advance) -> None:
    if cfg.format == "parquet":
        arrow_schema, pl_schema = schemas
        for a, b in layout(plan.sizes[start:end], cfg.row_group_size, cfg.row_group_rows):
            frame = gather_frame(plan, np.arange(start + a, start + b), pl_schema)
            writer.write_table(_to_arrow(frame, arrow_schema))
            advance(b - a)
    else:
        for a, b in layout(plan.sizes[start:end], LINE_BATCH_BYTES, 0):
            writer.write_lines(jsonl.lines_to_bytes(gather_lines(plan, np.arange(start + a, start + b))))
            advance(b - a)


def _to_arrow(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    table = frame.to_arrow()
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, KeyError) as exc:
        raise ReorderError(f"rows do not fit the output Parquet schema: {exc}") from None
