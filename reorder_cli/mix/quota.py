"""What each source contributes to a mixture: its token quota from the budget, then which of its rows.

The budget B (tokens, or rows when every count is 1) fixes each source's quota before anything is
ordered: ``Q_j = B * S_j(1)`` rounded to whole tokens by largest remainder (the floors, then one more
token to the largest fractional parts, ties to the earlier source), so the quotas sum to B exactly.

Given each source's documents in its own order (after its own ``select``, in the engine), as token counts:

- **surplus** (the source holds more than ``Q_j``): a seeded uniform subset. A permutation of its
  documents from ``numpy.random.default_rng([seed, h])``, with ``h`` the first 8 bytes of sha256(name),
  is taken until its tokens reach ``Q_j``; the documents kept are put back in the source's own order,
  so its curriculum spans the whole run instead of stopping part way.
- **shortfall** (it holds less): it repeats in its own order, epoch after epoch, the last epoch a prefix
  that reaches ``Q_j``, up to ``max_epochs`` epochs in all.
- **beyond that**: an error naming the source and the tokens missing; or, with ``redistribute``, the
  source gives all ``max_epochs`` epochs and stops where its schedule reaches that; from that u on its
  weight is 0, so the sources left share each point of training by their own weights (the schedule is
  renormalised over them). This repeats, source by source in the order they run out, until every quota
  fits (:meth:`Schedule.stopped`). A budget the sources cannot hold even so is an error naming ``budget``.

"Reach" means the shortest prefix whose tokens are >= the quota, so a source gives at most one
document's tokens more than its quota (and exactly its quota when counts are rows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.mix.schedule import Schedule


@dataclass(frozen=True)
class Contribution:
    """What one source gives the mixture: its rows in the order it gives them (its stream).

    Row r of the stream is document ``index[r]`` of the source (its position in the source's own
    order) in epoch ``epoch[r]`` (0-based), with ``tokens[r]`` tokens."""

    name: str
    quota: int  # tokens the budget gives it
    available: int  # tokens it holds (one epoch)
    index: np.ndarray  # int64
    epoch: np.ndarray  # int64
    tokens: np.ndarray  # int64
    epochs: int  # epochs begun (0 when it gives nothing)
    cut: bool  # a surplus was cut (a seeded subset)

    @property
    def total(self) -> int:
        return int(self.tokens.sum())


@dataclass(frozen=True)
class Allotment:
    """Every source's contribution, and the schedule they follow (the given one, or the one with the
    sources that ran out stopped, under ``redistribute``)."""

    budget: int
    schedule: Schedule
    contributions: tuple[Contribution, ...]
    stopped: tuple[tuple[str, float], ...]  # (source, u where it ran out), under redistribute


def largest_remainder(budget: int, shares: np.ndarray, fixed: np.ndarray | None = None) -> np.ndarray:
    """Whole quotas summing to ``budget``, proportional to ``shares``; entries of ``fixed`` (>= 0) are kept
    as they are and the rest of the budget goes to the others."""
    shares = np.asarray(shares, dtype=np.float64)
    free = np.ones(len(shares), bool) if fixed is None else fixed < 0
    out = np.zeros(len(shares), np.int64)
    if fixed is not None:
        out[~free] = fixed[~free]
    left = budget - int(out.sum())
    weight = np.where(free, shares, 0.0)
    if left <= 0 or weight.sum() <= 0:
        return out
    exact = left * (weight / weight.sum())
    floor = np.floor(exact).astype(np.int64)
    extra = left - int(floor.sum())
    order = np.argsort(-(exact - floor), kind="stable")  # largest fractional part first, ties to the earlier
    floor[order[:extra]] += 1
    return out + floor


def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def _reach(cumulative: np.ndarray, need: int) -> int:
    """How many of the first items (with these running totals) reach ``need`` tokens."""
    return 0 if need <= 0 else int(np.searchsorted(cumulative, need, side="left")) + 1


def contribute(name: str, tokens: np.ndarray, quota: int, seed: int, max_epochs: int) -> Contribution:
    """One source's stream for its quota (surplus: a seeded subset in its own order; shortfall: epochs).

    Assumes ``quota <= max_epochs * tokens.sum()`` (:func:`allot` checks it)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    available = int(tokens.sum())
    n = len(tokens)
    if quota <= 0:
        empty = np.zeros(0, np.int64)
        return Contribution(name, quota, available, empty, empty, empty, 0, False)
    if quota < available:
        perm = np.random.default_rng([seed, _name_key(name)]).permutation(n)
        keep = np.sort(perm[:_reach(np.cumsum(tokens[perm]), quota)])
        return Contribution(name, quota, available, keep, np.zeros(len(keep), np.int64), tokens[keep], 1, True)
    full, rest = divmod(quota, available)
    prefix = _reach(np.cumsum(tokens), rest)
    index = np.concatenate([np.tile(np.arange(n, dtype=np.int64), full), np.arange(prefix, dtype=np.int64)])
    epoch = np.concatenate([np.repeat(np.arange(full, dtype=np.int64), n), np.full(prefix, full, np.int64)])
    return Contribution(name, quota, available, index, epoch, tokens[index], full + (prefix > 0), False)


def _check_counts(schedule: Schedule, tokens: Sequence[np.ndarray], budget: int, seed: int,
                  max_epochs: Sequence[int]) -> list[np.ndarray]:
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ReorderError(f"config key 'budget': expected a whole number of tokens (or rows) >= 1, got {budget!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ReorderError(f"config key 'seed': expected an integer >= 0, got {seed!r}")
    if len(tokens) != schedule.n or len(max_epochs) != schedule.n:
        raise ValueError("one token array and one max_epochs a source")
    out = []
    for i, (name, t, e) in enumerate(zip(schedule.names, tokens, max_epochs, strict=True)):
        if isinstance(e, bool) or not isinstance(e, int | np.integer) or e < 1:
            raise ReorderError(f"config key 'sources[{i}].max_epochs': expected an integer >= 1, got {e!r}")
        t = np.asarray(t)
        if t.ndim != 1 or (t.size and not np.issubdtype(t.dtype, np.integer)):
            raise ValueError(f"source {name!r}: token counts must be a 1-d integer array")
        if t.size == 0:
            raise ReorderError(f"config key 'sources[{i}]': source {name!r} has no rows (after its select)")
        bad = np.flatnonzero(t < 1)
        if bad.size:
            raise ReorderError(f"config key 'sources[{i}]': source {name!r} row {int(bad[0])} has "
                               f"{int(t[bad[0]])} tokens; every row needs at least 1")
        out.append(t.astype(np.int64, copy=False))
    return out


def allot(schedule: Schedule, tokens: Sequence[np.ndarray], budget: int, seed: int = 0,
          max_epochs: int | Sequence[int] = 1, redistribute: bool = False) -> Allotment:
    """Every source's contribution to a mixture of ``budget`` tokens (see the module's rules)."""
    if isinstance(max_epochs, int | np.integer) and not isinstance(max_epochs, bool):
        max_epochs = [int(max_epochs)] * schedule.n
    tokens = _check_counts(schedule, tokens, budget, seed, list(max_epochs))
    capacity = np.array([int(t.sum()) * int(e) for t, e in zip(tokens, max_epochs, strict=True)], np.int64)
    if redistribute and int(capacity.sum()) < budget:
        raise ReorderError(f"config key 'budget': {budget:,} tokens cannot be met: the sources hold "
                           f"{int(capacity.sum()):,} with their max_epochs")
    fixed = np.full(schedule.n, -1, np.int64)
    stopped: list[tuple[str, float]] = []
    while True:
        quota = largest_remainder(budget, schedule.total, fixed)
        over = np.flatnonzero((quota > capacity) & (fixed < 0))
        if not over.size:
            break
        if not redistribute:
            missing = ", ".join(f"source '{schedule.names[j]}' (sources[{j}]) needs {int(quota[j]):,} tokens, "
                                f"holds {int(capacity[j]):,} with max_epochs {max_epochs[j]}: "
                                f"{int(quota[j] - capacity[j]):,} missing" for j in over)
            raise ReorderError(f"{missing}; raise its max_epochs, lower the budget or set redistribute")
        when = np.array([schedule.invert(int(j), capacity[j] / budget)[0] for j in over])
        first = int(over[np.argmin(when)])  # the first to run out (ties to the earlier source)
        at = float(when.min())
        try:
            schedule = schedule.stopped(first, at)
        except ReorderError as err:  # no weight left somewhere after it ran out
            raise ReorderError(f"config key 'budget': {budget:,} tokens cannot be met: source "
                               f"'{schedule.names[first]}' runs out at u={at:g} (all its max_epochs), and "
                               f"{str(err).split(': ', 1)[1]}") from None
        fixed[first] = capacity[first]
        stopped.append((schedule.names[first], at))
    contributions = tuple(contribute(name, t, int(q), seed, int(e)) for name, t, q, e
                          in zip(schedule.names, tokens, quota, max_epochs, strict=True))
    return Allotment(budget, schedule, contributions, tuple(stopped))
