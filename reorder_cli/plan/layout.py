"""Cutting the order into pieces: shards, and the write batches of a shard (row groups, line blocks).

Every cut is a function of the rows' estimated sizes and the config alone, so the same inputs and
config give the same pieces whatever the path, the budget or the worker count.
"""

from __future__ import annotations

import numpy as np

from reorder_cli.config import RunConfig

#: A JSONL write batch: about this many bytes of records.
LINE_BATCH_BYTES = 4 << 20


def layout(sizes: np.ndarray, max_bytes: int, max_rows: int, ends: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Cut positions 0..n into consecutive pieces of at most ``max_bytes`` (estimated) and
    ``max_rows`` rows; every piece holds at least one row. 0 means "no limit".

    ``ends``: the running total of ``sizes``, when it is already at hand (the place tasks' pieces:
    :class:`reorder_cli.util.chunked.Ends`)."""
    if len(sizes) == 0:
        return []
    return layout_between(np.cumsum(sizes, dtype=np.int64) if ends is None else ends, 0, len(sizes),
                          max_bytes, max_rows)


def layout_between(ends: np.ndarray, start: int, stop: int, max_bytes: int, max_rows: int) -> list[tuple[int, int]]:
    """:func:`layout` of positions [start, stop), given the running total ``ends`` of all sizes (an array,
    or a view with its ``searchsorted``: a binary search a piece, never a pass over the sizes)."""
    pieces = []
    while start < stop:  # a loop over pieces, never over rows
        end = stop
        if max_bytes:
            base = ends[start - 1] if start else 0
            end = min(end, int(ends.searchsorted(base + max_bytes, side="right")))
        if max_rows:
            end = min(end, start + max_rows)
        end = max(end, start + 1)
        pieces.append((start, end))
        start = end
    return pieces


def batch_limits(cfg: RunConfig) -> tuple[int, int]:
    """(bytes, rows) of one write batch: a Parquet row group, or a few MB of JSONL."""
    return (cfg.row_group_size, cfg.row_group_rows) if cfg.format == "parquet" else (LINE_BATCH_BYTES, 0)


def shard_batches(sizes: np.ndarray, start: int, end: int, cfg: RunConfig,
                  ends: np.ndarray | None = None) -> list[tuple[int, int]]:
    """The write batches of the shard [start, end), as absolute positions (the same whether
    the running total of all sizes, ``ends``, is given or not)."""
    if ends is not None:
        return layout_between(ends, start, end, *batch_limits(cfg))
    return [(start + a, start + b) for a, b in layout(np.asarray(sizes[start:end]), *batch_limits(cfg))]


def valid_prefix(shards: list[tuple[int, int]], rows: int, invalid_kept: int, invalid_first: bool) -> list[int]:
    """The valid (non-NaN) scores before each shard, and in all (``len(shards) + 1`` counts), of an order whose
    ``invalid_kept`` invalid rows are its first positions (``invalid_first``) or its last: arithmetic, no
    score read."""
    starts = np.asarray([a for a, _ in shards] + [rows], dtype=np.int64)
    valid = starts - np.minimum(starts, invalid_kept) if invalid_first else np.minimum(starts, rows - invalid_kept)
    return [int(v) for v in valid]


def counted_prefix(scores: np.ndarray, shards: list[tuple[int, int]]) -> list[int]:
    """:func:`valid_prefix` counted from the scores (in memory) of an order whose invalid rows may be anywhere
    (a mixture's: each source keeps its own first or last, and the interleave scatters them)."""
    valid = np.concatenate([[0], np.cumsum(~np.isnan(scores), dtype=np.int64)])
    return [int(valid[a]) for a, _ in shards] + [int(valid[-1])]
