"""Read the score of every row of some shards: the keys pass without the text.

Used where nothing is rewritten (``reorder preview``, ``reorder stats --deep``): unlike
``plan.read_keys``, compressed JSONL is decompressed as a stream and never spilled to
disk, so a preview of terabytes of ``.jsonl.zst`` needs no scratch space.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from reorder_cli.formats import jsonl, parquet
from reorder_cli.formats.discover import InputFile


def read_sources(
    files: list[InputFile], score_field: str, fail_on_invalid: bool, workers: int,
    advance: Callable[[int], None] = lambda n: None,
) -> list:
    """One ``JsonlSource`` / ``ParquetSource`` a file (keys only), ``workers`` files at a time."""

    def one(inp: InputFile):
        if inp.format == "parquet":
            return parquet.ParquetSource(inp, parquet.scan(inp, score_field, fail_on_invalid, advance))
        return jsonl.JsonlSource(jsonl.scan(inp, score_field, fail_on_invalid, None, advance))

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, files))
