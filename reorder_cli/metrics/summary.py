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
