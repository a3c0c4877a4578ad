"""The index math of an ordered reader: which positions of the order each rank and worker reads.

Pure NumPy, no I/O. With world size W, micro-batch b and gradient accumulation k, the global
batch is G = W·b·k and optimizer step s consumes positions [start + s·G, start + (s+1)·G), where
``start`` is the number of samples consumed before (0, or the resume point).

How a window is cut: micro-step j of step s is the global micro-batch m = s·k + j, positions
[start + m·W·b, start + (m+1)·W·b); rank r takes the contiguous block of b positions
[start + m·W·b + r·b, start + m·W·b + (r+1)·b) of it (contiguous for read locality; this is also
what accelerate's sharding of a sequential sampler gives, batch i to rank i % W). A rank's
micro-batches are t = 0, 1, 2, … (= m); the torch DataLoader takes batches round-robin from its
workers, so worker w of nw yields micro-batches w, w + nw, w + 2·nw, …. Hence the positions of
(rank r, worker w) repeat with period P = W·b·nw: position p belongs to them iff
(p - start) mod P lies in [w·W·b + r·b, w·W·b + r·b + b).

The tail: with ``drop_last`` only whole windows are read, ``steps`` = (rows - start) // G. The HF
Trainer on its own takes one step more over the M mod k micro-batches per rank left (M = rows // (W·b));
``OrderedMapDataset.optimizer_steps`` is the ``max_steps`` that stops it here (README, Recipes).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError

#: The largest count the layout computes with: every product of its numbers stays within int64.
MAX_COUNT = 2**31


def integer(name: str, value: Any, lo: int = 0, hi: int = MAX_COUNT) -> int:
    """``value`` as an int when it is an integer (Python's or NumPy's, not a bool) in [lo, hi]; refused,
    never truncated (2.5, "3" and True are not batch sizes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ReorderError(f"{name} must be an integer, not {value!r} ({type(value).__name__})")
    if not lo <= value <= hi:
        raise ReorderError(f"{name} must be in [{lo:,}, {hi:,}], not {value!r}")
    return int(value)


@dataclass(frozen=True)
class Layout:
    rows: int  # positions in the order (the manifest's total rows)
    micro_batch: int  # b
    grad_accum: int = 1  # k
    world: int = 1  # W
    start: int = 0  # samples consumed before this run
    drop_last: bool = True  # drop the last partial window (never padded, never wrapped)

    def __post_init__(self) -> None:
        for name in ("micro_batch", "grad_accum", "world"):
            integer(name, getattr(self, name), 1)
        integer("rows", self.rows, 0, 2**62)
        integer("samples consumed", self.start, 0, 2**62)
        integer("the global batch world_size * micro_batch * grad_accum", self.global_batch, 1, 2**62)

    @property
    def global_batch(self) -> int:
        return self.world * self.micro_batch * self.grad_accum

    @property
    def micro_span(self) -> int:
        """Positions of one global micro-batch (all ranks, one micro-step): W·b."""
        return self.world * self.micro_batch

    @property
    def begin(self) -> int:
        return min(self.start, self.rows)

    @property
    def end(self) -> int:
        """First position not read: the end of the last full window (or of the order, without drop_last)."""
        if not self.drop_last:
            return self.rows
        return self.begin + (self.rows - self.begin) // self.global_batch * self.global_batch

    @property
    def steps(self) -> int:
        """Optimizer steps this layout feeds (a last partial window counts when kept)."""
        return -(-(self.end - self.begin) // self.global_batch)

    @property
    def micro_batches(self) -> int:
        """Micro-batches (global micro-steps) this layout feeds."""
        return -(-(self.end - self.begin) // self.micro_span)

    def rank_rows(self, rank: int) -> int:
        """Rows rank ``rank`` reads in all."""
        return int(len(self.positions(rank)))

    def window(self, step: int) -> tuple[int, int]:
        """[first, end) positions of optimizer step ``step`` (relative to this layout's start)."""
        a = self.begin + step * self.global_batch
        return a, min(a + self.global_batch, self.end)

    def micro_batch_positions(self, rank: int, t: int) -> range:
        """Positions rank ``rank`` reads in its micro-batch ``t`` (may be short or empty at the end)."""
        a = self.begin + t * self.micro_span + rank * self.micro_batch
        return range(min(a, self.end), min(a + self.micro_batch, self.end))

    def positions(self, rank: int, worker: int = 0, workers: int = 1, lo: int = 0, hi: int | None = None
                  ) -> np.ndarray:
        """Sorted positions in [lo, hi) that (rank, worker of ``workers``) yields, in the order it yields them."""
        workers = integer("workers", workers, 1)
        if not (0 <= integer("rank", rank) < self.world and 0 <= integer("worker", worker) < workers):
            raise ValueError(f"rank {rank} of {self.world}, worker {worker} of {workers}: out of range")
        lo, hi = max(lo, self.begin), min(self.end if hi is None else hi, self.end)
        if hi <= lo:
            return np.empty(0, dtype=np.int64)
        period = integer("world_size * micro_batch * workers", self.micro_span * workers, 1, 2**62)
        offset = worker * self.micro_span + rank * self.micro_batch
        c0, c1 = (lo - self.begin) // period, -(-(hi - self.begin) // period)
        # the block's positions past ``hi`` are never read: it holds at most the rows, whatever b is
        block = self.begin + offset + np.arange(min(self.micro_batch, max(0, hi - self.begin - offset)),
                                                dtype=np.int64)
        pos = (np.arange(c0, c1, dtype=np.int64)[:, None] * period + block[None, :]).ravel()
        return pos[(pos >= lo) & (pos < hi)]

    def owner(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(step, micro-step within the step, rank) that should consume each position."""
        rel = np.asarray(positions, dtype=np.int64) - self.begin
        micro = rel // self.micro_span
        return micro // self.grad_accum, micro % self.grad_accum, (rel % self.micro_span) // self.micro_batch
