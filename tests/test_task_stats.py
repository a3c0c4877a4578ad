"""Per-task statistics: every task's marker records rows, bytes in and out, seconds and peak RSS
(reorder_cli/util/task_stats.py); `reorder status --json` sums them by stage; the output holds none of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reorder_cli.stages import REGISTRY, STAGES
from reorder_cli.util import task_stats

from .conftest import invoke, output_hashes, reorder
from .test_stages import TASKS, run_as_tasks, scored_with_invalid  # noqa: F401 - a fixture

INPUT_ROWS = 400 + 350 + 450  # scored_with_invalid
SETS = ["window_size=3", "invalid_scores=last", "combine=2"]  # combine: 2 scatter files a task


def markers(out: Path, stage: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / ".reorder" / "done").glob(f"{stage}-*.json"))]


def sums(out: Path) -> dict[str, dict]:
    """What `status --json` should say: each stage's sums, computed here from the marker files."""
    found = {}
    for stage in STAGES:
        ms = markers(out, stage)
        if ms and all(task_stats.has_stats(m) for m in ms):
            found[stage] = {"tasks": len(ms), **{f: sum(m[f] for m in ms) for f in ("rows", "bytes_in", "bytes_out")},
                            "seconds": sum(m["seconds"] for m in ms), "peak_rss_max": max(m["peak_rss"] for m in ms)}
    return found


def status_stats(out: Path) -> dict:
    result = invoke("status", out, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["data"]["stats"]


def same(a: dict, b: dict) -> bool:
    """Equal sums (seconds to the microsecond the markers keep)."""
    return a.keys() == b.keys() and all(
        {k: v for k, v in a[s].items() if k != "seconds"} == {k: v for k, v in b[s].items() if k != "seconds"}
        and abs(a[s]["seconds"] - b[s]["seconds"]) < 1e-3 for s in a)


def check_plausible(out: Path, inputs: list[Path]) -> None:
    """Every stage's markers carry the statistics, with values a real run gives."""
    for stage in STAGES:
        ms = markers(out, stage)
        assert ms, stage
        for m in ms:
            assert task_stats.has_stats(m), (stage, m)
            assert m["seconds"] >= 0 and m["rows"] >= 0 and m["bytes_out"] > 0, (stage, m)
            assert 10 << 20 < m["peak_rss"] < 1 << 40, (stage, m)  # a Python process's RSS, in bytes
            assert m["bytes_out"] == sum(m["files"].values()), (stage, m)
    for stage in ("keys", "scatter", "combine", "gather"):  # every row passes once through each
        assert sum(m["rows"] for m in markers(out, stage)) == INPUT_ROWS, stage
        assert all(m["bytes_in"] > 0 for m in markers(out, stage)), stage
    input_bytes = sum(p.stat().st_size for p in inputs)
    assert sum(m["bytes_in"] for m in markers(out, "keys")) == input_bytes
    scattered = sum(m["bytes_in"] for m in markers(out, "scatter"))  # each slice's share, rounded down
    assert input_bytes - len(markers(out, "scatter")) <= scattered <= input_bytes
    gathered = sum(m["bytes_in"] for m in markers(out, "gather"))  # the record batches, within the scatter files
    assert 0 < gathered <= sum(m["bytes_out"] for m in markers(out, "scatter"))
    valid = sum(m["valid"] for m in markers(out, "keys"))
    assert 0 < valid < INPUT_ROWS and sum(m["rows"] for m in markers(out, "sort")) == valid  # each sorted once


def test_every_task_records_its_statistics_and_status_sums_them(tmp_path, config_file, scored_with_invalid):  # noqa: F811
    out = tmp_path / "out"
    reorder(config_file, scored_with_invalid, out, method="str", sets=[*SETS, *TASKS],
            extra=["--executor", "slurm", "--dry-run"])
    assert status_stats(out) == {}  # nothing has run
    assert run_as_tasks(out) > len(STAGES)
    check_plausible(out, scored_with_invalid)
    expected = sums(out)
    assert list(expected) == list(STAGES) and same(status_stats(out), expected)
    text = invoke("status", out).stdout
    gather = expected["gather"]
    assert f"gather  {gather['tasks']} tasks, {INPUT_ROWS:,} rows, " in text, text
    # published with --keep-work: the finished run's status still sums its markers
    reorder(config_file, scored_with_invalid, out, method="str", sets=[*SETS, *TASKS], extra=["--keep-work"])
    report = json.loads(invoke("status", out, "--json").stdout)["data"]
    assert report["finished"] and same(report["stats"], expected)


def test_the_checks_catch_a_wrong_marker(tmp_path, config_file, scored_with_invalid):  # noqa: F811
    """Negative control: a marker whose rows were changed breaks the rows check and moves status's sum with
    it; a marker without statistics is not counted; markers without any give no sums."""
    out = tmp_path / "out"
    reorder(config_file, scored_with_invalid, out, method="str", sets=[*SETS, *TASKS],
            extra=["--executor", "slurm", "--dry-run"])
    run_as_tasks(out)
    before = status_stats(out)
    first = sorted((out / ".reorder" / "done").glob("gather-*.json"))[0]
    marker = json.loads(first.read_text())
    first.write_text(json.dumps(marker | {"rows": marker["rows"] + 5}))
    with pytest.raises(AssertionError, match="gather"):
        check_plausible(out, scored_with_invalid)
    after = status_stats(out)
    assert after["gather"]["rows"] == before["gather"]["rows"] + 5 and same(after, sums(out))
    first.write_text(json.dumps({k: v for k, v in marker.items() if k not in ("seconds", "peak_rss")}))
    assert status_stats(out)["gather"]["tasks"] == before["gather"]["tasks"] - 1
    assert task_stats.totals([{"rows": 3}]) is None and task_stats.totals([]) is None


def test_local_runs_record_them_and_the_output_holds_none(tmp_path, config_file, scored_with_invalid):  # noqa: F811
    """Out of core through the local pool (the order's tasks, then scatter and gather) and in memory (one gather
    record a shard): the markers carry the statistics; two runs with other workers give the same bytes,
    and neither the manifest nor a shard holds a statistic."""
    ooc1, ooc2, mem = tmp_path / "ooc1", tmp_path / "ooc2", tmp_path / "mem"
    for out, workers in ((ooc1, 1), (ooc2, 2)):
        reorder(config_file, scored_with_invalid, out, method="str", sets=[*SETS, *TASKS, f"workers={workers}"],
                extra=["--keep-work"])
    reorder(config_file, scored_with_invalid, mem, method="str", sets=[*SETS, "shard_rows=150"], extra=["--keep-work"])
    assert output_hashes(ooc1) == output_hashes(ooc2) == output_hashes(mem)
    for out in (ooc1, ooc2):
        stats = status_stats(out)
        assert list(stats) == [s for s in STAGES if REGISTRY[s].order or s in ("scatter", "combine", "gather")], stats
        assert stats["gather"]["rows"] == stats["scatter"]["rows"] == INPUT_ROWS
    gathers = markers(mem, "gather")
    assert gathers and all(task_stats.has_stats(m) and m["bytes_in"] > 0 for m in gathers)
    assert sum(m["rows"] for m in gathers) == INPUT_ROWS and list(status_stats(mem)) == ["gather"]
    manifest = next(p for p in ooc1.iterdir() if "manifest" in p.name).read_text()
    assert not any(f'"{field}"' in manifest for field in ("bytes_in", "bytes_out", "seconds", "peak_rss"))
    assert '"rows"' in manifest  # positive twin: the search would find a field that is there
