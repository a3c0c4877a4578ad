"""Hostile cases of the memory budget (issue 8, "The memory budget is a promise at every value").

A budget that cannot hold one worker's least need (an output row group cannot be split, and
the bytes must not depend on the budget) is refused before anything is written, in one
line naming the smallest budget and what to change; a budget that holds fewer workers than
asked runs with fewer and says so; the row-group warning speaks only of real row groups;
the temporary-space estimate covers what the work folder really holds; and the bytes are
the same whatever the budget.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from reorder_cli import pipeline
from reorder_cli.config import load as load_config
from reorder_cli.rewrite import budget

from ..conftest import make_rows, one_line_error, reorder, shard_files, to_lines, wide_parquet, write_jsonl

ROW_GROUP = "1MB"


@pytest.fixture(autouse=True)
def _real_floor(monkeypatch):
    """These tests check the real budget: no test hook below the floor."""
    monkeypatch.delenv("REORDER_TEST_BELOW_FLOOR", raising=False)


@pytest.fixture
def parquet_inputs(tmp_path) -> list[Path]:
    """3 Parquet files, about 3.6 MB of rows in all (rows of about 1 kB)."""
    return wide_parquet(tmp_path / "in", 3, seed=7, row_group_size=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in [*shard_files(folder), folder / ".manifest.json"]}


def run_log(folder: Path) -> dict:
    return json.loads((folder / ".run_log.json").read_text())


def least_budget(message: str) -> str:
    found = re.search(r"at least (\d+) MB", message)
    assert found, message
    return f"{found.group(1)}MB"


def test_a_budget_below_one_worker_is_refused_in_one_line_naming_the_least(tmp_path, config_file, parquet_inputs):
    out = tmp_path / "o"
    result = reorder(config_file, parquet_inputs, out, method="saw", ok=False,
                     sets=[f"row_group_size={ROW_GROUP}", "workers=2"], extra=["--memory-limit", "270MB"])
    msg = one_line_error(result)
    assert "memory_limit 270 MB is below" in msg and "with 1 worker" in msg, msg
    assert "row_group_size" in msg, msg  # what to change
    assert int(least_budget(msg)[:-2]) > 270
    assert not out.exists()  # nothing written, no OUTPUT/.reorder


def test_the_least_budget_named_by_the_refusal_runs(tmp_path, config_file, parquet_inputs):
    """Positive twin: the budget the refusal names is enough (with fewer workers, said so)."""
    sets = [f"row_group_size={ROW_GROUP}", "workers=2"]
    msg = one_line_error(reorder(config_file, parquet_inputs, tmp_path / "no", method="saw", ok=False, sets=sets,
                                 extra=["--memory-limit", "270MB"]))
    out = tmp_path / "o"
    result = reorder(config_file, parquet_inputs, out, method="saw", sets=sets,
                     extra=["--memory-limit", least_budget(msg)])
    assert run_log(out)["path"] == "out-of-core"
    assert "fits 1 of 2 workers" in result.stderr and "output row groups" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_the_row_group_warning_stays_silent_with_small_row_groups(tmp_path, config_file):
    """Tiny data under the default 64 MB row_group_size: its row groups are tiny, no warning (the
    old check compared the configured row_group_size with the bucket and warned)."""
    files = [write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(make_rows(400)))]
    out = tmp_path / "o"
    result = reorder(config_file, files, out, method="saw", sets=["rewrite=out-of-core", "workers=2"],
                     extra=["--memory-limit", "300MB"])
    assert result.stderr.strip() == "", result.stderr
    assert run_log(out)["workers"] == 2 and run_log(out)["path"] == "out-of-core"


def test_the_row_group_warning_fires_when_row_groups_crowd_the_budget(tmp_path, config_file, parquet_inputs):
    """Negative control: row groups of 1 MB, a budget that holds 1 worker's of them but not 3."""
    sets = [f"row_group_size={ROW_GROUP}", "workers=3"]
    msg = one_line_error(reorder(config_file, parquet_inputs, tmp_path / "no", method="saw", ok=False, sets=sets,
                                 extra=["--memory-limit", "270MB"]))
    out = tmp_path / "o"
    result = reorder(config_file, parquet_inputs, out, method="saw", sets=sets,
                     extra=["--memory-limit", least_budget(msg)])
    assert result.stderr.startswith("warning: memory_limit"), result.stderr
    assert "of 3 workers" in result.stderr and "row_group_size" in result.stderr, result.stderr


@pytest.mark.parametrize("fmt", ["parquet", "jsonl.zst"])
def test_the_bytes_do_not_depend_on_the_budget(tmp_path, config_file, parquet_inputs, fmt):
    sets = [f"row_group_size={ROW_GROUP}", "workers=2", f"format={fmt}", "shard_size=1500kB"]
    least = "300MB"
    if fmt == "parquet":
        least = least_budget(one_line_error(reorder(config_file, parquet_inputs, tmp_path / "no", method="saw",
                                                    ok=False, sets=sets, extra=["--memory-limit", "270MB"])))
    runs = {}
    for name, limit in (("least", least), ("more", "400MB"), ("ample", "8GB")):
        out = tmp_path / name
        reorder(config_file, parquet_inputs, out, method="saw", sets=sets, extra=["--memory-limit", limit])
        runs[name] = (snapshot(out), run_log(out))
    assert runs["ample"][1]["path"] == "in-memory" and runs["least"][1]["path"] == "out-of-core"
    assert len(runs["least"][0]) > 2  # several shards
    assert runs["least"][0] == runs["more"][0] == runs["ample"][0]


# ------------------------------------------------------------------ temporary space


def _temp_note(notes: list[str]) -> float:
    found = re.search(r"temporary space needed: about ([\d.]+) (B|KB|MB|GB)", " ".join(notes))
    assert found, notes
    return float(found.group(1)) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[found.group(2)]


@pytest.mark.parametrize(("inputs", "fmt", "rewrite"), [
    ("tiny-jsonl", "jsonl", "out-of-core"),  # per-row plan files dominate: the old estimate saw only the rows
    ("tiny-jsonl", "parquet", "out-of-core"),
    ("parquet", "jsonl", "out-of-core"),  # JSON lines are longer than the Arrow rows
    ("parquet", "parquet", "in-memory"),
])
def test_the_temporary_space_estimate_covers_the_work_folder(tmp_path, parquet_inputs, inputs, fmt, rewrite):
    if inputs == "tiny-jsonl":
        rng = np.random.default_rng(3)
        lines = [json.dumps({"id": i, "score": float(s)}).encode() + b"\n"
                 for i, s in enumerate(np.round(rng.random(20000), 3))]
        files = [write_jsonl(tmp_path / "tiny" / "a.jsonl.zst", lines, "zstd")]
    else:
        files = parquet_inputs
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("method: saw\nscore_field: score\nseed: 42\n")
    out = tmp_path / "o"
    cfg = load_config(cfg_path, [f"format={fmt}", f"rewrite={rewrite}", "memory_limit=1GB", "workers=2"],
                      inputs=[str(f) for f in files], output=str(out))
    result = pipeline.run(cfg)
    used = run_log(out)["work_bytes"]
    assert used > 0
    assert _temp_note(result.notes) >= used, (result.notes, used)
    assert budget.SLACK_BYTES == 64 << 20  # the documented constant
