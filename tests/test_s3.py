"""Inputs on an object store (a real S3 API: a moto server), output on local disk.

A run whose inputs are ``s3://`` URLs gives the same shards, byte for byte, and the same manifest
(input paths and fingerprints apart) as the same run on local copies, in memory and out of core;
discovery lists URL folders and globs; a store that cannot be read is one line naming the URL;
credentials never show; the keys pass of Parquet reads the score column, not the file.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from reorder_cli.formats.discover import discover
from reorder_cli.util import store

from .conftest import (
    WORDS,
    invoke,
    make_rows,
    one_line_error,
    output_hashes,
    read_manifest,
    reorder,
    to_lines,
    write_jsonl,
    write_parquet,
)

PATHS = [(), ("rewrite=out-of-core", "memory_limit=1")]
PATH_IDS = ["in-memory", "out-of-core"]


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.bucket(f"corpus-{uuid.uuid4().hex[:12]}")


def s3_config(tmp_path: Path, options: dict, name: str = "s3.yaml", **more) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"score_field": "score", "seed": 42, "format": "parquet",
                                    "storage_options": options, **more}))
    return path


def without_inputs(doc: dict) -> dict:
    """A manifest with its inputs' paths and fingerprints left out (a URL and a local path differ)."""
    return {**doc, "inputs": [{k: v for k, v in i.items() if k not in ("path", "fingerprint")} for i in doc["inputs"]]}


def assert_same_run(s3_out: Path, local_out: Path) -> None:
    a, b = output_hashes(s3_out), output_hashes(local_out)
    assert sorted(a) == sorted(b)
    shards = [n for n in a if not n.startswith(".")]
    assert shards and {n: a[n] for n in shards} == {n: b[n] for n in shards}
    assert without_inputs(read_manifest(s3_out)) == without_inputs(read_manifest(local_out))


def leaks(folder: Path, secret: str) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# ------------------------------------------------------------------ the same output as a local run


@pytest.mark.parametrize("sets", PATHS, ids=PATH_IDS)
def test_parquet_inputs_on_s3_give_the_local_output(tmp_path, s3_server, bucket, parquet_corpus, config_file, sets):
    urls = s3_server.upload(parquet_corpus.files, bucket, "pq")
    cfg = s3_config(tmp_path, s3_server.options())
    result = reorder(cfg, urls, tmp_path / "s3-out", method="str", sets=sets)
    reorder(config_file, parquet_corpus.files, tmp_path / "local-out", method="str", sets=sets)
    assert_same_run(tmp_path / "s3-out", tmp_path / "local-out")
    doc = read_manifest(tmp_path / "s3-out")
    assert [i["path"] for i in doc["inputs"]] == urls
    assert [i["bytes"] for i in doc["inputs"]] == [f.stat().st_size for f in parquet_corpus.files]
    assert all(i["fingerprint"].startswith("store:") for i in doc["inputs"])
    # the secret is in the config, never in what the run wrote or said
    assert leaks(tmp_path / "s3-out", s3_server.secret) == []
    assert s3_server.secret not in result.output
    log = json.loads((tmp_path / "s3-out" / ".run_log.json").read_text())
    assert log["path"] == ("out-of-core" if sets else "in-memory")
    read = log["store_bytes_read"]  # the rewrite: in memory, or by the scatter tasks (by stage, out of core)
    rewrite, other = ("scatter", "rewrite") if sets else ("rewrite", "scatter")
    assert read["keys"] > 0 and read[rewrite] > 0 and read[other] == 0


@pytest.mark.parametrize("sets", PATHS, ids=PATH_IDS)
def test_jsonl_inputs_on_s3_give_the_local_output(tmp_path, s3_server, bucket, jsonl_corpus, config_file, sets):
    urls = s3_server.upload(jsonl_corpus.files, bucket, "jsonl")
    cfg = s3_config(tmp_path, s3_server.options(), format="jsonl")
    config_file.write_text(config_file.read_text().replace("format: parquet", "format: jsonl"))
    reorder(cfg, urls, tmp_path / "s3-out", method="saw", sets=sets)
    reorder(config_file, jsonl_corpus.files, tmp_path / "local-out", method="saw", sets=sets)
    assert_same_run(tmp_path / "s3-out", tmp_path / "local-out")
    log = json.loads((tmp_path / "s3-out" / ".run_log.json").read_text())
    # the keys pass streams each object once (into the work folder); the rewrite reads that copy
    read = log["store_bytes_read"]  # format jsonl: lines are copied, no size sample
    assert {k: v for k, v in read.items() if v} == {"keys": sum(f.stat().st_size for f in jsonl_corpus.files)}


def test_compressed_jsonl_and_a_prefix_folder_on_s3(tmp_path, s3_server, bucket, config_file):
    """A URL folder (a prefix) is read like a local folder: its objects sorted by name, hidden ones left out."""
    files = [write_jsonl(tmp_path / "in" / f"part-{k}.jsonl.gz", to_lines(make_rows(120, seed=k, prefix=f"z{k}")),
                         "gzip") for k in range(3)]
    s3_server.upload(files, bucket, "gz")
    s3_server.put(bucket, "gz/.reorder/state.json", b"{}")
    s3_server.put(bucket, "gz/notes.txt", b"not an input")
    cfg = s3_config(tmp_path, s3_server.options())
    reorder(cfg, f"s3://{bucket}/gz", tmp_path / "s3-out", method="str")
    reorder(config_file, tmp_path / "in", tmp_path / "local-out", method="str")
    assert_same_run(tmp_path / "s3-out", tmp_path / "local-out")
    log = json.loads((tmp_path / "s3-out" / ".run_log.json").read_text())
    assert log["skipped_inputs"] == {"count": 1, "files": [f"s3://{bucket}/gz/notes.txt"]}


def test_a_recursive_glob_lists_objects_with_their_sizes(tmp_path, s3_server, bucket):
    a = write_parquet(tmp_path / "a.parquet", make_rows(50, seed=1))
    b = write_jsonl(tmp_path / "b.jsonl", to_lines(make_rows(40, seed=2)))
    s3_server.put(bucket, "x/2024/01/a.parquet", a.read_bytes())
    s3_server.put(bucket, "x/2024/b.jsonl", b.read_bytes())
    s3_server.put(bucket, "x/2025/c.parquet", a.read_bytes())
    s3_server.put(bucket, "x/.hidden/d.parquet", a.read_bytes())
    store.configure(s3_server.options())
    found = discover([f"s3://{bucket}/x/**/*.parquet"])
    assert [str(f.path) for f in found] == [f"s3://{bucket}/x/2024/01/a.parquet", f"s3://{bucket}/x/2025/c.parquet"]
    assert [f.size for f in found] == [a.stat().st_size] * 2 and {f.format for f in found} == {"parquet"}
    found = discover([f"s3://{bucket}/x/2024/b.jsonl", f"s3://{bucket}/x/2024/01"])  # a file, then a folder
    assert [(str(f.path), f.format, f.size) for f in found] == [
        (f"s3://{bucket}/x/2024/b.jsonl", "jsonl", b.stat().st_size),
        (f"s3://{bucket}/x/2024/01/a.parquet", "parquet", a.stat().st_size)]


def test_a_rerun_is_already_done_and_a_replaced_object_is_seen(tmp_path, s3_server, bucket, parquet_corpus):
    """The run's identity holds each object's size and ETag: the same command twice has nothing to do;
    an object replaced in the store is another input."""
    urls = s3_server.upload(parquet_corpus.files, bucket, "pq")
    cfg, out = s3_config(tmp_path, s3_server.options()), tmp_path / "out"
    reorder(cfg, urls, out, method="str")
    again = reorder(cfg, urls, out, method="str", extra=["--keep-work"])
    assert "nothing to do" in again.output
    other = write_parquet(tmp_path / "other.parquet", make_rows(30, seed=9))
    s3_server.put(bucket, "pq/part-1.parquet", other.read_bytes())
    err = one_line_error(reorder(cfg, urls, out, method="str", ok=False))
    assert "already holds files" in err or "another" in err


# ------------------------------------------------------------------ stores that cannot be read


def _refused(tmp_path, cfg: Path, url: str, *more: str) -> str:
    out = tmp_path / "never"
    err = one_line_error(reorder(cfg, url, out, method="str", ok=False))
    assert url.split("*")[0].rstrip("/") in err, err
    for word in more:
        assert word in err, err
    assert not out.exists()
    return err


def test_a_glob_matching_nothing_is_one_line(tmp_path, s3_server, bucket, parquet_corpus):
    s3_server.upload(parquet_corpus.files, bucket, "pq")
    cfg = s3_config(tmp_path, s3_server.options())
    _refused(tmp_path, cfg, f"s3://{bucket}/pq/**/*.jsonl", "matches no")
    reorder(cfg, f"s3://{bucket}/pq/**/*.parquet", tmp_path / "twin", method="str")  # the positive twin


def test_a_missing_bucket_is_one_line(tmp_path, s3_server):
    cfg = s3_config(tmp_path, s3_server.options())
    _refused(tmp_path, cfg, "s3://no-such-bucket-here/data/*.parquet", "not found")
    _refused(tmp_path, cfg, "s3://no-such-bucket-here/data/a.parquet", "not found")


def test_bad_credentials_are_one_line_without_the_secret(tmp_path, s3_server, bucket, parquet_corpus):
    urls = s3_server.upload(parquet_corpus.files, bucket, "pq")
    wrong = "wrong-secret-0123456789abcdefghij"
    cfg = s3_config(tmp_path, s3_server.options(key="AKIAWRONGWRONGWRONG0", secret=wrong))
    err = _refused(tmp_path, cfg, urls[0], "access denied")
    assert wrong not in err and "AKIAWRONGWRONGWRONG0" not in err
    err = _refused(tmp_path, cfg, f"s3://{bucket}/pq/*.parquet", "access denied")
    assert wrong not in err


def test_an_unknown_protocol_is_one_line(tmp_path, config_file):
    _refused(tmp_path, config_file, "nosuchproto://bucket/a.parquet", "unknown storage protocol")


@pytest.mark.parametrize(("url", "extra"), [("s3://corpus/a.parquet", "s3"), ("gs://corpus/a.parquet", "gcs")])
def test_without_the_extra_one_line_names_it(tmp_path, config_file, url, extra):
    """s3fs (gcsfs) made unimportable in a fresh process: the run says which extra to install."""
    code = ("import sys; sys.modules['s3fs'] = None; sys.modules['gcsfs'] = None\n"
            "from reorder_cli.cli import app\n"
            f"app(['run', {str(config_file)!r}, '-m', 'str', '-i', {url!r}, '-o', {str(tmp_path / 'o')!r}, '-q'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"error: {url}: install the extra: pip install 'reorder[{extra}]'"
    assert not (tmp_path / "o").exists()


def test_a_file_url_is_a_local_path(tmp_path, config_file, parquet_corpus):
    reorder(config_file, [f"file://{f}" for f in parquet_corpus.files], tmp_path / "a", method="str")
    reorder(config_file, parquet_corpus.files, tmp_path / "b", method="str")
    assert output_hashes(tmp_path / "a") == output_hashes(tmp_path / "b")


def test_the_summary_of_a_run_does_not_show_the_secret(tmp_path, s3_server, bucket, parquet_corpus):
    urls = s3_server.upload(parquet_corpus.files, bucket, "pq")
    cfg = s3_config(tmp_path, s3_server.options())
    result = invoke("run", cfg, "-m", "str", "-i", urls[0], "-i", urls[1], "-o", tmp_path / "o")  # not quiet
    assert result.exit_code == 0, result.output
    assert urls[0].split("/")[2] in (tmp_path / "o" / ".manifest.json").read_text()
    assert s3_server.secret not in result.output and s3_server.key not in result.output


def test_storage_options_must_be_a_mapping_and_are_never_echoed(tmp_path, parquet_corpus):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("score_field: score\nstorage_options: very-secret-value\n")
    err = one_line_error(reorder(cfg, parquet_corpus.files, tmp_path / "o", method="str", ok=False))
    assert "storage_options" in err and "very-secret-value" not in err


def test_set_reaches_one_storage_option(tmp_path, s3_server, bucket, parquet_corpus):
    """--set storage_options.KEY=value sets one key; the file's other keys stay."""
    urls = s3_server.upload(parquet_corpus.files, bucket, "pq")
    cfg = s3_config(tmp_path, s3_server.options(endpoint_url="http://127.0.0.1:9"))  # nothing listens there
    reorder(cfg, urls, tmp_path / "o", method="str", sets=[f"storage_options.endpoint_url={s3_server.endpoint}"])


# ------------------------------------------------------------------ what the keys pass reads


def wide_parquet(folder: Path) -> list[Path]:
    """Three Parquet files of 1,000 wide rows each (the score column is a small part of each file)."""
    rng = random.Random(5)
    rows = [{"id": f"r{i}", "score": (i * 7919 % 1000) / 10, "text": "".join(rng.choices(WORDS, k=600))}
            for i in range(3000)]
    return [write_parquet(folder / f"w{k}.parquet", rows[k * 1000:(k + 1) * 1000], row_group_size=250)
            for k in range(3)]


def test_the_keys_pass_of_parquet_reads_the_score_column_alone(tmp_path, s3_server, bucket):
    """Column projection with range requests: the keys pass reads a few percent of wide rows; the
    rewrite reads them all."""
    files = wide_parquet(tmp_path / "wide")
    urls = s3_server.upload(files, bucket, "wide")
    cfg = s3_config(tmp_path, s3_server.options())
    reorder(cfg, urls, tmp_path / "o", method="str")
    read = json.loads((tmp_path / "o" / ".run_log.json").read_text())["store_bytes_read"]
    total = sum(f.stat().st_size for f in files)
    assert 0 < read["keys"] < 0.1 * total, (read, total)
    assert read["rewrite"] >= total * 0.9
    # shard_size's sample reads whole row groups, counted apart: the first one of up to 3 files
    assert 0 < read["sample"] < total
    reorder(cfg, urls, tmp_path / "no-sample", method="str", sets=["shard_size=0"])
    read = json.loads((tmp_path / "no-sample" / ".run_log.json").read_text())["store_bytes_read"]
    assert read["sample"] == 0 and 0 < read["keys"] < 0.1 * total


def test_tasks_elsewhere_get_the_endpoint_but_never_the_credentials(tmp_path, s3_server, bucket, parquet_corpus,
                                                                     config_file):
    """A run prepared for a cluster writes run.json with the storage_options that say where the store is
    (endpoint, region) and none that say who you are; each `reorder task`, a process of its own with the
    credentials in its environment only (no AWS_ENDPOINT_URL), reaches the store through it."""
    import os

    urls = s3_server.upload(parquet_corpus.files, bucket, "pq")
    cfg = s3_config(tmp_path, s3_server.options())
    out = tmp_path / "out"
    reorder(cfg, urls, out, method="str", sets=["rewrite=out-of-core", "memory_limit=1"],
            extra=["--executor", "slurm", "--dry-run"])
    spec = json.loads((out / ".reorder" / "run.json").read_text())["config"]["storage_options"]
    assert spec == {"endpoint_url": s3_server.endpoint, "client_kwargs": {"region_name": "us-east-1"}}
    assert leaks(out, s3_server.secret) == [] and leaks(out, s3_server.key) == []
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ACCESS_KEY_ID": s3_server.key, "AWS_SECRET_ACCESS_KEY": s3_server.secret}

    def task(*args, environment=env):
        return subprocess.run([sys.executable, "-m", "reorder_cli.cli", "task", str(out), *map(str, args)],
                              capture_output=True, text=True, env=environment)

    no_credentials = {k: v for k, v in env.items() if not k.startswith("AWS_")}  # negative control
    refused = task("keys", 0, environment=no_credentials)
    assert refused.returncode == 2 and "s3://" in refused.stderr, refused.stderr
    from reorder_cli.stages import STAGES

    for stage in STAGES:
        report = json.loads(invoke("status", out, "--json").stdout)["data"]["stages"].get(stage)
        for i in range(0 if report is None else report["tasks"]):  # None: a stage with no tasks (combine, K = 1)
            done = task(stage, i)
            assert done.returncode == 0, (stage, i, done.stderr)
    reorder(cfg, urls, out, method="str", sets=["rewrite=out-of-core", "memory_limit=1"])  # publishes
    reorder(config_file, parquet_corpus.files, tmp_path / "local-out", method="str",
            sets=["rewrite=out-of-core", "memory_limit=1"])
    assert_same_run(out, tmp_path / "local-out")
