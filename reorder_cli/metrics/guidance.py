"""Metrics for the paper's four guidances, from the scores in output order.

Rows whose score is NaN (invalid rows kept first or last, or anywhere in a mixture) are
ignored: the metrics describe the sequence of valid scores in output order. They are computed
piece by piece (each shard where its rows are) and merged (:mod:`reorder_cli.metrics.partial`);
the scores are read in bounded chunks, so a large array (or a memory map) is never copied whole.

Every metric is scale-free: scores are measured against the global mean ``mu`` and in
units of the global standard deviation ``sigma`` (population, ddof=0). When all valid
scores are equal (``sigma == 0``, a single row included) or there is no valid score,
the ratios are undefined and reported as ``None``; counts are then 0. The formulas are
in docs/guides/inspect.md ("Metrics").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.metrics import partial
from reorder_cli.metrics.defaults import BOUNDARY_PCT, WINDOW
from reorder_cli.metrics.partial import NOISE_FLOOR
from reorder_cli.util.npy import CHUNK_ROWS

__all__ = ["NOISE_FLOOR", "Params", "compute"]


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


def compute(scores, params: Params | None = None, chunk_rows: int = CHUNK_ROWS,
            cuts: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """The guidance metrics of ``scores`` (any float array-like, output order, NaN ignored): the merge of the
    partials of its pieces ``cuts`` (``[start, end)`` each: a run's shards, as its manifest computes them;
    one piece by default), :func:`reorder_cli.metrics.partial.of_array`."""
    return partial.of_array(scores, params or Params(), cuts, chunk_rows=chunk_rows).metrics
