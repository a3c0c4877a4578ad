"""Exports: an output's rows and token pieces, assembled into the files a trainer reads natively.

One module a format (``megatron``, ``olmo``, ``mds``), each with ``NAME``, ``NEEDS_TOKENS`` and
``assemble(ExportInput, dest) -> dict`` (the manifest's ``export`` entry). ``EXPORTS`` is the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ExportInput:
    """What an exporter reads: the finished output, in order."""

    shards: list[Path]  # the row shards, in order
    row_format: str  # parquet | jsonl | jsonl.zst
    token_files: list[Path] | None = None  # a raw little-endian token file a shard, in order (None: no tokenizer)
    lengths: list[Path] | None = None  # a .npy of int64 tokens per document a shard, in order
    dtype: np.dtype | None = None  # the token dtype (uint16 or uint32)
    settings: dict = field(default_factory=dict)  # the run's export settings


from reorder_cli.export import mds, megatron, olmo  # noqa: E402 - after ExportInput, which the exporters import

#: name -> module (NAME, NEEDS_TOKENS, assemble).
EXPORTS: dict = {m.NAME: m for m in (megatron, mds, olmo)}
