"""Ranks at output positions, a chunk of positions at a time (the out-of-core side of orderings.py).

FO-L and ZIG-L are arithmetic: the rank at any position follows from the position, the
length and L, without building the permutation. STR and SAW apply them inside their
transition spans and leave every other rank in place. JIT shuffles whole windows and
draws from the generator exactly as :func:`reorder_cli.orderings.jitter` does, so
windows can be processed a chunk at a time with one generator.
"""

from __future__ import annotations

import numpy as np


def layered_ranks(q: np.ndarray, m: int, layers: int, zig: bool) -> np.ndarray:
    """Rank at each position ``q`` (0 <= q < m) of FO-L (``zig=False``) / ZIG-L of ``0..m-1``.

    Layer ``l`` holds ranks ``l, l+L, l+2L, ...``: ``base + 1`` of them for the first
    ``extra`` layers and ``base`` for the rest (``m = base*L + extra``).
    """
    q = np.asarray(q, dtype=np.int64)
    base, extra = divmod(m, layers)
    long_part = extra * (base + 1)  # positions held by the longer layers
    in_long = q < long_part
    rest = q - long_part
    short = max(base, 1)  # base == 0 means every position is in a long layer
    layer = np.where(in_long, q // (base + 1), extra + rest // short)
    step = np.where(in_long, q % (base + 1), rest % short)
    if zig:
        odd = layer % 2 == 1
        step = np.where(odd, base + (layer < extra) - 1 - step, step)
    return layer + layers * step


class RankMap:
    """Rank at each output position of a sequence of ``m`` ranks: FO-L / ZIG-L inside
    ``spans`` (``[start, end)`` pairs, in order, disjoint), identity elsewhere."""

    def __init__(self, spans: list[tuple[int, int]], layers: int = 1, zig: bool = False) -> None:
        self.spans = [(s, e) for s, e in spans if e > s]
        self.layers = layers
        self.zig = zig

    @property
    def identity(self) -> bool:
        return not self.spans or self.layers == 1

    @property
    def spread(self) -> int:
        """How many ranks a chunk of positions may span, per position (the gathers' reach)."""
        return 1 if self.identity else min(self.layers, 171)  # 171 * 24 bytes: one page a record

    def ranks(self, start: int, stop: int) -> np.ndarray:
        ranks = np.arange(start, stop, dtype=np.int64)
        if self.layers == 1:
            return ranks
        for s, e in self.spans:  # a loop over spans, never over rows
            lo, hi = max(s, start), min(e, stop)
            if lo < hi:
                ranks[lo - start : hi - start] = s + layered_ranks(ranks[lo - start : hi - start] - s, e - s,
                                                                   self.layers, self.zig)
        return ranks


def window_shuffle(rng: np.random.Generator, count: int, window: int) -> np.ndarray:
    """JIT permutation of ``count`` consecutive positions starting on a window boundary.

    Full windows use ``rng.permuted(axis=1)``, a trailing short window
    ``rng.permutation``: the draws of :func:`reorder_cli.orderings.jitter`, which only
    the last chunk of a sequence may end with.
    """
    full = count // window  # 0 when the window is longer than the rows: no array shaped by its size
    head = rng.permuted(np.arange(full * window, dtype=np.int64).reshape(full, window), axis=1).ravel() if full \
        else np.empty(0, dtype=np.int64)
    if count == full * window:
        return head
    return np.concatenate([head, full * window + rng.permutation(count - full * window)])
