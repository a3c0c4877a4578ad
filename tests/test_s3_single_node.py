"""The two passes through one node that a run with its work folder on a store (a real S3 API: a moto server)
no longer makes (issue 22), each measured by the bytes the node reads from the store:

- publishing to the work folder's store: the store copies each staged shard to its final name itself
  (:func:`store.copy`), checked by the store's checksum against the one the gather task's marker recorded;
  the publishing process reads none of the shards (``store_bytes_read["publish"]``), where it used to
  download each shard made elsewhere and read each upload back (the negative control: that path, forced);
- the split reads the samples of the sorted keys only (``work_store.needs``), plus the invalid rows for
  ``shuffle`` and ``input``, plus the scores (and token counts) a selection reads; the negative control
  gives it the old table, and it reads every keys column.

Each run gives the bytes of a local run; a killed publish by copies resumes; a staged object that is not
the one its gather task uploaded is refused.
"""

from __future__ import annotations

import fnmatch
import json
import uuid
from pathlib import Path

import pytest

from reorder_cli import work_store
from reorder_cli.util import store
from reorder_cli.workdir import SCRATCH_ENV, locate

from .conftest import invoke, one_line_error, output_hashes, read_manifest, reorder
from .test_s3 import without_inputs
from .test_s3_output import (
    SETS,
    assert_same_as_local,
    from_the_environment,
    killed_at,
    objects,
    pending_uploads,
    run_args,
    s3_config,
)
from .test_s3_work import OUT_OF_CORE, prepare, run_on_nodes
from .test_stages import CASES, TASKS, scored_with_invalid  # noqa: F401 - a fixture


def case_sets(case: str) -> tuple[str, list[str]]:
    """The method and settings of a case of test_stages.py, the null scores of its inputs placed last
    unless the case says."""
    method, sets = CASES[case]
    return method, sets if any(s.startswith("invalid_scores=") for s in sets) else [*sets, "invalid_scores=last"]


#: NEEDS["split"] before issue 22: every keys column but the runs.
OLD_SPLIT_NEEDS = ("keys/sample-*", "keys/scores-*", "keys/sizes-*", "keys/tokens-*", "keys/invalid-*",
                   "keys/records-*", "keys/schema-*")


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.bucket(f"one-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "scratch"
    monkeypatch.setenv(SCRATCH_ENV, str(folder))
    return folder


def sizes(server, bucket: str, prefix: str) -> dict[str, int]:
    """The size of every object under ``prefix/``, by name relative to it."""
    found = {}
    for page in server.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix) + 1:]] = obj["Size"]
    return found


def run_log(server, bucket: str, prefix: str) -> dict:
    return json.loads(server.s3.get_object(Bucket=bucket, Key=f"{prefix}/.run_log.json")["Body"].read())


def is_state(name: str) -> bool:
    """Whether a work folder's file (relative to it) is what the publishing process may read besides the
    shards: the bookkeeping (markers, run.json, the state), the stored plan and the pieces' scores (for the
    manifest)."""
    return "/" not in name or name.startswith(("done/", "logs/")) or fnmatch.fnmatchcase(name, "plan/*.npy") \
        or fnmatch.fnmatchcase(name, "plan/scores-*") or name == "plan/plan.json"


def tasks_on_nodes(tmp_path, s3_server, bucket: str, files, monkeypatch) -> tuple[Path, str, list[str]]:
    """An STR run of ``files`` out of core, the work folder (``w``) and the output (``out``) on one store,
    planned, then every task on a node of its own; returns (config, output URL, settings) for the
    publishing run."""
    cfg = s3_config(tmp_path, s3_server.options())
    work_dir, out = f"s3://{bucket}/w", f"s3://{bucket}/out"
    sets = [*SETS, *OUT_OF_CORE, f"work_dir={work_dir}"]
    from_the_environment(monkeypatch, s3_server)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    prepare(cfg, files.files, out, "str", sets)
    run_on_nodes(out, work_dir, tmp_path / "nodes", monkeypatch)
    return cfg, out, sets


# ------------------------------------------------------------------ publishing by server-side copies


@pytest.mark.parametrize("copies", [True, False], ids=["server-side-copies", "control-old-path"])
def test_publishing_to_the_work_folders_store_reads_no_shard(tmp_path, s3_server, bucket, parquet_corpus,
                                                             config_file, monkeypatch, copies):
    """Every task on a node of its own, the output and the work folder on one store: the publishing
    process reads none of the shards; forced down the old path (no server-side copy), it downloads each
    and reads each upload back: twice their bytes. The same bytes as a local run either way."""
    if not copies:
        monkeypatch.setattr(store, "same_store", lambda a, b: False)
    cfg, out, sets = tasks_on_nodes(tmp_path, s3_server, bucket, parquet_corpus, monkeypatch)
    state = sum(n for k, n in sizes(s3_server, bucket, "w").items() if is_state(k.partition("/")[2]))
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    reorder(cfg, parquet_corpus.files, out, method="str", sets=sets)
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    found = objects(s3_server, bucket, "out")
    assert_same_as_local(found, tmp_path / "local")
    shard_bytes = sum(len(data) for name, data in found.items() if not name.startswith("."))
    read = run_log(s3_server, bucket, "out")["store_bytes_read"]["publish"]
    if copies:
        assert read <= state, (read, state, shard_bytes)  # markers, run.json, the plan's arrays: no shard
    else:
        assert read >= 2 * shard_bytes, (read, shard_bytes)  # each shard downloaded, then read back
    assert sizes(s3_server, bucket, "w") == {} and pending_uploads(s3_server, bucket) == []


@pytest.mark.parametrize("sets", [(), OUT_OF_CORE], ids=["in-memory", "out-of-core"])
def test_a_run_on_one_store_publishes_by_copies_with_the_local_bytes(tmp_path, s3_server, bucket, parquet_corpus,
                                                                     config_file, scratch, sets):
    """One process, both rewrite paths: the shards it made are copied by the store (their upload markers
    say so: checked by the store's checksum), never read back."""
    cfg = s3_config(tmp_path, s3_server.options())
    out, all_sets = f"s3://{bucket}/out", [*SETS, *sets, f"work_dir=s3://{bucket}/w"]
    reorder(cfg, parquet_corpus.files, out, method="str", sets=all_sets, extra=["--keep-work"])
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=[*SETS, *sets])
    assert_same_as_local(objects(s3_server, bucket, "out"), tmp_path / "local")
    store.configure(s3_server.options())
    work = locate(out, f"s3://{bucket}/w")
    marks = [work.finished("upload", j) for j in range(len(read_manifest(tmp_path / "local")["shards"]))]
    assert marks and all(m["checked"] == "store checksum" for m in marks), marks
    assert run_log(s3_server, bucket, "out")["store_bytes_read"]["publish"] < sum(
        s["bytes"] for s in read_manifest(tmp_path / "local")["shards"])


def test_killed_while_copying_the_same_command_finishes(tmp_path, s3_server, bucket, parquet_corpus, config_file,
                                                        scratch, monkeypatch):
    """A kill -9 after the first shard was copied: the same command finishes, an object under a final name
    that its marker does not match (replaced, or stray) is copied again."""
    cfg = s3_config(tmp_path, s3_server.options())
    out, sets = f"s3://{bucket}/o", [*SETS, *OUT_OF_CORE, f"work_dir=s3://{bucket}/w", "workers=1"]
    killed_at("upload", run_args(cfg, parquet_corpus.files, out, sets), tmp_path / "paused")
    assert sorted(objects(s3_server, bucket, "o")) == ["00000.parquet"]  # no manifest: an unfinished publish
    s3_server.put(bucket, "o/00000.parquet", b"not the shard")
    s3_server.put(bucket, "o/00001.parquet", b"not this one either")
    from_the_environment(monkeypatch, s3_server)
    store.configure(s3_server.options())
    reorder(cfg, parquet_corpus.files, out, method="str", sets=sets)
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert_same_as_local(objects(s3_server, bucket, "o"), tmp_path / "local")
    assert pending_uploads(s3_server, bucket) == [] and sizes(s3_server, bucket, "w") == {}


def test_a_failed_copy_leaves_no_manifest_and_the_same_command_finishes(tmp_path, s3_server, bucket,
                                                                       parquet_corpus, config_file, scratch,
                                                                       monkeypatch):
    cfg = s3_config(tmp_path, s3_server.options())
    out, sets = f"s3://{bucket}/o", [*SETS, *OUT_OF_CORE, f"work_dir=s3://{bucket}/w", "workers=1"]
    monkeypatch.setenv("REORDER_FAIL_AT", "upload")
    monkeypatch.setenv("REORDER_FAIL_SHARD", "2")
    err = one_line_error(reorder(cfg, parquet_corpus.files, out, method="str", sets=sets, ok=False))
    assert "injected failure" in err and "re-run the same command" in err, err
    assert sorted(objects(s3_server, bucket, "o")) == ["00000.parquet", "00001.parquet"]  # no manifest
    assert pending_uploads(s3_server, bucket) == []
    monkeypatch.delenv("REORDER_FAIL_AT")
    reorder(cfg, parquet_corpus.files, out, method="str", sets=sets)
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert_same_as_local(objects(s3_server, bucket, "o"), tmp_path / "local")


def test_a_staged_object_its_gather_did_not_upload_is_refused(tmp_path, s3_server, bucket, parquet_corpus,
                                                              config_file, monkeypatch):
    """A staged shard on the store replaced by other bytes of the same size (no local copy: its gather ran
    on another node): the copy is refused by the checksum the gather task recorded, no manifest is
    written; --restart makes the run again, with the local bytes."""
    cfg, out, sets = tasks_on_nodes(tmp_path, s3_server, bucket, parquet_corpus, monkeypatch)
    key = next(k for k in sizes(s3_server, bucket, "w") if k.endswith("shards/00001.parquet"))
    good = objects(s3_server, bucket, "w")[key]
    s3_server.put(bucket, f"w/{key}", bytes(reversed(good)))  # the same size, other bytes
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    line = one_line_error(reorder(cfg, parquet_corpus.files, out, method="str", sets=sets, ok=False))
    assert f"s3://{bucket}/w/{key}" in line and "not the shard its gather task uploaded" in line, line
    assert ".manifest.json" not in objects(s3_server, bucket, "out")
    reorder(cfg, parquet_corpus.files, out, method="str", sets=sets, extra=["--restart", "--overwrite"])
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert_same_as_local(objects(s3_server, bucket, "out"), tmp_path / "local")


# ------------------------------------------------------------------ the split reads the samples


def split_on_a_fresh_node(tmp_path, s3_server, bucket, config_file, files, case, monkeypatch
                          ) -> tuple[list[str], int, dict[str, int]]:
    """Prepare the run of ``case``, run its keys tasks each on a node of its own, then the split on a fresh
    node: (the keys files in that node's mirror, the bytes the split read from the store, the sizes of
    the work folder's objects when it started)."""
    method, sets = case_sets(case)
    work_dir, out = f"s3://{bucket}/w", tmp_path / "out"
    from_the_environment(monkeypatch, s3_server)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    prepare(config_file, files, out, method, [*sets, *TASKS, f"work_dir={work_dir}"])
    for i in range(len(files)):
        monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / f"keys-node-{i}"))
        ran = invoke("task", out, "keys", i, "--work-dir", work_dir)
        assert ran.exit_code == 0, (ran.output, ran.exception)
    before = sizes(s3_server, bucket, "w")
    node = tmp_path / "split-node"
    monkeypatch.setenv(SCRATCH_ENV, str(node))
    done = invoke("task", out, "split", 0, "--work-dir", work_dir)
    assert done.exit_code == 0, (done.output, done.exception)
    read = locate(out, work_dir).finished("split", 0)["store_bytes_read"]
    pulled = sorted(p.name for p in node.rglob("keys/*") if p.is_file())
    return pulled, read, before


def bound(before: dict[str, int], patterns: tuple[str, ...]) -> int:
    """The bytes of the keys files matching ``patterns`` and of the state (run.json, state.json, the markers:
    what a task reads of it), the other keys files and the inputs' decompressed copies left out."""
    names = {k.partition("/")[2]: n for k, n in before.items()}
    keys = sum(n for k, n in names.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns))
    return keys + sum(n for k, n in names.items() if not k.startswith(("keys/", "input-")))


@pytest.mark.parametrize(("case", "reads"), [("str-desc-jit", ("keys/sample-*",)),
                                             ("shuffle-drop", ("keys/sample-*", "keys/invalid-*")),
                                             ("input-top-r", ("keys/sample-*", "keys/scores-*"))])
def test_the_split_reads_the_samples_and_what_its_config_needs(tmp_path, s3_server, bucket, config_file,
                                                                scored_with_invalid, monkeypatch, case,  # noqa: F811
                                                                reads):
    """The split on a node of its own copies into its mirror the samples only (the invalid rows for
    shuffle, the scores for a selection), reads at most their bytes and the state's; then every other task
    on a node of its own gives the bytes of a run in memory."""
    pulled, read, before = split_on_a_fresh_node(tmp_path, s3_server, bucket, config_file, scored_with_invalid,
                                                 case, monkeypatch)
    assert pulled and all(any(fnmatch.fnmatchcase(f"keys/{n}", p) for p in reads) for n in pulled), pulled
    assert read <= bound(before, reads), (read, bound(before, reads))
    method, sets = case_sets(case)
    work_dir, out = f"s3://{bucket}/w", tmp_path / "out"
    run_on_nodes(out, work_dir, tmp_path / "nodes", monkeypatch)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    reorder(config_file, scored_with_invalid, out, method=method, sets=[*sets, *TASKS, f"work_dir={work_dir}"])
    reorder(config_file, scored_with_invalid, tmp_path / "mem", method=method, sets=[*sets, "shard_rows=150"])
    assert output_hashes(out) == output_hashes(tmp_path / "mem")
    assert without_inputs(read_manifest(out)) == without_inputs(read_manifest(tmp_path / "mem"))


def test_the_split_given_the_old_table_reads_every_keys_column(tmp_path, s3_server, bucket, config_file,
                                                                scored_with_invalid, monkeypatch):  # noqa: F811
    """Negative control: with NEEDS["split"] as it was, the split's node copies the scores, sizes and
    records too, and reads more than the samples' bound."""
    monkeypatch.setitem(work_store.NEEDS, "split", OLD_SPLIT_NEEDS)
    pulled, read, before = split_on_a_fresh_node(tmp_path, s3_server, bucket, config_file, scored_with_invalid,
                                                 "str-desc-jit", monkeypatch)
    assert any(n.startswith("scores-") for n in pulled) and any(n.startswith("sizes-") for n in pulled), pulled
    scores = sum(n for k, n in before.items() if "/keys/scores-" in k)
    assert read >= bound(before, ("keys/sample-*",)) - bound(before, ()) + scores, (read, scores)
    assert read > bound(before, ("keys/sample-*",))
