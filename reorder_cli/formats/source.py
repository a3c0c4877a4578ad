"""What the plan needs of one input's keys, whatever its format or wherever its keys are kept."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from reorder_cli.formats.discover import InputFile


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


class Scanned:
    """A :class:`KeySource` backed by what one scan of the file kept (``keys``: rows, invalid, scores)."""

    def __init__(self, inp: InputFile, keys: Any):
        self.inp = inp
        self.keys = keys

    @property
    def rows(self) -> int:
        return self.keys.rows

    @property
    def invalid(self) -> list[tuple[str, str]]:
        return self.keys.invalid

    def scores(self) -> np.ndarray:
        return self.keys.scores

    def tokens(self) -> np.ndarray | None:
        return self.keys.tokens
