"""The manifest: the contract between a finished run and the trainer that reads it.

Versioned JSON, written last and atomically. No timestamps or host facts inside, so the
same inputs and config give a byte-identical file; timings go to the run log.
Paths are relative to the manifest's folder.

The bookkeeping files are hidden (names starting with ``.``), so the output folder reads as a
dataset of exactly its shards: pyarrow (and pandas) skip names starting with ``.`` or ``_``,
Hugging Face ``datasets`` skips names starting with ``.`` (``data_files.py``, hidden files).
Outputs written before 0.1.0 used ``manifest.json`` and ``run_log.json``; they are still read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reorder_cli import __version__
from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.formats.writers import COMPRESSION
from reorder_cli.metrics import guidance as metrics
from reorder_cli.metrics.summary import profile, score_summary
from reorder_cli.plan.build import Plan
from reorder_cli.tokens.sections import sections
from reorder_cli.util import store
from reorder_cli.util.hashing import fingerprint

MANIFEST_VERSION = 1
MANIFEST_NAME = ".manifest.json"
RUN_LOG_NAME = ".run_log.json"
LEGACY_MANIFEST_NAME = "manifest.json"
LEGACY_RUN_LOG_NAME = "run_log.json"
MANIFEST_NAMES = (MANIFEST_NAME, LEGACY_MANIFEST_NAME)  # looked for in this order
RUN_LOG_NAMES = (RUN_LOG_NAME, LEGACY_RUN_LOG_NAME)
BOOKKEEPING = (*MANIFEST_NAMES, *RUN_LOG_NAMES)  # every file of an output folder that is not a shard


def build(plan: Plan, cfg: RunConfig, shards: list[dict], out_dir: Path | store.URL,
          export: dict | None = None) -> dict[str, Any]:
    def rel(p) -> str:  # a URL is recorded as it is; a local input of an output on a store, absolute
        if store.is_url(p):
            return str(p)
        if store.is_url(out_dir):
            return str(Path(p).resolve())
        return os.path.relpath(Path(p).resolve(), out_dir.resolve())

    shard_entries = []
    for s in shards:
        start, end = s["first"], s["first"] + s["rows"]
        shard_entries.append({
            "file": s["file"], "format": cfg.format, "compression": s["compression"], "rows": s["rows"],
            "bytes": s["bytes"], "sha256": s["sha256"], "positions": [start, end],
            "score": score_summary(plan.scores[start:end]),
        })
    inputs = []
    for f, source in zip(plan.files, plan.sources, strict=True):
        inputs.append({
            "path": rel(f.path), "format": f.format, "compression": f.compression, "rows": int(source.rows),
            "bytes": f.size, "fingerprint": fingerprint(f.path),
        })
    return {
        "manifest_version": MANIFEST_VERSION,
        "tool": {"name": "reorder", "version": __version__},
        "method": cfg.method,
        "params": cfg.params,
        "score_field": cfg.score_field,
        **({"score": cfg.score} if cfg.score else {}),
        "seed": cfg.seed,
        "invalid_scores": {
            "policy": cfg.invalid_scores, "count": plan.invalid_count, "dropped": plan.dropped,
            "samples": [{"file": rel(s["file"]), "where": s["where"], "value": s["value"]}
                        for s in plan.invalid_samples],
        },
        **({"selection": plan.selection} if plan.selection else {}),
        "output": {
            "format": cfg.format, "compression": COMPRESSION[cfg.format], "compression_level": cfg.compression_level,
            "shard_size": cfg.shard_size, "shard_rows": cfg.shard_rows,
            **({"row_group_size": cfg.row_group_size, "row_group_rows": cfg.row_group_rows}
               if cfg.format == "parquet" else {}),
        },
        "inputs": inputs,
        "shards": shard_entries,
        "totals": {
            "input_rows": plan.input_rows, "rows": plan.rows, "dropped_rows": plan.dropped,
            **({"unselected_rows": plan.selection["dropped"]} if plan.selection else {}),
            "shards": len(shard_entries), "bytes": sum(s["bytes"] for s in shard_entries),
            "input_bytes": sum(f.size for f in plan.files), "score": score_summary(plan.scores),
        },
        "profile": profile(plan.scores),
        "metrics": metrics.compute(plan.scores),
        **sections(cfg.tokens, shards, export),  # tokens, export (issue 19)
    }


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def find(folder: Path | store.URL) -> Path | store.URL:
    """The manifest file of an output folder (or object of an output on a store): the current name, else
    the legacy one (or the current name when there is none)."""
    folder = store.location(folder) if isinstance(folder, str) else folder
    present = set(store.names(folder))
    return folder / next((name for name in MANIFEST_NAMES if name in present), MANIFEST_NAME)


def read(path: str | Path | store.URL) -> tuple[dict[str, Any], Path | store.URL]:
    """Load a manifest from its file or its folder (local, or on a store); returns (manifest, its folder)."""
    path = store.location(path) if isinstance(path, str) else path
    named = path.name in MANIFEST_NAMES or (isinstance(path, Path) and path.is_file())
    file = path if named else find(path)
    if not store.is_file(file):
        raise ReorderError(f"{path}: no {MANIFEST_NAME} here (is this a reorder output folder?)")
    try:
        data = json.loads(store.read_bytes(file).decode("utf-8"))
    except ReorderError:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        raise ReorderError(f"{file}: not a readable manifest: {str(exc)[:200]}") from None
    version = data.get("manifest_version") if isinstance(data, dict) else None
    if version != MANIFEST_VERSION:
        raise ReorderError(f"{file}: manifest_version {version!r} is not supported (expected {MANIFEST_VERSION})")
    check(data, file)
    return data, file.parent


# ------------------------------------------------------------------ the shape every reader relies on

_INT64 = 2**63 - 1
_TOP: dict[str, type | tuple[type, ...]] = {
    "method": str, "params": dict, "invalid_scores": dict, "output": dict, "inputs": list, "shards": list,
    "totals": dict, "profile": dict,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "score_field": (str, type(None)), "score": str, "selection": dict, "metrics": dict, "tool": dict,
}
_SHARD: dict[str, type] = {"file": str, "format": str, "rows": int, "bytes": int, "sha256": str, "positions": list,
                           "score": dict}


def _count(value: Any) -> bool:
    """A JSON integer a reader can compute with: not a bool, in [0, 2**63)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT64


def shard_file_problem(name: str) -> str | None:
    """Why a shard's ``file`` is not a plain file name inside the output folder (None when it is)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return "is not a plain file name inside the output folder (no folders, '..' or absolute paths)"
    return None


def check(doc: dict[str, Any], file: Any) -> None:
    """Refuse (one line naming ``file`` and the field) a manifest whose shape a reader would trip on:
    the keys every reader uses and their types, shard entries (counts, ``[first, end)`` positions) and
    shard files that would leave the output folder. Consistency between the values is ``verify``'s."""
    def bad(where: str, what: str) -> ReorderError:
        return ReorderError(f"{file}: {where} {what}; not a manifest reorder wrote (rewrite the output)")

    for key, kind in (*_TOP.items(), *_OPTIONAL.items()):
        if (key in _TOP or key in doc) and not isinstance(doc.get(key), kind):
            raise bad(f"'{key}'", f"is {_type(doc.get(key))}, expected {_names(kind)}")
    if not isinstance(doc["output"].get("format"), str):
        raise bad("'output.format'", f"is {_type(doc['output'].get('format'))}, expected a string")
    for i, entry in enumerate(doc["inputs"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise bad(f"input {i}", "has no valid 'path'")
    for key, value in doc["totals"].items():
        if key != "score" and value is not None and not _count(value):
            raise bad(f"'totals.{key}'", f"is {value!r}, expected an integer in [0, 2**63)")
    params = doc["selection"].get("params") if "selection" in doc else {}
    if not (isinstance(params, dict) or (isinstance(params, list) and params
                                         and all(isinstance(p, dict) for p in params))):
        raise bad("'selection.params'", "is missing or not a mapping (or, for a chain, a list of them)")
    for i, e in enumerate(doc["shards"]):
        if not isinstance(e, dict):
            raise bad(f"shard {i}", f"is {_type(e)}, expected a mapping")
        for key, kind in _SHARD.items():
            value = e.get(key)
            if not isinstance(value, kind) or (kind is int and not _count(value)):
                raise bad(f"shard {i}", f"has no valid '{key}' ({value!r})")
        if len(e["positions"]) != 2 or not all(_count(p) for p in e["positions"]):
            raise bad(f"shard {i}", f"has no valid 'positions' ({e['positions']!r}: expected [first, end))")
        problem = shard_file_problem(e["file"])
        if problem:
            raise bad(f"shard {i}", f"file {e['file']!r} {problem}")


def _type(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__} ({str(value)[:40]!r})"


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "dict": "a mapping", "list": "a list", "NoneType": "null"}.get(
        k.__name__, k.__name__) for k in kinds)
