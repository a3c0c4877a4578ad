"""The global order as independent tasks: split, then sort (one key range each), then place (one chunk
of output positions each). Same bytes as :func:`reorder_cli.plan.build.build` in memory, for every
method and parameter.

Every method is a data-dependent part and a data-independent part:

- the **ranked rows**: the valid (selected) rows stably sorted by key (``score``, ``-score`` when
  descending, always ascending for ``segment``), or, for ``shuffle`` and ``input``, the kept rows in
  input order;
- a **map from output position to rank** that depends only on ``(m, parameters, seed)``: FO-L, ZIG-L,
  STR and SAW are arithmetic (:mod:`reorder_cli.methods.rank_maps`); JIT shuffles windows with one
  generator whose state at each place chunk the split task records by replaying the draws; the Gumbel
  jitter, ``shuffle`` and the segments of ``segment`` are stable sorts of generator draws, which are
  sorted by range like the scores (:func:`sort_task`).

The files (``keys``: one input each, written by the keys task; ``order``: this module's)::

    keys/run-NNNNN.bin      KEYED records of the input's valid rows, sorted by key (rows local to the file)
    keys/invalid-NNNNN.npy  the input's invalid rows (local), in input order
    keys/sample-NNNNN.npy   every SAMPLE_STEP-th key of the run (splitters come from these)
    order/split.json        what the split task decided: counts, cut, sorts and their splitters, place chunks
    order/sort-KKKKK.bin    sort task K's rows in order (ROW records, or int64 indices for draw sorts)
    order/jit.json          JIT: the generator's state at the start of every place chunk
    order/picks.npy         segment, both segments from one end: Python's shuffle of the picks
    order/kept.npy          shuffle / input with invalid or unselected rows: the kept rows, in input order
    plan/order-AAAAA.bin    place task A's piece of the plan (:func:`write_piece`): the input row, the
    plan/scores-AAAAA.bin   score and the running total of the sizes (from 0) at each of its output
    plan/ends-AAAAA.bin     positions, and every few values of that total (the sample its searches
    plan/sample-AAAAA.bin   start from); its record: rows, the total and the largest size
    plan/pairs-AAAAA.bin    place task A's (input row, output position) pairs, sorted by input row

The plan's arrays are these pieces end to end (:mod:`reorder_cli.util.chunked`), never assembled: the
layout reads the pieces' records and the windows its cuts fall in.

Every file is one task's alone and written once, whole: no task writes into another's file, so the
work folder can be an object store (no rename, no positioned writes).

A range sort reads only its key range of each input's sorted run (a binary search in each), so a
sort task reads about ``1/ranges`` of the keys. Ranges follow a sample of the keys; a key value
frequent enough gets a range of its own (never sorted: its rows are already in input order).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.methods import METHODS
from reorder_cli.methods.orderings import segment_sizes
from reorder_cli.methods.rank_maps import window_shuffle
from reorder_cli.plan import select as selection
from reorder_cli.plan.external_sort import KEYED, ExternalSort, choose_splitters, plain_rows
from reorder_cli.util import atomic, state_io
from reorder_cli.util.chunked import Piece, sample_step
from reorder_cli.util.npy import (
    CHUNK_ROWS,
    ROW,
    NpyColumn,
    NpyWriter,
    read_records,
    read_records_at,
    save_npy,
    take,
    write_array,
)

#: Every SAMPLE_STEP-th key (at most) of each input's sorted run is kept for the splitters (n / 4096 in all).
SAMPLE_STEP = 4096
#: Bytes a row costs a range sort in memory (:data:`external_sort.SORT_BYTES`, doubled: ranges are
#: cut from a sample, so some are bigger than the average; a range that outgrows the budget is
#: sorted out of core by :class:`ExternalSort`).
RANGE_BYTES = 128
#: Bytes a valid row costs a keys task's sort in memory: its KEYED record (32), the keys and their argsort
#: (16), the ROW records in order (24) and their KEYED copy (32).
RUN_BYTES = 104
#: Bytes a draw costs a draw sort: its key and index (16), the kept ones and their sort (32).
DRAW_BYTES = 64
#: Bytes a position costs a place task: ranks, the JIT permutation, the gathered rows, its piece (order,
#: scores, running total of sizes) and the (row, position) pairs, plus 24 a rank of reach (see
#: keys_ooc.ARRANGE_BYTES).
PLACE_BYTES = 192
#: Bytes a pick costs the split task when both segments come from the same end (Python's shuffle list).
PICK_BYTES = 120
#: Draws a generator chunk at most (a Gumbel chunk's state is recorded); fewer under a small budget.
DRAW_CHUNK = 1 << 20
#: Bytes a draw costs while a chunk is drawn and filtered: the keys, the mask, the indices kept.
DRAW_CHUNK_BYTES = 48


def draw_chunk(memory: int) -> int:
    """Draws a chunk: what a task's budget allows, at least 1,024, at most :data:`DRAW_CHUNK`."""
    return min(DRAW_CHUNK, max(1 << 10, memory // DRAW_CHUNK_BYTES))
#: (input row, output position), as place tasks write them for the scatter tasks.
PAIR = np.dtype([("row", "<i8"), ("pos", "<i8")])
SORTED_METHODS = ("sorting", "folding", "zigzag", "str", "saw")
#: A place task's piece of the plan: its files by field (raw values, no header), and their dtypes.
PIECE_FILES = (("order", "<i8"), ("scores", "<f8"), ("ends", "<i8"), ("sample", "<i8"))


# ------------------------------------------------------------------ keys (one input)


def key_name(name: str, index: int) -> str:
    return f"{name}-{index:05d}.{'bin' if name == 'run' else 'npy'}"


def write_order_keys(folder: Path, index: int, scores: np.ndarray, sizes: np.ndarray,
                     descending: bool | None, memory: int = 0) -> int:
    """The keys task's part for the order: the input's invalid rows, and (``descending`` not None) its
    valid rows sorted by key, and a sample of the keys. Returns the valid rows.

    The sort holds about :data:`RUN_BYTES` a valid row; past ``memory`` (a task's budget, when given)
    it runs out of core (:class:`ExternalSort`), with the same result."""
    folder.mkdir(parents=True, exist_ok=True)
    valid = ~np.isnan(scores)
    save_npy(folder / key_name("invalid", index), np.flatnonzero(~valid).astype(np.int64))
    n_valid = int(np.count_nonzero(valid))
    if descending is None:
        return n_valid
    step = _sample_step(n_valid)
    path, picked = folder / key_name("run", index), []
    with atomic.open_atomic(path, "wb") as fh:
        written = 0

        def sink(rows: np.ndarray) -> None:  # ROW records in key order -> KEYED records, and the sample
            nonlocal written
            keyed = np.empty(len(rows), dtype=KEYED)
            keyed["key"] = -rows["score"] if descending else rows["score"]
            for name in ROW.names:
                keyed[name] = rows[name]
            write_array(fh, keyed, path)
            picked.append(keyed["key"][(-written) % step :: step].copy())
            written += len(rows)

        if not memory or n_valid * RUN_BYTES <= memory:
            rows = np.flatnonzero(valid)
            keys = -scores[rows] if descending else scores[rows]
            order = np.argsort(keys, kind="stable")
            out = np.empty(len(rows), dtype=ROW)
            out["row"], out["score"], out["size"] = rows[order], scores[rows][order], sizes[rows][order]
            sink(out)
        else:
            spill = Path(tempfile.mkdtemp(prefix=f"keys-{index:05d}-", dir=folder))
            try:
                sorter = ExternalSort(spill, memory)
                sorter.sort(lambda: _valid_chunks(scores, sizes, descending, sorter.chunk_rows), n_valid, sink)
            finally:
                shutil.rmtree(spill, ignore_errors=True)
    save_npy(folder / key_name("sample", index), np.concatenate(picked) if picked else np.empty(0))
    return n_valid


def _valid_chunks(scores: np.ndarray, sizes: np.ndarray, descending: bool,
                  chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(key, ROW) of the valid rows, a chunk of rows at a time, in input order."""
    for start in range(0, len(scores), chunk):  # a loop over chunks
        part = scores[start : start + chunk]
        keep = np.flatnonzero(~np.isnan(part))
        rows = np.empty(len(keep), dtype=ROW)
        rows["row"], rows["score"], rows["size"] = start + keep, part[keep], sizes[start : start + chunk][keep]
        yield (-rows["score"] if descending else rows["score"]), rows


class _Columns:
    """One key column (``scores``, ``sizes``, ``tokens``) of every input, read by global row."""

    def __init__(self, folder: Path, name: str, row_starts: np.ndarray, dtype: str):
        self.paths = [folder / key_name(name, i) for i in range(len(row_starts) - 1)]
        self.starts, self.dtype = row_starts, np.dtype(dtype)

    def read(self, start: int, count: int) -> np.ndarray:
        parts, stop = [], start + count
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        for f in range(max(first, 0), len(self.paths)):  # a loop over files
            lo, hi = max(start, self.starts[f]), min(stop, self.starts[f + 1])
            if lo >= stop:
                break
            if hi > lo:
                parts.append(NpyColumn(self.paths[f], self.dtype).read(int(lo - self.starts[f]), int(hi - lo)))
        return np.concatenate(parts) if parts else np.empty(0, self.dtype)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), self.dtype)
        files = np.searchsorted(self.starts, rows, side="right") - 1
        for f in np.unique(files):  # a loop over files
            at = np.flatnonzero(files == f)
            local = rows[at] - self.starts[f]
            column = np.load(self.paths[f], mmap_mode="r")
            out[at] = column[local]
            del column
        return out


class _Pieces:
    """The concatenation of record files (sort outputs), read by index."""

    def __init__(self, paths: list[Path], dtype: np.dtype):
        self.paths, self.dtype = paths, np.dtype(dtype)
        counts = [p.stat().st_size // self.dtype.itemsize for p in paths]
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)

    def gather(self, index: np.ndarray) -> np.ndarray:
        out = np.empty(len(index), self.dtype)
        if not len(index):
            return out
        which = np.searchsorted(self.offsets, index, side="right") - 1
        for k in np.unique(which):  # a loop over pieces
            at = np.flatnonzero(which == k)
            local = index[at] - self.offsets[k]
            lo, hi = int(local.min()), int(local.max()) + 1
            if hi - lo <= 4 * len(at):  # dense: one read
                out[at] = take(read_records(self.paths[k], self.dtype, lo, hi - lo), local - lo)
            else:
                mapped = np.memmap(self.paths[k], dtype=self.dtype, mode="r", offset=lo * self.dtype.itemsize,
                                   shape=(hi - lo,))
                out[at] = take(mapped, local - lo)
                del mapped
        return out


# ------------------------------------------------------------------ split (one task)


def run_direction(method: str, params: Mapping[str, Any]) -> bool | None:
    """Whether the ranked rows are sorted by descending score (what the keys task passes to
    :func:`write_order_keys`); None when they are not sorted by score (``shuffle``, ``input``)."""
    if method in ("shuffle", "input"):
        return None
    return method != "segment" and not params.get("ascending", True)


def split(keys: Path, order: Path, plan: Path, rows: list[int], valid: list[int], method: str,
          params: Mapping[str, Any], policy: str, select: Mapping[str, Any] | None, memory: int) -> dict:
    """Decide the sort ranges and place chunks; write ``order/split.json`` last (the task's proof).

    ``rows`` / ``valid``: each input's rows and valid rows (the keys tasks' records); ``memory``: a
    task's budget in bytes.
    """
    order.mkdir(parents=True, exist_ok=True)
    plan.mkdir(parents=True, exist_ok=True)
    row_starts = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)]).astype(np.int64)
    n, n_valid = int(row_starts[-1]), int(sum(valid))
    if n == 0:
        raise ReorderError("the inputs hold no rows")
    meta: dict[str, Any] = {"rows": n, "valid": n_valid, "valid_by_file": [int(v) for v in valid],
                            "row_starts": row_starts.tolist(), "method": method,
                            "params": dict(params), "policy": policy, "cut": None, "selection": None}
    m = n_valid
    if select:
        scores = _Columns(keys, "scores", row_starts, "<f8")
        tokens = _Columns(keys, "tokens", row_starts, "<i8") if selection.token_field(select) else None
        chosen = selection.choose(select, n, lambda s, c: (scores.read(s, c), None if tokens is None
                                                          else tokens.read(s, c)),
                                  min(selection.CHUNK_ROWS, max(1 << 16, memory // 64)))
        meta["cut"], meta["selection"] = [chosen.cut.score, chosen.cut.from_row], chosen.to_json()
        m = int(chosen.rows_after)
    n_inv = n - n_valid
    written = m + (n_inv if policy in ("first", "last") else 0)
    if written == 0:
        raise ReorderError("no row has a valid score; nothing to write (see invalid_scores)")
    meta.update(kept=m, invalid=n_inv, written=written)
    meta["sorts"] = _sorts(keys, order, len(rows), method, params, m, memory)
    meta["place"] = _place_chunks(order, method, params, m, n_inv, policy, memory)
    if method == "segment":
        meta["segment"] = _segment(order, params, m, memory)
    meta["kept_file"] = method in ("shuffle", "input") and (n_inv > 0 or bool(select))
    if meta["kept_file"]:
        _write_kept(keys, order, row_starts, meta["cut"], m)
    atomic.write_json(order / "split.json", meta)
    return meta


def _sorts(keys: Path, order: Path, files: int, method: str, params: Mapping[str, Any], m: int,
           memory: int) -> list[dict]:
    """The sorts of the run, each cut into key ranges (one sort task a range)."""
    sorts = []
    if run_direction(method, params) is not None:
        samples = [np.load(keys / key_name("sample", i)) for i in range(files)
                   if (keys / key_name("sample", i)).exists()]
        sample = np.concatenate(samples) if samples else np.empty(0)
        parts = max(1, math.ceil(m * RANGE_BYTES / max(1, memory)))
        splitters = choose_splitters(sample, parts) if parts > 1 else np.empty(0)
        sorts.append({"name": "score", "splitters": splitters.tolist(), "ranges": len(splitters) + 1})
    seed = params.get("seed")
    if method == "shuffle":
        sorts.append(_draws("shuffle", m, 0, seed, memory))
    elif method == "segment":
        n_front, n_back = segment_sizes(m, params["x_pct"], params["y_pct"])
        lengths = {"front": n_front, "middle": m - n_front - n_back, "back": n_back}
        offset = 0
        for name, length in lengths.items():  # one generator: front, middle, back in turn
            sorts.append(_draws(name, length, offset, seed, memory))
            offset += length
    elif method == "sorting" and params.get("use_gumbel"):
        sorts.append(_gumbel(order, m, params, memory))
    return sorts


def _draws(name: str, length: int, offset: int, seed: int, memory: int) -> dict:
    """A stable sort of ``length`` ``default_rng(seed).random()`` draws from draw ``offset`` on
    (``orderings.random_order``); the draws are uniform in [0, 1), so the ranges are equal."""
    ranges = max(1, math.ceil(length * DRAW_BYTES / max(1, memory)))
    return {"name": name, "draws": "random", "length": length, "offset": offset, "seed": seed,
            "chunk": draw_chunk(memory),
            "splitters": (np.arange(1, ranges) / ranges).tolist(), "ranges": ranges}


def _gumbel(order: Path, m: int, params: Mapping[str, Any], memory: int) -> dict:
    """``orderings.gumbel_jitter``'s sort of ``rank + temperature * Gumbel`` keys, by range of key.
    The draws are replayed once here: the generator's state at each chunk, and the chunk's least
    and greatest key, so a range task draws only the chunks that reach its range."""
    rng = np.random.default_rng(params["seed"])
    ranges = max(1, math.ceil(m * DRAW_BYTES / max(1, memory)))
    # the keys spread over ranks and temperature * Gumbel: ranges follow a sample of them (about 64 keys
    # a range), or a temperature of the order of m would put most draws in the first and last ranges
    step = int(np.clip(memory // (64 * DRAW_BYTES), 1, SAMPLE_STEP))
    states, lows, highs, sample = [], [], [], []
    chunk = draw_chunk(memory)
    for start in range(0, m, chunk):  # a loop over chunks
        states.append(rng.bit_generator.state)
        count = min(chunk, m - start)
        keys = np.arange(start, start + count, dtype=np.float64) + rng.gumbel(size=count) * params["temperature"]
        lows.append(float(keys.min()))
        highs.append(float(keys.max()))
        sample.append(keys[(-start) % step :: step].copy())
    atomic.write_json(order / "gumbel.json", {"states": states, "lows": lows, "highs": highs})
    splitters = choose_splitters(np.concatenate(sample), ranges) if ranges > 1 and sample else np.empty(0)
    return {"name": "gumbel", "draws": "gumbel", "length": m, "offset": 0, "seed": params["seed"], "chunk": chunk,
            "temperature": params["temperature"], "splitters": splitters.tolist(), "ranges": len(splitters) + 1}


def _place_chunks(order: Path, method: str, params: Mapping[str, Any], m: int, n_inv: int, policy: str,
                  memory: int) -> dict:
    """Place tasks: chunks of whole JIT windows of the valid rows' positions, then of the invalid rows'."""
    window = (params.get("window_size", 0) or 0) if method in SORTED_METHODS else 0
    method_info = METHODS[method]
    spread = method_info.rank_map(max(m, 1), params).spread if method_info.rank_map else 1
    chunk = max(1, memory // (PLACE_BYTES + 24 * spread))
    if window > 1 and m:
        if min(window, m) > chunk:  # a window longer than the rows is one short window: the m rows
            need = min(window, m) * (PLACE_BYTES + 24 * spread)
            raise ReorderError(f"window_size {window} needs about {math.ceil(need / 2**20)} MiB a window, over "
                               "the memory budget; raise memory or lower window_size")
        if window <= chunk:  # else m <= chunk < window: one place task holds the one short window
            chunk -= chunk % window
        rng = np.random.default_rng(params["seed"])
        states = []
        for start in range(0, m, chunk):  # a loop over chunks: the draws of orderings.jitter, replayed
            states.append(rng.bit_generator.state)
            window_shuffle(rng, min(chunk, m - start), window)
        atomic.write_json(order / "jit.json", {"states": states})
    placed = n_inv if policy in ("first", "last") else 0
    return {"chunk": chunk, "window": window, "valid_tasks": math.ceil(m / chunk),
            "invalid_tasks": math.ceil(placed / chunk)}


def _segment(order: Path, params: Mapping[str, Any], m: int, memory: int) -> dict:
    """Where segment's front, middle and back come from, as rank ranges or picks of one end."""
    n_front, n_back = segment_sizes(m, params["x_pct"], params["y_pct"])
    front_high, back_high = bool(params["front_is_high"]), bool(params["back_is_high"])
    if front_high == back_high:
        k = n_front + n_back
        if k * PICK_BYTES > memory:
            raise ReorderError(
                f"segment: front and back both come from the {'high' if front_high else 'low'} end, so their "
                f"{k} rows are shuffled together in memory (about {math.ceil(k * PICK_BYTES / 2**20)} MiB), "
                "over the memory budget; raise memory or lower x_pct / y_pct")
        picks = list(range(k))
        random.Random(params["seed"]).shuffle(picks)  # the reference's draw, replayed as orderings.segment does
        save_npy(order / "picks.npy", np.asarray(picks, dtype=np.int64))
        first = m - k if front_high else 0
        return {"picks": True, "first": first, "n_front": n_front,
                "n_back": n_back, "mid_start": 0 if front_high else k}
    front_start = m - n_front if front_high else 0
    rest = (0, m - n_front) if front_high else (n_front, m)
    back_start = rest[1] - n_back if back_high else rest[0]
    mid_start = rest[0] if back_high else rest[0] + n_back
    return {"picks": False, "n_front": n_front, "n_back": n_back, "front_start": front_start,
            "back_start": back_start, "mid_start": mid_start}


def _write_kept(keys: Path, order: Path, row_starts: np.ndarray, cut: list | None, m: int) -> None:
    """``order/kept.npy``: the global rows that are ordered (valid, and selected), in input order. Without a
    selection, the rows that are not invalid (``keys/invalid-*``: the keys task's NaN rows), so that the
    split reads no score (:func:`reorder_cli.work_store.needs`); with one, the rows its cut keeps."""
    writer = NpyWriter(order / "kept.npy", np.int64, m)
    try:
        for f in range(len(row_starts) - 1):  # a loop over files, then chunks
            rows = int(row_starts[f + 1] - row_starts[f])
            if cut is None:
                invalid = np.load(keys / key_name("invalid", f), mmap_mode="r")
                for start in range(0, rows, CHUNK_ROWS):
                    stop = min(rows, start + CHUNK_ROWS)
                    lo, hi = np.searchsorted(invalid, [start, stop])
                    keep = np.ones(stop - start, dtype=bool)
                    keep[np.asarray(invalid[lo:hi]) - start] = False
                    writer.write(int(row_starts[f]) + start + np.flatnonzero(keep))
                del invalid
                continue
            column = NpyColumn(keys / key_name("scores", f), np.float64)
            for start in range(0, len(column), CHUNK_ROWS):
                scores = column.read(start, min(CHUNK_ROWS, len(column) - start))
                first = int(row_starts[f]) + start
                writer.write(first + np.flatnonzero(selection.Cut(*cut).keep(first, scores)))
        writer.close()
    except BaseException:
        writer.abort()
        raise


def load_split(order: Path) -> dict | None:
    """The split task's ``split.json`` (None before it finished); unreadable or corrupt, one line naming it."""
    path = order / "split.json"
    return state_io.read_json(path) if path.exists() else None


def sort_tasks(meta: dict) -> int:
    return sum(s["ranges"] for s in meta["sorts"])


def place_tasks(meta: dict) -> int:
    return meta["place"]["valid_tasks"] + meta["place"]["invalid_tasks"]


# ------------------------------------------------------------------ sort (one task a key range)


def _which_sort(meta: dict, task: int) -> tuple[dict, int, int]:
    """(the sort, the range within it, the sort's first task index) of sort task ``task``."""
    first = 0
    for spec in meta["sorts"]:
        if task < first + spec["ranges"]:
            return spec, task - first, first
        first += spec["ranges"]
    raise ReorderError(f"sort task {task} does not exist; this run has sort tasks 0..{first - 1}")


def sort_spec(meta: dict, task: int) -> dict:
    """The sort (of the scores, ``name`` "score", or of generator draws) that sort task ``task`` belongs to."""
    return _which_sort(meta, task)[0]


def sort_path(order: Path, task: int) -> Path:
    return order / f"sort-{task:05d}.bin"


def sort_task(keys: Path, order: Path, meta: dict, task: int, memory: int,
              open_run: Callable[[Path, int], IO[bytes]] = lambda p, nbytes: open(p, "rb")) -> int:  # noqa: SIM115
    """Sort task ``task``: the rows (or draw indices) of one key range, in order, to ``sort-KKKKK.bin``.
    Returns how many. ``open_run(path, bytes)`` opens an input's sorted keys for random reads (a work
    folder on a store: the object, by range requests, or a copy when it is small); a task reads its
    range of each, found from the sample."""
    spec, r, _ = _which_sort(meta, task)
    splitters = spec["splitters"]
    lo = -math.inf if r == 0 else splitters[r - 1]
    hi = math.inf if r == len(splitters) else splitters[r]
    final = sort_path(order, task)
    spill = Path(tempfile.mkdtemp(prefix=f"sort-{task:05d}-", dir=order))
    try:
        with atomic.open_atomic(final, "wb") as fh:
            def sink(records: np.ndarray) -> None:
                write_array(fh, records, final)

            last = r == len(splitters)
            return (_sort_scores(keys, meta, lo, hi, last, sink, spill, memory, open_run)
                    if spec["name"] == "score" else _sort_draws(order, spec, lo, hi, last, sink))
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _sort_scores(keys: Path, meta: dict, lo: float, hi: float, last: bool, sink: Callable, spill: Path,
                 memory: int, open_run: Callable[[Path], IO[bytes]]) -> int:
    row_starts = meta["row_starts"]
    cut = meta["cut"]
    sorter = ExternalSort(spill, memory)
    with contextlib.ExitStack() as stack:
        spans = []
        for f in range(len(row_starts) - 1):  # a loop over files: each one's part of the range
            sample = np.load(keys / key_name("sample", f))  # every keys task writes its run and sample
            if not len(sample):
                continue
            fh = stack.enter_context(open_run(keys / key_name("run", f), meta["valid_by_file"][f] * KEYED.itemsize))
            n = fh.seek(0, os.SEEK_END)
            a = 0 if lo == -math.inf else _lower_bound(fh, sample, n, lo)
            b = n // KEYED.itemsize if last else _lower_bound(fh, sample, n, hi)
            if b > a:
                spans.append((f, fh, a, b))

        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for f, fh, a, b in spans:  # input order: a stable sort keeps ties in input order
                for start in range(a, b, sorter.chunk_rows):
                    keyed = read_records_at(fh, KEYED, start, min(sorter.chunk_rows, b - start), key_name("run", f))
                    keyed["row"] += row_starts[f]
                    if cut is not None:
                        keyed = keyed[_kept(cut, keyed["row"], keyed["score"])]
                    yield keyed["key"], plain_rows(keyed)

        count = sum(b - a for _, _, a, b in spans) if cut is None else sum(len(k) for k, _ in chunks())
        if count:
            sorter.sort(chunks, count, sink)
    return count


def _lower_bound(fh: IO[bytes], sample: np.ndarray, size: int, key: float) -> int:
    """The first record of a sorted run (open in ``fh``, ``size`` bytes) whose key is at least ``key``.
    ``sample[j]`` is record ``j * step``: the answer lies in one window of ``step`` records after the
    binary search of the sample, read at once (one range request on a store)."""
    n = size // KEYED.itemsize
    step = _sample_step(n)
    j = int(np.searchsorted(sample, key, side="left"))  # sample[j - 1] < key <= sample[j]
    start, stop = max(0, (j - 1) * step), min(n, j * step + 1)
    window = read_records_at(fh, KEYED, start, stop - start)
    return start + int(np.searchsorted(window["key"], key, side="left"))


def _sample_step(n_valid: int) -> int:
    """Every how many keys of a run the sample keeps one: at least 64 keys of a file, when it has them."""
    return int(np.clip(n_valid // 64, 1, SAMPLE_STEP))


def _kept(cut: list, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """:meth:`select.Cut.keep` for rows given by their global index."""
    score, from_row = cut
    mask = scores > score
    if math.isfinite(score):
        mask |= (scores == score) & (rows >= from_row)
    return mask


def _sort_draws(order: Path, spec: dict, lo: float, hi: float, last: bool, sink: Callable) -> int:
    """The indices of the draws whose key falls in [lo, hi) (the last range: [lo, inf], as Gumbel keys
    of a huge temperature overflow to inf), stably sorted by key."""
    length, keys_kept, index_kept = spec["length"], [], []
    for start, keys in _draw_chunks(order, spec, lo, hi, last):  # a loop over chunks of draws
        inside = np.flatnonzero((keys >= lo) & ((keys < hi) | last))
        keys_kept.append(keys[inside])
        index_kept.append(start + inside)
    if not keys_kept or length == 0:
        return 0
    keys, index = np.concatenate(keys_kept), np.concatenate(index_kept).astype(np.int64)
    index = index[np.argsort(keys, kind="stable")]
    sink(index)
    return len(index)


def _draw_chunks(order: Path, spec: dict, lo: float, hi: float,
                 last: bool) -> Iterator[tuple[int, np.ndarray]]:
    length, chunk = spec["length"], spec["chunk"]
    if spec["draws"] == "random":  # one 64-bit draw a key, so the stream can be advanced to the offset
        rng = np.random.default_rng(spec["seed"])
        rng.bit_generator.advance(spec["offset"])
        for start in range(0, length, chunk):
            yield start, rng.random(min(chunk, length - start))
        return
    temperature = spec.get("temperature")
    gumbel = json.loads((order / "gumbel.json").read_text())
    rng = np.random.default_rng(spec["seed"])
    for c, start in enumerate(range(0, length, chunk)):  # only the chunks that reach the range
        if gumbel["highs"][c] < lo or (gumbel["lows"][c] >= hi and not last):
            continue
        rng.bit_generator.state = gumbel["states"][c]
        count = min(chunk, length - start)
        yield start, np.arange(start, start + count, dtype=np.float64) + rng.gumbel(size=count) * temperature


# ------------------------------------------------------------------ place (one task a chunk of positions)


def pairs_path(plan: Path, task: int) -> Path:
    return plan / f"pairs-{task:05d}.bin"


class _Placer:
    def __init__(self, keys: Path, order: Path, plan: Path, meta: dict):
        self.keys, self.order, self.plan, self.meta = keys, order, plan, meta
        self.row_starts = np.asarray(meta["row_starts"], dtype=np.int64)
        self.params, self.m = meta["params"], meta["kept"]
        first = 0
        self.sort_pieces: dict[str, _Pieces] = {}
        for spec in meta["sorts"]:  # a loop over sorts
            paths = [sort_path(order, first + r) for r in range(spec["ranges"])]
            self.sort_pieces[spec["name"]] = _Pieces(paths, ROW if spec["name"] == "score" else np.int64)
            first += spec["ranges"]

    def ranked(self, ranks: np.ndarray) -> np.ndarray:
        return self.sort_pieces["score"].gather(ranks)

    def perm(self, name: str, index: np.ndarray) -> np.ndarray:
        return self.sort_pieces[name].gather(index)

    def kept_rows(self, k: np.ndarray) -> np.ndarray:
        """ROW records of the kept rows with kept index ``k`` (input order)."""
        if self.meta["kept_file"]:
            kept = np.load(self.order / "kept.npy", mmap_mode="r")
            rows = np.asarray(kept[k])
            del kept
        else:
            rows = np.asarray(k, dtype=np.int64)
        out = np.empty(len(rows), dtype=ROW)
        out["row"] = rows
        out["score"] = _Columns(self.keys, "scores", self.row_starts, "<f8").gather(rows)
        out["size"] = _Columns(self.keys, "sizes", self.row_starts, "<i8").gather(rows)
        return out

    def valid(self, start: int, stop: int, task: int) -> np.ndarray:
        """ROW records at positions [start, stop) of the valid rows' arrangement."""
        method, place = self.meta["method"], self.meta["place"]
        q = np.arange(start, stop, dtype=np.int64)
        if place["window"] > 1:
            rng = np.random.default_rng(self.params["seed"])
            rng.bit_generator.state = json.loads((self.order / "jit.json").read_text())["states"][task]
            q = start + window_shuffle(rng, stop - start, place["window"])
        if method == "input":
            return self.kept_rows(q)
        if method == "shuffle":
            return self.kept_rows(self.perm("shuffle", q))
        if method == "segment":
            return self.ranked(self._segment_ranks(q))
        if method == "sorting":
            return self.ranked(self.perm("gumbel", q) if self.params.get("use_gumbel") else q)
        ranks = METHODS[method].rank_map(self.m, self.params).ranks(start, stop)
        return self.ranked(ranks[q - start])

    def _segment_ranks(self, q: np.ndarray) -> np.ndarray:
        seg = self.meta["segment"]
        n_front, n_back = seg["n_front"], seg["n_back"]
        n_mid = self.m - n_front - n_back
        ranks = np.empty(len(q), dtype=np.int64)
        parts = (("front", 0, n_front), ("middle", n_front, n_front + n_mid), ("back", n_front + n_mid, self.m))
        picks = np.load(self.order / "picks.npy", mmap_mode="r") if seg["picks"] else None
        for name, a, b in parts:  # a loop over the three segments
            at = np.flatnonzero((q >= a) & (q < b))
            if not len(at):
                continue
            member = self.perm(name, q[at] - a)
            if name == "middle":
                ranks[at] = seg["mid_start"] + member
            elif picks is not None:
                ranks[at] = seg["first"] + np.asarray(picks[member + (0 if name == "front" else n_front)])
            else:
                ranks[at] = seg[f"{name}_start"] + member
        del picks
        return ranks

    def invalid(self, start: int, stop: int) -> np.ndarray:
        """ROW records of the invalid rows [start, stop) (input order), score NaN."""
        files = len(self.row_starts) - 1
        paths = [self.keys / key_name("invalid", f) for f in range(files)]
        counts = [len(NpyColumn(p, np.int64)) for p in paths]
        starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        parts = []
        for f in range(files):  # a loop over files
            lo, hi = max(start, starts[f]), min(stop, starts[f + 1])
            if hi > lo:
                local = NpyColumn(paths[f], np.int64).read(int(lo - starts[f]), int(hi - lo))
                parts.append(local + self.row_starts[f])
        rows = np.concatenate(parts) if parts else np.empty(0, np.int64)
        out = np.empty(len(rows), dtype=ROW)
        out["row"], out["score"] = rows, np.nan
        out["size"] = _Columns(self.keys, "sizes", self.row_starts, "<i8").gather(rows)
        return out


def piece_path(plan: Path, name: str, task: int) -> Path:
    return plan / f"{name}-{task:05d}.bin"


def write_piece(plan: Path, task: int, order: np.ndarray, scores: np.ndarray, sizes: np.ndarray) -> dict:
    """Piece ``task`` of the plan: its order, scores and running total of sizes (from 0), and every
    :func:`chunked.sample_step`-th value of that total; returns its record (rows, total, largest)."""
    ends = np.cumsum(np.asarray(sizes, dtype=np.int64), dtype=np.int64)
    values = {"order": order, "scores": scores, "ends": ends, "sample": ends[:: sample_step(len(ends))]}
    for name, dtype in PIECE_FILES:  # a loop over the four files
        path = piece_path(plan, name, task)
        with atomic.open_atomic(path, "wb") as fh:
            write_array(fh, np.asarray(values[name], dtype=dtype), path)
    return {"rows": len(ends), "total": int(ends[-1]) if len(ends) else 0,
            "largest": int(np.max(sizes, initial=0))}


def piece(plan: Path, task: int, record: Mapping[str, Any]) -> Piece:
    """Place task ``task``'s piece, from its record (:func:`write_piece`)."""
    return Piece({name: piece_path(plan, name, task) for name, _ in PIECE_FILES}, int(record["rows"]),
                 int(record["total"]), int(record["largest"]))


def by_position(meta: dict) -> list[int]:
    """The place tasks in the order of their output positions."""
    return sorted(range(place_tasks(meta)), key=lambda t: _span(meta, t)[2])


def _span(meta: dict, task: int) -> tuple[int, int, int]:
    """(start, stop, at) of place task ``task``: its rows [start, stop) of the valid rows' arrangement
    (or of the invalid rows, in input order), written from output position ``at`` on."""
    place, m, n_inv = meta["place"], meta["kept"], meta["invalid"]
    chunk, first_invalid = place["chunk"], meta["policy"] == "first"
    if 0 <= task < place["valid_tasks"]:
        start = task * chunk
        return start, min(m, start + chunk), start + (n_inv if first_invalid else 0)
    if place["valid_tasks"] <= task < place_tasks(meta):
        start = (task - place["valid_tasks"]) * chunk
        return start, min(n_inv, start + chunk), start + (0 if first_invalid else m)
    raise ReorderError(f"place task {task} does not exist; this run has place tasks 0..{place_tasks(meta) - 1}")


def place_task(keys: Path, order: Path, plan: Path, meta: dict, task: int) -> dict:
    """Place task ``task``: its piece of the plan at its output positions (:func:`write_piece`), and its
    (input row, output position) pairs for the scatter tasks. Returns the piece's record."""
    plan.mkdir(parents=True, exist_ok=True)
    start, stop, at = _span(meta, task)
    placer = _Placer(keys, order, plan, meta)
    rows = placer.valid(start, stop, task) if task < meta["place"]["valid_tasks"] else placer.invalid(start, stop)
    record = write_piece(plan, task, rows["row"], rows["score"], rows["size"])
    pairs = np.empty(len(rows), dtype=PAIR)
    pairs["row"], pairs["pos"] = rows["row"], at + np.arange(len(rows), dtype=np.int64)
    pairs = take(pairs, np.argsort(pairs["row"], kind="stable"))
    with atomic.open_atomic(pairs_path(plan, task), "wb") as fh:
        write_array(fh, pairs, pairs_path(plan, task))
    return record


def positions(plan: Path, first: int, stop: int) -> np.ndarray:
    """Output position of each global input row in [first, stop) (-1: not placed), from the pairs."""
    out = np.full(stop - first, -1, dtype=np.int64)
    for path in sorted(plan.glob("pairs-*.bin")):  # a loop over place tasks
        if path.stat().st_size == 0:
            continue
        pairs = np.memmap(path, dtype=PAIR, mode="r")
        a, b = np.searchsorted(pairs["row"], [first, stop], side="left")
        if b > a:
            part = np.array(pairs[a:b])
            out[part["row"] - first] = part["pos"]
        del pairs
    return out
