"""A stable sort of keyed rows that does not fit in memory: sample, partition, sort each partition.

The input is a stream of chunks ``(keys, rows)`` (float64 keys, :data:`~.keyfiles.ROW`
records) produced by a callable, so the stream can be read again. The sorted rows go to
a sink, in order, a bounded piece at a time. Equal keys keep their stream order, so the
result is exactly ``rows[np.argsort(keys, kind="stable")]``.

1. Splitters come from a systematic sample of the keys (or from the caller, when the
   key distribution is known). A key value frequent enough to fill a partition by itself
   gets a partition of exactly that value.
2. One pass appends every row, with its key, to its partition's file, in stream order.
3. Partitions are finished in key order: a partition of a single key value is already in
   stream order and is copied as it is (so heavy ties never need memory); one that fits
   is loaded and stably sorted; a larger mixed one is sorted the same way recursively,
   with splitters from its own sample that always cut it in at least two.

Keys must not be NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reorder_cli.util.npy import ROW, read_records, take, write_array, writing

#: A row with its sort key, as partition files hold them.
KEYED = np.dtype([("key", "<f8"), *((name, ROW.fields[name][0]) for name in ROW.names)])

Chunks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
Sink = Callable[[np.ndarray], None]

#: Bytes per row of a scan chunk: the caller's reads and the partitioning's copies (measured peak ~130).
SCAN_BYTES = 160
#: Bytes per row of a partition sorted in memory: records 32, key copy 8, argsort 8 + merge buffer 4, output.
SORT_BYTES = 64
#: Rows of a scan chunk or an output piece at most: buffers of a few MB, which the allocator
#: reuses instead of mapping fresh pages for every chunk (page faults cost as much as the work).
PIECE_ROWS = 1 << 19
#: Partitions of one partitioning pass at most (with heavy-value partitions, 3x as many files
#: can be open at once). Larger inputs give oversized partitions, partitioned again.
MAX_PARTS = 128
SAMPLE_MIN, SAMPLE_MAX = 4096, 1 << 20


@dataclass
class SortStats:
    sorts: int = 0  # external sorts run (each is one sample-partition-sort, or one in-memory sort)
    partitions: int = 0  # partition files written, at every depth
    single_key_partitions: int = 0  # partitions of one key value, copied without sorting
    max_depth: int = 0  # deepest re-partitioning of an oversized mixed partition (0: none)
    spilled_bytes: int = 0  # bytes written to partition files


class ExternalSort:
    """Sorts keyed streams within ``memory_bytes`` (plus a constant), spilling under ``work_dir``."""

    def __init__(self, work_dir: Path, memory_bytes: int, stats: SortStats | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.chunk_rows = min(PIECE_ROWS, max(8, memory_bytes // SCAN_BYTES))
        self.partition_rows = max(8, memory_bytes // SORT_BYTES)
        self.stats = stats or SortStats()
        self._serial = 0

    def parts(self, count: int) -> int:
        """Partitions to aim for: half full on average, so sampling error rarely overflows one."""
        return min(MAX_PARTS, max(2, math.ceil(2 * count / self.partition_rows)))

    def sort(self, chunks: Chunks, count: int, sink: Sink, splitters: np.ndarray | None = None) -> None:
        """Sink the ``count`` rows of ``chunks()`` stably sorted by key. With ``splitters``
        given, ``chunks()`` is called exactly once (its keys may be drawn on the fly)."""
        self.stats.sorts += 1
        self._sort(chunks, count, sink, splitters, depth=0)

    # ------------------------------------------------------------ internals

    def _sort(self, chunks: Chunks, count: int, sink: Sink, splitters: np.ndarray | None, depth: int) -> None:
        if count <= self.partition_rows:
            self._sort_loaded(_load(chunks(), count), sink)
            return
        if splitters is None:
            splitters = choose_splitters(sample_keys(chunks(), count, self.parts(count)), self.parts(count))
        self.stats.max_depth = max(self.stats.max_depth, depth)
        files, counts, lows, highs = self._partition(chunks(), splitters)
        for path, n, low, high in zip(files, counts, lows, highs, strict=True):
            if n:
                self._finish(path, int(n), low, high, sink, depth)
                path.unlink()

    def _partition(self, chunks: Iterator, splitters: np.ndarray):
        """Append every row with its key to the file of its partition, in stream order."""
        self._serial += 1
        nparts = len(splitters) + 1
        files = [self.work_dir / f"part-{self._serial}-{i:05d}.bin" for i in range(nparts)]
        counts = np.zeros(nparts, dtype=np.int64)
        lows, highs = np.full(nparts, np.inf), np.full(nparts, -np.inf)
        handles: dict[int, object] = {}
        try:
            for keys, rows in chunks:
                part = np.searchsorted(splitters, keys, side="right").astype(np.uint16)  # radix-sortable
                keyed = take(keyed_rows(keys, rows), np.argsort(part, kind="stable"))
                sizes = np.bincount(part, minlength=nparts)
                present = np.flatnonzero(sizes)
                starts = (np.cumsum(sizes) - sizes)[present]
                lows[present] = np.minimum(lows[present], np.minimum.reduceat(keyed["key"], starts))
                highs[present] = np.maximum(highs[present], np.maximum.reduceat(keyed["key"], starts))
                counts += sizes
                for p, start in zip(present.tolist(), starts.tolist(), strict=True):  # a loop over partitions
                    if p not in handles:
                        handles[p] = open(files[p], "wb")  # noqa: SIM115 (closed below)
                    write_array(handles[p], keyed[start : start + sizes[p]], files[p])
                    self.stats.spilled_bytes += int(sizes[p]) * KEYED.itemsize
        finally:
            for p, handle in handles.items():
                with writing(files[p]):
                    handle.close()
        self.stats.partitions += len(handles)
        return files, counts, lows, highs

    def _finish(self, path: Path, count: int, low: float, high: float, sink: Sink, depth: int) -> None:
        if low == high:  # one key value: stream order is sorted order
            self.stats.single_key_partitions += 1
            for _, rows in _file_chunks(path, count, self.chunk_rows):
                sink(rows)
        elif count <= self.partition_rows:
            self._sort_loaded(read_records(path, KEYED, 0, count), sink)
        else:
            def chunks():
                return _file_chunks(path, count, self.chunk_rows)

            splitters = choose_splitters(sample_keys(chunks(), count, self.parts(count)), self.parts(count))
            self._sort(chunks, count, sink, cut_between(splitters, low, high), depth + 1)

    def _sort_loaded(self, keyed: np.ndarray, sink: Sink) -> None:
        by_key = np.argsort(np.ascontiguousarray(keyed["key"]), kind="stable")
        for start in range(0, len(by_key), self.chunk_rows):  # a loop over output pieces
            sink(plain_rows(take(keyed, by_key[start : start + self.chunk_rows])))


# ---------------------------------------------------------------- helpers


def keyed_rows(keys: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:data:`KEYED` records from keys and :data:`ROW` records (into ``out`` if given)."""
    out = np.empty(len(keys), dtype=KEYED) if out is None else out
    out["key"] = keys
    for name in ROW.names:
        out[name] = rows[name]
    return out


def plain_rows(keyed: np.ndarray) -> np.ndarray:
    """The :data:`ROW` records of :data:`KEYED` ones (a contiguous copy without the key)."""
    rows = np.empty(len(keyed), dtype=ROW)
    for name in ROW.names:
        rows[name] = keyed[name]
    return rows


def _load(chunks: Iterator, count: int) -> np.ndarray:
    keyed = np.empty(count, dtype=KEYED)
    filled = 0
    for keys, rows in chunks:
        keyed_rows(keys, rows, keyed[filled : filled + len(keys)])
        filled += len(keys)
    if filled != count:
        raise AssertionError(f"sort stream gave {filled} rows, expected {count}")
    return keyed


def _file_chunks(path: Path, count: int, chunk_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, count, chunk_rows):
        keyed = read_records(path, KEYED, start, min(chunk_rows, count - start))
        yield keyed["key"], plain_rows(keyed)


def sample_keys(chunks: Iterator, count: int, parts: int) -> np.ndarray:
    """Every k-th key of the stream, about ``64 * parts`` of them (at least 4096, at most 2**20)."""
    step = max(1, count // min(max(64 * parts, SAMPLE_MIN), SAMPLE_MAX))
    picked, seen = [], 0
    for keys, _ in chunks:
        picked.append(np.array(keys[(-seen) % step :: step]))
        seen += len(keys)
    return np.concatenate(picked) if picked else np.empty(0)


def choose_splitters(sample: np.ndarray, parts: int) -> np.ndarray:
    """Ascending splitters cutting the sample into about ``parts`` equal partitions.

    Partition i holds the keys in ``[splitters[i-1], splitters[i])``. A value that fills
    at least one partition's share of the sample gets a partition of its own (splitters at
    the value and just above it), so heavy ties never share a partition with other keys.
    """
    ordered = np.sort(sample)
    if len(ordered) == 0 or parts <= 1:
        return np.empty(0)
    cuts = ordered[(np.arange(1, parts) * len(ordered)) // parts]
    values, counts = np.unique(ordered, return_counts=True)
    heavy = values[counts * parts >= len(ordered)]
    return np.unique(np.concatenate([cuts, heavy, np.nextafter(heavy, np.inf)]))


def cut_between(splitters: np.ndarray, low: float, high: float) -> np.ndarray:
    """``splitters``, plus one just above ``low`` when none falls in ``(low, high]``: a mixed
    partition (``low < high``) is then always cut in at least two non-empty parts."""
    if np.any((splitters > low) & (splitters <= high)):
        return splitters
    return np.unique(np.append(splitters, np.nextafter(low, np.inf)))


def uniform_splitters(parts: int) -> np.ndarray:
    """Splitters for keys uniform in [0, 1) (``Generator.random`` draws)."""
    return np.arange(1, parts, dtype=np.float64) / parts
