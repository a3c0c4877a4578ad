"""The plan's arrays as views over the place tasks' own files: never assembled on one node.

Each place task writes its range of output positions as raw files (no header), one a field, and
records its row count, the sum of its sizes and the largest (:mod:`reorder_cli.plan.order_tasks`). The
views put the pieces end to end without copying them:

- :class:`Chunked`: one field (``order``, ``scores``) of every piece, read a range at a time;
- :class:`Ends`: the running total of the sizes. A piece holds its own running total (from 0); the
  view adds the totals of the pieces before it, known from the records alone (O(pieces)). Its
  :meth:`Ends.searchsorted` picks the piece by those totals, then searches the piece's sample (every
  ``step``-th value, a small file) and reads one window of ``step + 1`` values: one read a search (one
  range request on a store), and consecutive searches reuse the window they share;
- :class:`Sizes`: the sizes, the differences of :class:`Ends`; its ``sum`` and ``max`` are the
  records' (no read at all).

Values are int64 and exact, so every cut made on the views is the cut made on the whole arrays.
Reads go through ``opener(path)``, a file opened for random reads: a local file, or an object of a
store read by range requests (:meth:`reorder_cli.workdir.WorkDir.open_data`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from reorder_cli.util.npy import read_records_at

Opener = Callable[[Path], IO[bytes]]
#: Windows of :class:`Ends` kept after a search (consecutive cuts fall in the same or the next window).
WINDOWS_KEPT = 8


def open_local(path: Path) -> IO[bytes]:
    return open(path, "rb")  # noqa: SIM115 - the caller closes


def sample_step(rows: int) -> int:
    """Every how many values of a piece's running total its sample keeps one: at least 64 values of a
    piece, when it has them, and windows of at most 4,096 values (32 KB)."""
    return int(np.clip(rows // 64, 1, 4096))


@dataclass(frozen=True)
class Piece:
    """One place task's part of the plan: its files' ``paths`` by field, ``rows`` output positions, the
    sum of their sizes (``total``) and the largest."""

    paths: dict[str, Path]
    rows: int
    total: int
    largest: int


class Chunked:
    """One field of the pieces, end to end: a read-only 1-D array read a range at a time."""

    def __init__(self, pieces: list[Piece], field: str, dtype: np.dtype | str, opener: Opener = open_local) -> None:
        self.paths = [p.paths[field] for p in pieces]
        self.dtype, self.opener = np.dtype(dtype), opener
        self.starts = np.concatenate([[0], np.cumsum([p.rows for p in pieces], dtype=np.int64)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def piece_of(self, index: int) -> int:
        """The piece holding position ``index`` (0 <= index < len)."""
        return int(np.searchsorted(self.starts, index, side="right")) - 1

    def _read(self, k: int, start: int, count: int) -> np.ndarray:
        """``count`` values of piece ``k`` from its value ``start``."""
        with self.opener(self.paths[k]) as fh:
            return read_records_at(fh, self.dtype, start, count, self.paths[k])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Positions [start, stop), across pieces."""
        if stop <= start:
            return np.empty(0, self.dtype)
        parts = []
        for k in range(self.piece_of(start), len(self.paths)):  # a loop over the pieces it spans
            lo, hi = max(start, int(self.starts[k])), min(stop, int(self.starts[k + 1]))
            if lo >= stop:
                break
            if hi > lo:
                parts.append(self._read(k, lo - int(self.starts[k]), hi - lo))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("a plan array reads contiguous slices only")
            return self.read(start, stop)
        index = int(key) + (len(self) if int(key) < 0 else 0)
        if not 0 <= index < len(self):
            raise IndexError(f"index {key} out of range for {len(self)} values")
        return self.read(index, index + 1)[0]

    def __array__(self, dtype=None, copy=None):
        whole = self.read(0, len(self))
        return whole if dtype is None else whole.astype(dtype)

    def chunks(self, rows: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), rows):  # a loop over chunks
            yield self.read(start, start + rows)


class Ends(Chunked):
    """The running total of the sizes: each piece's own running total plus the totals before it."""

    def __init__(self, pieces: list[Piece], opener: Opener = open_local) -> None:
        super().__init__(pieces, "ends", np.int64, opener)
        self.samples = [p.paths["sample"] for p in pieces]
        self.base = np.concatenate([[0], np.cumsum([p.total for p in pieces], dtype=np.int64)]).astype(np.int64)
        self._sampled: dict[int, np.ndarray] = {}
        self._windows: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def _read(self, k: int, start: int, count: int) -> np.ndarray:
        return super()._read(k, start, count) + self.base[k]

    def _sample(self, k: int) -> np.ndarray:
        if k not in self._sampled:
            with self.opener(self.samples[k]) as fh:
                size = fh.seek(0, 2)
                self._sampled[k] = read_records_at(fh, self.dtype, 0, size // self.dtype.itemsize, self.samples[k])
        return self._sampled[k]

    def _window(self, k: int, w: int) -> tuple[int, np.ndarray]:
        """(first value, values) of window ``w`` of piece ``k``: its local values [w * step, (w + 1) * step]."""
        rows = int(self.starts[k + 1] - self.starts[k])
        step = sample_step(rows)
        first = w * step
        if (k, w) not in self._windows:
            self._windows[(k, w)] = Chunked._read(self, k, first, min(rows, first + step + 1) - first)
            while len(self._windows) > WINDOWS_KEPT:
                self._windows.popitem(last=False)
        return first, self._windows[(k, w)]

    def __getitem__(self, key):
        if isinstance(key, slice):
            return super().__getitem__(key)
        index = int(key) + (len(self) if int(key) < 0 else 0)
        if not 0 <= index < len(self):
            raise IndexError(f"index {key} out of range for {len(self)} values")
        return self.at(index)

    def at(self, index: int) -> int:
        """The value at ``index`` (through the windows a search keeps)."""
        k = self.piece_of(index)
        local = index - int(self.starts[k])
        first, window = self._window(k, local // sample_step(int(self.starts[k + 1] - self.starts[k])))
        return int(window[local - first]) + int(self.base[k])

    def searchsorted(self, value: int, side: str = "left") -> int:
        """:func:`numpy.searchsorted` of one value: the piece by the totals before each, then one window."""
        value = int(value)
        k = int(np.searchsorted(self.base[1:], value, side=side))  # the first piece whose last value passes
        if k == len(self.paths):
            return len(self)
        local = value - int(self.base[k])
        j = int(np.searchsorted(self._sample(k), local, side=side))  # sample[j - 1] before, sample[j] past
        if j == 0:
            return int(self.starts[k])
        first, window = self._window(k, j - 1)
        return int(self.starts[k]) + first + int(np.searchsorted(window, local, side=side))


class Sizes:
    """The sizes, the differences of :class:`Ends`; their sum and largest value come from the pieces'
    records, without a read."""

    def __init__(self, ends: Ends, largest: int) -> None:
        self.ends, self.largest = ends, largest
        self.dtype = np.dtype(np.int64)

    def __len__(self) -> int:
        return len(self.ends)

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def sum(self, axis=None, dtype=None, out=None) -> int:  # what np.sum calls
        return int(self.ends.base[-1])

    def max(self, axis=None, out=None, initial=None) -> int:  # what np.max calls
        return self.largest if initial is None else max(self.largest, int(initial))

    def __getitem__(self, key):
        if not isinstance(key, slice):
            index = int(key) + (len(self) if int(key) < 0 else 0)
            return self[index : index + 1][0]
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise IndexError("a plan array reads contiguous slices only")
        if stop <= start:
            return np.empty(0, np.int64)
        ends = self.ends.read(max(0, start - 1), stop)
        return np.diff(ends, prepend=np.int64(0)) if start == 0 else np.diff(ends)

    def __array__(self, dtype=None, copy=None):
        whole = self[0 : len(self)]
        return whole if dtype is None else whole.astype(dtype)

    def chunks(self, rows: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), rows):  # a loop over chunks
            yield self[start : start + rows]


@dataclass(frozen=True)
class PlanArrays:
    """The plan's arrays over its pieces (:func:`plan_arrays`)."""

    order: Chunked
    scores: Chunked
    sizes: Sizes
    ends: Ends


def plan_arrays(pieces: list[Piece], opener: Opener = open_local) -> PlanArrays:
    """Views of the pieces' order, scores, sizes and their running total; nothing read yet."""
    ends = Ends(pieces, opener)
    return PlanArrays(Chunked(pieces, "order", np.int64, opener), Chunked(pieces, "scores", np.float64, opener),
                      Sizes(ends, max((p.largest for p in pieces), default=0)), ends)
