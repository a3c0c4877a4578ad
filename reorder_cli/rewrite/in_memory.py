"""The payload pass: move every row to its output position and write the shards.

Shards are independent and written in parallel threads. Inside a shard, rows are
gathered in batches (a few MB of JSONL lines, or one Parquet row group), so memory stays
around ``workers x batch`` whatever the size of the data.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from reorder_cli.config import RunConfig
from reorder_cli.formats import jsonl, parquet
from reorder_cli.formats.writers import ShardWriter, encoding_ahead, shard_name
from reorder_cli.metrics import shards as score_shards
from reorder_cli.plan.build import Plan
from reorder_cli.plan.layout import shard_batches
from reorder_cli.rewrite import table as parquet_output
from reorder_cli.tokens import piece, tokenizer
from reorder_cli.util import faults, task_stats
from reorder_cli.util.parallel import run_parallel


class LineGather:
    """JSONL bytes of any output positions, taken from the memory-mapped inputs.

    A batch takes its records file by file and puts them back in output order, so
    memory stays at about a batch whatever the size of the data.
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        ends = [plan.row_starts[i] + r for i, s in enumerate(plan.sources) if (r := s.unterminated_row()) is not None]
        self.unterminated = np.array(ends, dtype=np.int64)

    def bytes_at(self, positions: np.ndarray):
        """The records at ``positions``, concatenated, each ending with '\\n'."""
        plan = self.plan
        files, local = plan.locate(positions)
        by_file = np.argsort(files, kind="stable")
        cuts = np.flatnonzero(np.diff(files[by_file])) + 1
        parts = [plan.sources[int(files[sel[0]])].take_lines(local[sel]) for sel in np.split(by_file, cuts)]
        lines = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        if len(parts) > 1:
            back = np.empty(len(by_file), dtype=np.int64)
            back[by_file] = np.arange(len(by_file))
            lines = lines.take(pa.array(back))
        data = jsonl.lines_to_bytes(lines)
        if len(self.unterminated):
            data = _add_newlines(data, lines, np.flatnonzero(np.isin(plan.order[positions], self.unterminated)))
        return data


def _add_newlines(data, lines: pa.LargeBinaryArray, where: np.ndarray):
    """Insert '\\n' after the records at batch indices ``where`` (files' unterminated last lines)."""
    if len(where) == 0:
        return data
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    ends = offsets[where + 1] - offsets[0]
    view, pieces, prev = memoryview(data), [], 0
    for end in ends.tolist():  # at most one a file
        pieces += [view[prev:end], b"\n"]
        prev = end
    pieces.append(view[prev:])
    return b"".join(pieces)


# ------------------------------------------------------------------ writing


def write_shards(plan: Plan, cfg: RunConfig, folder: Path, advance: Callable[[int], None],
                 finished: Callable[[int], dict | None] = lambda i: None,
                 on_finish: Callable[[dict, float], None] = lambda record, started: None) -> list[dict]:
    """Write every shard into ``folder``; returns one record a shard, in order.

    Shards ``finished`` already knows (from an earlier, interrupted run) are not
    written again; ``on_finish`` hears of every shard as soon as it is complete, with when its writing
    started (:func:`task_stats.clock`), its record holding the bytes its rows had in the inputs (``bytes_in``).
    """
    todo = [i for i in range(len(plan.shards)) if finished(i) is None]
    if todo and cfg.format == "parquet":
        table = parquet_output.build(plan)
        arrow_schema = table.schema

        def prepare(positions: np.ndarray) -> pa.Table:
            return parquet.to_arrow(table.rows_at(plan, positions), arrow_schema)
    else:
        arrow_schema, prepare = None, LineGather(plan).bytes_at

    token_settings = tokenizer.resolve(cfg.tokens) if todo and cfg.tokens else None
    unfinished = [len(todo)]  # shards not yet written: as they finish, the last ones encode on the idle cores

    def ahead() -> int:  # one shard of many: the idle cores encode its row groups
        return encoding_ahead(cfg.workers, unfinished[0])

    def one(index: int) -> dict:
        started = task_stats.clock()
        start, end = plan.shards[index]
        writer = ShardWriter(folder / shard_name(index, cfg.format), cfg.format, cfg.compression_level, arrow_schema,
                             ahead)
        put = writer.write_table if cfg.format == "parquet" else writer.write_lines
        batches = [np.arange(a, b) for a, b in shard_batches(plan.sizes, start, end, cfg)]
        tokens: piece.PieceWriter | piece.NoPiece = piece.NoPiece()
        try:
            tokens = piece.writer(writer.path, cfg.format, token_settings, lambda row: _input_row(plan, start + row))
            for positions, item in _prefetched(batches, prepare):
                put(item)
                tokens.add(item)
                advance(len(positions))
                faults.pause("gather")
            record = tokens.finish(writer.finish(index, start, end - start))
        except BaseException:
            writer.abort()
            tokens.abort()
            raise
        record[score_shards.KEY] = score_shards.of_shard(plan.scores, plan.shards, plan.valid_prefix, index, start)
        record["bytes_in"] = int(np.asarray(plan.sizes[start:end]).sum())
        unfinished[0] -= 1
        on_finish(record, started)
        faults.pause("gather-done")
        return record

    for i in range(len(plan.shards)):
        if i not in todo:
            advance(plan.shards[i][1] - plan.shards[i][0])
    written = dict(zip(todo, run_parallel(one, todo, cfg.workers), strict=True))
    return [written[i] if i in written else finished(i) for i in range(len(plan.shards))]


def _input_row(plan: Plan, position: int) -> str:
    """"FILE: line N" (JSONL) or "FILE: row N" (Parquet) of the input row at output ``position`` (the error path)."""
    files, local = plan.locate(np.array([position]))
    file, row = int(files[0]), int(local[0])
    lines = getattr(getattr(plan.sources[file], "keys", None), "row_lines", None)
    if lines is not None:
        return f"{plan.files[file].path}: line {int(lines[row]) + 1}"
    return f"{plan.files[file].path}: row {row}"


def _prefetched(groups: list, prepare: Callable):
    """Yield (group, prepare(group)) in order, preparing the next group while the caller
    writes the current one (gathering overlaps encoding and compression)."""
    with ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(prepare, groups[0]) if groups else None
        for i, group in enumerate(groups):
            result = pending.result()
            pending = ahead.submit(prepare, groups[i + 1]) if i + 1 < len(groups) else None
            yield group, result
