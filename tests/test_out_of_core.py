"""The out-of-core rewrite: same bytes as in memory, any worker count, resumable after a
kill at any point, refusing to resume a changed run, and runnable task by task."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import (
    RICH_SCHEMA,
    invoke,
    make_rows,
    one_line_error,
    reorder,
    rich_rows,
    shard_files,
    to_lines,
    write_jsonl,
    write_parquet,
)

OOC = ["rewrite=out-of-core", "memory_limit=1"]  # the smallest pieces: many buckets; the keys out of core too
OOC_PAYLOAD = ["rewrite=out-of-core"]  # the keys in memory, the rows out of core


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file a finished run leaves (shards and manifest), by name."""
    return {p.name: p.read_bytes() for p in [*shard_files(folder), folder / ".manifest.json"]}


def run_log(folder: Path) -> dict:
    return json.loads((folder / ".run_log.json").read_text())


def assert_clean(folder: Path) -> None:
    """A finished run leaves no working state and no temporary file."""
    assert not (folder / ".reorder").exists()
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture
def mixed_inputs(tmp_path) -> list[Path]:
    """JSONL (plain, gzip, zstd, one without a final newline, blank lines) and Parquet with a shared schema."""
    files = []
    for k, compression in enumerate((None, "gzip", "zstd")):
        lines = to_lines(make_rows(300 + 40 * k, seed=k, prefix=f"j{k}"), seed=k)
        if k == 0:
            lines.insert(5, b"\n")
            lines.insert(40, b"   \n")
            lines[-1] = lines[-1].rstrip(b"\n")
        suffix = {None: "", "gzip": ".gz", "zstd": ".zst"}[compression]
        files.append(write_jsonl(tmp_path / "in" / f"part-{k}.jsonl{suffix}", lines, compression))
    return files


@pytest.mark.parametrize("keys", ["in-memory", "out-of-core"])
@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "jsonl.zst"])
@pytest.mark.parametrize("method", ["str", "saw", "shuffle"])
def test_out_of_core_gives_the_bytes_of_the_in_memory_path(tmp_path, config_file, mixed_inputs, fmt, method, keys):
    sets = [f"format={fmt}", "shard_size=8kB", "row_group_rows=37", "window_size=25"]  # on disk
    reorder(config_file, mixed_inputs, tmp_path / "mem", method=method, sets=[*sets, "rewrite=in-memory"])
    reorder(config_file, mixed_inputs, tmp_path / "ooc", method=method,
            sets=[*sets, *(OOC if keys == "out-of-core" else OOC_PAYLOAD)])
    assert run_log(tmp_path / "mem")["path"] == "in-memory"
    assert run_log(tmp_path / "mem")["keys"] == "in-memory"
    assert run_log(tmp_path / "ooc")["path"] == "out-of-core"
    assert run_log(tmp_path / "ooc")["keys"] == keys
    assert len(shard_files(tmp_path / "mem")) > 3
    assert snapshot(tmp_path / "ooc") == snapshot(tmp_path / "mem")
    assert_clean(tmp_path / "ooc")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_out_of_core_parquet_inputs_and_mixed_inputs(tmp_path, config_file, fmt):
    pq_files = [write_parquet(tmp_path / "pq" / f"p{k}.parquet", rich_rows(200 + 30 * k, seed=k, prefix=f"p{k}"),
                              RICH_SCHEMA, row_group_size=64) for k in range(2)]
    mixed = [*pq_files]
    if fmt == "parquet":  # JSONL records that fit the Parquet schema (missing fields become null)
        rows = [{k: v for k, v in r.items() if k != "int_score"} for r in make_rows(150, seed=9, prefix="m")]
        mixed.append(write_jsonl(tmp_path / "pq" / "m.jsonl", to_lines(rows)))
    sets = [f"format={fmt}", "shard_rows=170", "row_group_rows=50"]
    for name, inputs in (("pq", pq_files), ("mixed", mixed)):
        reorder(config_file, inputs, tmp_path / f"{name}-mem", method="saw", sets=[*sets, "rewrite=in-memory"])
        reorder(config_file, inputs, tmp_path / f"{name}-ooc", method="saw", sets=[*sets, *OOC])
        assert snapshot(tmp_path / f"{name}-ooc") == snapshot(tmp_path / f"{name}-mem")


@pytest.mark.parametrize("policy", ["drop", "first", "last"])
def test_out_of_core_with_invalid_scores(tmp_path, config_file, policy):
    rows = make_rows(400, seed=3)
    for i in (0, 7, 99, 399):  # a kept "n/a" would make a string score column refuse the numbers (json_rows)
        rows[i]["score"] = None if i % 2 or policy != "drop" else "n/a"
    inputs = [write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(rows))]
    sets = [f"invalid_scores={policy}", "format=parquet", "shard_rows=150", "row_group_rows=40"]
    reorder(config_file, inputs, tmp_path / "mem", method="str", sets=[*sets, "rewrite=in-memory"])
    reorder(config_file, inputs, tmp_path / "ooc", method="str", sets=[*sets, *OOC])
    assert snapshot(tmp_path / "ooc") == snapshot(tmp_path / "mem")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(0, 120), min_size=1, max_size=4),
    shard_rows=st.integers(1, 200),
    row_group_rows=st.integers(1, 60),
    ties=st.integers(1, 50),
    seed=st.integers(0, 10_000),
)
def test_out_of_core_equals_in_memory_whatever_the_data(tmp_path_factory, sizes, shard_rows, row_group_rows, ties,
                                                         seed):
    if sum(sizes) == 0:
        sizes = [1]
    base = tmp_path_factory.mktemp("prop")
    files = []
    for k, n in enumerate(sizes):
        rows = make_rows(n, seed=seed + k, prefix=f"h{k}")
        for r in rows:
            r["score"] = round(r["score"] * ties) / ties
        files.append(write_jsonl(base / "in" / f"{k}.jsonl", to_lines(rows, seed=seed)))
    config = base / "cfg.yaml"
    config.write_text("score_field: score\n")
    sets = ["format=parquet", f"shard_rows={shard_rows}", f"row_group_rows={row_group_rows}", f"seed={seed}"]
    reorder(config, files, base / "mem", method="saw", sets=[*sets, "rewrite=in-memory"])
    reorder(config, files, base / "ooc", method="saw", sets=[*sets, *OOC])
    assert snapshot(base / "ooc") == snapshot(base / "mem")


def test_worker_counts_give_identical_bytes_out_of_core(tmp_path, config_file, mixed_inputs):
    sets = ["format=jsonl.zst", "shard_size=30kB", *OOC]
    for workers in (1, 2, 3):
        reorder(config_file, mixed_inputs, tmp_path / f"w{workers}", method="str", sets=sets,
                extra=["--workers", workers])
        assert run_log(tmp_path / f"w{workers}")["workers"] == workers
    assert snapshot(tmp_path / "w1") == snapshot(tmp_path / "w2") == snapshot(tmp_path / "w3")


def test_auto_chooses_by_the_memory_limit(tmp_path, config_file, mixed_inputs):
    reorder(config_file, mixed_inputs, tmp_path / "big", method="str", extra=["--memory-limit", "4GB"])
    reorder(config_file, mixed_inputs, tmp_path / "small", method="str", extra=["--memory-limit", "1MB"])
    assert run_log(tmp_path / "big")["path"] == "in-memory"
    assert run_log(tmp_path / "small")["path"] == "out-of-core"
    assert snapshot(tmp_path / "big") == snapshot(tmp_path / "small")


def test_keep_work_keeps_the_working_state(tmp_path, config_file, mixed_inputs):
    reorder(config_file, mixed_inputs, tmp_path / "o", method="str", sets=OOC, extra=["--keep-work"])
    work = tmp_path / "o" / ".reorder"
    assert (work / "plan" / "plan.json").exists()
    assert sorted(p.name for p in (work / "done").iterdir())[0] == "gather-00000.json"


def test_the_disk_check_fails_early(tmp_path, config_file, mixed_inputs, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    msg = one_line_error(reorder(config_file, mixed_inputs, tmp_path / "o", method="str", sets=OOC, ok=False))
    assert "temporary space" in msg and "1.0 KB is free" in msg, msg
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ tasks one by one


def test_tasks_one_by_one_then_publish(tmp_path, config_file, mixed_inputs):
    sets = ["format=parquet", "shard_rows=200", "row_group_rows=30"]
    reorder(config_file, mixed_inputs, tmp_path / "direct", method="saw", sets=sets)
    out = tmp_path / "tasks"
    reorder(config_file, mixed_inputs, out, method="saw", sets=sets, extra=["--plan-only"])
    assert not shard_files(out)
    listing = invoke("task", out)
    assert "scatter: 0 of 3 finished" in listing.output, listing.output
    msg = one_line_error(invoke("task", out, "gather", 0))
    assert "scatter task 0 has not finished" in msg, msg
    assert "does not exist" in one_line_error(invoke("task", out, "scatter", 3))
    for t in reversed(range(3)):  # any order, any process
        assert invoke("task", out, "scatter", t).exit_code == 0
    gathers = int(invoke("task", out).output.split("gather: 0 of ")[1].split()[0])
    for j in range(gathers):
        assert invoke("task", out, "gather", j).exit_code == 0
    again = invoke("task", out, "gather", 0)
    assert again.exit_code == 0 and "already finished" in again.stderr
    reorder(config_file, mixed_inputs, out, method="saw", sets=sets)
    assert run_log(out)["resumed"] is True
    assert snapshot(out) == snapshot(tmp_path / "direct")
    assert_clean(out)


def test_a_changed_run_refuses_to_resume_and_says_why(tmp_path, config_file, mixed_inputs):
    out = tmp_path / "o"
    reorder(config_file, mixed_inputs, out, method="saw", extra=["--plan-only"])
    msg = one_line_error(reorder(config_file, mixed_inputs, out, method="saw", sets=["num_sections=4"], ok=False))
    assert "unfinished run" in msg and "num_sections 3 -> 4" in msg and "--restart" in msg, msg
    msg = one_line_error(reorder(config_file, mixed_inputs, out, method="str", ok=False))
    assert "method 'saw' -> 'str'" in msg, msg
    mixed_inputs[0].write_bytes(mixed_inputs[0].read_bytes() + b'\n{"id": "new", "score": 1}\n')
    msg = one_line_error(reorder(config_file, mixed_inputs, out, method="saw", ok=False))
    assert f"input changed: {mixed_inputs[0].resolve()}" in msg, msg
    assert (out / ".reorder" / "plan" / "plan.json").exists()  # refusing touches nothing
    reorder(config_file, mixed_inputs, out, method="saw", extra=["--restart"])
    reorder(config_file, mixed_inputs, tmp_path / "fresh", method="saw")
    assert snapshot(out) == snapshot(tmp_path / "fresh")


# ------------------------------------------------------------------ killed and resumed


def _run_until_killed(args: list[str], point: str, flag: Path) -> None:
    """Start ``reorder run`` in a new process, SIGKILL it when it pauses at ``point``."""
    env = {**os.environ, "REORDER_PAUSE_AT": point, "REORDER_PAUSE_FLAG": str(flag)}
    proc = subprocess.Popen([sys.executable, "-m", "reorder_cli.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"finished before reaching {point}: {proc.stderr.read().decode()}")
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize(("path", "point"), [
    ("out-of-core", "keys"), ("out-of-core", "scatter"), ("out-of-core", "scatter-done"),
    ("out-of-core", "gather"), ("out-of-core", "gather-done"), ("out-of-core", "publish"),
    ("in-memory", "gather"), ("in-memory", "gather-done"), ("in-memory", "publish"),
])
def test_killed_at_any_point_the_same_command_resumes_to_identical_output(tmp_path, config_file, mixed_inputs,
                                                                         path, point):
    sets = ["format=parquet", "shard_rows=250", "row_group_rows=40", "window_size=20", f"rewrite={path}",
            "memory_limit=1", "workers=1"]
    reorder(config_file, mixed_inputs, tmp_path / "clean", method="str", sets=sets)
    out = tmp_path / "killed"
    args = ["run", str(config_file), "--method", "str", "--output", str(out), "-q"]
    for f in mixed_inputs:
        args += ["--input", str(f)]
    for s in sets:
        args += ["--set", s]
    _run_until_killed(args, point, tmp_path / "paused")
    assert (out / ".reorder" / "state.json").exists()
    assert not (out / ".manifest.json").exists()
    result = invoke(*args)  # the same command, no --overwrite
    assert result.exit_code == 0, result.output
    assert snapshot(out) == snapshot(tmp_path / "clean")
    assert_clean(out)
    if point not in ("keys",) and not (path == "in-memory" and point == "gather"):
        assert run_log(out)["resumed"] is True


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_work_compression_does_not_change_the_bytes(tmp_path, config_file, mixed_inputs, compression):
    sets = ["format=parquet", "shard_rows=200", "row_group_rows=30", *OOC]
    reorder(config_file, mixed_inputs, tmp_path / "none", method="saw", sets=sets)
    reorder(config_file, mixed_inputs, tmp_path / compression, method="saw",
            sets=[*sets, f"work_compression={compression}"], extra=["--keep-work"])
    assert snapshot(tmp_path / compression) == snapshot(tmp_path / "none")
    assert (tmp_path / compression / ".reorder" / "scatter" / "00000.arrow").exists()


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_big_inputs_scatter_in_slices(tmp_path, config_file, mixed_inputs, monkeypatch, fmt):
    from reorder_cli.plan import stored as stored_plan

    pq_file = write_parquet(tmp_path / "in" / "p.parquet",
                            [{k: v for k, v in r.items()} for r in make_rows(300, seed=5, prefix="q")],
                            row_group_size=25)
    inputs = [*mixed_inputs, pq_file] if fmt == "jsonl" else [*mixed_inputs[:1], pq_file]
    sets = [f"format={fmt}", "shard_rows=130", "row_group_rows=30"]
    reorder(config_file, inputs, tmp_path / "mem", method="str", sets=[*sets, "rewrite=in-memory"])
    monkeypatch.setattr(stored_plan, "SCATTER_SLICE_BYTES", 9_000)
    out = tmp_path / "ooc"
    reorder(config_file, inputs, out, method="str", sets=[*sets, *OOC], extra=["--plan-only"])
    slices = json.loads((out / ".reorder" / "plan" / "plan.json").read_text())["slices"]
    assert len(slices) > 3 * len(inputs)
    by_file = {}
    for file, first, end in slices:
        by_file.setdefault(file, []).append((first, end))
    pq_index = inputs.index(pq_file)
    assert all(first % 25 == 0 for first, _ in by_file[pq_index])  # whole row groups
    for parts in by_file.values():  # slices tile every file
        assert parts[0][0] == 0 and all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    reorder(config_file, inputs, out, method="str", sets=[*sets, *OOC])
    assert snapshot(out) == snapshot(tmp_path / "mem")


def test_a_full_disk_keeps_the_finished_tasks_and_the_same_command_resumes(tmp_path, config_file, mixed_inputs,
                                                                           monkeypatch):
    import errno

    from reorder_cli.rewrite import gather

    sets = ["format=parquet", "shard_rows=150", "row_group_rows=40", *OOC, "workers=1"]
    reorder(config_file, mixed_inputs, tmp_path / "clean", method="saw", sets=sets)
    real_run, calls = gather.run, []

    def full_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", "00002.parquet.tmp")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(gather, "run", full_on_the_third)
    out = tmp_path / "out"
    msg = one_line_error(reorder(config_file, mixed_inputs, out, method="saw", sets=sets, ok=False))
    assert "No space left on device" in msg and "re-run the same command to resume" in msg, msg
    done = sorted(p.name for p in (out / ".reorder" / "done").glob("gather-*.json"))
    shards = len(shard_files(tmp_path / "clean"))
    assert "gather-00002.json" not in done and 2 <= len(done) <= 3 < shards, (done, shards)  # the rest cancelled
    monkeypatch.setattr(gather, "run", real_run)
    reorder(config_file, mixed_inputs, out, method="saw", sets=sets)
    assert run_log(out)["resumed"] is True
    assert snapshot(out) == snapshot(tmp_path / "clean")
    assert_clean(out)


def test_a_task_run_twice_at_once_is_harmless(tmp_path, config_file, mixed_inputs):
    from concurrent.futures import ThreadPoolExecutor

    from reorder_cli.plan import stored as stored_plan
    from reorder_cli.rewrite import tasks
    from reorder_cli.workdir import WorkDir

    sets = ["format=jsonl", "shard_rows=200"]
    reorder(config_file, mixed_inputs, tmp_path / "direct", method="saw", sets=sets)
    out = tmp_path / "twice"
    reorder(config_file, mixed_inputs, out, method="saw", sets=sets, extra=["--plan-only"])
    work = WorkDir(out)
    stored = stored_plan.load(work)
    for phase, count, one in (("scatter", stored.scatter_tasks, tasks.scatter_one),
                              ("gather", stored.gather_tasks, tasks.gather_one)):
        with ThreadPoolExecutor(2) as pool:  # every task twice, the two copies side by side
            list(pool.map(lambda i, one=one: one(stored, work, i // 2), range(2 * count)))
        assert work.count_finished(phase) == count
    reorder(config_file, mixed_inputs, out, method="saw", sets=sets)
    assert snapshot(out) == snapshot(tmp_path / "direct")
    assert_clean(out)
