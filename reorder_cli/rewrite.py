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

LINE_BATCH_BYTES = 8 << 20


class Payload:
    """Every input row, addressable by its global input index, for the gathers.

    For a Parquet output the inputs are read into one frame and a row group is one
    ``gather``. For a JSONL output, each batch takes its records from the memory-mapped
    inputs (file by file, then back into output order), so memory stays at about a
    batch whatever the size of the data.
    """

    def __init__(self, plan: Plan, fmt: str, pl_schema: pl.Schema | None):
        self.plan = plan
        sources = plan.sources
        if fmt == "parquet":
            if all(isinstance(s, parquet.ParquetSource) for s in sources):
                self.frame = _read_parquet([s.inp.path for s in sources])
            else:
                self.frame = pl.concat([s.frame(pl_schema) for s in sources], how="vertical", rechunk=False)
        else:
            ends = [(plan.row_starts[i] + r) for i, s in enumerate(sources) if (r := s.unterminated_row()) is not None]
            self.unterminated = np.array(ends, dtype=np.int64)

    def frame_at(self, positions: np.ndarray) -> pl.DataFrame:
        return self.frame[self.plan.order[positions]]

    def bytes_at(self, positions: np.ndarray):
        """The JSONL bytes of the rows at ``positions``, each record ending with '\\n'."""
        plan = self.plan
        rows = plan.order[positions]
        files = np.searchsorted(plan.row_starts, rows, side="right") - 1
        local = rows - plan.row_starts[files]
        by_file = np.argsort(files, kind="stable")
        cuts = np.flatnonzero(np.diff(files[by_file])) + 1
        parts = [
            plan.sources[int(files[sel[0]])].take_lines(local[sel]) for sel in np.split(by_file, cuts) if len(sel)
        ]
        lines = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        if len(parts) > 1:
            back = np.empty(len(by_file), dtype=np.int64)
            back[by_file] = np.arange(len(by_file))
            lines = lines.take(pa.array(back))
        data = jsonl.lines_to_bytes(lines)
        if len(self.unterminated):
            data = _add_newlines(data, lines, np.flatnonzero(np.isin(rows, self.unterminated)))
        return data


def _read_parquet(paths: list[Path]) -> pl.DataFrame:
    try:
        return pl.read_parquet(paths)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ReorderError(f"cannot read the Parquet inputs: {str(exc).splitlines()[0]}") from None


def _add_newlines(data, lines: pa.LargeBinaryArray, where: np.ndarray):
    """Insert '\\n' after the records at batch indices ``where`` (files' unterminated last lines)."""
    if len(where) == 0:
        return data
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    ends = offsets[where + 1] - offsets[0]
    view, pieces, prev = memoryview(data), [], 0
    for end in ends.tolist():  # at most one a file
        pieces += [view[prev:end], b"\n"]
        prev = end
    pieces.append(view[prev:])
    return b"".join(pieces)


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
    pl_schema = pl.from_arrow(schema.empty_table()).schema
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
        first_line = str(exc).splitlines()[0]
        raise ReorderError(f"cannot infer one Parquet schema from the JSONL inputs: {first_line}") from None


# ------------------------------------------------------------------ writing


def write_shards(plan: Plan, cfg: RunConfig, folder: Path, advance: Callable[[int], None]) -> list[dict]:
    """Write every shard into ``folder``; returns one record a shard, in order."""
    arrow_schema, pl_schema = output_schema(plan) if cfg.format == "parquet" else (None, None)
    payload = Payload(plan, cfg.format, pl_schema)

    if cfg.format == "parquet":
        limits = (cfg.row_group_size, cfg.row_group_rows)  # a batch is a row group

        def prepare(positions: np.ndarray) -> pa.Table:
            return _to_arrow(payload.frame_at(positions), arrow_schema)
    else:
        limits, prepare = (LINE_BATCH_BYTES, 0), payload.bytes_at

    def one(index: int) -> dict:
        start, end = plan.shards[index]
        writer = ShardWriter(folder / shard_name(index, cfg.format), cfg.format, cfg.compression_level, arrow_schema)
        put = writer.write_table if cfg.format == "parquet" else writer.write_lines
        batches = [np.arange(start + a, start + b) for a, b in layout(plan.sizes[start:end], *limits)]
        try:
            for positions, item in _prefetched(batches, prepare):
                put(item)
                advance(len(positions))
            size, sha = writer.finish()
        except BaseException:
            writer.abort()
            raise
        return {"index": index, "file": writer.path.name, "rows": end - start, "bytes": size, "sha256": sha,
                "first": start, "compression": COMPRESSION[cfg.format]}

    with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
        return list(pool.map(one, range(len(plan.shards))))


def _prefetched(groups: list, prepare: Callable):
    """Yield (group, prepare(group)) in order, preparing the next group while the caller
    writes the current one (gathering overlaps encoding and compression)."""
    with ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(prepare, groups[0]) if groups else None
        for i, group in enumerate(groups):
            result = pending.result()
            pending = ahead.submit(prepare, groups[i + 1]) if i + 1 < len(groups) else None
            yield group, result


def _to_arrow(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    table = frame.to_arrow()
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, KeyError) as exc:
        raise ReorderError(f"rows do not fit the output Parquet schema: {exc}") from None
