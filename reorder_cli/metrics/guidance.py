"""Metrics for the paper's four guidances, from the scores in output order.

Pure, vectorised functions. Rows whose score is NaN (invalid rows kept first or last)
are ignored: the metrics describe the sequence of valid scores in output order. The
scores are read in bounded chunks, so a large array (or a memory map) is never copied
whole; everything else works on one value a window of ``window`` rows.

Every metric is scale-free: scores are measured against the global mean ``mu`` and in
units of the global standard deviation ``sigma`` (population, ddof=0). When all valid
scores are equal (``sigma == 0``, a single row included) or there is no valid score,
the ratios are undefined and reported as ``None``; counts are then 0. The formulas are
in the README ("Metrics").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.metrics.defaults import BOUNDARY_PCT, WINDOW
from reorder_cli.metrics.summary import rounded
from reorder_cli.util.npy import CHUNK_ROWS

NOISE_FLOOR = 5.0  # rises and falls smaller than this many standard errors of a bin mean are noise


@dataclass(frozen=True)
class Params:
    window: int = WINDOW  # rows in a window (about a batch)
    boundary_pct: float = BOUNDARY_PCT  # the first and the last k percent of positions
    cycle_threshold: float = 0.25  # a rise or fall counts when it exceeds this many sigma (and the noise floor)
    bins: int = 200  # at most this many bins (of whole windows) in the smoothed profile

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ReorderError(f"--window must be >= 1 row, got {self.window}")
        if not 0 < self.boundary_pct <= 50:
            raise ReorderError(f"--boundary-pct must be in (0, 50], got {self.boundary_pct:g}")
        if self.cycle_threshold <= 0 or self.bins < 1:
            raise ReorderError("cycle_threshold must be > 0 and bins >= 1")


def _chunks(scores, chunk_rows: int):
    """The valid scores in order, a bounded chunk at a time."""
    for start in range(0, len(scores), chunk_rows):  # a loop over chunks, never over rows
        chunk = np.asarray(scores[start : start + chunk_rows], dtype=np.float64)
        yield chunk[~np.isnan(chunk)]


def _count_and_range(scores, chunk_rows: int) -> tuple[int, float, float]:
    n, lo, hi = 0, np.inf, -np.inf
    for v in _chunks(scores, chunk_rows):
        if len(v):
            n, lo, hi = n + len(v), min(lo, float(v.min())), max(hi, float(v.max()))
    return n, lo, hi


@dataclass
class _Pass:
    """What one streaming pass collects: window statistics and a few position ranges."""

    counts: list[np.ndarray]
    sums: list[np.ndarray]
    m2s: list[np.ndarray]  # sum of squared deviations from the window mean
    head_sum: float = 0.0
    tail_sum: float = 0.0
    quarter_lo: np.ndarray | None = None
    quarter_hi: np.ndarray | None = None


def _windows(v: np.ndarray, window: int, acc: _Pass) -> None:
    if len(v) == 0:
        return
    full = len(v) // window
    groups = [v[: full * window].reshape(full, window)] if full else []
    if len(v) > full * window:
        groups.append(v[full * window :].reshape(1, -1))
    for g in groups:
        sums = g.sum(axis=1)
        means = sums / g.shape[1]
        acc.counts.append(np.full(len(g), g.shape[1], dtype=np.int64))
        acc.sums.append(sums)
        acc.m2s.append(((g - means[:, None]) ** 2).sum(axis=1))


def _ranges(v: np.ndarray, offset: int, n: int, head: int, acc: _Pass) -> None:
    """Head/tail sums and per-quarter min/max for the valid rows [offset, offset+len(v))."""
    end = offset + len(v)
    acc.head_sum += float(v[: max(0, head - offset)].sum())
    acc.tail_sum += float(v[max(0, n - head - offset) :].sum())
    edges = (np.arange(5) * n) // 4
    for q in range(4):  # four quarters
        a, b = max(edges[q], offset) - offset, min(edges[q + 1], end) - offset
        if b > a:
            acc.quarter_lo[q] = min(acc.quarter_lo[q], v[a:b].min())
            acc.quarter_hi[q] = max(acc.quarter_hi[q], v[a:b].max())


def _turns(profile: np.ndarray, threshold: float) -> tuple[int, int]:
    """(rises, falls) of a profile: moves of more than ``threshold`` against the last
    counted direction, measured from the extreme reached since (hysteresis)."""
    rises = falls = 0
    direction = 0
    lo = hi = float(profile[0]) if len(profile) else 0.0
    for x in profile[1:].tolist():  # a loop over at most `bins` bins, never over rows
        if direction != 1 and x - lo > threshold:
            rises, direction, hi = rises + 1, 1, x
        elif direction != -1 and hi - x > threshold:
            falls, direction, lo = falls + 1, -1, x
        hi, lo = max(hi, x), min(lo, x)
    return rises, falls


def compute(scores, params: Params | None = None, chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """The guidance metrics of ``scores`` (any float array-like, output order, NaN ignored)."""
    params = params or Params()
    n, lo, hi = _count_and_range(scores, chunk_rows)
    head = max(1, int(n * params.boundary_pct / 100)) if n else 0
    acc = _Pass([], [], [], quarter_lo=np.full(4, np.inf), quarter_hi=np.full(4, -np.inf))
    carry = np.empty(0)
    offset = 0
    for v in _chunks(scores, chunk_rows):
        _ranges(v, offset, n, head, acc)
        offset += len(v)
        v = np.concatenate([carry, v]) if len(carry) else v
        cut = len(v) - len(v) % params.window
        _windows(v[:cut], params.window, acc)
        carry = v[cut:]
    _windows(carry, params.window, acc)

    result: dict[str, Any] = {
        "params": asdict(params),
        "rows": n,
        "std": None,
        "boundary": {"start": None, "end": None},
        "cycles": {"rises": 0, "falls": 0, "quarter_range": [None] * 4},
        "continuity": {"max_jump": None, "mean_jump": None},
        "local_diversity": None,
    }
    if n == 0 or hi == lo:  # no valid score, or all equal: sigma is 0, the ratios are undefined
        result["std"] = 0.0 if n else None
        return result

    counts, sums, m2s = (np.concatenate(a) for a in (acc.counts, acc.sums, acc.m2s))
    mu = float(sums.sum()) / n
    means = sums / counts
    sigma = float(np.sqrt((m2s.sum() + (counts * (means - mu) ** 2).sum()) / n))
    jumps = np.abs(np.diff(means)) / sigma

    windows = len(counts)
    nbins = max(1, min(params.bins, windows))
    group = (np.arange(nbins, dtype=np.int64) * windows) // nbins
    profile = np.add.reduceat(sums, group) / np.add.reduceat(counts, group)
    # A move must also clear the noise of a random order's bin means (sigma / sqrt(rows a bin)).
    threshold = max(params.cycle_threshold, NOISE_FLOOR / np.sqrt(n / nbins)) * sigma
    rises, falls = _turns(profile, threshold)
    with np.errstate(invalid="ignore"):
        quarters = (acc.quarter_hi - acc.quarter_lo) / (hi - lo)

    result.update({
        "std": rounded(sigma),
        "boundary": {"start": rounded((acc.head_sum / head - mu) / sigma),
                     "end": rounded((acc.tail_sum / head - mu) / sigma)},
        "cycles": {"rises": rises, "falls": falls, "quarter_range": [rounded(q) for q in quarters]},
        "continuity": {"max_jump": rounded(jumps.max()) if len(jumps) else None,
                       "mean_jump": rounded(jumps.mean()) if len(jumps) else None},
        "local_diversity": rounded(float((counts * np.sqrt(m2s / counts)).sum()) / (n * sigma)),
    })
    return result
