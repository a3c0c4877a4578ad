"""The combine stage (``combine`` = K > 1): K scatter files merged a task, so that a gather opens S / K files;
the same bytes as in memory and as out of core without it, whatever the workers; the files a gather opens
counted from its marker (``files_opened``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import (
    RICH_SCHEMA,
    make_rows,
    reorder,
    rich_rows,
    to_lines,
    write_jsonl,
    write_parquet,
)
from .test_out_of_core import OOC, snapshot


@pytest.fixture
def small_slices(monkeypatch):
    """Inputs cut into many scatter slices (about 9 kB each): many scatter files to combine."""
    from reorder_cli.plan import stored as stored_plan

    monkeypatch.setattr(stored_plan, "SCATTER_SLICE_BYTES", 9_000)


def _inputs(tmp_path: Path, kind: str) -> list[Path]:
    jsonl = [write_jsonl(tmp_path / "in" / f"j{k}.jsonl", to_lines(make_rows(250 + 30 * k, seed=k, prefix=f"j{k}")))
             for k in range(2)]
    if kind == "jsonl":  # JSONL only: a Parquet output's schema inferred by the scatter tasks, merged by combine
        return jsonl
    pq_files = [write_parquet(tmp_path / "in" / f"p{k}.parquet", rich_rows(220 + 20 * k, seed=k, prefix=f"p{k}"),
                              RICH_SCHEMA, row_group_size=25) for k in range(2)]
    rows = [{k: v for k, v in r.items() if k != "int_score"} for r in make_rows(150, seed=9, prefix="m")]
    return [*pq_files, write_jsonl(tmp_path / "in" / "m.jsonl", to_lines(rows))]  # Parquet and JSONL inputs


def _done(out: Path, stage: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / ".reorder" / "done").glob(f"{stage}-*.json"))]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
@pytest.mark.parametrize("kind", ["jsonl", "mixed"])
def test_combine_gives_the_same_bytes(tmp_path, config_file, small_slices, fmt, kind):
    inputs = _inputs(tmp_path, kind)
    sets = [f"format={fmt}", "shard_rows=110", "row_group_rows=30"]
    reorder(config_file, inputs, tmp_path / "mem", method="saw", sets=[*sets, "rewrite=in-memory"])
    reorder(config_file, inputs, tmp_path / "off", method="saw", sets=[*sets, *OOC, "combine=1"])
    want = snapshot(tmp_path / "mem")
    assert snapshot(tmp_path / "off") == want
    for k, workers in ((3, 1), (3, 2), (100, 2)):  # K = 100: one combine task takes every scatter file
        out = tmp_path / f"k{k}-w{workers}"
        reorder(config_file, inputs, out, method="saw", sets=[*sets, *OOC, f"combine={k}"],
                extra=["--workers", workers, "--keep-work"])
        plan = json.loads((out / ".reorder" / "plan" / "plan.json").read_text())
        scatter = len(plan["slices"])
        assert scatter > 8 and plan["combine"] == k
        combined = _done(out, "combine")
        assert len(combined) == -(-scatter // k)
        assert sum(r["rows"] for r in combined) == sum(r["rows"] for r in _done(out, "scatter"))
        assert snapshot(out) == want, (k, workers)


def test_a_gather_opens_s_over_k_files(tmp_path, config_file, small_slices):
    inputs = _inputs(tmp_path, "mixed")
    sets = ["format=parquet", "shard_rows=110", "row_group_rows=30", *OOC]
    opened = {}
    for k in (1, 4):
        out = tmp_path / f"k{k}"
        reorder(config_file, inputs, out, method="saw", sets=[*sets, f"combine={k}"], extra=["--keep-work"])
        scatter = len(_done(out, "scatter"))
        gathers = _done(out, "gather")
        assert len(gathers) > 3
        opened[k] = [g["files_opened"] for g in gathers]
        files = scatter if k == 1 else -(-scatter // k)
        # every index, and the data file of each that holds rows of the shard: at most 2 a file
        assert all(files < n <= 2 * files for n in opened[k]), (k, files, opened[k])
        if k > 1:  # a combine task opens each of its K files twice (index, data), once for all shards
            assert [c["files_opened"] for c in _done(out, "combine")] == \
                [2 * len(range(c * k, min(scatter, c * k + k))) for c in range(len(_done(out, "combine")))]
    assert max(opened[4]) * 3 < min(opened[1])


def test_the_count_catches_a_gather_that_opens_every_scatter_file(tmp_path, config_file, small_slices, monkeypatch):
    """Negative control: a gather that reads the scatter files although the combine ran (the sources as
    without it) opens S files or more, and the bound of the test above fails on it."""
    from reorder_cli.rewrite import gather

    monkeypatch.setattr(gather, "sources", lambda stored, work: gather.scatter_sources(stored, work))
    inputs = _inputs(tmp_path, "mixed")
    out = tmp_path / "k4"
    reorder(config_file, inputs, out, method="saw",
            sets=["format=parquet", "shard_rows=110", "row_group_rows=30", *OOC, "combine=4"], extra=["--keep-work"])
    scatter = len(_done(out, "scatter"))
    files = -(-scatter // 4)
    assert scatter > 8 and len(_done(out, "combine")) == files
    assert all(g["files_opened"] > 2 * files for g in _done(out, "gather"))


def test_a_combine_that_loses_rows_is_caught_by_the_gather(tmp_path, config_file, small_slices, monkeypatch):
    """Negative control for the bytes: a combine task that leaves out one scatter file's rows; every gather
    checks its buckets cover their positions exactly once, and the run fails naming the bucket."""
    from reorder_cli.rewrite import gather

    real = gather.scatter_sources
    monkeypatch.setattr(gather, "scatter_sources",
                        lambda stored, work, tasks=None: real(stored, work, tasks)[:-1] if tasks else
                        real(stored, work, tasks))
    result = reorder(config_file, _inputs(tmp_path, "mixed"), tmp_path / "bad", method="saw",
                     sets=["format=parquet", "shard_rows=110", *OOC, "combine=4"], ok=False)
    assert result.exit_code != 0
    assert "do not cover positions" in str(result.exception) + result.output


def test_combine_by_the_task_count(tmp_path):
    from reorder_cli.plan.stored import COMBINE_FILES, COMBINE_FROM, combine_width

    assert combine_width(0, COMBINE_FROM) == 1  # few scatter tasks: off
    assert combine_width(0, COMBINE_FROM + 1) == -(-(COMBINE_FROM + 1) // COMBINE_FILES)  # 22: 187 files
    assert combine_width(0, 156_250) == 814 and COMBINE_FILES >= -(-156_250 // 814)
    assert combine_width(1, 156_250) == 1 and combine_width(7, 10) == 7
