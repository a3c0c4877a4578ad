"""Score summaries: min / mean / max of the valid scores, and the score-by-position profile.

:class:`ScoreStats` is the one accumulator: the manifest summarises shards and the whole order
with it, ``verify`` re-reads shards block by block into it, and ``stats --deep`` recomputes
with it. Scores may be an array on disk of any size: they are read a chunk at a time.
"""

from __future__ import annotations

import math
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
        valid = scores[~np.isnan(scores)]
        if len(valid):
            self.count += len(valid)
            self.total += float(valid.sum())
            self.lo = min(self.lo, float(valid.min()))
            self.hi = max(self.hi, float(valid.max()))
        return self

    def merge(self, other: ScoreStats) -> None:
        self.count += other.count
        self.total += other.total
        self.lo, self.hi = min(self.lo, other.lo), max(self.hi, other.hi)

    @classmethod
    def of(cls, scores: Any, start: int = 0, end: int | None = None) -> ScoreStats:
        """The stats of ``scores[start:end]``, read ``CHUNK_ROWS`` at a time."""
        end = len(scores) if end is None else end
        stats = cls()
        for a in range(start, end, CHUNK_ROWS):  # a loop over chunks
            stats.add(np.asarray(scores[a : min(end, a + CHUNK_ROWS)]))
        return stats

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


def score_summary(scores: Any) -> dict[str, float | None]:
    """The manifest's {"min", "mean", "max"} of ``scores``."""
    return ScoreStats.of(scores).recorded()


def profile(scores: Any, bins: int = PROFILE_BINS) -> dict[str, Any]:
    """Score by output position in ``bins`` equal slices: mean, min and max of each."""
    n = len(scores)
    bins = max(1, min(bins, n))
    edges = (np.arange(bins + 1, dtype=np.int64) * n) // bins
    parts = [ScoreStats.of(scores, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return {
        "bins": int(bins),
        "edges": edges.tolist(),
        "mean": [rounded(p.mean) for p in parts],
        "min": [rounded(p.lo) if p.count else None for p in parts],
        "max": [rounded(p.hi) if p.count else None for p in parts],
    }


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
