"""Shard formats: discovering inputs, reading their keys and rows, writing output shards.

Every input, whatever its format and wherever its keys are kept, reaches the plan as a
:class:`KeySource`; :func:`open_keys` is the one place that reads an input's keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from reorder_cli.formats import jsonl, parquet
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.score_expr import Scoring


@runtime_checkable
class KeySource(Protocol):
    """The keys of one input file: what the plan needs of it (about 24 bytes a row)."""

    inp: InputFile

    @property
    def rows(self) -> int: ...

    @property
    def invalid(self) -> list[tuple[str, str]]:
        """("line N" / "row N", what is wrong) of the first invalid scores."""
        ...

    @property
    def schema(self) -> pa.Schema | None:
        """The Arrow schema of a Parquet input; None for JSONL."""
        ...

    def scores(self) -> np.ndarray:
        """float64, one a row, NaN where the score is invalid."""
        ...

    def row_sizes(self) -> np.ndarray:
        """int64 (estimated) uncompressed bytes of each row."""
        ...

    def tokens(self) -> np.ndarray | None:
        """int64 token counts of each row when the scoring reads a token field, else None."""
        ...


def open_keys(inp: InputFile, score_field: str | Scoring, fail_on_invalid: bool, spill_path: Path | None = None,
              advance: Callable[[int], None] = lambda n: None) -> KeySource:
    """Read one input's keys (``score_field``: a field, or a :class:`Scoring`): the score column(s)
    of a Parquet file, one pass over a JSONL file
    (a compressed one decompressed to ``spill_path`` when given, so the rewrite can map it)."""
    if inp.format == "parquet":
        return parquet.ParquetSource(inp, parquet.scan(inp, score_field, fail_on_invalid, advance))
    return jsonl.JsonlSource(inp, jsonl.scan(inp, score_field, fail_on_invalid, spill_path, advance))
