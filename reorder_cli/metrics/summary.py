"""Score summaries: min / mean / max of the valid scores, and the score-by-position profile.

:class:`ScoreStats` is the one accumulator of min / mean / max: fed chunk by chunk, in the fixed chunks
of :mod:`reorder_cli.metrics.partial` (the manifest, ``stats --deep``) or of :class:`ChunkedStats`
(``verify``, reading shard files back), so every one of them adds the same sums in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reorder_cli.util.npy import CHUNK_ROWS

PROFILE_BINS = 200


def rounded(x: float | None, digits: int = 6) -> float | None:
    """``x`` as the manifest records it: 6 decimals, None for a missing or non-finite value."""
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


@dataclass
class ScoreStats:
    """min / mean / max of the valid scores, accumulated block by block."""

    count: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, scores: np.ndarray) -> ScoreStats:
        self.add_valid(scores[~np.isnan(scores)])
        return self

    def add_valid(self, valid: np.ndarray) -> float:
        """Add scores that are all valid; returns their sum (as added to ``total``)."""
        total = float(valid.sum()) if len(valid) else 0.0
        if len(valid):
            self.count += len(valid)
            self.total += total
            self.lo = min(self.lo, float(valid.min()))
            self.hi = max(self.hi, float(valid.max()))
        return total

    def merge(self, other: ScoreStats) -> None:
        self.count += other.count
        self.total += other.total
        self.lo, self.hi = min(self.lo, other.lo), max(self.hi, other.hi)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def summary(self) -> dict[str, float | None]:
        """{"min", "mean", "max"}; None for each when no score is valid."""
        if not self.count:
            return {"min": None, "mean": None, "max": None}
        return {"min": self.lo, "mean": self.mean, "max": self.hi}

    def recorded(self) -> dict[str, float | None]:
        """:meth:`summary` as the manifest records it (rounded)."""
        return {k: rounded(v) for k, v in self.summary().items()}


def token_profile(scores: np.ndarray, lengths: np.ndarray, bins: int = PROFILE_BINS) -> dict[str, Any]:
    """Score by training token in ``bins`` equal slices of the token stream (``lengths``: tokens of each
    document, in order): in each slice, the mean weighted by the tokens each document has in it, and the
    min and max of the documents with tokens in it. A long document weighs in every slice it spans."""
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    bins = max(1, min(bins, total))
    edges = (np.arange(bins + 1, dtype=np.int64) * total) // bins
    ends = np.cumsum(lengths)
    starts = ends - lengths
    valid = ~np.isnan(scores) & (lengths > 0)
    # the score mass and the valid tokens before each edge: whole documents before it, plus the part of the
    # document it falls in (a piecewise-linear running sum, read at the edges)
    mass = np.r_[0.0, np.cumsum(np.where(valid, scores * lengths, 0.0))]
    weight = np.r_[0, np.cumsum(np.where(valid, lengths, 0))]
    doc = np.minimum(np.searchsorted(ends, edges, side="right"), len(lengths) - 1)  # the document holding each edge
    into = np.clip(edges - starts[doc], 0, lengths[doc])
    at_mass = mass[doc] + np.where(valid[doc], scores[doc] * into, 0.0)
    at_weight = weight[doc] + np.where(valid[doc], into, 0)
    sums, counts = np.diff(at_mass), np.diff(at_weight)
    # min and max over the documents overlapping each slice: [first, last) by index, reduced at once
    first = np.searchsorted(ends, edges[:-1], side="right")
    last = np.searchsorted(starts, edges[1:], side="left")
    bounded = np.where(valid, scores, np.nan)
    padded = np.r_[bounded, np.nan]  # reduceat needs every index inside the array
    pairs = np.ravel(np.column_stack([first, last]))
    lo, hi = np.fmin.reduceat(padded, pairs)[::2], np.fmax.reduceat(padded, pairs)[::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return {
        "bins": int(bins),
        "edges": edges.tolist(),
        "mean": [rounded(m) for m in means],
        "min": [rounded(v) for v in lo],
        "max": [rounded(v) for v in hi],
    }


class Rechunker:
    """Blocks of any size in, chunks of exactly ``chunk_rows`` out (the last one shorter), to ``on_chunk``:
    what is computed a chunk at a time then does not depend on how the values arrived."""

    def __init__(self, on_chunk: Callable[[np.ndarray], None], chunk_rows: int = CHUNK_ROWS):
        self.on_chunk, self.chunk_rows = on_chunk, chunk_rows
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0

    def add(self, block: Any) -> None:
        block = np.asarray(block, dtype=np.float64)
        while len(block):  # a loop over chunks
            take = min(len(block), self.chunk_rows - self.pending_rows)
            self.pending.append(block[:take])
            self.pending_rows += take
            block = block[take:]
            if self.pending_rows == self.chunk_rows:
                self.flush()

    def flush(self) -> None:
        """Pass on what is pending (the last, short chunk)."""
        if self.pending_rows:
            chunk = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
            self.pending, self.pending_rows = [], 0
            self.on_chunk(chunk)


class ChunkedStats:
    """:class:`ScoreStats` of a piece's scores that arrive in blocks of any size, added in chunks of
    ``chunk_rows`` from the piece's first row (as :class:`reorder_cli.metrics.partial.PartialBuilder` adds
    them), so the sums are the manifest's to the last bit."""

    def __init__(self, chunk_rows: int = CHUNK_ROWS):
        self.stats = ScoreStats()
        self.chunks = Rechunker(self.stats.add, chunk_rows)

    def add(self, block: Any) -> None:
        self.chunks.add(block)

    def finish(self) -> ScoreStats:
        self.chunks.flush()
        return self.stats
