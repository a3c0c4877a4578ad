"""A three-source mixture for the end-to-end tests: its inputs, its config, and readers of its output.

``web`` (600 rows, STR) is cut to a subset, ``code`` (120 rows, SAW, ``max_epochs: 3``) repeats, ``math``
(400 rows, sorting descending, ``select: top-r:0.8``) follows a ramp; the budget counts ``token_count``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from .conftest import make_rows, to_lines, write_jsonl

SOURCES = {"web": 600, "code": 120, "math": 400}
BUDGET = 9000


def source_keys() -> dict[str, dict]:
    return {
        "web": {"method": "str", "weight": [[0.0, 0.6], [1.0, 0.3]]},
        "code": {"method": "saw", "weight": 0.3, "max_epochs": 3},
        "math": {"method": "sorting", "ascending": False, "select": "top-r:0.8",
                 "weight": [[0.0, 0.1], [0.5, 0.3], [1.0, 0.4]]},
    }


def write_inputs(folder: Path) -> dict[str, Path]:
    """One JSONL file a source (ids ``NAME-NNNNN``)."""
    return {name: write_jsonl(folder / name / "part-0.jsonl", to_lines(make_rows(n, seed=k + 10, prefix=name),
                                                                      seed=k))
            for k, (name, n) in enumerate(SOURCES.items())}


def write_config(folder: Path, inputs: dict[str, Path], budget: int = BUDGET, extra: dict | None = None,
                 sources: dict[str, dict] | None = None) -> Path:
    keys = sources or source_keys()
    cfg = {"format": "parquet", "seed": 11, "budget": budget, "token_field": "token_count",
           "sources": [{"name": name, "input": str(inputs[name]), **keys[name]} for name in keys], **(extra or {})}
    path = folder / "mix.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def output_rows(folder: Path) -> list[dict]:
    """The output's rows in order (Parquet shards, by the manifest)."""
    manifest = json.loads((folder / ".manifest.json").read_text())
    rows: list[dict] = []
    for shard in manifest["shards"]:
        rows += pq.read_table(folder / shard["file"]).to_pylist()
    return rows


def is_subsequence(part: list, whole: list) -> bool:
    """Whether ``part`` is ``whole`` with some items left out (same order)."""
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)
