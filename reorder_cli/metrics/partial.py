"""Everything the manifest derives from the scores, as one mergeable partial a piece of the order.

A *piece* is a run of consecutive output positions (a shard). :class:`PartialBuilder` reads the piece's
scores, in fixed chunks of ``chunk_rows`` counted from the piece's first row whatever blocks they arrive in,
into a :class:`ScorePartial`: O(bins + 1) numbers. :func:`merge` combines the partials of all the pieces,
in order, into the shards' score summaries, the total summary, the 200-bin position profile and the
guidance metrics (:mod:`reorder_cli.metrics.guidance`), looking at O(pieces + bins) numbers, never at a row.

Every producer of these numbers (the gather tasks and the manifest, ``verify``, ``stats --deep``,
``preview``) goes through the same pieces, chunks and merge, so they agree to the last bit.

What a piece must know of the whole order (:class:`Piece`): its first position, the order's rows, the
valid (non-NaN) scores before it and in all. The metrics are over the valid scores in output order, so
windows, the boundary head and tail, and the quarters are cut at global *valid* indices:

- windows of ``window`` valid scores: the windows inside a piece are summarised there (count, sum and the
  sum of squared deviations M2 of each, then the jumps between consecutive window means, their local
  diversity); a window that straddles pieces leaves a fragment (count, sum, M2) in each, merged with
  Chan's formula. A piece smaller than a window is one fragment.
- sigma from the pieces' (count, sum, M2), merged with Chan's formula.
- the smoothed profile of window means (rises and falls): each piece's sum and count in each bin of windows.
- the first and last ``boundary_pct`` percent (head and tail sums), the four quarters (min and max).
- the position profile: each of its bins of positions intersected with the piece.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.metrics.summary import PROFILE_BINS, Rechunker, ScoreStats, rounded
from reorder_cli.util.npy import CHUNK_ROWS

if TYPE_CHECKING:
    from reorder_cli.metrics.guidance import Params

NOISE_FLOOR = 5.0  # rises and falls smaller than this many standard errors of a bin mean are noise


@dataclass(frozen=True)
class Piece:
    """Where a piece lies in the order: positions ``[first, first + rows)`` of ``total_rows``, after
    ``valid_before`` of the order's ``total_valid`` valid scores."""

    first: int
    rows: int
    valid_before: int
    total_rows: int
    total_valid: int


@dataclass(frozen=True)
class Grid:
    """The order's global cuts, from its rows, its valid scores and the metric parameters."""

    rows: int  # positions in the order
    n: int  # valid scores
    window: int
    positions: np.ndarray  # edges of the position profile's bins
    head: int  # valid scores in the boundary head (and tail)
    quarters: np.ndarray  # valid-index edges of the four quarters
    windows: int  # windows of valid scores (the last may be short)
    groups: np.ndarray  # first window of each bin of the smoothed profile

    @classmethod
    def of(cls, rows: int, n: int, window: int, boundary_pct: float, bins: int) -> Grid:
        pbins = max(1, min(PROFILE_BINS, rows))
        windows = -(-n // window)
        nbins = max(1, min(bins, windows))
        return cls(rows, n, window, (np.arange(pbins + 1, dtype=np.int64) * rows) // pbins,
                   max(1, int(n * boundary_pct / 100)) if n else 0, (np.arange(5, dtype=np.int64) * n) // 4,
                   windows, (np.arange(nbins, dtype=np.int64) * windows) // nbins)

    def window_end(self, k: np.ndarray | int) -> np.ndarray | int:
        """One past the last valid index of window ``k``."""
        return np.minimum((np.asarray(k) + 1) * self.window, self.n)


@dataclass(frozen=True)
class Fragment:
    """A part of a window (the valid scores of it in one piece, or merged across pieces)."""

    window: int
    count: int
    total: float
    m2: float

    def merged(self, other: Fragment) -> Fragment:
        return Fragment(self.window, *_chan(self.count, self.total, self.m2, other.count, other.total, other.m2))

    @property
    def mean(self) -> float:
        return self.total / self.count


@dataclass(frozen=True)
class Run:
    """Consecutive whole windows inside one piece: the first one's index, how many, the first and last
    window means, the sum and max of the jumps between consecutive means (raw units), and the sum over the
    windows of count x std (local diversity, raw units)."""

    first: int
    windows: int
    first_mean: float
    last_mean: float
    jump_sum: float
    jump_max: float | None
    diversity: float


@dataclass(frozen=True)
class Bins:
    """Parts of bins: each bin's index, count and sum (and min and max, for the position profile)."""

    index: list[int]
    count: list[int]
    total: list[float]
    lo: list[float] | None = None
    hi: list[float] | None = None

    def to_json(self) -> dict[str, list]:
        out = {"index": self.index, "count": self.count, "total": self.total}
        return out | ({"min": self.lo, "max": self.hi} if self.lo is not None else {})

    @classmethod
    def from_json(cls, d: dict[str, list]) -> Bins:
        return cls(d["index"], d["count"], d["total"], d.get("min"), d.get("max"))


@dataclass(frozen=True)
class ScorePartial:
    """One piece's share of the scores' summaries, profile and metrics (the module's docstring)."""

    piece: Piece
    params: dict[str, Any]  # window, boundary_pct, bins: what the partial was cut by
    stats: ScoreStats  # min / mean / max of the piece's valid scores
    m2: float  # their squared deviations from their mean
    positions: Bins  # the position profile's bins that meet the piece
    head: Fragment | None  # the fragment of a window begun before the piece (or the piece, inside one window)
    run: Run | None  # the whole windows inside the piece
    tail: Fragment | None  # the fragment of a window that goes on after the piece
    bins: Bins  # the smoothed profile's bins of windows that meet the piece
    head_sum: float  # the piece's valid scores in the boundary head
    tail_sum: float  # and in the boundary tail
    quarter_lo: list[float | None]  # min and max of the piece's valid scores in each quarter
    quarter_hi: list[float | None]

    @property
    def valid(self) -> int:
        return self.stats.count

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "piece": asdict(self.piece), "params": self.params,
            "stats": {"count": s.count, "total": s.total, "min": s.lo if s.count else None,
                      "max": s.hi if s.count else None},
            "m2": self.m2, "positions": self.positions.to_json(),
            "head": None if self.head is None else asdict(self.head),
            "run": None if self.run is None else asdict(self.run),
            "tail": None if self.tail is None else asdict(self.tail),
            "bins": self.bins.to_json(), "head_sum": self.head_sum, "tail_sum": self.tail_sum,
            "quarter_lo": self.quarter_lo, "quarter_hi": self.quarter_hi,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ScorePartial:
        s = d["stats"]
        stats = ScoreStats(s["count"], s["total"], math.inf if s["min"] is None else s["min"],
                           -math.inf if s["max"] is None else s["max"])
        return cls(Piece(**d["piece"]), d["params"], stats, d["m2"], Bins.from_json(d["positions"]),
                   None if d["head"] is None else Fragment(**d["head"]), None if d["run"] is None else Run(**d["run"]),
                   None if d["tail"] is None else Fragment(**d["tail"]), Bins.from_json(d["bins"]), d["head_sum"],
                   d["tail_sum"], d["quarter_lo"], d["quarter_hi"])


def cut_params(params: Params) -> dict[str, Any]:
    """The parameters a partial is cut by (the rest, ``cycle_threshold``, only the merge uses)."""
    return {"window": params.window, "boundary_pct": params.boundary_pct, "bins": params.bins}


def _chan(na: int, sa: float, m2a: float, nb: int, sb: float, m2b: float) -> tuple[int, float, float]:
    """(count, sum, M2) of two groups' union, from each one's (Chan et al.'s pairwise update)."""
    if not na or not nb:
        return (na, sa, m2a) if na else (nb, sb, m2b)
    n = na + nb
    delta = sb / nb - sa / na
    return n, sa + sb, m2a + m2b + delta * delta * na * nb / n


class PartialBuilder:
    """Reads one piece's scores, in order, in blocks of any size; :meth:`finish` gives its partial.

    The blocks are cut again into chunks of ``chunk_rows`` from the piece's first row, so the result does
    not depend on how the scores arrive (a shard's slice of the plan, a gather's reads, a shard file's
    record batches). Memory: a chunk, and four numbers a window of the piece."""

    def __init__(self, piece: Piece, params: Params, chunk_rows: int = CHUNK_ROWS):
        self.piece, self.params, self.chunk_rows = piece, params, chunk_rows
        self.grid = Grid.of(piece.total_rows, piece.total_valid, params.window, params.boundary_pct, params.bins)
        self.pos, self.at = piece.first, piece.valid_before  # the next position, the next valid index
        self.chunks = Rechunker(self._chunk, chunk_rows)
        self.stats, self.m2 = ScoreStats(), 0.0
        self.positions: dict[int, ScoreStats] = {}
        self.carry, self.carry_at = np.empty(0), piece.valid_before  # valid scores after the last window cut
        self.segments: list[tuple[np.ndarray, ...]] = []  # (window, count, sum, M2) of each window part
        self.head_sum = self.tail_sum = 0.0
        self.quarter_lo, self.quarter_hi = np.full(4, np.inf), np.full(4, -np.inf)

    def add(self, block: Any) -> PartialBuilder:
        self.chunks.add(block)
        return self

    def add_from(self, scores: Any, start: int, end: int) -> PartialBuilder:
        """Add ``scores[start:end]`` (an array, a memory map, a view over the plan's pieces), a chunk at a time."""
        for a in range(start, end, self.chunk_rows):  # a loop over chunks
            self.add(scores[a : min(end, a + self.chunk_rows)])
        return self

    def _chunk(self, x: np.ndarray) -> None:
        first, self.pos = self.pos, self.pos + len(x)
        self._positions(x, first)
        v = x[~np.isnan(x)]
        if not len(v):
            return
        na, sa = self.stats.count, self.stats.total
        nb, sb = len(v), self.stats.add_valid(v)
        self.m2 = _chan(na, sa, self.m2, nb, sb, float(((v - sb / nb) ** 2).sum()))[2]
        at, self.at = self.at, self.at + len(v)
        self._ranges(v, at)
        self._windows(v)

    def _positions(self, x: np.ndarray, first: int) -> None:
        edges = self.grid.positions
        lo, hi = np.searchsorted(edges, [first, first + len(x) - 1], side="right") - 1
        for b in range(int(lo), int(hi) + 1):  # a loop over the bins that meet the chunk
            a, e = max(int(edges[b]), first) - first, min(int(edges[b + 1]), first + len(x)) - first
            self.positions.setdefault(b, ScoreStats()).merge(ScoreStats().add(x[a:e]))

    def _ranges(self, v: np.ndarray, at: int) -> None:
        """Head and tail sums, and each quarter's min and max, of the valid indices [at, at + len(v))."""
        g, end = self.grid, at + len(v)
        self.head_sum += float(v[: max(0, g.head - at)].sum())
        self.tail_sum += float(v[max(0, g.n - g.head - at) :].sum())
        for q in range(4):  # four quarters
            a, b = max(int(g.quarters[q]), at) - at, min(int(g.quarters[q + 1]), end) - at
            if b > a:
                self.quarter_lo[q] = min(self.quarter_lo[q], v[a:b].min())
                self.quarter_hi[q] = max(self.quarter_hi[q], v[a:b].max())

    def _windows(self, v: np.ndarray) -> None:
        """Cut the valid scores so far at every window end they reach; keep the rest for later."""
        g = self.grid
        carry = np.concatenate([self.carry, v]) if len(self.carry) else v
        start, end = self.carry_at, self.carry_at + len(carry)
        first = start // g.window
        ends = g.window_end(np.arange(first, -(-end // g.window), dtype=np.int64))
        ends = ends[ends <= end]
        if not len(ends):
            self.carry = carry
            return
        cut = int(ends[0]) - start  # up to the first window end: the rest of a window (whole if it began here)
        self._segment(first, carry[:cut].reshape(1, -1))
        rest, k = carry[cut : int(ends[-1]) - start], first + 1
        full = len(rest) // g.window
        if full:
            self._segment(k, rest[: full * g.window].reshape(full, g.window))
        if len(rest) > full * g.window:  # the order's last, short window
            self._segment(k + full, rest[full * g.window :].reshape(1, -1))
        self.carry, self.carry_at = carry[int(ends[-1]) - start :], int(ends[-1])

    def _segment(self, first: int, groups: np.ndarray) -> None:
        sums = groups.sum(axis=1)
        m2 = ((groups - (sums / groups.shape[1])[:, None]) ** 2).sum(axis=1)
        self.segments.append((np.arange(first, first + len(groups), dtype=np.int64),
                              np.full(len(groups), groups.shape[1], dtype=np.int64), sums, m2))

    def finish(self) -> ScorePartial:
        self.chunks.flush()
        if self.pos != self.piece.first + self.piece.rows:
            raise ReorderError(f"positions [{self.piece.first:,}, {self.piece.first + self.piece.rows:,}): "
                               f"{self.pos - self.piece.first:,} scores read")
        if len(self.carry):
            self._segment(self.carry_at // self.grid.window, self.carry.reshape(1, -1))
        head, run, tail, bins = self._window_parts()
        q_lo = [float(x) if np.isfinite(x) else None for x in self.quarter_lo]
        q_hi = [float(x) if np.isfinite(x) else None for x in self.quarter_hi]
        parts = list(self.positions.items())
        positions = Bins([b for b, _ in parts], [s.count for _, s in parts], [s.total for _, s in parts],
                         [s.lo if s.count else None for _, s in parts], [s.hi if s.count else None for _, s in parts])
        return ScorePartial(self.piece, cut_params(self.params), self.stats, self.m2, positions, head, run, tail,
                            bins, self.head_sum, self.tail_sum, q_lo, q_hi)

    def _window_parts(self) -> tuple[Fragment | None, Run | None, Fragment | None, Bins]:
        g = self.grid
        if not self.segments:
            return None, None, None, Bins([], [], [])
        index, count, total, m2 = (np.concatenate(a) for a in zip(*self.segments, strict=True))
        whole = count == g.window_end(index) - index * g.window

        def fragment(i: int) -> Fragment:
            return Fragment(int(index[i]), int(count[i]), float(total[i]), float(m2[i]))

        head = fragment(0) if not whole[0] else None
        tail = fragment(len(index) - 1) if not whole[-1] and len(index) > 1 else None
        a, b = int(head is not None), len(index) - int(tail is not None)
        run = None
        if b > a:
            means = total[a:b] / count[a:b]
            jumps = np.abs(np.diff(means))
            run = Run(int(index[a]), b - a, float(means[0]), float(means[-1]), float(jumps.sum()),
                      float(jumps.max()) if len(jumps) else None,
                      float((count[a:b] * np.sqrt(m2[a:b] / count[a:b])).sum()))
        group = np.searchsorted(g.groups, index, side="right") - 1
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        bins = Bins(group[starts].tolist(), np.add.reduceat(count, starts).tolist(),
                    np.add.reduceat(total, starts).tolist())
        return head, run, tail, bins


def partial(scores: Any, piece: Piece, params: Params, start: int = 0, chunk_rows: int = CHUNK_ROWS) -> ScorePartial:
    """The partial of ``piece``, whose scores are ``scores[start:start + piece.rows]``."""
    return PartialBuilder(piece, params, chunk_rows).add_from(scores, start, start + piece.rows).finish()


# ------------------------------------------------------------------ the merge


@dataclass
class Merged:
    """What the manifest records of the scores, merged from the pieces' partials (rounded as recorded, or raw)."""

    shards: list[dict[str, float | None]]  # each piece's {"min", "mean", "max"}
    score: dict[str, float | None]  # the whole order's
    profile: dict[str, Any]  # the position profile
    metrics: dict[str, Any]  # the guidance metrics
    stats: list[ScoreStats] = field(default_factory=list)  # each piece's, unrounded


def _check_chain(partials: list[ScorePartial]) -> None:
    """The pieces must follow each other from the order's start to its end, their valid counts adding up,
    all cut by the same global facts and parameters."""
    first = valid = 0
    whole = (partials[0].piece.total_rows, partials[0].piece.total_valid, partials[0].params) if partials else None
    for i, p in enumerate(partials):  # a loop over pieces
        if (p.piece.first, p.piece.valid_before) != (first, valid) or \
                (p.piece.total_rows, p.piece.total_valid, p.params) != whole or p.stats.count > p.piece.rows:
            raise ReorderError(f"the score partial of shard {i} does not follow the one before (positions from "
                               f"{p.piece.first:,}, {p.piece.valid_before:,} valid scores before it; expected "
                               f"{first:,} and {valid:,}): the shards' records are out of order or damaged")
        first, valid = first + p.piece.rows, valid + p.stats.count
    if partials and (first, valid) != (partials[0].piece.total_rows, partials[0].piece.total_valid):
        raise ReorderError(f"the shards' score partials cover {first:,} rows and {valid:,} valid scores, but the "
                           f"order has {partials[0].piece.total_rows:,} and {partials[0].piece.total_valid:,}")


def merge(partials: list[ScorePartial], params: Params, digits: int | None = 6) -> Merged:
    """Merge the pieces' partials, in order (each piece after the one before: refused otherwise). ``digits``:
    the rounding the manifest records (None: raw values, for tests)."""
    _check_chain(partials)
    if partials and partials[0].params != cut_params(params):
        raise ReorderError(f"the score partials were cut with {partials[0].params}, not {cut_params(params)}")

    def num(x: float | None) -> float | None:
        if digits is not None:
            return rounded(x, digits)
        return None if x is None or not np.isfinite(x) else float(x)

    def summary(s: ScoreStats) -> dict[str, float | None]:
        return {k: num(v) for k, v in s.summary().items()}

    total = ScoreStats()
    for p in partials:  # a loop over pieces
        total.merge(p.stats)
    rows, n = (partials[0].piece.total_rows, partials[0].piece.total_valid) if partials else (0, 0)
    grid = Grid.of(rows, n, params.window, params.boundary_pct, params.bins)
    return Merged([summary(p.stats) for p in partials], summary(total), _profile(partials, grid, num),
                  _metrics(partials, grid, params, total, num), [p.stats for p in partials])


def _profile(partials: list[ScorePartial], grid: Grid, num) -> dict[str, Any]:
    bins = [ScoreStats() for _ in range(len(grid.positions) - 1)]
    for p in partials:  # a loop over pieces, then over the bins that meet each
        b = p.positions
        for i, c, t, lo, hi in zip(b.index, b.count, b.total, b.lo, b.hi, strict=True):
            bins[i].merge(ScoreStats(c, t, math.inf if lo is None else lo, -math.inf if hi is None else hi))
    return {
        "bins": len(bins),
        "edges": grid.positions.tolist(),
        "mean": [num(s.mean) for s in bins],
        "min": [num(s.lo) if s.count else None for s in bins],
        "max": [num(s.hi) if s.count else None for s in bins],
    }


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


def _windows(partials: list[ScorePartial], grid: Grid) -> tuple[float, float | None, float]:
    """(sum and max of the jumps between consecutive window means, sum of count x std over the windows),
    raw units: the pieces' runs, and the windows their fragments make."""
    parts: list[Fragment | Run] = []
    for p in partials:  # a loop over pieces: a window's fragments merged in order
        for part in (p.head, p.run, p.tail):
            if part is None:
                continue
            if isinstance(part, Fragment) and parts and isinstance(parts[-1], Fragment) \
                    and parts[-1].window == part.window:
                parts[-1] = parts[-1].merged(part)
            else:
                parts.append(part)
    jump_sum, jump_max, diversity, windows, last = 0.0, None, 0.0, 0, None
    for part in parts:  # a loop over runs and straddling windows: O(pieces)
        if isinstance(part, Fragment):
            if part.count != grid.window_end(part.window) - part.window * grid.window:
                raise ReorderError(f"window {part.window}: its fragments hold {part.count} scores; the shards' "
                                   "score partials are incomplete")
            part = Run(part.window, 1, part.mean, part.mean, 0.0, None, part.count * math.sqrt(part.m2 / part.count))
        if part.first != windows:
            raise ReorderError(f"window {windows} is missing from the shards' score partials")
        if last is not None:
            jump = abs(part.first_mean - last)
            jump_sum, jump_max = jump_sum + jump, jump if jump_max is None else max(jump_max, jump)
        jump_sum += part.jump_sum
        if part.jump_max is not None:
            jump_max = part.jump_max if jump_max is None else max(jump_max, part.jump_max)
        diversity += part.diversity
        windows, last = windows + part.windows, part.last_mean
    if windows != grid.windows:
        raise ReorderError(f"the shards' score partials hold {windows} windows, the order {grid.windows}")
    return jump_sum, jump_max, diversity


def _metrics(partials: list[ScorePartial], grid: Grid, params: Params, total: ScoreStats, num) -> dict[str, Any]:
    n = grid.n
    result: dict[str, Any] = {
        "params": asdict(params),
        "rows": n,
        "std": None,
        "boundary": {"start": None, "end": None},
        "cycles": {"rises": 0, "falls": 0, "quarter_range": [None] * 4},
        "continuity": {"max_jump": None, "mean_jump": None},
        "local_diversity": None,
    }
    if n == 0 or total.hi == total.lo:  # no valid score, or all equal: sigma is 0, the ratios are undefined
        result["std"] = 0.0 if n else None
        return result

    count, s, m2 = 0, 0.0, 0.0
    head_sum = tail_sum = 0.0
    q_lo, q_hi = np.full(4, np.inf), np.full(4, -np.inf)
    sums, counts = np.zeros(len(grid.groups)), np.zeros(len(grid.groups), dtype=np.int64)
    for p in partials:  # a loop over pieces
        count, s, m2 = _chan(count, s, m2, p.stats.count, p.stats.total, p.m2)
        head_sum, tail_sum = head_sum + p.head_sum, tail_sum + p.tail_sum
        q_lo = np.fmin(q_lo, [np.inf if x is None else x for x in p.quarter_lo])
        q_hi = np.fmax(q_hi, [-np.inf if x is None else x for x in p.quarter_hi])
        for b, c, t in zip(p.bins.index, p.bins.count, p.bins.total, strict=True):  # the bins that meet the piece
            sums[b], counts[b] = sums[b] + t, counts[b] + c
    mu = total.total / n
    sigma = math.sqrt(m2 / n)
    jump_sum, jump_max, diversity = _windows(partials, grid)
    profile = sums / counts
    # A move must also clear the noise of a random order's bin means (sigma / sqrt(rows a bin)).
    threshold = max(params.cycle_threshold, NOISE_FLOOR / np.sqrt(n / len(grid.groups))) * sigma
    rises, falls = _turns(profile, threshold)
    with np.errstate(invalid="ignore"):
        quarters = (q_hi - q_lo) / (total.hi - total.lo)
    jumps = grid.windows - 1
    result.update({
        "std": num(sigma),
        "boundary": {"start": num((head_sum / grid.head - mu) / sigma),
                     "end": num((tail_sum / grid.head - mu) / sigma)},
        "cycles": {"rises": rises, "falls": falls, "quarter_range": [num(q) for q in quarters]},
        "continuity": {"max_jump": num(jump_max / sigma) if jumps else None,
                       "mean_jump": num(jump_sum / jumps / sigma) if jumps else None},
        "local_diversity": num(diversity / (n * sigma)),
    })
    return result


# ------------------------------------------------------------------ one array, cut into pieces


def valid_counts(scores: Any, cuts: list[tuple[int, int]], chunk_rows: int = CHUNK_ROWS) -> list[int]:
    """The valid (non-NaN) scores of each piece ``[start, end)`` of ``scores``, read a chunk at a time."""
    out = []
    for a, b in cuts:  # a loop over pieces, then over chunks
        out.append(sum(int(np.count_nonzero(~np.isnan(np.asarray(scores[c : min(b, c + chunk_rows)]))))
                       for c in range(a, b, chunk_rows)))
    return out


def pieces(rows: int, cuts: list[tuple[int, int]], valid: list[int]) -> list[Piece]:
    """The :class:`Piece` of each ``[start, end)`` of an order of ``rows`` rows, from each one's valid count."""
    before = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)]).tolist()
    return [Piece(a, b - a, before[i], rows, before[-1]) for i, (a, b) in enumerate(cuts)]


def of_array(scores: Any, params: Params, cuts: list[tuple[int, int]] | None = None, digits: int | None = 6,
             chunk_rows: int = CHUNK_ROWS) -> Merged:
    """:func:`merge` of the partials of ``scores`` (the whole order, NaN for invalid scores) cut at ``cuts``
    (``[start, end)`` of each piece: the run's shards; one piece by default)."""
    rows = len(scores)
    cuts = [(0, rows)] if cuts is None else cuts
    found = pieces(rows, cuts, valid_counts(scores, cuts, chunk_rows))
    return merge([partial(scores, p, params, p.first, chunk_rows) for p in found], params, digits)
