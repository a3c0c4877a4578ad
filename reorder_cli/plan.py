"""The keys pass: scores of every row -> the output order -> the shard layout.

Reads only scores (and line offsets for JSONL); never the documents. The result says,
for every output position, which input row goes there, and where shards begin and end.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import RunConfig
from .errors import ReorderError
from .orderings import order_rows
from .shards import jsonl, parquet
from .shards.discover import InputFile


@dataclass
class Plan:
    files: list[InputFile]
    sources: list  # one JsonlSource / ParquetSource per input file
    row_starts: np.ndarray  # int64, len(files)+1: global index of each file's first row
    order: np.ndarray  # int64 global input index at each output position
    scores: np.ndarray  # float64 score at each output position (NaN for invalid rows kept)
    sizes: np.ndarray  # int64 estimated uncompressed bytes at each output position
    shards: list[tuple[int, int]]  # [start, end) output positions of each shard
    invalid_count: int
    invalid_samples: list[dict]  # {"file", "where", "value"}
    dropped: int

    @property
    def rows(self) -> int:
        return len(self.order)

    @property
    def input_rows(self) -> int:
        return int(self.row_starts[-1])

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(file index, row within file) of the rows at these output positions."""
        rows = self.order[positions]
        file_index = np.searchsorted(self.row_starts, rows, side="right") - 1
        return file_index, rows - self.row_starts[file_index]


def read_keys(files: list[InputFile], cfg: RunConfig, spill_dir: Path, advance: Callable[[int], None]) -> list:
    """Scan every input for its keys, ``cfg.workers`` files at a time; returns one source a file."""
    fail = cfg.invalid_scores == "error"

    def one(item: tuple[int, InputFile]):
        i, inp = item
        if inp.format == "parquet":
            return parquet.ParquetSource(inp, parquet.scan(inp, cfg.score_field, fail, advance))
        spill = spill_dir / f"input-{i:05d}.jsonl" if inp.compression else None
        if spill is not None:
            spill_dir.mkdir(parents=True, exist_ok=True)
        return jsonl.JsonlSource(jsonl.scan(inp, cfg.score_field, fail, spill, advance))

    with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
        return list(pool.map(one, enumerate(files)))


def _row_sizes(source) -> np.ndarray:
    keys = source.keys
    return keys.row_sizes() if isinstance(source, jsonl.JsonlSource) else keys.sizes


def layout(sizes: np.ndarray, max_bytes: int, max_rows: int) -> list[tuple[int, int]]:
    """Cut positions 0..n into consecutive pieces of at most ``max_bytes`` (estimated) and
    ``max_rows`` rows; every piece holds at least one row. 0 means "no limit"."""
    n = len(sizes)
    if n == 0:
        return []
    ends = np.cumsum(sizes, dtype=np.int64)
    pieces, start = [], 0
    while start < n:  # a loop over pieces, never over rows
        end = n
        if max_bytes:
            base = ends[start - 1] if start else 0
            end = min(end, int(np.searchsorted(ends, base + max_bytes, side="right")))
        if max_rows:
            end = min(end, start + max_rows)
        end = max(end, start + 1)
        pieces.append((start, end))
        start = end
    return pieces


def build(files: list[InputFile], sources: list, cfg: RunConfig) -> Plan:
    counts = np.array([s.rows for s in sources], dtype=np.int64)
    row_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if row_starts[-1] == 0:
        raise ReorderError("the inputs hold no rows (" + ", ".join(str(f.path) for f in files[:3]) + ")")
    scores = np.concatenate([s.keys.scores for s in sources])
    sizes = np.concatenate([_row_sizes(s) for s in sources])
    valid = ~np.isnan(scores)
    valid_rows = np.flatnonzero(valid)
    order = valid_rows[order_rows(cfg.method, scores[valid_rows], cfg.params)]
    invalid_rows = np.flatnonzero(~valid)
    dropped = 0
    if len(invalid_rows):
        if cfg.invalid_scores == "first":
            order = np.concatenate([invalid_rows, order])
        elif cfg.invalid_scores == "last":
            order = np.concatenate([order, invalid_rows])
        else:
            dropped = len(invalid_rows)
    if len(order) == 0:
        raise ReorderError("no row has a valid score; nothing to write (see invalid_scores)")
    samples = [
        {"file": str(files[i].path), "where": where, "value": what}
        for i, s in enumerate(sources)
        for where, what in s.keys.invalid
    ][:20]
    out_sizes = sizes[order]
    return Plan(
        files=files,
        sources=sources,
        row_starts=row_starts,
        order=order.astype(np.int64),
        scores=scores[order],
        sizes=out_sizes,
        shards=layout(out_sizes, cfg.shard_size, cfg.shard_rows),
        invalid_count=int(len(invalid_rows)),
        invalid_samples=samples,
        dropped=dropped,
    )
