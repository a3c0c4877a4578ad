"""The work folder on an object store (a real S3 API: a moto server): ``work_dir: s3://...``.

Every task reads what it needs into a local mirror (``$REORDER_SCRATCH``) and uploads what it wrote
before its marker (reorder_cli/work_store.py). Here: whole runs, in memory and out of core, to a local
and to an S3 output; every task of every stage run by ``reorder task`` in a mirror of its own (as on a
node of its own), for the methods and options that touch the order, over JSONL with a gzip input (its
decompressed copy is read back by range requests) and over Parquet; a kill -9 between a task's upload
and its marker; an injected failed upload; ``--restart`` with another budget; and the negative control
of the per-stage file table. Each gives the bytes of a local run.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from reorder_cli import config as run_config
from reorder_cli import pipeline, stages, work_store
from reorder_cli.rewrite import combine as combine_stage
from reorder_cli.stages import STAGES
from reorder_cli.stages import order as order_stages
from reorder_cli.workdir import CLAIM, SCRATCH_ENV, locate

from .conftest import invoke, one_line_error, output_hashes, read_manifest, reorder
from .test_s3 import wide_parquet, without_inputs
from .test_s3_output import (
    SETS,
    assert_same_as_local,
    from_the_environment,
    killed_at,
    objects,
    pending_uploads,
    s3_config,
)
from .test_stages import CASES, TASKS, scored_with_invalid  # noqa: F401 - a fixture

OUT_OF_CORE = ["rewrite=out-of-core", "memory_limit=1"]


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.bucket(f"work-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """This process's mirrors: a folder of the test's own."""
    folder = tmp_path / "scratch"
    monkeypatch.setenv(SCRATCH_ENV, str(folder))
    return folder


def work_objects(server, bucket: str) -> dict[str, bytes]:
    return objects(server, bucket, "w")


# ------------------------------------------------------------------ whole runs


@pytest.mark.parametrize("sets", [(), OUT_OF_CORE], ids=["in-memory", "out-of-core"])
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_run_with_its_work_folder_on_s3_gives_the_local_bytes(tmp_path, s3_server, bucket, parquet_corpus,
                                                                config_file, scratch, sets, where):
    cfg = s3_config(tmp_path, s3_server.options())
    out = tmp_path / "out" if where == "local" else f"s3://{bucket}/out"
    result = reorder(cfg, parquet_corpus.files, out, method="str", sets=[*SETS, *sets, f"work_dir=s3://{bucket}/w"])
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=[*SETS, *sets])
    if where == "local":
        assert output_hashes(tmp_path / "out") == output_hashes(tmp_path / "local")
    else:
        assert_same_as_local(objects(s3_server, bucket, "out"), tmp_path / "local")
    assert work_objects(s3_server, bucket) == {}  # the run's work folder is removed after success
    assert not any(p.is_file() for p in scratch.rglob("*"))  # and its mirror
    assert pending_uploads(s3_server, bucket) == []
    assert s3_server.secret not in result.output


def test_the_work_folder_on_s3_holds_the_tasks_files_and_markers(tmp_path, s3_server, bucket, parquet_corpus,
                                                                 scratch):
    """With --keep-work: every stage's files are on the store, each task's marker after them, and the
    state names no secret."""
    cfg = s3_config(tmp_path, s3_server.options())
    reorder(cfg, parquet_corpus.files, tmp_path / "out", method="saw",
            sets=[*SETS, *OUT_OF_CORE, f"work_dir=s3://{bucket}/w"], extra=["--keep-work"])
    found = work_objects(s3_server, bucket)
    (run,) = {name.partition("/")[0] for name in found}
    names = {name.partition("/")[2] for name in found}
    for prefix in ("keys/run-", "order/sort-", "plan/ends-", "plan/scores-", "plan/pairs-", "scatter/", "shards/",
                   "done/keys-", "done/sort-", "done/place-", "done/layout-", "done/scatter-", "done/gather-"):
        assert any(n.startswith(prefix) for n in names), prefix
    assert {"state.json", "run.json", CLAIM, "order/split.json", "plan/plan.json"} <= names
    assert all(s3_server.secret.encode() not in data for data in found.values())
    assert run.startswith("out-")


# ------------------------------------------------------------------ every task in a mirror of its own


def prepare(config_file: Path, inputs, out, method: str, sets) -> None:
    """What a cluster executor does before the tasks: check, claim, write run.json (no task runs)."""
    cfg = run_config.load(config_file, list(sets), method=method, inputs=[str(i) for i in inputs], output=str(out))
    assert pipeline.prepare(cfg).status == "prepared"


def run_on_nodes(out, work_dir: str, scratch_root: Path, monkeypatch, until: str | None = None) -> int:
    """Every task of every stage (up to ``until``, included) by `reorder task`, each in a fresh mirror (a node
    of its own), the stages' sizes from `reorder status --json`; returns how many ran."""
    ran = 0
    for stage in STAGES[: STAGES.index(until) + 1] if until else STAGES:
        report = json.loads(invoke("status", out, "--json", "--work-dir", work_dir).stdout)["data"]["stages"].get(stage)
        if report is None:
            continue  # planned in one process: no tasks
        for i in range(report["tasks"]):
            monkeypatch.setenv(SCRATCH_ENV, str(scratch_root / f"node-{ran}"))
            result = invoke("task", out, stage, i, "--work-dir", work_dir)
            assert result.exit_code == 0, (stage, i, result.output, result.exception)
            ran += 1
    return ran


@pytest.mark.parametrize("case", ["str-desc-jit", "sorting-gumbel", "shuffle-drop", "saw-threshold-first"])
def test_tasks_on_separate_nodes_exchange_their_files_through_s3(tmp_path, s3_server, bucket, config_file,
                                                                 scored_with_invalid, monkeypatch, case):  # noqa: F811
    method, sets = CASES[case]
    if not any(s.startswith("invalid_scores=") for s in sets):
        sets = [*sets, "invalid_scores=last"]
    reorder(config_file, scored_with_invalid, tmp_path / "mem", method=method, sets=[*sets, "shard_rows=150"])
    work_dir, out = f"s3://{bucket}/w", tmp_path / "out"
    from_the_environment(monkeypatch, s3_server)  # a task's process: endpoint and keys from its environment
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    all_sets = [*sets, *TASKS, f"work_dir={work_dir}"]
    prepare(config_file, scored_with_invalid, out, method, all_sets)
    assert run_on_nodes(out, work_dir, tmp_path / "nodes", monkeypatch) > len(STAGES)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    reorder(config_file, scored_with_invalid, out, method=method, sets=all_sets)  # publishes
    assert output_hashes(out) == output_hashes(tmp_path / "mem")
    assert work_objects(s3_server, bucket) == {}


@pytest.mark.parametrize("work", ["s3", "shared", "s3-combine"])
def test_jsonl_inputs_on_s3_through_tasks_give_the_local_bytes(tmp_path, s3_server, bucket, config_file,
                                                               scored_with_invalid, monkeypatch, work):  # noqa: F811
    """Plain and gzip JSONL objects, every task on a node of its own: a keys task reads a plain object in
    place (the scatter tasks read its records by ranges; the gzip one is decompressed into the work
    folder); with the work folder on S3 and on a shared disk; and on S3 with a combine stage (K = 2: its tasks
    read the scatter files by ranges, the gathers the combine files)."""
    urls = s3_server.upload(scored_with_invalid, bucket, "in")
    sets = ["invalid_scores=last", *(["combine=2"] if work == "s3-combine" else [])]
    reorder(config_file, scored_with_invalid, tmp_path / "mem", method="saw", sets=[*sets, "shard_rows=150"])
    work_dir, out = (f"s3://{bucket}/w" if work != "shared" else str(tmp_path / "shared")), tmp_path / "out"
    cfg = s3_config(tmp_path, s3_server.options())
    from_the_environment(monkeypatch, s3_server)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    all_sets = [*sets, *TASKS, f"work_dir={work_dir}"]
    prepare(cfg, urls, out, "saw", all_sets)
    run_on_nodes(out, work_dir, tmp_path / "nodes", monkeypatch)
    combined = stages.count(locate(out, work_dir), "combine")
    assert combined == (2 if work == "s3-combine" else 0), combined  # 3 scatter tasks, 2 a combine task
    if work != "shared":  # with combine, a gather's node copies no scatter index (without it, every one)
        nodes = [n for n in (tmp_path / "nodes").iterdir() if any(p.parent.name == "shards" for p in n.rglob("*"))]
        indexes = [p for n in nodes for p in n.rglob("scatter/*.buckets.npy")]  # what the gathers' nodes copied
        assert nodes and bool(indexes) == (work == "s3"), (work, len(nodes), indexes[:3])
    reorder(cfg, urls, out, method="saw", sets=all_sets)
    got, want = output_hashes(out), output_hashes(tmp_path / "mem")
    assert {n: h for n, h in got.items() if not n.startswith(".")} == {n: h for n, h in want.items()
                                                                        if not n.startswith(".")}

    def by_name(doc: dict) -> dict:  # the invalid rows' samples name their input by its path or URL
        for sample in doc["invalid_scores"]["samples"]:
            sample["file"] = sample["file"].rpartition("/")[2]
        return without_inputs(doc)

    assert by_name(read_manifest(out)) == by_name(read_manifest(tmp_path / "mem"))


@pytest.mark.parametrize("select_rows", [combine_stage.SELECT_ROWS, 1], ids=["runs-of-buckets", "control-per-bucket"])
def test_a_combine_task_on_s3_reads_a_window_of_buckets_by_one_request_a_file(
        tmp_path, s3_server, bucket, config_file, scored_with_invalid, monkeypatch, select_rows):  # noqa: F811
    """A combine task looks its K files' buckets up a run of many shards at a time, so each window of
    ``bucket_bytes`` is one range request a file, not one a shard (at 10^10 rows: ~10^8 requests in all, not
    ~10^10; docs/scale.md section 4). Counted from the combine markers; the negative control looks the buckets
    up one at a time (a bucket a request or more, at least a file)."""
    monkeypatch.setattr(combine_stage, "SELECT_ROWS", select_rows)
    urls = s3_server.upload(scored_with_invalid, bucket, "in")
    sets = ["invalid_scores=last", "combine=2"]
    reorder(config_file, scored_with_invalid, tmp_path / "mem", method="str", sets=[*sets, "shard_rows=10"])
    work_dir, out = f"s3://{bucket}/w", tmp_path / "out"
    cfg = s3_config(tmp_path, s3_server.options())
    from_the_environment(monkeypatch, s3_server)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    all_sets = [*sets, *TASKS, "shard_rows=10", f"work_dir={work_dir}"]
    prepare(cfg, urls, out, "str", all_sets)
    run_on_nodes(out, work_dir, tmp_path / "nodes", monkeypatch, until=None if select_rows > 1 else "combine")
    stored = work_objects(s3_server, bucket)
    plan = json.loads(next(data for key, data in stored.items() if key.endswith("plan/plan.json")))
    markers = [json.loads(data) for key, data in sorted(stored.items()) if "done/combine-" in key]
    assert len(markers) == stages.count(locate(out, work_dir), "combine") == 2, sorted(stored)[:20]
    def pieces(key: str) -> int:  # a scatter file's pieces: each holds its rows bucket by bucket
        rows = np.load(io.BytesIO(stored[key])).reshape(-1, 4)
        by_start = rows[np.argsort(rows[:, 2]), 0]
        return 1 + int((np.diff(by_start) < 0).sum())

    for m in markers:
        first, end = m["scatter_tasks"]
        bound = sum(pieces(next(k for k in stored if k.endswith(f"scatter/{t:05d}.buckets.npy")))
                    for t in range(first, end)) * (2 * -(-m["bytes_in"] // plan["bucket_bytes"]) + 1)
        # the bound: a request a piece of each file and a window; a window closes before the bucket that would
        # take it over bucket_bytes, so two windows in a row hold more than bucket_bytes: at most 2B/b + 1
        assert (0 < m["requests"] <= bound) if select_rows > 1 else m["requests"] > bound, (m["requests"], bound)
    if select_rows == 1:
        return  # the control's count is all it is for
    reorder(cfg, urls, out, method="str", sets=all_sets)
    got, want = output_hashes(out), output_hashes(tmp_path / "mem")
    assert {n: h for n, h in got.items() if not n.startswith(".")} == {n: h for n, h in want.items()
                                                                        if not n.startswith(".")}


@pytest.mark.parametrize("copy_below", [0, order_stages.RUN_COPY_BYTES], ids=["ranges", "copies"])
def test_sort_tasks_read_the_runs_by_ranges_or_copy_small_ones(tmp_path, s3_server, bucket, config_file,
                                                               scored_with_invalid, monkeypatch, copy_below):  # noqa: F811
    """A sort task reads its key range of each input's sorted keys on the store (range requests), or
    copies a small run into its node's mirror: the same bytes either way; only the copies leave runs
    in the mirrors of the nodes that ran no keys task."""
    method, sets = "str", ["ascending=false", "invalid_scores=last"]
    reorder(config_file, scored_with_invalid, tmp_path / "mem", method=method, sets=[*sets, "shard_rows=150"])
    monkeypatch.setattr(order_stages, "RUN_COPY_BYTES", copy_below)
    work_dir, out = f"s3://{bucket}/w", tmp_path / "out"
    from_the_environment(monkeypatch, s3_server)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    all_sets = [*sets, *TASKS, f"work_dir={work_dir}"]
    prepare(config_file, scored_with_invalid, out, method, all_sets)
    run_on_nodes(out, work_dir, tmp_path / "nodes", monkeypatch)
    runs = list((tmp_path / "nodes").rglob("run-*.bin"))
    sorts = stages.count(locate(out, work_dir), "sort")
    assert sorts > 1 and len(runs) == 3 + (3 * sorts if copy_below else 0), runs  # the keys nodes' own, + copies
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    reorder(config_file, scored_with_invalid, out, method=method, sets=all_sets)
    assert output_hashes(out) == output_hashes(tmp_path / "mem")


def test_parquet_tasks_on_separate_nodes_give_the_local_bytes(tmp_path, s3_server, bucket, config_file, monkeypatch):
    """Parquet inputs on S3 (wide rows: the score column is a small part of each file), every task in a
    mirror of its own; each task records what it read from the store, and the publishing run's log sums
    them by stage: the keys tasks read a few percent of the inputs, the scatter tasks all of them."""
    files = wide_parquet(tmp_path / "wide")
    urls = s3_server.upload(files, bucket, "in")
    sets = ["shard_rows=1500", "row_group_rows=100"]
    reorder(config_file, files, tmp_path / "mem", method="str", sets=sets)
    work_dir, out = f"s3://{bucket}/w", tmp_path / "out"
    cfg = s3_config(tmp_path, s3_server.options())
    from_the_environment(monkeypatch, s3_server)
    sets = [*sets, "rewrite=out-of-core", "memory_limit=64MB", f"work_dir={work_dir}"]  # a few tasks a stage
    prepare(cfg, urls, out, "str", sets)
    run_on_nodes(out, work_dir, tmp_path / "nodes", monkeypatch)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    reorder(cfg, urls, out, method="str", sets=sets)
    read = json.loads((out / ".run_log.json").read_text())["store_bytes_read"]
    total = sum(f.stat().st_size for f in files)
    assert 0 < read["keys"] < 0.1 * total and read["scatter"] >= 0.9 * total, (read, total)
    assert all(read[stage] > 0 for stage in ("split", "sort", "place", "layout", "gather")), read
    got, want = output_hashes(out), output_hashes(tmp_path / "mem")
    assert {n: h for n, h in got.items() if not n.startswith(".")} == {n: h for n, h in want.items()
                                                                        if not n.startswith(".")}
    assert without_inputs(read_manifest(out)) == without_inputs(read_manifest(tmp_path / "mem"))


def test_a_stage_missing_a_file_from_the_table_fails_in_a_fresh_mirror(tmp_path, s3_server, bucket, config_file,
                                                                       scored_with_invalid, monkeypatch):  # noqa: F811
    """Negative control of the per-stage table (work_store.NEEDS): a sort task that is not given the
    samples of the inputs' sorted keys fails on a node of its own; with the table as it is, it runs."""
    work_dir, out = f"s3://{bucket}/w", tmp_path / "out"
    from_the_environment(monkeypatch, s3_server)
    sets = ["invalid_scores=last", *TASKS, f"work_dir={work_dir}"]
    prepare(config_file, scored_with_invalid, out, "saw", sets)
    for i, stage in enumerate(("keys", "keys", "keys", "split")):
        monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / f"node-{i}"))
        assert invoke("task", out, stage, i if stage == "keys" else 0, "--work-dir", work_dir).exit_code == 0
    # a finished task run again on a node that has never seen the run (a retried job) is skipped,
    # and `reorder status` there reads the markers from the store
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "node-fresh"))
    again = invoke("task", out, "keys", 0, "--work-dir", work_dir)
    assert again.exit_code == 0, (again.output, again.exception)
    report = json.loads(invoke("status", out, "--json", "--work-dir", work_dir).stdout)["data"]["stages"]
    assert report["keys"]["state"] == "done" and report["split"]["state"] == "done"
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "node-sort-a"))
    monkeypatch.setitem(work_store.NEEDS, "sort", ("order/split.json",))
    failed = invoke("task", out, "sort", 0, "--work-dir", work_dir)
    assert failed.exit_code != 0 and "sample-00000.npy" in str(failed.exception or failed.output)
    monkeypatch.undo()
    from_the_environment(monkeypatch, s3_server)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "node-sort-b"))
    assert invoke("task", out, "sort", 0, "--work-dir", work_dir).exit_code == 0


# ------------------------------------------------------------------ faults


def run_args(cfg: Path, inputs, out, sets) -> list[str]:
    args = ["run", str(cfg), "--method", "str", "--output", str(out), "-q"]
    for f in inputs:
        args += ["--input", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


def test_killed_between_an_upload_and_its_marker_the_same_command_finishes(tmp_path, s3_server, bucket,
                                                                           parquet_corpus, config_file, scratch):
    cfg = s3_config(tmp_path, s3_server.options())
    out, sets = tmp_path / "out", [*SETS, *OUT_OF_CORE, f"work_dir=s3://{bucket}/w", "workers=1"]
    killed_at("push", run_args(cfg, parquet_corpus.files, out, sets), tmp_path / "paused")
    left = work_objects(s3_server, bucket)
    assert any("/keys/" in n for n in left) and not any("/done/" in n for n in left)  # files, no marker yet
    reorder(cfg, parquet_corpus.files, out, method="str", sets=sets)
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert output_hashes(out) == output_hashes(tmp_path / "local")
    assert work_objects(s3_server, bucket) == {} and pending_uploads(s3_server, bucket) == []


def test_a_failed_upload_leaves_no_object_and_no_marker(tmp_path, s3_server, bucket, parquet_corpus, config_file,
                                                        scratch, monkeypatch):
    cfg = s3_config(tmp_path, s3_server.options())
    out, sets = tmp_path / "out", [*SETS, *OUT_OF_CORE, f"work_dir=s3://{bucket}/w", "workers=1"]
    monkeypatch.setenv("REORDER_FAIL_AT", "push")
    result = reorder(cfg, parquet_corpus.files, out, method="str", sets=sets, ok=False)
    assert result.exit_code != 0 and "injected failure at push" in result.output
    left = work_objects(s3_server, bucket)
    assert not any("/done/" in n for n in left)  # no task finished
    assert not any(n.endswith(".bin") or "/keys/" in n for n in left)  # the failed upload left nothing
    assert pending_uploads(s3_server, bucket) == []
    assert not out.exists() or not any(p.name.endswith(".parquet") for p in out.iterdir())
    monkeypatch.delenv("REORDER_FAIL_AT")
    reorder(cfg, parquet_corpus.files, out, method="str", sets=sets)
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert output_hashes(out) == output_hashes(tmp_path / "local")


def test_a_restart_with_another_budget_never_reads_the_earlier_claims_files(tmp_path, s3_server, bucket,
                                                                            parquet_corpus, config_file, scratch):
    """A run stopped after its order (kept), restarted with another memory_limit: the new claim has a new
    mirror, so no sort or place file of the first one (cut for another budget) is read."""
    cfg = s3_config(tmp_path, s3_server.options())
    out = tmp_path / "out"
    first = [*SETS, *OUT_OF_CORE, f"work_dir=s3://{bucket}/w"]
    reorder(cfg, parquet_corpus.files, out, method="str", sets=first, extra=["--plan-only"])
    work = locate(out, f"s3://{bucket}/w")
    claim = work.get(CLAIM)
    assert claim and (work.root / "order" / "split.json").exists()
    second = [*SETS, "rewrite=out-of-core", "memory_limit=300MB", f"work_dir=s3://{bucket}/w"]
    reorder(cfg, parquet_corpus.files, out, method="str", sets=second, extra=["--restart", "--keep-work"])
    again = locate(out, f"s3://{bucket}/w")
    assert again.get(CLAIM) != claim and again.root != work.root
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert output_hashes(out) == output_hashes(tmp_path / "local")


def test_slurm_with_a_work_folder_on_a_store_is_one_line(tmp_path, s3_server, bucket, parquet_corpus):
    cfg = s3_config(tmp_path, s3_server.options())
    result = reorder(cfg, parquet_corpus.files, tmp_path / "out", method="str", ok=False,
                     sets=[f"work_dir=s3://{bucket}/w"], extra=["--executor", "slurm", "--dry-run"])
    err = one_line_error(result)
    assert "shared" in err and f"s3://{bucket}/w" in err
    assert work_objects(s3_server, bucket) == {}


# ------------------------------------------------------------------ Ray: workers with mirrors of their own


@pytest.mark.ray
def test_ray_tasks_exchange_their_files_through_s3(tmp_path, s3_server, bucket, jsonl_corpus, config_file, scratch,
                                                   monkeypatch):
    """A real local Ray whose workers have their credentials from their environment only (the run's
    storage_options reach them without key and secret) and mirrors apart from the driver's: the shards
    equal a local run's; a task that raises is named, its log kept on the store, `reorder status` shows
    it, and the same command finishes."""
    ray = pytest.importorskip("ray")
    from_the_environment(monkeypatch, s3_server)  # before ray.init: the workers inherit it
    monkeypatch.setenv("REORDER_TEST_BELOW_FLOOR", "1")
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "workers"))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        monkeypatch.setenv(SCRATCH_ENV, str(scratch))  # the driver's mirror
        cfg = s3_config(tmp_path, s3_server.options(), format="jsonl")
        config_file.write_text(config_file.read_text().replace("format: parquet", "format: jsonl"))
        work_dir = f"s3://{bucket}/w"
        sets = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150", f"work_dir={work_dir}"]
        reorder(config_file, jsonl_corpus.files, tmp_path / "local", method="saw", sets=["shard_rows=150"])
        out, ray_args = tmp_path / "out", ["--executor", "ray"]
        reorder(cfg, jsonl_corpus.files, out, method="saw", sets=sets, extra=ray_args)
        assert output_hashes(out) == output_hashes(tmp_path / "local")
        assert (tmp_path / "workers").is_dir()  # the workers worked in mirrors of their own ...
        assert not any(p.is_file() for p in (tmp_path / "workers").rglob("*"))  # removed once published
        assert work_objects(s3_server, bucket) == {}

        # a gather that raises: scatter file 1 on the store is damaged (every gather reads it by ranges)
        out = tmp_path / "again"
        reorder(cfg, jsonl_corpus.files, out, method="saw", sets=sets, extra=["--plan-only"])
        monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "by-hand"))
        for t in range(3):
            assert invoke("task", out, "scatter", t, "--work-dir", work_dir).exit_code == 0
        key = next(k for k in work_objects(s3_server, bucket) if k.endswith("scatter/00001.arrow"))
        good = work_objects(s3_server, bucket)[key]
        s3_server.put(bucket, f"w/{key}", b"not an arrow file")
        monkeypatch.setenv(SCRATCH_ENV, str(scratch))
        line = one_line_error(reorder(cfg, jsonl_corpus.files, out, method="saw", extra=ray_args, ok=False,
                                      sets=[*sets, "ray.max_retries=0"]))
        assert line.startswith("error: ray: gather task ") and f"s3://{bucket}/w/" in line
        report = json.loads(invoke("status", out, "--json", "--work-dir", work_dir).stdout)["data"]["stages"]["gather"]
        assert report["state"] == "failed" and report["failed"][0]["log"].startswith(f"s3://{bucket}/w/")
        assert any(k.endswith(".failed") for k in work_objects(s3_server, bucket))
        s3_server.put(bucket, f"w/{key}", good)
        reorder(cfg, jsonl_corpus.files, out, method="saw", sets=sets, extra=ray_args)
        assert output_hashes(out) == output_hashes(tmp_path / "local")
    finally:
        ray.shutdown()


@pytest.mark.parametrize("problem", ["missing bucket", "bad credentials"])
def test_an_unreachable_work_folder_is_one_line_and_nothing_is_written(tmp_path, s3_server, bucket, parquet_corpus,
                                                                       scratch, problem):
    options = s3_server.options(secret="not-the-secret") if problem == "bad credentials" else s3_server.options()
    cfg = s3_config(tmp_path, options)
    work = f"s3://{'no-such-bucket-here' if problem == 'missing bucket' else bucket}/w"
    out = tmp_path / "out"
    err = one_line_error(reorder(cfg, parquet_corpus.files, out, method="str", ok=False,
                                 sets=[*OUT_OF_CORE, f"work_dir={work}"]))
    assert work.rpartition("/")[0] in err and "not-the-secret" not in err and s3_server.secret not in err
    assert not out.exists() and work_objects(s3_server, bucket) == {}
    assert not any(p.is_file() for p in scratch.rglob("*"))
    # positive twin: the same run with a work folder it can reach
    reorder(s3_config(tmp_path, s3_server.options()), parquet_corpus.files, out, method="str",
            sets=[*OUT_OF_CORE, f"work_dir=s3://{bucket}/w"])
    assert (out / ".manifest.json").exists()


def test_a_work_folder_on_s3_without_the_extra_is_one_line_naming_it(tmp_path, config_file, parquet_corpus):
    """s3fs made unimportable in a fresh process: the run names the work_dir and the extra, writes nothing."""
    work = "s3://bucket/reorder-work"
    code = ("import sys; sys.modules['s3fs'] = None\n"
            "from reorder_cli.cli import app\n"
            f"app(['run', {str(config_file)!r}, '-m', 'str', '-i', {str(parquet_corpus.files[0])!r}, "
            f"'-o', {str(tmp_path / 'o')!r}, '-q', '--set', 'work_dir={work}'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"error: {work}: install the extra: pip install 'reorder[s3]'"
    assert not (tmp_path / "o").exists()
