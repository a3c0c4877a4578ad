"""Token counts: what ``audit --tokens`` and ``--by tokens`` measure in.

Of an output, from its manifest's ``tokens`` section (written when the run sets ``tokenizer:``): the
stream's ``total`` and, per row shard, a ``lengths`` file (``np.save`` of int64 tokens per document, in
the shard's row order). Of inputs before a run, from a ``token_field`` (``select.token_field``), read
with the scores by the keys pass.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.publish import manifest
from reorder_cli.util import store

#: What ``--by`` puts on a profile's x axis: output rows, or training tokens.
BY = ("rows", "tokens")
NEEDS = "the run needs tokenizer: PATH (--set tokenizer=PATH) to record token counts"


def check_by(by: str) -> str:
    if by not in BY:
        raise ReorderError(f"--by {by!r}: expected rows or tokens")
    return by


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def section(doc: manifest.Manifest, file: Any) -> dict[str, Any]:
    """The manifest's ``tokens`` section, with the fields read here checked (one line naming ``file``)."""
    tok = doc.tokens
    if tok is None:
        raise ReorderError(f"{file}: this output has no token counts (its manifest has no 'tokens' section): {NEEDS}")
    shards = tok.get("shards") if isinstance(tok, dict) else None
    if not isinstance(tok, dict) or not _count(tok.get("total")) or not isinstance(shards, list):
        raise ReorderError(f"{file}: 'tokens' needs an integer 'total' and a 'shards' list; not a manifest reorder "
                           "wrote (rewrite the output)")
    if len(shards) != len(doc.shards) or not all(isinstance(s, dict) and _count(s.get("tokens")) for s in shards) \
            or sum(s["tokens"] for s in shards) != tok["total"]:
        raise ReorderError(f"{file}: 'tokens.shards' must hold one entry a row shard ({len(doc.shards)}) whose "
                           f"'tokens' add up to 'tokens.total' ({tok['total']}); rewrite the output")
    starts = np.r_[0, np.cumsum([s["tokens"] for s in shards], dtype=np.int64)][:-1].tolist()
    wrong = next((i for i, (s, at) in enumerate(zip(shards, starts, strict=True)) if s.get("offset") != at), None)
    if wrong is not None:
        raise ReorderError(f"{file}: tokens.shards[{wrong}] has 'offset' {shards[wrong].get('offset')!r}, but the "
                           f"shards before it hold {starts[wrong]:,} tokens; rewrite the output")
    return tok


def total(output: Path) -> int:
    """The tokens of an output's exported stream."""
    doc, folder = manifest.read(output)
    return section(doc, manifest.find(folder))["total"]


def of_output(doc: manifest.Manifest, folder: Path | store.URL) -> np.ndarray:
    """int64 tokens of every document of the output, in training order (the shards' lengths files)."""
    tok = section(doc, manifest.find(folder))
    parts = []
    for i, (entry, row_shard) in enumerate(zip(tok["shards"], doc.shards, strict=True)):
        name = entry.get("lengths")
        parts_of = Path(name).parts if isinstance(name, str) else ()
        if not parts_of or Path(name).is_absolute() or ".." in parts_of or "\\" in name:
            raise ReorderError(f"{manifest.find(folder)}: tokens.shards[{i}] has no valid 'lengths' ({name!r}: a "
                               "path inside the output folder)")
        path = folder / name
        if not store.is_file(path):
            raise ReorderError(f"{path}: missing: the manifest lists these token lengths but there is no such file")
        try:
            lengths = np.load(io.BytesIO(store.read_bytes(path)), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ReorderError(f"{path}: not a .npy of token lengths: {str(exc)[:120]}") from None
        if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or len(lengths) != row_shard.rows \
                or (len(lengths) and lengths.min() < 0) or int(lengths.sum()) != entry["tokens"]:
            raise ReorderError(f"{path}: expected {row_shard.rows:,} non-negative integer token counts adding up "
                               f"to {entry['tokens']:,} (the manifest's shard {i}); rewrite the output")
        parts.append(lengths.astype(np.int64, copy=False))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
