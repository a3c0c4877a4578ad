"""Shard formats: discovering inputs, reading their keys and rows, writing output shards.

Every input, whatever its format and wherever its keys are kept, reaches the plan as a
:class:`KeySource`; :func:`open_keys` is the one place that reads an input's keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reorder_cli.formats import jsonl, parquet
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.score_expr import Scoring
from reorder_cli.formats.source import KeySource

__all__ = ["KeySource", "open_keys"]


def open_keys(inp: InputFile, score_field: str | Scoring, fail_on_invalid: bool, spill_path: Path | None = None,
              advance: Callable[[int], None] = lambda n: None) -> KeySource:
    """Read one input's keys (``score_field``: a field, or a :class:`Scoring`): the score column(s)
    of a Parquet file, one pass over a JSONL file
    (a compressed one decompressed to ``spill_path`` when given, so the rewrite can map it)."""
    if inp.format == "parquet":
        return parquet.ParquetSource(inp, parquet.scan(inp, score_field, fail_on_invalid, advance))
    return jsonl.JsonlSource(inp, jsonl.scan(inp, score_field, fail_on_invalid, spill_path, advance))
