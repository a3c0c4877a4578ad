"""The score partials of a run's shards: what each gather computes from its own shard's scores (and puts in
its record, under ``scores``), and what the manifest merges (:mod:`reorder_cli.metrics.partial`).

The metric parameters are the defaults (:class:`reorder_cli.metrics.guidance.Params`), as the manifest
records them.
"""

from __future__ import annotations

from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.metrics import partial
from reorder_cli.metrics.guidance import Params

#: The record key of a shard's partial.
KEY = "scores"


def piece(shards: list[tuple[int, int]], valid_prefix: list[int], index: int) -> partial.Piece:
    """Shard ``index`` as a piece of the order (``valid_prefix``: the plan's valid scores before each shard)."""
    start, end = shards[index]
    rows = int(shards[-1][1]) if shards else 0
    return partial.Piece(int(start), int(end - start), int(valid_prefix[index]), rows, int(valid_prefix[-1]))


def of_shard(scores: Any, shards: list[tuple[int, int]], valid_prefix: list[int], index: int,
             start: int = 0) -> dict[str, Any]:
    """The JSON partial of shard ``index``, whose scores are ``scores[start:start + rows]``; its valid scores
    must be the count the plan expects."""
    where = piece(shards, valid_prefix, index)
    found = partial.partial(scores, where, Params(), start)
    want = valid_prefix[index + 1] - valid_prefix[index]
    if found.valid != want:
        raise ReorderError(f"shard {index}: {found.valid:,} valid scores, the plan expects {want:,}; the working "
                           "state is damaged: re-run with --restart")
    return found.to_json()


def merged(records: list[dict[str, Any]]) -> partial.Merged:
    """The merge of the shards' records' partials, in order."""
    missing = [i for i, r in enumerate(records) if KEY not in r]
    if missing:
        raise ReorderError(f"shard {missing[0]}: its record holds no score partial (a gather of an older version): "
                           "re-run with --restart")
    return partial.merge([partial.ScorePartial.from_json(r[KEY]) for r in records], Params())
