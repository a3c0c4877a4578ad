"""Recognise the re-run of a finished run, so that running the same command twice is safe.

A finished output folder holds its manifest (``.manifest.json``), which records everything the output
depends on (the run's identity, :func:`workdir.identity`): the tool version, the method
and its parameters, the output settings, the invalid-score policy and every input's
path, size and fingerprint. So the identity is read back from the manifest itself; the
manifest needs no extra field and stays byte-identical. The shards are then checked
against the manifest (present, size, sha256; no unlisted shard).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.formats.writers import is_shard_name, shard_differs
from reorder_cli.plan import mixture
from reorder_cli.publish import manifest
from reorder_cli.tokens import sections
from reorder_cli.util import store
from reorder_cli.workdir import differences

_ROW_GROUP = ("row_group_size", "row_group_rows")


@dataclass
class Finished:
    """The finished run in an output folder, compared with the run about to start."""

    doc: manifest.Manifest
    other_run: list[str] = field(default_factory=list)  # how its identity differs (empty: the same run)
    changes: list[str] = field(default_factory=list)  # how its shards differ from its manifest


def _comparable(ident: dict[str, Any]) -> dict[str, Any]:
    """An identity with the settings that do not apply to its format left out, and of each input only what
    the manifest records (not its modification time or inode: a finished output describes content)."""
    config = dict(ident["config"])
    if config.get("format") != "parquet":
        config.update(dict.fromkeys(_ROW_GROUP))
    inputs = [{k: i[k] for k in ("path", "bytes", "fingerprint")} for i in ident["inputs"]]
    return {**ident, "config": config, "inputs": inputs}


def recorded_identity(doc: manifest.Manifest, folder: Path) -> dict[str, Any]:
    """The identity of the run that wrote the manifest ``doc`` in ``folder``."""
    out = doc.output
    config = {"method": doc.method, "params": doc.params, "format": out["format"],
              "compression_level": out["compression_level"], "shard_size": out["shard_size"],
              "shard_rows": out["shard_rows"], "invalid_scores": doc.invalid_scores["policy"],
              "score": doc.score, "select": (doc.selection or {}).get("params"),
              **{k: out.get(k) for k in _ROW_GROUP}} | sections.recorded_identity(doc.tokens, doc.export) \
        | ({"mixture": mixture.config_of(doc.mixture)} if doc.mixture else {})
    base = folder.resolve()
    inputs = [{"path": i.path if store.is_url(i.path) or os.path.isabs(i.path) else os.path.normpath(base / i.path),
               "bytes": i.bytes, "fingerprint": i.fingerprint} for i in doc.inputs]
    return _comparable({"tool_version": doc.tool["version"], "config": config, "inputs": inputs})


def shard_changes(doc: manifest.Manifest, folder: Path | store.URL, workers: int = 1) -> list[str]:
    """How the shards in ``folder`` (local, or on a store) differ from the manifest: missing, resized,
    altered or unlisted."""
    entries = doc.shards
    present = set(store.names(folder))

    def check(entry: manifest.ShardEntry) -> str | None:
        if entry.file not in present:
            return f"{entry.file} is missing"
        return shard_differs(folder, entry.file, entry.bytes, entry.sha256)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        changes = [c for c in pool.map(check, entries) if c]
    if not store.is_url(folder):  # token pieces and exports: local outputs only
        changes += sections.changes(doc.tokens, doc.export, folder)
    listed = {e.file for e in entries}
    changes += [f"{name} is not in the manifest" for name in sorted(present)
                if is_shard_name(name) and name not in listed]
    return changes


def finished(out: Path | store.URL, ident: dict[str, Any], workers: int = 1) -> Finished | None:
    """The finished run in ``out`` (None when there is no readable manifest)."""
    if not store.is_file(manifest.find(out)):
        return None
    try:
        doc, folder = manifest.read(out)
        recorded = recorded_identity(doc, folder)
    except (ReorderError, KeyError, TypeError):
        return None  # not a manifest this version can compare: the usual output-folder rules apply
    why = differences(recorded, _comparable(ident))
    if why:
        return Finished(doc, other_run=why)
    return Finished(doc, changes=shard_changes(doc, folder, workers))
