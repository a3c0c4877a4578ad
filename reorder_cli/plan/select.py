"""Selection before ordering: top-k, top-r, threshold and a token budget, with the reference's semantics.

The reference (``data_selection`` of microsoft/data-efficacy) sorts the rows stably by
score, ascending, and keeps the last k (``top-r``: k = int(n * r)); ``threshold`` keeps
``score > threshold``. So the kept set is the k highest scores and, among rows tied at the
cut-off, the ones later in input order. ``tokens`` walks the same order (highest score first,
ties later rows first) and keeps rows while the tokens kept so far are below the budget: the
row that reaches or crosses the budget is kept, so the kept tokens are at least the budget
(by less than one row), unless the whole input holds fewer.

Every rule comes down to one :class:`Cut`: keep the valid rows scoring above ``score``,
and those scoring exactly ``score`` from global row ``from_row`` on. The cut is found
with a weighted radix select over the scores' bit patterns (four passes of 16-bit
histograms, each a chunk at a time) and one backward pass over the tied rows, so the
same code gives the same cut in memory (one chunk) and out of core (many), within a
bounded amount of memory. Invalid rows (NaN) are never selected: ``invalid_scores``
places or drops them as without selection.

A **chain** (``select:`` a list) applies each selection to the rows the one before kept, in order.
Every rule keeps a suffix of the rows ordered by (score, input row), so the chain keeps the
shortest of its steps' suffixes: one :class:`Cut` again, found by :func:`choose` with the same
code in memory and out of core.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reorder_cli.config import selection_token_field as token_field
from reorder_cli.errors import ReorderError
from reorder_cli.util.npy import CHUNK_ROWS

_SIGN = np.uint64(1 << 63)
_DIGITS = 1 << 16
#: The most tokens a token budget counts: every partial sum up to it is exact in the float64 weights of
#: the cut's histograms (and far from int64's end).
MAX_TOKENS = 2**53

#: (start, count) -> (float64 scores, NaN invalid; int64 tokens or None) of those global rows.
Reader = Callable[[int, int], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class Cut:
    """Keep a valid row when its score is above ``score``, or equal to it at a global row >= ``from_row``."""

    score: float
    from_row: int

    def keep(self, start: int, scores: np.ndarray) -> np.ndarray:
        """The mask of kept rows among ``scores`` (global rows ``start`` on); False where NaN."""
        mask = scores > self.score
        if math.isfinite(self.score):
            ties = np.flatnonzero(scores == self.score)
            mask[ties[ties + start >= self.from_row]] = True
        return mask


@dataclass
class Selected:
    """A selection's cut and what it keeps (valid rows only; invalid rows are counted apart)."""

    params: dict[str, Any]
    cut: Cut
    rows_before: int
    rows_after: int
    tokens_before: int | None
    tokens_after: int | None
    steps: list[Selected] | None = None  # a chain's selections, each on the rows the one before kept

    def to_json(self) -> dict[str, Any]:
        if self.steps is not None:
            lowest = None if self.rows_after == 0 or not math.isfinite(self.cut.score) else self.cut.score
            return {
                "params": self.params, "rows_before": self.rows_before, "rows_after": self.rows_after,
                "dropped": self.rows_before - self.rows_after, "tokens_before": self.tokens_before,
                "tokens_after": self.tokens_after, "cutoff": lowest,
                "rule": "; then ".join(rule(s.params, s.cut) for s in self.steps),
                "steps": [s.to_json() for s in self.steps],
            }
        lowest = None if self.rows_after == 0 or not math.isfinite(self.cut.score) else self.cut.score
        return {
            "params": self.params, "rows_before": self.rows_before, "rows_after": self.rows_after,
            "dropped": self.rows_before - self.rows_after, "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "cutoff": lowest if self.params["method"] != "threshold" else self.params["threshold"],
            "rule": rule(self.params, self.cut),
        }


def rule(params: Mapping[str, Any], cut: Cut) -> str:
    """In words, which rows the cut keeps."""
    if params["method"] == "threshold":
        return f"score > {params['threshold']:g}"
    if not math.isfinite(cut.score):
        return "every valid row (the selection asks for at least as many)"
    return f"score > {cut.score:g}, and score == {cut.score:g} from input row {cut.from_row} on"


def in_memory(scores: np.ndarray, tokens: np.ndarray | None) -> Reader:
    return lambda start, count: (scores[start:start + count], None if tokens is None else tokens[start:start + count])


def choose(params: Mapping[str, Any] | list, rows: int, read: Reader, chunk: int = CHUNK_ROWS) -> Selected:
    """The cut of a validated ``select:`` value: :func:`select` for one selection; for a chain, each
    selection on the rows the one before kept (the others read as invalid), the last cut kept."""
    if not isinstance(params, list):
        return select(params, rows, read, chunk)
    done: list[Selected] = []
    cut = Cut(-math.inf, 0)
    for p in params:  # a loop over the chain's selections
        step = select(p, rows, _within(read, cut), chunk)
        done.append(step)
        cut = max(cut, step.cut, key=lambda c: (c.score, c.from_row))
    by_tokens = token_field(params) is not None
    tokens_before = tokens_after = None
    if by_tokens:
        tokens_before = tokens_after = 0
        for start, scores, tokens in _chunks(read, rows, chunk):  # a loop over chunks
            tokens_before += int(tokens[~np.isnan(scores)].sum())
            tokens_after += int(tokens[cut.keep(start, scores)].sum())
    return Selected(list(params), cut, done[0].rows_before, done[-1].rows_after, tokens_before, tokens_after, done)


def _within(read: Reader, cut: Cut) -> Reader:
    """``read`` with the scores of the rows ``cut`` does not keep read as NaN (not selectable)."""
    def masked(start: int, count: int) -> tuple[np.ndarray, np.ndarray | None]:
        scores, tokens = read(start, count)
        return np.where(cut.keep(start, scores), scores, np.nan), tokens
    return masked


def select(params: Mapping[str, Any], rows: int, read: Reader, chunk: int = CHUNK_ROWS) -> Selected:
    """The cut that ``params`` (a validated ``select:`` section) makes on ``rows`` rows read by ``read``."""
    method = params["method"]
    by_tokens = method == "tokens"
    n_valid, total = 0, 0
    for _, scores, tokens in _chunks(read, rows, chunk):  # a loop over chunks
        valid = ~np.isnan(scores)
        n_valid += int(valid.sum())
        if by_tokens:
            total += exact_sum(tokens[valid])
    if by_tokens and total > MAX_TOKENS:
        raise ReorderError(f"select: the token counts ('{params['token_field']}') of the {n_valid:,} rows with a "
                           f"valid score sum to {total:,}, over {MAX_TOKENS:,} (2**53), the most a token budget "
                           "counts exactly; check the token field")
    if n_valid == 0:
        return Selected(dict(params), Cut(math.inf, rows), 0, 0, 0 if by_tokens else None, 0 if by_tokens else None)
    if method == "threshold":
        cut = Cut(float(params["threshold"]), rows)
    else:
        target = {"top-k": lambda: params.get("k"), "top-r": lambda: int(n_valid * params["r"]),
                  "tokens": lambda: params["budget"]}[method]()
        if target <= 0:
            raise ReorderError(f"select: top-r with r = {params['r']} keeps no row: int({n_valid} valid rows * "
                               f"{params['r']}) = 0; nothing to write (raise select.r)")
        # tokens: a total equal to the budget may still drop zero-token rows walked after it is reached
        keep_all = total < target if by_tokens else target >= n_valid
        cut = Cut(-math.inf, 0) if keep_all else _find_cut(
            read, rows, chunk, target, by_tokens)
    kept, kept_tokens = 0, 0
    for start, scores, tokens in _chunks(read, rows, chunk):  # a loop over chunks
        mask = cut.keep(start, scores)
        kept += int(mask.sum())
        if by_tokens:
            kept_tokens += exact_sum(tokens[mask])
    out = Selected(dict(params), cut, n_valid, kept, total if by_tokens else None, kept_tokens if by_tokens else None)
    if kept == 0:
        raise ReorderError(f"select: {rule(params, cut)} keeps none of the {n_valid:,} rows with a valid score; "
                           "nothing to write (lower select.threshold)")
    return out


def exact_sum(values: np.ndarray) -> int:
    """The exact sum of non-negative int64 values (NumPy's int64 sum wraps around silently): the high and
    the low 32 bits summed apart, each within int64 for any chunk shorter than 2**31."""
    v = np.asarray(values, dtype=np.int64)
    return (int((v >> 32).sum()) << 32) + int((v & 0xFFFFFFFF).sum())


def _chunks(read: Reader, rows: int, chunk: int, backward: bool = False) -> Iterator[tuple[int, np.ndarray, Any]]:
    starts = range(0, rows, chunk)
    for start in reversed(starts) if backward else starts:
        scores, tokens = read(start, min(chunk, rows - start))
        yield start, scores, tokens


def sort_keys(scores: np.ndarray) -> np.ndarray:
    """uint64 keys ordered as the (finite) float64 scores are; -0.0 and 0.0 get the same key."""
    bits = (np.asarray(scores, dtype=np.float64) + 0.0).view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def key_score(key: int) -> float:
    key = np.uint64(key)
    bits = key & ~_SIGN if key & _SIGN else ~key
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def _find_cut(read: Reader, rows: int, chunk: int, target: int, by_tokens: bool) -> Cut:
    """The highest score c whose rows and above weigh >= ``target`` (weight: 1 a row, or its tokens),
    then the tied rows kept, later rows first, while the weight kept before each is below ``target``."""
    prefix, above = 0, 0  # the key's high digits found so far; the weight of keys above the prefix's range
    kept = None  # one chunk (keys in memory): the candidates of the previous level, narrowed level by level
    for level in range(4):  # 16 bits a level, highest first
        shift = np.uint64(48 - 16 * level)
        hist = np.zeros(_DIGITS, dtype=np.float64)
        for _, scores, tokens in _chunks(read, rows, chunk) if kept is None else [(0, None, None)]:
            if kept is None:  # a loop over chunks
                valid = ~np.isnan(scores)
                keys = sort_keys(scores[valid])
                weights = tokens[valid].astype(np.float64) if by_tokens else None
            else:
                keys, weights = kept
            if level:
                inside = (keys >> (shift + np.uint64(16))) == np.uint64(prefix)
                keys = keys[inside]
                weights = None if weights is None else weights[inside]
            if rows <= chunk:
                kept = (keys, weights)
            hist += np.bincount(((keys >> shift) & np.uint64(_DIGITS - 1)).astype(np.int64), weights,
                                minlength=_DIGITS)
        at_or_above = np.cumsum(hist[::-1])[::-1]  # weight of digits >= d, inside the prefix's range
        digit = int(np.flatnonzero(above + at_or_above >= target)[-1])
        above += int(round(at_or_above[digit + 1])) if digit + 1 < _DIGITS else 0
        prefix = (prefix << 16) | digit
    c = key_score(prefix)
    need = target - above  # weight still to take from the rows tied at c, latest first
    taken, from_row = 0, rows
    for start, scores, tokens in _chunks(read, rows, chunk, backward=True):  # a loop over chunks, last first
        ties = np.flatnonzero(scores == c)
        if not len(ties):
            continue
        w = tokens[ties].astype(np.int64) if by_tokens else np.ones(len(ties), dtype=np.int64)
        before = taken + (w[::-1].cumsum()[::-1] - w)  # weight of later tied rows, before each
        kept = before < need
        from_row = start + int(ties[np.argmax(kept)]) if kept.any() else from_row
        if not kept.all():
            break
        taken += int(w.sum())
    return Cut(c, from_row)
