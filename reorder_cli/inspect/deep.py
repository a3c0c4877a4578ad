"""``reorder stats --deep``: recompute the profile and metrics from the shards themselves
and list where they disagree with the manifest."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.formats.discover import InputFile, classify
from reorder_cli.metrics import guidance as metrics
from reorder_cli.metrics import partial
from reorder_cli.plan.build import read_keys
from reorder_cli.publish.manifest import Manifest
from reorder_cli.util import store

TOLERANCE = 1e-6


def shard_scores(doc: Manifest, folder: Path, workers: int = 0) -> list[np.ndarray]:
    """The scores of each shard listed in the manifest, in training order, read from the files."""
    files = []
    for s in doc.shards:
        path = folder / s.file
        kind = classify(path)
        if kind is None or not store.is_file(path):
            raise ReorderError(f"{path}: a shard listed in the manifest is missing")
        files.append(InputFile(path, kind[0], kind[1], store.size(path)))
    sources = read_keys(files, doc.scoring(tokens=False), False, workers or os.cpu_count() or 1)
    return [src.scores() for src in sources]


def concat(per_shard: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(per_shard) if per_shard else np.empty(0, dtype=np.float64)


def metric_params(doc: Manifest) -> metrics.Params:
    """The metric parameters the manifest recorded (the defaults for a manifest without metrics)."""
    recorded = (doc.metrics or {}).get("params") or {}
    if not isinstance(recorded, dict):
        raise ReorderError(f"the manifest: 'metrics.params' is {recorded!r}, expected a mapping")
    known = {k: v for k, v in recorded.items() if k in metrics.Params.__dataclass_fields__}
    for key, value in known.items():  # window and bins count rows: integers; the others any number
        whole = key in ("window", "bins")
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float) or \
                (not whole and not math.isfinite(value)):
            raise ReorderError(f"the manifest: 'metrics.params.{key}' is {value!r}, expected "
                               f"{'an integer' if whole else 'a finite number'}")
    try:
        return metrics.Params(**known)
    except ReorderError as exc:
        raise ReorderError(f"the manifest: 'metrics.params': {exc}") from None


def recompute(doc: Manifest, per_shard: list[np.ndarray]) -> dict[str, Any]:
    """What the manifest says about the scores, computed again from each shard's scores: each shard's partial,
    merged, as the run computed them (:mod:`reorder_cli.metrics.partial`)."""
    scores = concat(per_shard)
    ends = np.cumsum([len(s) for s in per_shard], dtype=np.int64).tolist()
    merged = partial.of_array(scores, metric_params(doc), list(zip([0, *ends[:-1]], ends, strict=True)))
    return {
        "rows": len(scores),
        "shards": [{"rows": len(s), "score": m} for s, m in zip(per_shard, merged.shards, strict=True)],
        "score": merged.score,
        "profile": merged.profile,
        "metrics": merged.metrics,
    }


def recorded(doc: Manifest) -> dict[str, Any]:
    """The same fields as :func:`recompute`, from the manifest."""
    out = {
        "rows": doc.totals["rows"],
        "shards": [{"rows": s.rows, "score": s.score} for s in doc.shards],
        "score": doc.totals["score"],
        "profile": doc.profile,
    }
    if doc.metrics is not None:
        out["metrics"] = doc.metrics
    return out


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Paths (``shards[3].score.mean``) where two JSON-like values differ beyond rounding."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = list(expected) + [k for k in actual if k not in expected]
        return [d for k in keys for d in differences(expected.get(k), actual.get(k), f"{path}.{k}" if path else k)]
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path} (length {len(expected)} vs {len(actual)})"]
        pairs = enumerate(zip(expected, actual, strict=True))
        return [d for i, (a, b) in pairs for d in differences(a, b, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers) and not isinstance(expected, bool):
        return [] if abs(expected - actual) <= TOLERANCE * max(1.0, abs(expected)) else [path]
    return [] if expected == actual else [path]


def check(doc: Manifest, per_shard: list[np.ndarray]) -> tuple[dict[str, Any], list[str]]:
    """(the values recomputed from the shards, the paths where the manifest disagrees)."""
    again = recompute(doc, per_shard)
    mine = recorded(doc)  # an older manifest without metrics is checked for the rest
    return again, differences(mine, {k: again[k] for k in mine})


def describe(paths: list[str]) -> str:
    """A one-line summary of the differing paths, grouped by section (shards, profile, metrics ...)."""
    groups: dict[str, list[str]] = {}
    for p in paths:
        groups.setdefault(re.split(r"[.\[ ]", p, maxsplit=1)[0], []).append(p)
    parts = [f"{name} ({len(items)}: {', '.join(items[:2])}{', ...' if len(items) > 2 else ''})"
             for name, items in groups.items()]
    return f"{len(paths)} value(s) differ: " + "; ".join(parts)
