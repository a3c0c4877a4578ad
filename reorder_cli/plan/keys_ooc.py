"""The plan's keys out of core: the same order as ``plan.build`` in memory, within a memory budget.

:func:`order_out_of_core` reads the scores and sizes (``.npy``, global input order) a
chunk at a time and writes the three arrays ``plan.build`` computes in memory, as
``.npy`` files: the global input index, the score and the size at each output position.
The result is identical to the in-memory path for every method and parameter.

The passes, each bounded by the budget:

1. survey: count the valid scores, sample them, spill the invalid rows (input order);
2. a stable external sort (:mod:`.external_sort`) of the valid rows by score (by
   ``-score`` when descending; always ascending for ``segment``); ``shuffle`` and the
   segments sort by ``Generator.random`` keys instead (``orderings.random_order``), the
   Gumbel jitter sorts the sorted rows again by ``rank + temperature * Gumbel``;
3. arrange: walk the output positions a chunk of whole JIT windows at a time, compute
   the rank at each (FO-L / ZIG-L / STR / SAW are arithmetic, :mod:`.rank_maps`), gather
   those rows from the sorted file and shuffle the windows with one generator;
4. the invalid rows go first or last, or are dropped, as ``invalid_scores`` says.

:func:`keys_fit` tells whether the in-memory path fits instead.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.methods import METHODS
from reorder_cli.methods.orderings import random_order, segment_sizes
from reorder_cli.methods.rank_maps import RankMap, window_shuffle
from reorder_cli.plan.external_sort import ExternalSort, SortStats, choose_splitters, uniform_splitters
from reorder_cli.util.npy import ROW, NpyColumn, NpyWriter, append, gather, read_records, take

#: Peak bytes a row of ``plan.build``'s keys work in memory: the sources' scores and sizes (16),
#: their concatenation, the ordering's intermediates and the plan's three arrays. Traced with
#: NumPy's allocations at 4M rows: 73 (shuffle) to 97 (str/saw with JIT), 102 for a same-end
#: segment taking 60% of the rows (Python's shuffle list), up to ~130 when it takes them all.
#: Other per-row data the sources keep (JSONL line offsets) is not included.
IN_MEMORY_BYTES_PER_ROW = 128
IN_MEMORY_CONSTANT = 64 << 20  # Python, NumPy and the allocator's slack
#: Bytes a row while arranging (measured peak ~130 with L = 3): the ranks and their arithmetic,
#: the gathered rows, the JIT permutation, the output copies; plus 24 a rank of reach, read or
#: mapped (a chunk of FO-L positions reaches L times as many ranks; one 4 KiB page a row at most).
ARRANGE_BYTES = 144
#: Bytes a row of the segments that must be shuffled together with Python's random.shuffle.
PICK_BYTES = 120

OUTPUT_NAMES = ("plan-order.npy", "plan-scores.npy", "plan-sizes.npy")


def keys_fit(n_rows: int, memory_bytes: int) -> bool:
    """Whether ``plan.build`` can hold the keys of ``n_rows`` rows in memory within ``memory_bytes``."""
    return n_rows * IN_MEMORY_BYTES_PER_ROW + IN_MEMORY_CONSTANT <= memory_bytes


@dataclass
class KeysStats:
    rows: int = 0  # input rows
    valid: int = 0  # rows with a valid score (that the selection kept, when there is one)
    unselected: int = 0  # rows with a valid score that the selection dropped
    written: int = 0  # output positions (valid rows, plus the invalid ones unless dropped)
    chunk_rows: int = 0  # rows a scan chunk
    partition_rows: int = 0  # rows a partition sorted in memory
    sorts: int = 0
    partitions: int = 0
    single_key_partitions: int = 0
    max_depth: int = 0
    spilled_bytes: int = 0  # every byte written to temporary files (partitions, sorted rows, invalid rows)


def order_out_of_core(
    scores_path: str | Path,
    sizes_path: str | Path,
    method: str,
    params: Mapping[str, Any],
    invalid_policy: str,
    memory_bytes: int,
    work_dir: str | Path,
    cut: Any = None,
) -> tuple[Path, Path, Path, dict]:
    """``plan.build``'s order, scores and sizes at each output position, computed out of core.

    ``scores_path`` / ``sizes_path``: 1-D ``.npy`` float64 scores (NaN: invalid) and int64
    sizes in global input order. ``invalid_policy``: ``first`` / ``last`` place the invalid
    rows (input order) before / after the valid ones; anything else drops them, as
    ``plan.build`` does. Returns the paths of ``work_dir/plan-order.npy`` (int64),
    ``plan-scores.npy`` (float64) and ``plan-sizes.npy`` (int64), each written under a
    temporary name and renamed when complete, and the run's statistics (:class:`KeysStats`).
    ``cut`` (a :class:`plan.select.Cut`): only the valid rows it keeps are ordered; the others
    are left out (invalid rows still follow ``invalid_policy``).
    Peak memory: about ``memory_bytes`` plus a constant; spills go to a temporary folder
    under ``work_dir``, removed on return.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    scores, sizes = NpyColumn(scores_path, np.float64), NpyColumn(sizes_path, np.int64)
    if len(scores) != len(sizes):
        raise ValueError(f"{len(scores)} scores but {len(sizes)} sizes")
    spill = Path(tempfile.mkdtemp(prefix="keys-", dir=work_dir))
    try:
        keys = _KeysRun(scores, sizes, params, memory_bytes, spill, cut)
        paths = keys.run(method, invalid_policy, [work_dir / name for name in OUTPUT_NAMES])
        return (*paths, asdict(keys.stats()))
    finally:
        shutil.rmtree(spill, ignore_errors=True)


class _Output:
    """The three output columns, written front to back."""

    def __init__(self, paths: list[Path], length: int) -> None:
        self.columns = []
        try:
            for path, dtype in zip(paths, ("<i8", "<f8", "<i8"), strict=True):
                self.columns.append(NpyWriter(path, dtype, length))
        except BaseException:
            self.abort()
            raise

    def write(self, rows: np.ndarray) -> None:
        for column, field in zip(self.columns, ROW.names, strict=True):
            column.write(rows[field])

    def close(self) -> list[Path]:
        return [column.close() for column in self.columns]

    def abort(self) -> None:
        for column in self.columns:
            column.abort()


class _KeysRun:
    def __init__(self, scores: NpyColumn, sizes: NpyColumn, params: Mapping[str, Any], memory: int, spill: Path,
                 cut: Any = None):
        self.scores, self.sizes, self.params, self.memory, self.spill = scores, sizes, params, memory, spill
        self.cut = cut
        self.unselected = 0
        self.sort_stats = SortStats()
        self.sorter = ExternalSort(spill, memory, self.sort_stats)
        self.chunk_rows = self.sorter.chunk_rows
        self.spilled = 0
        self.valid = 0
        self.written = 0
        self.invalid = spill / "invalid.bin"

    def stats(self) -> KeysStats:
        s = self.sort_stats
        return KeysStats(
            rows=len(self.scores), valid=self.valid, unselected=self.unselected, written=self.written,
            chunk_rows=self.chunk_rows,
            partition_rows=self.sorter.partition_rows, sorts=s.sorts, partitions=s.partitions,
            single_key_partitions=s.single_key_partitions, max_depth=s.max_depth,
            spilled_bytes=s.spilled_bytes + self.spilled,
        )

    # ------------------------------------------------------------ the run

    def run(self, method: str, invalid_policy: str, paths: list[Path]) -> list[Path]:
        descending = method != "segment" and not self.params.get("ascending", True)
        sample = self.survey(descending)
        n_invalid = len(self.scores) - self.valid - self.unselected
        self.written = self.valid + (n_invalid if invalid_policy in ("first", "last") else 0)
        out = _Output(paths, self.written)
        try:
            if invalid_policy == "first":
                self.copy(self.invalid, n_invalid, out.write)
            self.order_valid(method, sample, descending, out)
            if invalid_policy == "last":
                self.copy(self.invalid, n_invalid, out.write)
            return out.close()
        except BaseException:
            out.abort()
            raise

    def survey(self, descending: bool) -> np.ndarray:
        """Count the valid rows, sample their sort keys, spill the invalid rows in input order."""
        n = len(self.scores)
        step = max(1, n // min(max(64 * self.sorter.parts(n), 4096), 1 << 20))
        picked, seen = [], 0
        for start in range(0, n, self.chunk_rows):  # a loop over chunks
            scores = self.scores.read(start, min(self.chunk_rows, n - start))
            valid = ~np.isnan(scores)
            kept = self.kept(start, scores)
            self.unselected += int(valid.sum() - kept.sum())
            keys = scores[kept]
            sample = keys[(-seen) % step :: step]
            picked.append(-sample if descending else sample.copy())  # a copy: a view would keep the chunk
            seen += len(keys)
            if not valid.all():
                self.spilled += append(self.invalid, self.rows(start, scores, ~valid))
        self.valid = seen
        return np.concatenate(picked) if picked else np.empty(0)

    def order_valid(self, method: str, sample: np.ndarray, descending: bool, out: _Output) -> None:
        p, m = self.params, self.valid
        window = p.get("window_size", 0) or 0
        if method == "input":
            for _, rows in self.valid_chunks(_scores)():
                out.write(rows)
            return
        if method == "shuffle":
            self.sorter.sort(self.valid_chunks(self.random_keys(p["seed"])), m, out.write, self.uniform(m))
            return
        by_score = self.valid_chunks(_negated if descending else _scores)
        splitters = choose_splitters(sample, self.sorter.parts(m))
        if method == "sorting" and not p.get("use_gumbel") and window <= 1:
            self.sorter.sort(by_score, m, out.write, splitters)
            return
        ranked = self.spill / "sorted.bin"
        self.sorter.sort(by_score, m, self.appender(ranked), splitters)
        if method == "segment":
            self.segment(ranked, out)
        else:
            if method == "sorting" and p.get("use_gumbel"):
                jittered = self.spill / "gumbel.bin"
                sink = out.write if window <= 1 else self.appender(jittered)
                self.sorter.sort(self.gumbel_chunks(ranked), m, sink)
                ranked.unlink(missing_ok=True)
                ranked = jittered
                if window <= 1:
                    return
            self.arrange(ranked, METHODS[method].rank_map(m, p), window, out)

    # ------------------------------------------------------------ streams

    def kept(self, start: int, scores: np.ndarray) -> np.ndarray:
        """The rows of a chunk that are ordered: the valid ones, less those the selection dropped."""
        return ~np.isnan(scores) if self.cut is None else self.cut.keep(start, scores)

    def rows(self, start: int, scores: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """ROW records of the chunk's rows where ``keep`` is true (sizes read here)."""
        picked = np.flatnonzero(keep)
        rows = np.empty(len(picked), dtype=ROW)
        rows["row"] = start + picked
        rows["score"] = scores[picked]
        rows["size"] = self.sizes.read(start, len(scores))[picked]
        return rows

    def valid_chunks(self, keys_of: Callable[[np.ndarray], np.ndarray]) -> Callable[[], Iterator]:
        """A re-readable stream of (key, row) chunks of the valid rows, in input order;
        ``keys_of`` maps a chunk's valid scores to its keys (called once per chunk, in order)."""

        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(self.scores), self.chunk_rows):  # a loop over chunks
                scores = self.scores.read(start, min(self.chunk_rows, len(self.scores) - start))
                rows = self.rows(start, scores, self.kept(start, scores))
                yield keys_of(rows["score"]), rows

        return chunks

    def file_chunks(self, path: Path, start: int, stop: int) -> Iterator[np.ndarray]:
        for first in range(start, stop, self.chunk_rows):  # a loop over chunks
            yield read_records(path, ROW, first, min(self.chunk_rows, stop - first))

    def random_keys(self, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        """Keys of ``orderings.random_order``: one ``default_rng(seed).random()`` draw a row, in order."""
        rng = np.random.default_rng(seed)
        return lambda scores: rng.random(len(scores))

    def gumbel_chunks(self, ranked: Path) -> Callable[[], Iterator]:
        """The sorted rows keyed by ``rank + temperature * Gumbel``, drawn from a fresh
        ``default_rng(seed)`` on every read (the draws of ``orderings.gumbel_jitter``)."""
        seed, temperature = self.params["seed"], self.params["temperature"]

        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            rng = np.random.default_rng(seed)
            first = 0
            for rows in self.file_chunks(ranked, 0, self.valid):
                noise = rng.gumbel(size=len(rows)) * temperature
                yield np.arange(first, first + len(rows), dtype=np.float64) + noise, rows
                first += len(rows)

        return chunks

    def uniform(self, count: int) -> np.ndarray:
        return uniform_splitters(self.sorter.parts(count))

    def appender(self, path: Path) -> Callable[[np.ndarray], None]:
        def sink(rows: np.ndarray) -> None:
            self.spilled += append(path, rows)

        return sink

    def copy(self, path: Path, count: int, sink: Callable[[np.ndarray], None]) -> None:
        for rows in self.file_chunks(path, 0, count):
            sink(rows)

    # ------------------------------------------------------------ methods after the sort

    def arrange(self, ranked: Path, ranks: RankMap, window: int, out: _Output) -> None:
        """Write the rows at each output position, a chunk of whole JIT windows at a time."""
        m = self.valid
        chunk = max(1, self.memory // (ARRANGE_BYTES + 24 * ranks.spread))
        rng = None
        if window > 1 and m:
            if window > chunk:
                need = window * (ARRANGE_BYTES + 24 * ranks.spread)
                raise ReorderError(
                    f"window_size {window} needs about {math.ceil(need / 2**20)} MiB a window out of core, "
                    "over the memory budget; raise memory or lower window_size"
                )
            chunk -= chunk % window
            rng = np.random.default_rng(self.params["seed"])
        for start in range(0, m, chunk):  # a loop over chunks of positions
            stop = min(m, start + chunk)
            if ranks.identity:
                rows = read_records(ranked, ROW, start, stop - start)
            else:
                rows = gather(ranked, ranks.ranks(start, stop))
            if rng is not None:
                rows = take(rows, window_shuffle(rng, stop - start, window))
            out.write(rows)

    def segment(self, ranked: Path, out: _Output) -> None:
        """SEG on the ascending sorted rows: the segments as ``orderings.segment`` draws them."""
        p, m = self.params, self.valid
        n_front, n_back = segment_sizes(m, p["x_pct"], p["y_pct"])
        front_high, back_high = bool(p["front_is_high"]), bool(p["back_is_high"])
        if front_high == back_high:
            k = n_front + n_back
            if k * PICK_BYTES > self.memory:
                raise ReorderError(
                    f"segment: front and back both come from the {'high' if front_high else 'low'} end, so their "
                    f"{k} rows are shuffled together in memory (about {math.ceil(k * PICK_BYTES / 2**20)} MiB), "
                    "over the memory budget; raise memory or lower x_pct / y_pct"
                )
            first = m - k if front_high else 0
            picks = list(range(k))
            random.Random(p["seed"]).shuffle(picks)  # the reference's draw, replayed as orderings.segment does
            selected = take(read_records(ranked, ROW, first, k), np.asarray(picks, dtype=np.int64))
            del picks
            parts = [selected[:n_front], (0, m - k) if front_high else (k, m), selected[n_front:]]
        else:
            front, rest = _take((0, m), n_front, front_high)
            back, middle = _take(rest, n_back, back_high)
            parts = [front, middle, back]
        rng = np.random.default_rng(p["seed"])
        for part in parts:  # front, middle, back: one generator, in this order
            if isinstance(part, np.ndarray):
                out.write(take(part, random_order(len(part), rng)))
            else:
                start, stop = part

                def chunks(start=start, stop=stop) -> Iterator[tuple[np.ndarray, np.ndarray]]:
                    for rows in self.file_chunks(ranked, start, stop):
                        yield rng.random(len(rows)), rows

                self.sorter.sort(chunks, stop - start, out.write, self.uniform(stop - start))


def _scores(scores: np.ndarray) -> np.ndarray:
    return scores


def _negated(scores: np.ndarray) -> np.ndarray:
    return -scores


def _take(span: tuple[int, int], k: int, high: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """``orderings.segment``'s ``take`` on a rank range: (the k taken, the rest)."""
    start, stop = span
    if k <= 0:
        return (start, start), span
    return ((stop - k, stop), (start, stop - k)) if high else ((start, start + k), (start + k, stop))
