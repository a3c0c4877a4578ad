"""The keys pass: scores of every row -> the output order -> the shard layout.

Reads only scores (and line offsets for JSONL); never the documents. The result says,
for every output position, which input row goes there, and where shards begin and end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.formats import KeySource, jsonl, open_keys
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.score_expr import Scoring
from reorder_cli.methods import order_rows
from reorder_cli.plan import select as selection
from reorder_cli.plan.layout import layout, valid_prefix
from reorder_cli.util import store
from reorder_cli.util.chunked import Opener, Piece, open_local, plan_arrays
from reorder_cli.util.npy import save_npy
from reorder_cli.workdir import WorkDir

#: Peak bytes a row of :func:`build`'s keys work in memory: the sources' scores and sizes (16),
#: their concatenation, the ordering's intermediates and the plan's three arrays. Traced with
#: NumPy's allocations at 4M rows: 73 (shuffle) to 97 (str/saw with JIT), 102 for a same-end
#: segment taking 60% of the rows (Python's shuffle list), up to ~130 when it takes them all.
#: Other per-row data the sources keep (JSONL line offsets) is not included.
IN_MEMORY_BYTES_PER_ROW = 128
IN_MEMORY_CONSTANT = 64 << 20  # Python, NumPy and the allocator's slack


def keys_fit(n_rows: int, memory_bytes: int) -> bool:
    """Whether :func:`build` can hold the keys of ``n_rows`` rows in memory within ``memory_bytes``."""
    return n_rows * IN_MEMORY_BYTES_PER_ROW + IN_MEMORY_CONSTANT <= memory_bytes


@dataclass
class Plan:
    files: list[InputFile]
    sources: list[KeySource]  # one per input file
    row_starts: np.ndarray  # int64, len(files)+1: global index of each file's first row
    order: np.ndarray  # int64 global input index at each output position
    scores: np.ndarray  # float64 score at each output position (NaN for invalid rows kept)
    sizes: np.ndarray  # int64 estimated uncompressed bytes at each output position
    shards: list[tuple[int, int]]  # [start, end) output positions of each shard
    invalid_count: int
    invalid_samples: list[dict]  # {"file", "where", "value"}
    dropped: int  # invalid rows dropped (invalid_scores: drop)
    selection: dict | None = None  # what the select: section kept (Selected.to_json); None without one
    mixture: dict | None = None  # a mixture's manifest section (plan/mixture.py); its files are virtual (per epoch)
    #: valid (non-NaN) scores before each shard, and in all (len(shards) + 1): where a shard's metrics start
    valid_prefix: list[int] | None = None

    @property
    def rows(self) -> int:
        return len(self.order)

    @property
    def input_rows(self) -> int:
        return int(self.row_starts[-1])

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(file index, row within file) of the rows at these output positions."""
        rows = self.order[positions]
        file_index = np.searchsorted(self.row_starts, rows, side="right") - 1
        return file_index, rows - self.row_starts[file_index]


@dataclass
class SpilledSource:
    """An input whose keys were written to ``folder`` instead of being kept in memory:
    ``scores-NNNNN.npy``, ``sizes-NNNNN.npy`` and, for JSONL, ``records-NNNNN.npy`` (the
    [start, end) bytes of every record in ``data_path``)."""

    inp: InputFile
    index: int
    folder: Path
    rows: int
    invalid: list[tuple[str, str]]
    schema: pa.Schema | None = None  # Parquet inputs
    data_path: Path | store.URL | None = None  # JSONL inputs: the bytes (the input, or its decompressed copy)
    unterminated: bool = False  # JSONL inputs: the last record has no newline
    groups: np.ndarray | None = None  # Parquet inputs: the first row of every row group, the row count last
    cuts: list[int] | None = None  # row boundaries of its scatter slices (stored.slice_cuts), once known

    def path(self, name: str) -> Path:
        return self.folder / f"{name}-{self.index:05d}.npy"

    def scores(self) -> np.ndarray:
        return np.load(self.path("scores"))

    def row_sizes(self) -> np.ndarray:
        return np.load(self.path("sizes"))

    def tokens(self) -> np.ndarray | None:
        return np.load(self.path("tokens")) if self.path("tokens").exists() else None


def spill(source: KeySource, index: int, folder: Path) -> SpilledSource:
    """Write a source's keys to ``folder`` and return what is left of it in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    out = SpilledSource(source.inp, index, folder, source.rows, source.invalid, source.schema,
                        groups=source.group_starts() if source.inp.format == "parquet" else None)
    save_npy(out.path("scores"), source.scores())
    save_npy(out.path("sizes"), source.row_sizes())
    if source.tokens() is not None:
        save_npy(out.path("tokens"), source.tokens())
    if isinstance(source, jsonl.JsonlSource):  # the byte ranges the rewrite reads records by
        save_npy(out.path("records"), source.keys.records())
        data = source.keys.data_path  # a local path, or the input's URL (a keys task reads it in place)
        out.data_path = data if isinstance(data, store.URL) else Path(data)
        out.unterminated = source.unterminated_row() is not None
    return out


def read_keys(files: list[InputFile], score_field: str | Scoring, fail_on_invalid: bool, workers: int,
              advance: Callable[[int], None] = lambda n: None, work: WorkDir | None = None,
              keys_budget: int = 0, first_index: int = 0) -> list[KeySource]:
    """Scan every input for its keys, ``workers`` files at a time; returns one source a file.

    ``first_index``: the index of ``files[0]`` among the run's inputs (a mixture reads its sources' keys
    source by source), which names its decompressed copy in the work folder.

    With a work folder, compressed JSONL is decompressed there once (so a rewrite can map it);
    without one (``preview``, ``stats --deep``) it is read as a stream and nothing is written.
    With ``keys_budget``, once the rows read so far no longer fit it in memory
    (:func:`keys_fit`), every source's keys go to ``work.keys`` instead
    (:class:`SpilledSource`) and the order is computed by its tasks (:mod:`.order_tasks`).
    """
    sources: dict[int, KeySource] = {}
    state = {"rows": 0, "spilling": False}
    lock = threading.Lock()

    def one(item: tuple[int, InputFile]):
        i, inp = item
        copy = inp.compression or store.is_url(inp.path)  # a map needs local, uncompressed bytes
        data = work.decompressed(first_index + i) if work is not None and inp.format == "jsonl" and copy else None
        if data is not None:
            work.root.mkdir(parents=True, exist_ok=True)
        source = open_keys(inp, score_field, fail_on_invalid, data, advance)
        with lock:
            state["rows"] += source.rows
            if keys_budget and not state["spilling"] and not keys_fit(state["rows"], keys_budget):
                state["spilling"] = True
                for j in list(sources):
                    sources[j] = spill(sources[j], j, work.keys)
            sources[i] = spill(source, i, work.keys) if state["spilling"] else source

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(one, enumerate(files)))
    return [sources[i] for i in range(len(files))]


def spilled(sources: list) -> bool:
    return any(isinstance(s, SpilledSource) for s in sources)


def build(files: list[InputFile], sources: list, cfg: RunConfig) -> Plan:
    counts = np.array([s.rows for s in sources], dtype=np.int64)
    row_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if row_starts[-1] == 0:
        raise ReorderError("the inputs hold no rows (" + ", ".join(str(f.path) for f in files[:3]) + ")")
    scores = np.concatenate([s.scores() for s in sources])
    sizes = np.concatenate([s.row_sizes() for s in sources])
    valid = ~np.isnan(scores)
    chosen = None
    if cfg.select:
        tokens = np.concatenate([s.tokens() for s in sources]) if selection.token_field(cfg.select) else None
        chosen = selection.choose(cfg.select, len(scores), selection.in_memory(scores, tokens), len(scores) or 1)
        valid_rows = np.flatnonzero(chosen.cut.keep(0, scores))
    else:
        valid_rows = np.flatnonzero(valid)
    order = valid_rows[order_rows(cfg.method, scores[valid_rows], cfg.params)]
    invalid_rows = np.flatnonzero(~valid)
    dropped = 0
    if len(invalid_rows):
        if cfg.invalid_scores == "first":
            order = np.concatenate([invalid_rows, order])
        elif cfg.invalid_scores == "last":
            order = np.concatenate([order, invalid_rows])
        else:
            dropped = len(invalid_rows)
    if len(order) == 0:
        raise ReorderError("no row has a valid score; nothing to write (see invalid_scores)")
    samples = [
        {"file": str(files[i].path), "where": where, "value": what}
        for i, s in enumerate(sources)
        for where, what in s.invalid
    ][:20]
    out_sizes = sizes[order]
    shards = layout(out_sizes, cfg.layout_shard_bytes, cfg.shard_rows)
    return Plan(
        files=files,
        sources=sources,
        row_starts=row_starts,
        order=order.astype(np.int64),
        scores=scores[order],
        sizes=out_sizes,
        shards=shards,
        invalid_count=int(len(invalid_rows)),
        invalid_samples=samples,
        dropped=dropped,
        selection=chosen.to_json() if chosen else None,
        valid_prefix=valid_prefix(shards, len(order), len(invalid_rows) - dropped, cfg.invalid_scores == "first"),
    )


# ------------------------------------------------------------------ the plan of the order tasks


def from_placed(files: list[InputFile], sources: list, cfg: RunConfig, meta: dict, pieces: list[Piece],
                opener: Opener = open_local) -> Plan:
    """The plan whose pieces the place tasks wrote (``meta``: their ``split.json``; ``pieces``: theirs, in
    the order of their positions), its arrays views over them (:mod:`reorder_cli.util.chunked`), cut into
    shards by binary searches of their running total: nothing of the size of the plan is read or written."""
    arrays = plan_arrays(pieces, opener)
    shards = layout(arrays.sizes, cfg.layout_shard_bytes, cfg.shard_rows, arrays.ends)
    dropped = meta["invalid"] if cfg.invalid_scores == "drop" else 0
    samples = [{"file": str(files[i].path), "where": where, "value": what}
               for i, s in enumerate(sources) for where, what in s.invalid][:20]
    return Plan(
        files=files, sources=sources, row_starts=np.asarray(meta["row_starts"], dtype=np.int64), order=arrays.order,
        scores=arrays.scores, sizes=arrays.sizes, shards=shards, invalid_count=meta["invalid"],
        invalid_samples=samples, dropped=dropped, selection=meta["selection"],
        valid_prefix=valid_prefix(shards, len(arrays.order), meta["invalid"] - dropped, cfg.invalid_scores == "first"),
    )
