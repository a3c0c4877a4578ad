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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reorder_cli import __version__
from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.formats import score_expr
from reorder_cli.formats.writers import COMPRESSION
from reorder_cli.metrics import shards as score_shards
from reorder_cli.plan.build import Plan
from reorder_cli.tokens.sections import sections
from reorder_cli.util import store
from reorder_cli.util.hashing import fingerprint

MANIFEST_VERSION = 1  # optional sections (tokens, export) added since are read as absent by older readers
READABLE_VERSIONS = (1,)
MANIFEST_NAME = ".manifest.json"
RUN_LOG_NAME = ".run_log.json"
LEGACY_MANIFEST_NAME = "manifest.json"
LEGACY_RUN_LOG_NAME = "run_log.json"
MANIFEST_NAMES = (MANIFEST_NAME, LEGACY_MANIFEST_NAME)  # looked for in this order
RUN_LOG_NAMES = (RUN_LOG_NAME, LEGACY_RUN_LOG_NAME)
BOOKKEEPING = (*MANIFEST_NAMES, *RUN_LOG_NAMES)  # every file of an output folder that is not a shard


@dataclass(frozen=True)
class ShardEntry:
    """One output shard: its file (relative to the manifest's folder), its rows and their positions
    ``[first, end)`` in the order, its bytes and sha256, the score summary of its rows."""

    file: str
    format: str
    rows: int
    bytes: int
    sha256: str
    first: int
    end: int
    score: dict[str, Any]
    compression: str | None = None

    @property
    def positions(self) -> tuple[int, int]:
        return self.first, self.end

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "compression": self.compression, "rows": self.rows,
                "bytes": self.bytes, "sha256": self.sha256, "positions": [self.first, self.end], "score": self.score}

    @classmethod
    def from_json(cls, e: dict[str, Any]) -> ShardEntry:
        first, end = e["positions"]
        return cls(e["file"], e["format"], e["rows"], e["bytes"], e["sha256"], first, end, e["score"],
                   e.get("compression"))


@dataclass(frozen=True)
class InputEntry:
    """One input file as the run read it: ``path`` relative to the manifest's folder (a URL as it is)."""

    path: str
    format: str | None = None
    compression: str | None = None
    rows: int | None = None
    bytes: int | None = None
    fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "compression": self.compression, "rows": self.rows,
                "bytes": self.bytes, "fingerprint": self.fingerprint}

    @classmethod
    def from_json(cls, e: dict[str, Any]) -> InputEntry:
        return cls(e["path"], e.get("format"), e.get("compression"), e.get("rows"), e.get("bytes"),
                   e.get("fingerprint"))


#: The top-level keys in the order a manifest is written; ``None`` values of the optional ones are left out.
_ORDER = ("manifest_version", "tool", "method", "params", "score_field", "score", "seed", "invalid_scores",
          "selection", "output", "inputs", "shards", "totals", "profile", "metrics", "tokens", "export", "mixture")
_LEFT_OUT_WHEN_NONE = ("score", "selection", "tokens", "export", "mixture")


@dataclass(frozen=True)
class Manifest:
    """The manifest of a finished output: one typed, versioned record (``to_json``/``from_json``).

    ``totals``, ``invalid_scores``, ``output``, ``selection``, ``profile``, ``metrics``, ``tokens`` and
    ``export`` are JSON mappings whose shape ``check`` guarantees for the keys readers use; keys this version
    does not know are kept in ``extra``, so an older or newer manifest is written back as it was read.
    """

    method: str
    params: dict[str, Any]
    invalid_scores: dict[str, Any]
    output: dict[str, Any]
    inputs: list[InputEntry]
    shards: list[ShardEntry]
    totals: dict[str, Any]
    profile: dict[str, Any]
    score_field: str | None = "score"
    score: str | None = None
    seed: int | None = None
    selection: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    tool: dict[str, Any] | None = None
    tokens: dict[str, Any] | None = None  # the token pieces (tokenizer, dtype, per-shard counts and offsets)
    export: dict[str, Any] | None = None  # the trainer-native export (its format and files)
    mixture: dict[str, Any] | None = None  # a mixture's sources, their rows and tokens, the shares (plan/mixture.py)
    version: int = MANIFEST_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # top-level keys this version does not know
    read_keys: tuple[str, ...] | None = None  # the known keys the file had (None: a manifest built by this run)

    @property
    def format(self) -> str:
        """The shards' format."""
        return self.output["format"]

    @property
    def rows(self) -> int:
        return self.shards[-1].end if self.shards else 0

    def scoring(self, tokens: bool = True) -> score_expr.Scoring:
        """The scoring the run used (with its selection's token field unless ``tokens`` is False)."""
        token_field = score_expr.selection_token_field((self.selection or {}).get("params")) if tokens else None
        if self.score:
            return score_expr.scoring(expression=self.score, token_field=token_field)
        return score_expr.scoring(field=self.score_field or "score", token_field=token_field)

    def to_json(self) -> dict[str, Any]:
        values = {
            "manifest_version": self.version, "tool": self.tool, "method": self.method, "params": self.params,
            "score_field": self.score_field, "score": self.score, "seed": self.seed,
            "invalid_scores": self.invalid_scores, "selection": self.selection, "output": self.output,
            "inputs": [i.to_json() for i in self.inputs], "shards": [s.to_json() for s in self.shards],
            "totals": self.totals, "profile": self.profile, "metrics": self.metrics, "tokens": self.tokens,
            "export": self.export, "mixture": self.mixture,
        }
        if self.read_keys is not None:  # written back as it was read
            return {k: values[k] for k in _ORDER if k in self.read_keys} | self.extra
        return {k: v for k, v in values.items() if not (k in _LEFT_OUT_WHEN_NONE and v is None)} | self.extra

    def dumps(self) -> str:
        return dumps(self.to_json())

    @classmethod
    def from_json(cls, data: Any, file: Any = "the manifest") -> Manifest:
        """The record of a manifest's JSON (``file`` names it in errors): its version and shape checked."""
        version = data.get("manifest_version") if isinstance(data, dict) else None
        if version not in READABLE_VERSIONS:
            raise ReorderError(f"{file}: manifest_version {version!r} is not supported "
                               f"(expected {' or '.join(map(str, READABLE_VERSIONS))})")
        check(data, file)
        known = set(_ORDER)
        return cls(
            method=data["method"], params=data["params"], invalid_scores=data["invalid_scores"],
            output=data["output"], inputs=[InputEntry.from_json(i) for i in data["inputs"]],
            shards=[ShardEntry.from_json(e) for e in data["shards"]], totals=data["totals"],
            profile=data["profile"], score_field=data.get("score_field"), score=data.get("score"),
            seed=data.get("seed"), selection=data.get("selection"), metrics=data.get("metrics"),
            tool=data.get("tool"), tokens=data.get("tokens"), export=data.get("export"),
            mixture=data.get("mixture"), version=version,
            extra={k: v for k, v in data.items() if k not in known}, read_keys=tuple(k for k in _ORDER if k in data),
        )


def build(plan: Plan, cfg: RunConfig, shards: list[dict], out_dir: Path | store.URL,
          export: dict[str, Any] | None = None) -> Manifest:
    """The manifest of a run: ``shards`` are the gather records in order (with their score partials, merged
    here into the score summaries, profile and metrics, and their token pieces' records when the run tokenized
    its documents); ``export`` the exporter's entry. Reads none of the plan's arrays."""
    def rel(p) -> str:  # a URL is recorded as it is; a local input of an output on a store, absolute
        if store.is_url(p):
            return str(p)
        if store.is_url(out_dir):
            return str(Path(p).resolve())
        return os.path.relpath(Path(p).resolve(), out_dir.resolve())

    scores = score_shards.merged(shards)  # each gather's partial of its shard's scores: no row read here
    entries = [ShardEntry(s["file"], cfg.format, s["rows"], s["bytes"], s["sha256"], s["first"],
                          s["first"] + s["rows"], summary, s["compression"])
               for s, summary in zip(shards, scores.shards, strict=True)]
    inputs = [InputEntry(rel(f.path), f.format, f.compression, int(source.rows), f.size, fingerprint(f.path))
              for f, source in _once(plan)]
    return Manifest(
        tool={"name": "reorder", "version": __version__},
        method=cfg.method,
        params=cfg.params,
        score_field=cfg.score_field,
        score=cfg.score or None,
        seed=cfg.seed,
        invalid_scores={
            "policy": cfg.invalid_scores, "count": plan.invalid_count, "dropped": plan.dropped,
            "samples": [{"file": rel(s["file"]), "where": s["where"], "value": s["value"]}
                        for s in plan.invalid_samples],
        },
        selection=plan.selection or None,
        output={
            "format": cfg.format, "compression": COMPRESSION[cfg.format], "compression_level": cfg.compression_level,
            "shard_size": cfg.shard_size, "shard_rows": cfg.shard_rows,
            **({"row_group_size": cfg.row_group_size, "row_group_rows": cfg.row_group_rows}
               if cfg.format == "parquet" else {}),
        },
        inputs=inputs,
        shards=entries,
        totals={
            "input_rows": sum(int(s.rows) for _, s in _once(plan)), "rows": plan.rows, "dropped_rows": plan.dropped,
            **({"unselected_rows": plan.selection["dropped"]} if plan.selection else {}),
            **({k: plan.mixture["totals"][k] for k in ("unscheduled_rows", "repeated_rows")} if plan.mixture else {}),
            "shards": len(entries), "bytes": sum(s.bytes for s in entries),
            "input_bytes": sum(f.size for f, _ in _once(plan)), "score": scores.score,
        },
        profile=scores.profile,
        metrics=scores.metrics,
        **sections(cfg.tokens, shards, export),  # tokens, export (issue 19)
        mixture=plan.mixture,
    )


def _once(plan: Plan) -> list[tuple[Any, Any]]:
    """(file, keys) of each input once: a mixture's plan lists a source's files once per epoch it gives."""
    seen: dict[str, tuple[Any, Any]] = {}
    for f, source in zip(plan.files, plan.sources, strict=True):  # a loop over files
        seen.setdefault(str(f.path), (f, source))
    return list(seen.values())


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def find(folder: Path | store.URL) -> Path | store.URL:
    """The manifest file of an output folder (or object of an output on a store): the current name, else
    the legacy one (or the current name when there is none)."""
    folder = store.location(folder) if isinstance(folder, str) else folder
    present = set(store.names(folder))
    return folder / next((name for name in MANIFEST_NAMES if name in present), MANIFEST_NAME)


def read(path: str | Path | store.URL) -> tuple[Manifest, Path | store.URL]:
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
    return Manifest.from_json(data, file), file.parent


# ------------------------------------------------------------------ the shape every reader relies on

_INT64 = 2**63 - 1
_TOP: dict[str, type | tuple[type, ...]] = {
    "method": str, "params": dict, "invalid_scores": dict, "output": dict, "inputs": list, "shards": list,
    "totals": dict, "profile": dict,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "score_field": (str, type(None)), "score": str, "selection": dict, "metrics": dict, "tool": dict,
    "tokens": dict, "export": dict, "mixture": dict,
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
