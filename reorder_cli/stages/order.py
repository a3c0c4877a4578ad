"""The order's stages (:mod:`reorder_cli.plan.order_tasks`): split, sort, place and layout."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reorder_cli.plan import build, order_tasks
from reorder_cli.plan import stored as stored_plan
from reorder_cli.plan.external_sort import KEYED
from reorder_cli.plan.layout import batch_limits
from reorder_cli.rewrite import budget
from reorder_cli.stages.keys import sources
from reorder_cli.stages.record import Stage, in_work_folder
from reorder_cli.stages.spec import Spec
from reorder_cli.util.chunked import Opener, Piece
from reorder_cli.workdir import WorkDir

#: A sort task reads its key range of an input's sorted keys on a store by range requests (three a run),
#: or, for a run under this size, downloads it whole into the node's mirror, where the node's other sort
#: tasks find it: at a store's ~1,000 GET/s and 2.5 GB/s a node, three GETs cost about what 8 MB do.
RUN_COPY_BYTES = 64 << 20
#: What one range request costs a node, in bytes it could download in the same time (the figures above).
GET_BYTES = (8 << 20) // 3


def _run_opener(work: WorkDir) -> Callable[[Path, int], Any]:
    return lambda path, nbytes: work.open_data(path, copy=nbytes < RUN_COPY_BYTES)


def _split_meta(work: WorkDir) -> dict | None:
    work.fetch(work.order / "split.json")
    return order_tasks.load_split(work.order)


def _split(work: WorkDir, spec: Spec, index: int) -> dict:
    records = [work.finished("keys", i) for i in range(len(spec.files))]
    cfg = spec.cfg
    meta = order_tasks.split(work.keys, work.order, work.plan, [r["rows"] for r in records],
                             [r["valid"] for r in records], cfg.method, cfg.params, cfg.invalid_scores, cfg.select,
                             spec.memory)
    return {"rows": meta["written"], "sort": order_tasks.sort_tasks(meta), "place": order_tasks.place_tasks(meta)}


def _sort(work: WorkDir, spec: Spec, index: int) -> dict:
    meta = order_tasks.load_split(work.order)
    rows = order_tasks.sort_task(work.keys, work.order, meta, index, spec.memory, _run_opener(work))
    by_score = order_tasks.sort_spec(meta, index)["name"] == "score"  # generator draws read no keys
    return {"rows": rows, "bytes_in": rows * KEYED.itemsize if by_score else 0}


def _place(work: WorkDir, spec: Spec, index: int) -> dict:
    meta = order_tasks.load_split(work.order)
    return order_tasks.place_task(work.keys, work.order, work.plan, meta, index)  # rows, total, largest


def _layout(work: WorkDir, spec: Spec, index: int) -> dict:
    """The shards, write batches and buckets, cut on the place tasks' pieces where they are: their records
    (markers) give each piece's rows and total, and the cuts read the windows of the running total they
    fall in (:func:`_ends_opener`). Nothing is assembled."""
    cfg, meta = spec.cfg, order_tasks.load_split(work.order)
    placed = [(t, work.finished("place", t)) for t in order_tasks.by_position(meta)]
    pieces = [order_tasks.piece(work.plan, t, record) for t, record in placed]
    opener = _ends_opener(work, cfg, pieces)
    the_plan = build.from_placed(spec.files, sources(work, spec), cfg, meta, pieces, opener)
    choice = budget.choose(the_plan, cfg, force="out-of-core")
    cfg = dataclasses.replace(cfg, workers=choice.workers)
    stored = stored_plan.store(the_plan, cfg, work, choice.bucket_bytes, choice.read_bytes,
                               stored_plan.output_schema(the_plan), placed, opener)
    return {"rows": the_plan.rows, "scatter": stored.scatter_tasks, "gather": stored.gather_tasks,
            "warning": choice.warning, "workers": choice.workers}


def _ends_opener(work: WorkDir, cfg, pieces: list[Piece]) -> Opener:
    """How the layout reads the pieces' running totals: where they are (on a store, a window a cut by range
    requests), or, for a piece whose cuts (at least one a write batch) would cost more requests than its
    bytes (:data:`GET_BYTES` a request), its file copied whole into the mirror first."""
    max_bytes, max_rows = batch_limits(cfg)

    def cuts(p: Piece) -> int:
        return 1 + (p.total // max_bytes if max_bytes else 0) + (p.rows // max_rows if max_rows else 0)

    whole = {p.paths["ends"] for p in pieces if 8 * p.rows <= GET_BYTES * cuts(p)}
    return lambda path: work.open_data(path, copy=path in whole)


def _sorts(work: WorkDir) -> int | None:
    meta = _split_meta(work)
    return None if meta is None else order_tasks.sort_tasks(meta)


def _places(work: WorkDir) -> int | None:
    meta = _split_meta(work)
    return None if meta is None else order_tasks.place_tasks(meta)


_EARLIER = ("the files of earlier stages it reads (`task_outputs.READS`), whole, as their markers recorded them: "
            "an upper bound where it reads part of a file")

SPLIT = Stage("split", "Splitting the order",
              "one task: the cut of the sorts into key ranges and of the positions into chunks", _EARLIER,
              lambda work: 1, in_work_folder("split", _split), after="keys", order=True)
SORT = Stage("sort", "Sorting key ranges", "one task a key range (of the scores, or of generator draws)",
             f"the keys of its range ({KEYED.itemsize} bytes a key; none for a range of generator draws)",
             _sorts, in_work_folder("sort", _sort), after="split", order=True)
PLACE = Stage("place", "Placing rows",
              "one task a chunk of output positions: the plan's arrays and the scatter's positions",
              f"{_EARLIER} (a place task reads its rows of the sorted ranges)",
              _places, in_work_folder("place", _place), after="sort", order=True)
LAYOUT = Stage("layout", "Laying out shards",
               "one task: shards, write batches and buckets: the stored plan (`plan/plan.json`)", _EARLIER,
               lambda work: 1, in_work_folder("layout", _layout), after="place", order=True)
