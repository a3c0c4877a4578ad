"""The manifest: the contract between a finished run and the trainer that reads it.

Versioned JSON, written last and atomically. No timestamps or host facts inside, so the
same inputs and config give a byte-identical file; timings go to ``run_log.json``.
Paths are relative to the manifest's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, metrics
from .config import RunConfig
from .errors import ReorderError
from .plan import Plan
from .shards.writers import COMPRESSION

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
PROFILE_BINS = 200
_FINGERPRINT_SPAN = 1 << 20


def fingerprint(path: Path) -> str:
    """sha256 of the file size, its first MiB and its last MiB: cheap, and changes when a
    file is replaced, truncated, appended to or rewritten (a Parquet footer is at the end)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(_FINGERPRINT_SPAN))
        if size > _FINGERPRINT_SPAN:
            fh.seek(max(_FINGERPRINT_SPAN, size - _FINGERPRINT_SPAN))
            digest.update(fh.read())
    return "sha256-ends:" + digest.hexdigest()


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def score_summary(scores: np.ndarray) -> dict[str, Any]:
    valid = scores[~np.isnan(scores)]
    if len(valid) == 0:
        return {"min": None, "mean": None, "max": None}
    return {"min": _num(valid.min()), "mean": _num(valid.mean()), "max": _num(valid.max())}


def profile(scores: np.ndarray, bins: int = PROFILE_BINS) -> dict[str, Any]:
    """Score by output position in ``bins`` equal slices: mean, min and max of each."""
    n = len(scores)
    bins = max(1, min(bins, n))
    edges = (np.arange(bins + 1, dtype=np.int64) * n) // bins
    starts = edges[:-1]
    valid = ~np.isnan(scores)
    counts = np.add.reduceat(valid.astype(np.int64), starts)
    sums = np.add.reduceat(np.where(valid, scores, 0.0), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return {
        "bins": int(bins),
        "edges": edges.tolist(),
        "mean": [_num(v) for v in means],
        "min": [_num(v) for v in np.fmin.reduceat(scores, starts)],
        "max": [_num(v) for v in np.fmax.reduceat(scores, starts)],
    }


def build(plan: Plan, cfg: RunConfig, shards: list[dict], out_dir: Path) -> dict[str, Any]:
    rel = lambda p: os.path.relpath(Path(p).resolve(), out_dir.resolve())  # noqa: E731
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
        "seed": cfg.seed,
        "invalid_scores": {
            "policy": cfg.invalid_scores, "count": plan.invalid_count, "dropped": plan.dropped,
            "samples": [{**s, "file": rel(s["file"])} for s in plan.invalid_samples],
        },
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
            "shards": len(shard_entries), "bytes": sum(s["bytes"] for s in shard_entries),
            "input_bytes": sum(f.size for f in plan.files), "score": score_summary(plan.scores),
        },
        "profile": profile(plan.scores),
        "metrics": metrics.compute(plan.scores),
    }


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read(path: Path) -> tuple[dict[str, Any], Path]:
    """Load a manifest from its file or its folder; returns (manifest, its folder)."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    if not file.exists():
        raise ReorderError(f"{path}: no {MANIFEST_NAME} here (is this a reorder output folder?)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReorderError(f"{file}: not a readable manifest: {exc}") from None
    version = data.get("manifest_version") if isinstance(data, dict) else None
    if version != MANIFEST_VERSION:
        raise ReorderError(f"{file}: manifest_version {version!r} is not supported (expected {MANIFEST_VERSION})")
    return data, file.parent
