"""An order-independent hash of a multiset of rows, computed vectorised.

Each row gets two 64-bit hashes (Polars' hash with two fixed seeds); a multiset is the
row count plus the sum of each hash modulo 2**64. Sums commute, so the digest does not
depend on the order the rows are seen in, and the digests of pieces add up to the digest
of the whole: two sides hold the same rows, each as many times, when their digests are
equal (up to a 2**-128-ish chance of a collision; the hashes are not cryptographic, so
this catches accidents, not an adversary).

Two canonical forms of a row, chosen by the output format (both sides of a comparison
must use the same one, in the same process: Polars' hashes are only stable within a
version):

- ``lines``: the record's bytes ending with exactly one ``\\n`` (a file's last line
  without one is given one, as ``reorder run`` does).
- ``values``: the row's values, in a given Polars schema (``DataFrame.hash_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

SEEDS = (0x5EED_0001, 0x5EED_0002)
_MASK = (1 << 64) - 1


def _wrapped_sum(hashes: pl.Series) -> int:
    return int(np.sum(hashes.to_numpy(), dtype=np.uint64))  # uint64 addition wraps mod 2**64


@dataclass
class RowMultiset:
    rows: int = 0
    sum_a: int = 0
    sum_b: int = 0

    def add_lines(self, lines: pa.Array) -> None:
        """Add records given as binary values, each ending with its ``\\n``."""
        series = pl.Series(lines)
        self._add(len(series), series.hash(SEEDS[0]), series.hash(SEEDS[1]))

    def add_frame(self, frame: pl.DataFrame) -> None:
        """Add rows by value (the frame must already be in the canonical schema)."""
        self._add(frame.height, frame.hash_rows(SEEDS[0]), frame.hash_rows(SEEDS[1]))

    def _add(self, n: int, a: pl.Series, b: pl.Series) -> None:
        if n:
            self.rows += n
            self.sum_a = (self.sum_a + _wrapped_sum(a)) & _MASK
            self.sum_b = (self.sum_b + _wrapped_sum(b)) & _MASK

    def merge(self, other: RowMultiset) -> None:
        self.rows += other.rows
        self.sum_a = (self.sum_a + other.sum_a) & _MASK
        self.sum_b = (self.sum_b + other.sum_b) & _MASK

    def digest(self) -> str:
        return f"{self.rows}:{self.sum_a:016x}{self.sum_b:016x}"
