"""The manifest's ``tokens`` and ``export`` sections (the shared contract of issue 19).

``tokens.shards[i]`` belongs to the manifest's row shard i: its token count, its first token's offset in
the whole stream (the ``.tokens`` files concatenated in shard order) and its files under ``tokens/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reorder_cli.tokens import piece, tokenizer
from reorder_cli.util.hashing import file_sha256

#: The folder of the output holding the token pieces.
FOLDER = "tokens"


def settings_identity(tokens: dict[str, Any]) -> dict[str, Any]:
    """The token keys as a run's identity holds them: the tokenizer's sha256 in place of its path."""
    return {k: v for k, v in tokens.items() if k != "tokenizer"}


def sections(tokens: dict[str, Any] | None, shards: list[dict], export: dict | None) -> dict[str, Any]:
    """``{"tokens": ..., "export": ...}`` for the manifest (each only when the run has it): ``tokens`` the
    run's token keys (``RunConfig.tokens``), ``shards`` the shard records (each with its piece's record),
    ``export`` the exporter's entry."""
    out: dict[str, Any] = {}
    if tokens:
        s = tokenizer.resolve(tokens)
        entries, offset = [], 0
        for record in shards:  # a loop over shards
            piece = record["tokens"]
            entries.append({"tokens": piece["tokens"], "offset": offset, "file": f"{FOLDER}/{piece['file']}",
                            "lengths": f"{FOLDER}/{piece['lengths']}", "bytes": piece["bytes"],
                            "sha256": piece["sha256"], "lengths_bytes": piece["lengths_bytes"],
                            "lengths_sha256": piece["lengths_sha256"]})
            offset += piece["tokens"]
        out["tokens"] = {
            "tokenizer": {"file": Path(s["tokenizer"]).name, "sha256": s["sha256"], "vocab_size": s["vocab_size"]},
            "text_field": s["text_field"], "dtype": s["dtype"], "bos": s["bos"], "eos": s["eos"], "total": offset,
            "settings": settings_identity(tokens), "shards": entries,
        }
    if export:
        out["export"] = export
    return out


def recorded_identity(tokens: dict[str, Any] | None, export: dict[str, Any] | None) -> dict[str, Any]:
    """The identity's token fields of the run whose manifest has these ``tokens`` and ``export`` sections
    (:func:`workdir.token_identity`)."""
    settings = (tokens or {}).get("settings")
    name = (export or {}).get("format")
    return ({"tokens": settings} if settings else {}) | ({"export": name} if name else {})


def changes(tokens: dict[str, Any] | None, export: dict[str, Any] | None, folder: Path) -> list[str]:
    """How the token pieces and export files in output ``folder`` differ from a manifest's ``tokens`` and
    ``export`` sections (a re-run of a changed output is not "already done")."""
    found = [piece.piece_differs(folder, entry) for entry in (tokens or {}).get("shards", [])]
    for entry in (export or {}).get("files", []):  # a loop over the export's files
        path = folder / entry["file"]
        if not path.is_file():
            found.append(f"{entry['file']} is missing")
        elif path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            found.append(f"{entry['file']} was altered (its size or sha256 differs from the manifest's)")
    return [c for c in found if c]
