"""The order of a whole mixture: every source's stream merged by scheduled time.

Source j's stream (its contribution, :mod:`reorder_cli.mix.quota`) holds ``T_j`` tokens, and its
schedule spreads them over the run as ``F_j(u) = T_j * S_j(u) / S_j(1)`` tokens by u (its cumulative
share, scaled to what it gives). Document k of that stream, with ``c_jk`` tokens before it in the stream
and ``t_jk`` of its own, is **due** at the least u with ``F_j(u) >= c_jk + t_jk / 2``: when the schedule
reaches its middle. The output is every stream's documents sorted by ``(due, source index, k)``: ties go
to the earlier source, and each stream stays in its own order (dues rise along a stream).

Every source's dues are computed from its own stream alone, so at scale the order is a merge of sorted
keys (each stream's dues are sorted already), which the existing sort tasks do. The midpoint (rather than
the document's start) keeps every source within half a document of ``F_j`` at every point where a
document begins; :mod:`reorder_cli.mix.shares` turns that into the bound per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.mix.schedule import Schedule


@dataclass(frozen=True)
class Order:
    """The mixture's order: output position p is document ``index[p]`` of stream ``source[p]``."""

    source: np.ndarray  # int64, the source's index in the schedule
    index: np.ndarray  # int64, the row of that source's stream (Contribution.index/epoch/tokens)
    due: np.ndarray  # float64, the scheduled time u of each output document
    tokens: np.ndarray  # int64, its tokens


def due_times(schedule: Schedule, j: int, tokens: np.ndarray) -> np.ndarray:
    """The due time of every document of source j's stream (non-decreasing along the stream)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if not tokens.size:
        return np.zeros(0)
    if schedule.total[j] <= 0:
        raise ReorderError(f"config key 'sources[{j}].weight': source '{schedule.names[j]}' has weight 0 over the "
                           "whole run but gives rows")
    ends = np.cumsum(tokens)
    middle = (ends - tokens) + 0.5 * tokens
    due = schedule.invert(j, schedule.total[j] * (middle / float(ends[-1])))
    return np.maximum.accumulate(due)  # float rounding must not reorder a stream


def interleave(schedule: Schedule, streams: Sequence[np.ndarray]) -> Order:
    """Merge the streams (token counts of each source's rows, in stream order) by due time."""
    if len(streams) != schedule.n:
        raise ValueError("one stream a source")
    dues = [due_times(schedule, j, t) for j, t in enumerate(streams)]
    source = np.concatenate([np.full(len(d), j, np.int64) for j, d in enumerate(dues)])
    index = np.concatenate([np.arange(len(d), dtype=np.int64) for d in dues])
    due = np.concatenate(dues)
    tokens = np.concatenate([np.asarray(t, dtype=np.int64) for t in streams])
    order = np.lexsort((index, source, due))
    return Order(source[order], index[order], due[order], tokens[order])
