"""The ordering methods: pure, vectorised functions from scores to a permutation.

Every public method takes the valid scores (float64, input order) and its resolved
parameters and returns ``order``: an int64 array where ``order[p]`` is the input index
of the row placed at output position ``p``. The semantics are those of
``docs/orderings.md`` (the paper's reference code): stable ties in both directions,
round-half-to-even split points, NumPy-seeded jitter and Gumbel draws.

No function here loops over rows in Python, except the one documented case in
:func:`segment` that must replay Python's ``random.shuffle`` to pick the same members.
"""

from __future__ import annotations

import bisect
import random
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

# ---------------------------------------------------------------- building blocks


def sorted_order(scores: np.ndarray, ascending: bool = True) -> np.ndarray:
    """Input indices stably sorted by score; ties keep input order in both directions."""
    keys = np.asarray(scores, dtype=np.float64)
    return np.argsort(keys if ascending else -keys, kind="stable").astype(np.int64)


def _layers(m: int, layers: int, reverse_odd: bool) -> np.ndarray:
    parts = []
    for layer in range(min(layers, m)):  # a loop over layers, never over rows
        part = np.arange(layer, m, layers, dtype=np.int64)
        parts.append(part[::-1] if reverse_odd and layer % 2 == 1 else part)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def fold(m: int, layers: int) -> np.ndarray:
    """FO-L: every L-th element from offset 0, then from offset 1, ... (positions)."""
    return _layers(m, layers, reverse_odd=False)


def zigzag(m: int, layers: int) -> np.ndarray:
    """ZIG-L: like :func:`fold`, with the layers of odd offset reversed."""
    return _layers(m, layers, reverse_odd=True)


def jitter(m: int, window_size: int, seed: int) -> np.ndarray:
    """JIT-w: shuffle consecutive windows of ``window_size`` positions.

    One ``default_rng(seed)``; windows in order, each permuted as
    ``rng.permutation(len(window))`` would (what the reference's ``rng.shuffle(list)``
    does). ``Generator.permuted(axis=1)`` draws the full windows in exactly that
    order, so only the short last window needs a call of its own.
    """
    positions = np.arange(m, dtype=np.int64)
    if not window_size or window_size <= 1 or m == 0:
        return positions
    rng = np.random.default_rng(seed)
    full = m // window_size  # 0 when the window is longer than the rows: one short window, whatever its size
    head = rng.permuted(positions[: full * window_size].reshape(full, window_size), axis=1).ravel() if full else \
        positions[:0]
    tail = positions[full * window_size :]
    if len(tail):
        tail = tail[rng.permutation(len(tail))]
    return np.concatenate([head, tail])


def gumbel_jitter(m: int, temperature: float, seed: int) -> np.ndarray:
    """Gumbel rank jitter: stable argsort of ``rank + temperature * Gumbel(0, 1)``."""
    rng = np.random.default_rng(seed)
    noisy = np.arange(m, dtype=np.float64) + rng.gumbel(size=m) * temperature
    return np.argsort(noisy, kind="stable").astype(np.int64)


def split_points(n: int, num_sections: int) -> list[int]:
    """The distinct values of ``round(n*s/S)`` for s = 1..S-1, in order: a repeated split point adds no
    region, so at most n + 1 of them are computed, whatever S is. The points never decrease in s, so the
    first s of the next point is a binary search, started around its estimate (k + 1/2)·S/n."""
    out, s, big = [], 1, num_sections

    def point(t: int) -> int:
        return round(n * t / big)

    while s < big:  # a loop over distinct split points, at most n + 1
        k = point(s)
        out.append(k)
        guess = (2 * k + 1) * big // (2 * n) if n else big
        lo, hi = max(s + 1, guess - 4096), min(big, max(s + 1, guess + 4096))
        if lo > s + 1 and point(lo - 1) > k:
            lo = s + 1
        if hi < big and point(hi) <= k:
            hi = big
        s = bisect.bisect_right(range(lo, hi), k, key=point) + lo  # the first s in [lo, hi) past k
    return out


def transition_spans(n: int, num_sections: int, folding_ratio: float) -> list[tuple[int, int]]:
    """The STR/SAW transition regions ``[start, end)`` on ranks 0..n-1, in order, never overlapping.

    Ranks outside every region keep their place; the rest of the cursor walk of docs/orderings.md
    (rows between regions emitted unchanged) follows from that.
    """
    if n == 0 or num_sections == 1 or folding_ratio == 0:
        return []
    splits = split_points(n, num_sections)
    radius = n if folding_ratio >= 1 else round(n * folding_ratio)  # a region never reaches past the rows
    spans, cursor = [], 0
    for split in splits:  # a loop over sections, never over rows
        start, end = max(cursor, split - radius), min(n, split + radius)
        if end > start:
            spans.append((start, end))
        cursor = max(cursor, end)
    return spans


def transition_regions(n: int, num_sections: int, folding_ratio: float, layers: int, zig: bool) -> np.ndarray:
    """STR (``zig=False``) / SAW (``zig=True``) on ranks 0..n-1, before jitter."""
    ranks = np.arange(n, dtype=np.int64)
    transform = zigzag if zig else fold
    for start, end in transition_spans(n, num_sections, folding_ratio):
        ranks[start:end] = start + transform(end - start, layers)
    return ranks


def random_order(m: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform random order of ``m`` items: stable argsort of ``m`` ``rng.random()`` draws.

    Drawn key by key, so the same generator gives the same order whether the keys are drawn
    at once or chunk by chunk (what lets the out-of-core plan reproduce it). Equal keys
    (about m**2 / 2**54 pairs) keep their order.
    """
    return np.argsort(rng.random(m), kind="stable").astype(np.int64)


# ---------------------------------------------------------------- methods


def _then_jitter(order: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    return order[jitter(len(order), p.get("window_size", 0), p["seed"])]


def shuffle(scores: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Random: :func:`random_order` with ``numpy.random.default_rng(seed)``."""
    return random_order(len(scores), np.random.default_rng(p["seed"]))


def sorting(scores: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    order = sorted_order(scores, p["ascending"])
    if p.get("use_gumbel"):
        order = order[gumbel_jitter(len(order), p["temperature"], p["seed"])]
    return _then_jitter(order, p)


def folding(scores: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    order = sorted_order(scores, p["ascending"])
    return _then_jitter(order[fold(len(order), p["folding_layer"])], p)


def zigzagging(scores: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    order = sorted_order(scores, p["ascending"])
    return _then_jitter(order[zigzag(len(order), p["zigzag_layer"])], p)


def _cross(scores: np.ndarray, p: Mapping[str, Any], zig: bool) -> np.ndarray:
    order = sorted_order(scores, p["ascending"])
    ranks = transition_regions(len(order), p["num_sections"], p["folding_ratio"], p["folding_layer"], zig)
    return _then_jitter(order[ranks], p)


def stair(scores: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    return _cross(scores, p, zig=False)


def saw(scores: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    return _cross(scores, p, zig=True)


def segment_sizes(n: int, x_pct: float, y_pct: float) -> tuple[int, int]:
    """Front and back segment sizes, computed with the reference's exact expressions."""
    n_front, n_back = int(n * x_pct // 100), int(n * y_pct // 100)
    if n_front + n_back > n:
        n_front = int(n_front * (n / (n_front + n_back)))
        n_back = n - n_front
        warnings.warn(
            f"x_pct + y_pct exceeds 100; resized to {n_front} front and {n_back} back rows", stacklevel=2
        )
    return n_front, n_back


def segment(scores: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """SEG: front / middle / back segments drawn from the score ends, each shuffled.

    Membership matches the reference. When both segments come from the same end, the
    reference splits that end with Python's ``random.Random(seed).shuffle``; only that
    draw is replayed in Python (about 0.5 us a selected row), everything else uses
    NumPy. Order inside each segment: :func:`random_order` with one ``default_rng(seed)``,
    front, middle and back in turn.
    """
    n = len(scores)
    asc = sorted_order(scores, ascending=True)
    n_front, n_back = segment_sizes(n, p["x_pct"], p["y_pct"])

    def take(seq: np.ndarray, k: int, high: bool) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0:
            return seq[:0], seq
        return (seq[len(seq) - k :], seq[: len(seq) - k]) if high else (seq[:k], seq[k:])

    if bool(p["front_is_high"]) == bool(p["back_is_high"]):
        selected, middle = take(asc, n_front + n_back, bool(p["front_is_high"]))
        picks = list(range(len(selected)))
        random.Random(p["seed"]).shuffle(picks)
        selected = selected[np.asarray(picks, dtype=np.int64)]
        front, back = selected[:n_front], selected[n_front:]
    else:
        front, rest = take(asc, n_front, bool(p["front_is_high"]))
        back, middle = take(rest, n_back, bool(p["back_is_high"]))
    rng = np.random.default_rng(p["seed"])
    return np.concatenate([part[random_order(len(part), rng)] for part in (front, middle, back)]).astype(np.int64)


def input_order(scores: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """``input``: the identity (the valid, selected rows in input order)."""
    return np.arange(len(scores), dtype=np.int64)
