"""The shards of an output, read by position, as a stream.

Positions map to (shard, row) through the manifest's positions (cumulative rows). Parquet is
read one row group at a time (only the requested columns), JSONL and JSONL.zst one block of
about 8 MiB of lines at a time, so memory is bounded by a row group or a block, never a shard.
Every shard is checked against the manifest when the source is opened: present, the size the
manifest records, the Parquet footer's row count, and the sha256 when asked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from reorder_cli.errors import ReorderError
from reorder_cli.formats.jsonl import stream_blocks
from reorder_cli.publish import manifest
from reorder_cli.util.hashing import file_sha256

PYLIST_ROWS = 1024  # rows turned into Python dicts at once
Select = Callable[[int, int], np.ndarray]  # (lo, hi) -> sorted positions wanted in [lo, hi)


@dataclass
class Shard:
    path: Path
    format: str  # parquet, jsonl, jsonl.zst
    first: int  # position of its first row
    rows: int
    groups: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))  # Parquet row group starts + rows

    @property
    def end(self) -> int:
        return self.first + self.rows


def _problem(path: Path, what: str) -> ReorderError:
    return ReorderError(f"{path}: {what}; the output changed since it was written (reorder verify tells more)")


class Source:
    """The shards of the output at ``path`` (a folder or its manifest), checked against the manifest."""

    def __init__(self, path: str | Path, columns: list[str] | None = None, check_sha256: bool = False):
        doc, folder = manifest.read(Path(path))
        self.manifest = doc
        self.folder = folder
        self.columns = list(columns) if columns is not None else None
        self.shards: list[Shard] = []
        at = 0
        for i, e in enumerate(doc.shards):  # their shape checked by manifest.read
            file, fmt, rows, size, first, end = e.file, e.format, e.rows, e.bytes, e.first, e.end
            if first != at or end - first != rows:
                raise ReorderError(f"{manifest.find(folder)}: shard {i} ({file}) positions {[first, end]} do not "
                                   f"continue from {at} with {rows} rows")
            p = folder / file
            if not p.is_file():
                raise ReorderError(f"{p}: missing: the manifest lists this shard but there is no such file")
            if p.stat().st_size != size:
                raise _problem(p, f"size {p.stat().st_size:,} bytes, the manifest says {size:,}")
            if check_sha256 and file_sha256(p) != e.sha256:
                raise _problem(p, "sha256 differs from the manifest's")
            shard = Shard(p, fmt, first, rows)
            if fmt == "parquet":
                shard.groups = self._row_groups(p, rows)
            self.shards.append(shard)
            at = end
        self.rows = at
        self.starts = np.array([s.first for s in self.shards] + [at], dtype=np.int64)

    def _row_groups(self, path: Path, rows: int) -> np.ndarray:
        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, pa.ArrowException) as exc:
            raise _problem(path, f"not readable as Parquet ({str(exc).splitlines()[0]})") from None
        if meta.num_rows != rows:
            raise _problem(path, f"{meta.num_rows:,} rows, the manifest says {rows:,}")
        if self.columns is not None:
            names = set(meta.schema.to_arrow_schema().names)
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise ReorderError(f"{path}: no column {missing[0]!r} (columns: {', '.join(sorted(names))})")
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)

    # ------------------------------------------------------------------ streaming

    def batches(self, select: Select) -> Iterator[list[dict]]:
        """Rows at the positions ``select`` picks, in position order, a row group or block at a time."""
        for shard in self.shards:
            if not len(select(shard.first, shard.end)):
                continue
            if shard.format == "parquet":
                yield from self._parquet(shard, select)
            else:
                yield from self._jsonl(shard, select)

    def _parquet(self, shard: Shard, select: Select) -> Iterator[list[dict]]:
        with pq.ParquetFile(shard.path) as pf:
            for g in range(len(shard.groups) - 1):
                a, b = shard.first + int(shard.groups[g]), shard.first + int(shard.groups[g + 1])
                want = select(a, b)
                if len(want):
                    table = pf.read_row_group(g, columns=self.columns)
                    if len(want) < b - a:
                        table = table.take(pa.array(want - a))
                    for i in range(0, table.num_rows, PYLIST_ROWS):  # Python objects for a slice at a time
                        yield table.slice(i, PYLIST_ROWS).to_pylist()
                    del table

    def _jsonl(self, shard: Shard, select: Select) -> Iterator[list[dict]]:
        row = shard.first
        with open(shard.path, "rb") as fh:
            stream = zstandard.ZstdDecompressor().stream_reader(fh) if shard.format == "jsonl.zst" else fh
            for block, _ in stream_blocks(stream.read):
                data = np.frombuffer(block, dtype=np.uint8)
                ends = np.flatnonzero(data == 10) + 1
                if len(ends) == 0 or ends[-1] != len(data):
                    ends = np.append(ends, len(data))
                starts = np.concatenate([[0], ends[:-1]])
                want = select(row, row + len(ends))
                if len(want):
                    local = want - row
                    raw = bytes(block)
                    rows = [json.loads(raw[s:e]) for s, e in zip(starts[local].tolist(), ends[local].tolist(),
                                                                  strict=True)]
                    if self.columns is not None:
                        rows = [{c: r.get(c) for c in self.columns} for r in rows]
                    yield rows
                row += len(ends)
                if row >= shard.end or not len(select(row, shard.end)):
                    break

    # ------------------------------------------------------------------ random access

    def take(self, positions: list[int] | np.ndarray, cache: dict | None = None) -> list[dict]:
        """Rows at any positions, in the order given. ``cache`` keeps the last Parquet row group read,
        so sequential access reads each row group once."""
        pos = np.asarray(positions, dtype=np.int64)
        if len(pos) and (pos.min() < 0 or pos.max() >= self.rows):
            raise IndexError(f"position out of range [0, {self.rows})")
        uniq, inverse = np.unique(pos, return_inverse=True)
        got: list[dict] = []
        cache = {} if cache is None else cache
        for i in np.unique(np.searchsorted(self.starts, uniq, side="right") - 1).tolist():
            shard = self.shards[i]
            mine = uniq[(uniq >= shard.first) & (uniq < shard.end)]
            if shard.format != "parquet":
                got += [r for rows in self._jsonl(shard, _from(mine)) for r in rows]
                continue
            groups = np.searchsorted(shard.groups, mine - shard.first, side="right") - 1
            for g in np.unique(groups).tolist():
                key = (i, g)
                if cache.get("key") != key:
                    with pq.ParquetFile(shard.path) as pf:
                        cache.update(key=key, table=pf.read_row_group(g, columns=self.columns))
                local = mine[groups == g] - shard.first - shard.groups[g]
                got += cache["table"].take(pa.array(local)).to_pylist()
        return [got[j] for j in inverse.tolist()]


def _from(sorted_positions: np.ndarray) -> Select:
    def select(lo: int, hi: int) -> np.ndarray:
        a, b = np.searchsorted(sorted_positions, [lo, hi])
        return sorted_positions[a:b]
    return select
