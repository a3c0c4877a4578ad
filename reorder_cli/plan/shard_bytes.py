"""``shard_size`` is the size of a shard file on disk: the plan cuts by uncompressed row sizes, so
it needs the ratio of compressed output bytes to those sizes.

The ratio is measured once, at plan time, on a fixed sample: the first rows (about
``SAMPLE_BYTES``) of up to ``SAMPLE_FILES`` inputs spread evenly over the input list, encoded as
the output will be (format and zstd level) in memory. It depends on the input bytes and the
config only, never on timing or worker count, so the same inputs and config give the same cut
points. Shards then land within about ±15% of ``shard_size`` where the sample is typical of the
data (the README's "Output" says so).
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from reorder_cli.config import RunConfig
from reorder_cli.formats import parquet_stitch
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.writers import COMPRESSION
from reorder_cli.util import store

SAMPLE_BYTES = 4 << 20  # uncompressed bytes sampled a file
SAMPLE_FILES = 3


def for_layout(cfg: RunConfig, files: list[InputFile]) -> RunConfig:
    """``cfg`` with ``layout_bytes`` set: the uncompressed bytes a shard is cut at so that its file
    comes out at about ``shard_size`` bytes."""
    if not cfg.shard_size or not files:
        return cfg
    with store.reading("sample"):  # whole row groups of up to SAMPLE_FILES Parquet inputs, on a store too
        ratio = compression_ratio(files, cfg.format, cfg.compression_level, (cfg.row_group_size, cfg.row_group_rows))
    return replace(cfg, layout_bytes=max(1, round(cfg.shard_size / ratio)))


def compression_ratio(files: list[InputFile], fmt: str, level: int,
                      row_groups: tuple[int, int] = (64 << 20, 100_000)) -> float:
    """Output bytes over the plan's uncompressed row sizes, on the sample; 1.0 when nothing to sample.
    Parquet samples are cut into row groups as the output will be (``row_groups``: the config's
    ``row_group_size`` bytes and ``row_group_rows``): small row groups compress less."""
    if all(f.format == "jsonl" for f in files) and COMPRESSION[fmt] is None:
        return 1.0  # lines are copied as they are: the sizes are the bytes
    picks = sorted({int(i) for i in np.linspace(0, len(files) - 1, min(SAMPLE_FILES, len(files)))})

    def measured(i: int) -> tuple[int, int] | None:
        sample = _sample(files[i])
        if sample is None:
            return None
        table, lines, size_units = sample
        try:
            rows = _group_rows(table, lines, size_units, row_groups)
            return _encoded_size(table, lines, fmt, level, rows), size_units
        except Exception:  # noqa: BLE001 - an estimate never fails a run: the rewrite reports bad rows
            return None

    # the samples are read and encoded on the encoding threads (pyarrow and zstd release the GIL); the
    # sums are taken in the files' order, so the ratio is the one a loop over them gives
    encoded = units = 0
    for got in parquet_stitch.pool().map(measured, picks):
        if got is not None:
            encoded, units = encoded + got[0], units + got[1]
    return encoded / units if units and encoded else 1.0


def _sample(inp: InputFile) -> tuple[pa.Table | None, bytes | None, int] | None:
    """(rows as a table, or as JSON lines; their size in the plan's units) from the head of ``inp``."""
    try:
        if inp.format == "parquet":
            pf = pq.ParquetFile(store.source(inp.path))
            if pf.metadata.num_row_groups == 0 or pf.metadata.row_group(0).num_rows == 0:
                return None
            group = pf.metadata.row_group(0)
            per_row = max(1, group.total_byte_size // max(1, group.num_rows))
            rows = max(1, min(group.num_rows, SAMPLE_BYTES // per_row))
            table = next(pf.iter_batches(batch_size=rows, row_groups=[0], use_threads=False))
            return pa.Table.from_batches([table]), None, per_row * table.num_rows
        stream = store.input_stream(inp.path, compression=inp.compression)
        try:
            head = stream.read(SAMPLE_BYTES)
        finally:
            stream.close()
        cut = head.rfind(b"\n") + 1
        head = head[:cut] if cut else head
        head = b"\n".join(line for line in head.split(b"\n") if line.strip()) + b"\n"  # rows, not blank lines
        return (None, head, len(head)) if head.strip() else None
    except (OSError, pa.ArrowException, StopIteration):
        return None  # unreadable here: the keys pass reports it with the file and row


def _group_rows(table: pa.Table | None, lines: bytes | None, units: int, row_groups: tuple[int, int]) -> int:
    """Rows a Parquet row group of the output holds, at the sample's mean row size."""
    rows = table.num_rows if table is not None else lines.count(b"\n")
    group_bytes, group_rows = row_groups
    per_row = max(1.0, units / max(1, rows))
    return max(1, min(group_rows or rows, int(group_bytes // per_row) if group_bytes else rows))


def _encoded_size(table: pa.Table | None, lines: bytes | None, fmt: str, level: int, group_rows: int) -> int:
    if fmt == "parquet":
        if table is None:
            table = pl.read_ndjson(io.BytesIO(lines)).to_arrow()
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd", compression_level=level, row_group_size=group_rows)
        return sink.tell()
    if lines is None:
        lines = pl.from_arrow(table).write_ndjson().encode("utf-8")
    if COMPRESSION[fmt] is None:
        return len(lines)
    return len(zstandard.ZstdCompressor(level=level).compress(lines))
