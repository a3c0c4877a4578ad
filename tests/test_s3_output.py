"""The output on an object store (a real S3 API: a moto server), the work folder on local disk (``work_dir``).

A run writing ``s3://`` gives the shards of the same run on local disk, byte for byte, and the same
manifest apart from the inputs' paths; nothing but the shards, the manifest and the run log is left
under the output; a kill -9 while uploading, then the same command, finishes with the same bytes; a
failed upload leaves no object under its name and no manifest; stats and verify read the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from reorder_cli.util import store

from .conftest import invoke, one_line_error, output_hashes, read_manifest, reorder
from .test_s3 import without_inputs

SETS = ["shard_rows=150", "row_group_rows=40"]  # several shards from the small corpora
PATHS = [(), ("rewrite=out-of-core", "memory_limit=1")]
PATH_IDS = ["in-memory", "out-of-core"]


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.bucket(f"out-{uuid.uuid4().hex[:12]}")


def s3_config(tmp_path: Path, options: dict, **more) -> Path:
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump({"score_field": "score", "seed": 42, "format": "parquet",
                                    "storage_options": options, **more}))
    return path


def objects(server, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix/`` (nested ones too), by name relative to it."""
    found, start = {}, prefix + "/" if prefix else ""
    for page in server.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(start):]] = server.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return found


def pending_uploads(server, bucket: str) -> list[str]:
    return [u["Key"] for u in server.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def assert_same_as_local(found: dict[str, bytes], local_out: Path) -> None:
    """The objects are the local run's files: the shards byte for byte, the manifest apart from input paths,
    plus the run log, and nothing else."""
    local = output_hashes(local_out)
    shards = sorted(n for n in local if not n.startswith("."))
    assert shards and sorted(found) == sorted([*shards, ".manifest.json", ".run_log.json"])
    assert {n: hashlib.sha256(found[n]).hexdigest() for n in shards} == {n: local[n] for n in shards}
    doc = json.loads(found[".manifest.json"])
    assert without_inputs(doc) == without_inputs(read_manifest(local_out))


def run_args(cfg: Path, inputs, out: str, sets=()) -> list[str]:
    args = ["run", str(cfg), "--method", "str", "--output", out, "-q"]
    for f in inputs:
        args += ["--input", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


# ------------------------------------------------------------------ the same output as a local run


@pytest.mark.parametrize("sets", PATHS, ids=PATH_IDS)
def test_local_inputs_to_an_s3_output_give_the_local_bytes(tmp_path, s3_server, bucket, parquet_corpus, config_file,
                                                           sets):
    work = tmp_path / "scratch"
    cfg = s3_config(tmp_path, s3_server.options())
    url = f"s3://{bucket}/runs/str"
    result = reorder(cfg, parquet_corpus.files, url, method="str", sets=[*SETS, *sets, f"work_dir={work}"])
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=[*SETS, *sets])
    found = objects(s3_server, bucket, "runs/str")
    assert_same_as_local(found, tmp_path / "local")
    assert len([n for n in found if not n.startswith(".")]) >= 3
    doc = json.loads(found[".manifest.json"])
    assert [i["path"] for i in doc["inputs"]] == [str(f.resolve()) for f in parquet_corpus.files]  # absolute
    assert all(s3_server.secret.encode() not in data for data in found.values())
    assert s3_server.secret not in result.output
    assert list(work.iterdir()) == []  # the run's work folder is removed after success
    assert pending_uploads(s3_server, bucket) == []


def test_s3_inputs_to_an_s3_output_give_the_local_bytes(tmp_path, s3_server, bucket, jsonl_corpus, config_file):
    urls = s3_server.upload(jsonl_corpus.files, bucket, "in")
    cfg = s3_config(tmp_path, s3_server.options(), format="jsonl")
    config_file.write_text(config_file.read_text().replace("format: parquet", "format: jsonl"))
    sets = ["shard_rows=300", "rewrite=out-of-core", "memory_limit=1"]
    reorder(cfg, urls, f"s3://{bucket}/out", method="saw", sets=[*sets, f"work_dir={tmp_path / 'w'}"])
    reorder(config_file, jsonl_corpus.files, tmp_path / "local", method="saw", sets=sets)
    assert_same_as_local(objects(s3_server, bucket, "out"), tmp_path / "local")
    log = json.loads(objects(s3_server, bucket, "out")[".run_log.json"])
    assert log["store_bytes_read"]["keys"] > 0 and s3_server.secret not in json.dumps(log)


def test_an_s3_output_on_one_machine_needs_no_work_dir(tmp_path, s3_server, bucket, parquet_corpus, config_file,
                                                        monkeypatch):
    """The local executor keeps the working state in a local scratch ($REORDER_SCRATCH) and says so;
    `reorder status`, `task` and `publish` find it there with no --work-dir; a cluster executor refuses."""
    monkeypatch.setenv("REORDER_SCRATCH", str(tmp_path / "scratch"))
    cfg = s3_config(tmp_path, s3_server.options())
    url = f"s3://{bucket}/o"
    err = one_line_error(invoke(*run_args(cfg, parquet_corpus.files, url, SETS), "--executor", "slurm", "--dry-run"))
    assert url in err and "work_dir" in err and "every node shares" in err, err
    assert objects(s3_server, bucket, "o") == {} and not (tmp_path / "scratch").exists()
    planned = invoke(*[a for a in run_args(cfg, parquet_corpus.files, url, SETS) if a != "-q"], "--plan-only")
    assert planned.exit_code == 0, (planned.output, planned.exception)
    work = tmp_path / "scratch" / "work"
    assert "local scratch" in planned.stderr and str(work) in " ".join(planned.stderr.split()), planned.stderr
    assert len(list(work.iterdir())) == 1  # the run's folder
    report = json.loads(invoke("status", url, "--json").stdout)["data"]["stages"]
    for stage in ("scatter", "gather"):
        for i in range(report[stage]["tasks"]):
            assert invoke("task", url, stage, i).exit_code == 0, (stage, i)
    # run.json holds no credentials: publish, like a task, takes them from the store's own chain
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    published = invoke("publish", url, "-q")
    assert published.exit_code == 0, (published.output, published.exception)
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert_same_as_local(objects(s3_server, bucket, "o"), tmp_path / "local")
    assert list(work.iterdir()) == []  # removed after success


# ------------------------------------------------------------------ a local output with work_dir


def test_a_local_output_with_work_dir_elsewhere_gives_the_same_bytes(tmp_path, parquet_corpus, config_file):
    sets = [*SETS, "rewrite=out-of-core", "memory_limit=1"]
    reorder(config_file, parquet_corpus.files, tmp_path / "plain", method="str", sets=sets)
    work = tmp_path / "scratch"
    out = tmp_path / "with-work-dir"
    reorder(config_file, parquet_corpus.files, out, method="str", sets=[*sets, f"work_dir={work}"],
            extra=["--keep-work"])
    assert output_hashes(out) == output_hashes(tmp_path / "plain")
    assert not (out / ".reorder").exists()  # the working state is in work_dir, not in the output
    [run_folder] = list(work.iterdir())
    assert run_folder.name.startswith("with-work-dir-") and (run_folder / "state.json").is_file()
    # a second output shares the work_dir, in its own folder
    reorder(config_file, parquet_corpus.files, tmp_path / "second", method="str", sets=[*sets, f"work_dir={work}"],
            extra=["--keep-work"])
    assert len(list(work.iterdir())) == 2
    # status and task find it with --work-dir; without, they look in OUTPUT/.reorder (the finished output still shows)
    report = invoke("status", out, "--json", "--work-dir", work)
    assert report.exit_code == 0 and json.loads(report.stdout)["data"]["finished"] is True
    listed = invoke("task", out, "--work-dir", work)
    assert listed.exit_code == 0, listed.output
    assert "gather" in listed.output
    err = one_line_error(invoke("task", out))
    assert ".reorder" in err


def test_a_planned_run_with_work_dir_is_found_by_task_and_status(tmp_path, parquet_corpus, config_file):
    work, out = tmp_path / "scratch", tmp_path / "out"
    sets = [*SETS, f"work_dir={work}"]
    reorder(config_file, parquet_corpus.files, out, method="str", sets=sets, extra=["--plan-only"])
    assert not out.exists()
    report = json.loads(invoke("status", out, "--json", "--work-dir", work).stdout)["data"]
    assert report["stages"]["scatter"]["state"] == "pending" and not report["finished"]
    err = one_line_error(invoke("status", out))  # the negative control: not in OUTPUT/.reorder
    assert "no run here" in err
    assert invoke("task", out, "scatter", "0", "--work-dir", work).exit_code == 0
    report = json.loads(invoke("status", out, "--json", "--work-dir", work).stdout)["data"]
    assert report["stages"]["scatter"]["done"] == 1


def test_a_work_dir_inside_the_output_is_refused(tmp_path, parquet_corpus, config_file):
    out = tmp_path / "out"
    err = one_line_error(reorder(config_file, parquet_corpus.files, out, method="str", ok=False,
                                 sets=[f"work_dir={out / 'tmp'}"]))
    assert "inside the output" in err and not out.exists()


# ------------------------------------------------------------------ rerun, overwrite


def test_rerun_overwrite_and_foreign_objects_on_an_s3_output(tmp_path, s3_server, bucket, parquet_corpus):
    cfg = s3_config(tmp_path, s3_server.options())
    url, work = f"s3://{bucket}/o", f"work_dir={tmp_path / 'w'}"
    reorder(cfg, parquet_corpus.files, url, method="str", sets=["shard_rows=100", work])
    first = objects(s3_server, bucket, "o")
    again = reorder(cfg, parquet_corpus.files, url, method="str", sets=["shard_rows=100", work])
    assert "nothing to do" in again.output
    # another run: refused, then replaced with --overwrite, the extra shards of the first run removed
    err = one_line_error(reorder(cfg, parquet_corpus.files, url, method="saw", sets=["shard_rows=300", work],
                                 ok=False))
    assert url in err and "--overwrite" in err
    reorder(cfg, parquet_corpus.files, url, method="saw", sets=["shard_rows=300", work], extra=["--overwrite"])
    second = objects(s3_server, bucket, "o")
    shards = sorted(n for n in second if not n.startswith("."))
    assert len(shards) < len([n for n in first if not n.startswith(".")])
    assert [s["file"] for s in json.loads(second[".manifest.json"])["shards"]] == shards
    # a changed shard is seen by the re-run (read back: size and sha256), not trusted for existing
    s3_server.put(bucket, f"o/{shards[0]}", second[shards[0]][:-1] + b"x")
    err = one_line_error(reorder(cfg, parquet_corpus.files, url, method="saw", sets=["shard_rows=300", work],
                                 ok=False))
    assert "altered" in err or "changed" in err
    # an object reorder did not write is never replaced
    s3_server.put(bucket, "o/notes.txt", b"mine")
    err = one_line_error(reorder(cfg, parquet_corpus.files, url, method="str", sets=[work], ok=False,
                                 extra=["--overwrite"]))
    assert "notes.txt" in err
    assert objects(s3_server, bucket, "o")["notes.txt"] == b"mine"


# ------------------------------------------------------------------ stores that refuse


def test_a_missing_output_bucket_is_one_line_and_nothing_is_written(tmp_path, s3_server, parquet_corpus):
    cfg = s3_config(tmp_path, s3_server.options())
    work = tmp_path / "w"
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/out"
    err = one_line_error(reorder(cfg, parquet_corpus.files, url, method="str", ok=False, sets=[f"work_dir={work}"]))
    assert url in err and "not found" in err
    assert not work.exists()
    assert url.split("/")[2] not in [b["Name"] for b in s3_server.s3.list_buckets()["Buckets"]]


def test_bad_credentials_for_the_output_are_one_line_without_the_secret(tmp_path, s3_server, bucket, parquet_corpus):
    wrong = "wrong-secret-0123456789abcdefghij"
    cfg = s3_config(tmp_path, s3_server.options(key="AKIAWRONGWRONGWRONG0", secret=wrong))
    work, url = tmp_path / "w", f"s3://{bucket}/out"
    err = one_line_error(reorder(cfg, parquet_corpus.files, url, method="str", ok=False, sets=[f"work_dir={work}"]))
    assert url in err and "access denied" in err and wrong not in err and "AKIAWRONG" not in err
    assert not work.exists() and objects(s3_server, bucket, "out") == {}


# ------------------------------------------------------------------ uploads that fail or are killed


def test_an_exception_inside_a_plain_writer_commits_but_an_upload_is_aborted(tmp_path, s3_server, bucket):
    """fsspec's ``with fs.open(url, "wb")`` completes the upload when the block exits on an exception (the
    negative control); :func:`store.upload` aborts it: no object, no multipart upload left."""
    store.configure(s3_server.options())
    data = os.urandom(store.UPLOAD_BLOCK + (3 << 20))  # two parts: the first is sent before the failure
    fs, _ = store.filesystem(f"s3://{bucket}/x")
    with pytest.raises(RuntimeError), fs.open(f"{bucket}/naive.bin", "wb", block_size=store.UPLOAD_BLOCK) as fh:
        fh.write(data[:store.UPLOAD_BLOCK])
        raise RuntimeError("failed half-way")
    assert len(objects(s3_server, bucket, "")["naive.bin"]) == store.UPLOAD_BLOCK  # a partial object appeared

    local = tmp_path / "big.bin"
    local.write_bytes(data)

    def fail(written: int) -> None:
        assert written == store.UPLOAD_BLOCK and pending_uploads(s3_server, bucket) == ["safe.bin"]  # mid-upload
        raise OSError("failed half-way")

    with pytest.raises(Exception, match="failed half-way"):
        store.upload(local, store.URL(f"s3://{bucket}/safe.bin"), fail)
    assert "safe.bin" not in objects(s3_server, bucket, "")
    assert pending_uploads(s3_server, bucket) == []
    store.upload(local, store.URL(f"s3://{bucket}/safe.bin"))  # the positive twin
    assert objects(s3_server, bucket, "")["safe.bin"] == data


def test_a_failed_upload_leaves_no_shard_and_no_manifest(tmp_path, s3_server, bucket, parquet_corpus, config_file,
                                                         monkeypatch):
    cfg = s3_config(tmp_path, s3_server.options())
    url, sets = f"s3://{bucket}/o", [*SETS, f"work_dir={tmp_path / 'w'}", "workers=1"]
    monkeypatch.setenv("REORDER_FAIL_AT", "upload")
    monkeypatch.setenv("REORDER_FAIL_SHARD", "0")
    err = one_line_error(reorder(cfg, parquet_corpus.files, url, method="str", sets=sets, ok=False))
    assert f"{url}/00000.parquet" in err and "injected failure" in err and "re-run the same command" in err
    assert objects(s3_server, bucket, "o") == {} and pending_uploads(s3_server, bucket) == []
    monkeypatch.setenv("REORDER_FAIL_SHARD", "2")  # a later shard: the ones before stay, without a manifest
    err = one_line_error(reorder(cfg, parquet_corpus.files, url, method="str", sets=sets, ok=False))
    assert f"{url}/00002.parquet" in err
    left = objects(s3_server, bucket, "o")
    assert sorted(left) == ["00000.parquet", "00001.parquet"]
    monkeypatch.delenv("REORDER_FAIL_AT")
    reorder(cfg, parquet_corpus.files, url, method="str", sets=sets)  # the same command finishes
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert_same_as_local(objects(s3_server, bucket, "o"), tmp_path / "local")


def from_the_environment(monkeypatch, server) -> None:
    """No storage_options in this process (status has no config): the store's own chain, the environment."""
    import s3fs

    for name, value in (("AWS_ACCESS_KEY_ID", server.key), ("AWS_SECRET_ACCESS_KEY", server.secret),
                        ("AWS_ENDPOINT_URL", server.endpoint), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    store.configure({})
    s3fs.S3FileSystem.clear_instance_cache()


def killed_at(point: str, args: list[str], flag: Path) -> None:
    """Run ``reorder ARGS`` in a process of its own until it pauses at fault point ``point``, then kill -9 it."""
    env = {**os.environ, "REORDER_PAUSE_AT": point, "REORDER_PAUSE_FLAG": str(flag)}
    proc = subprocess.Popen([sys.executable, "-m", "reorder_cli.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"finished before {point}: {proc.stderr.read().decode()}")
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_killed_while_uploading_the_same_command_finishes(tmp_path, s3_server, bucket, parquet_corpus, config_file,
                                                          monkeypatch):
    cfg = s3_config(tmp_path, s3_server.options())
    url, sets = f"s3://{bucket}/o", [*SETS, f"work_dir={tmp_path / 'w'}", "workers=1"]
    killed_at("upload", run_args(cfg, parquet_corpus.files, url, sets), tmp_path / "paused")
    left = objects(s3_server, bucket, "o")
    assert sorted(left) == ["00000.parquet"]  # one shard uploaded, no manifest: an unfinished publish
    # objects under the final names are never trusted: a replaced upload and a stray one are both redone
    s3_server.put(bucket, "o/00000.parquet", b"not the shard")
    s3_server.put(bucket, "o/00001.parquet", b"not this one either")
    from_the_environment(monkeypatch, s3_server)
    status = invoke("status", url, "--json", "--work-dir", tmp_path / "w")
    assert status.exit_code == 0 and json.loads(status.stdout)["data"]["finished"] is False, status.output
    reorder(cfg, parquet_corpus.files, url, method="str", sets=sets)
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert_same_as_local(objects(s3_server, bucket, "o"), tmp_path / "local")
    assert pending_uploads(s3_server, bucket) == []
    from_the_environment(monkeypatch, s3_server)
    status = invoke("status", url, "--json", "--work-dir", tmp_path / "w")
    assert json.loads(status.stdout)["data"]["finished"] is True
    status = invoke("status", url, "--json")  # without --work-dir: the manifest says it is published
    assert json.loads(status.stdout)["data"]["finished"] is True
    err = one_line_error(invoke("status", f"s3://{bucket}/elsewhere"))  # no run there, nor in the local scratch
    assert "no run here" in err and "pass --work-dir when the run set work_dir" in err, err


# ------------------------------------------------------------------ stats and verify read the store


def test_stats_and_verify_read_an_s3_output(tmp_path, s3_server, bucket, parquet_corpus):
    urls = s3_server.upload(parquet_corpus.files, bucket, "in")
    cfg = s3_config(tmp_path, s3_server.options())
    url = f"s3://{bucket}/o"
    reorder(cfg, urls, url, method="str", sets=[*SETS, f"work_dir={tmp_path / 'w'}"])
    doc = json.loads(objects(s3_server, bucket, "o")[".manifest.json"])
    # a fresh process, with the store's credentials and endpoint from the environment (no config here)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": s3_server.key, "AWS_SECRET_ACCESS_KEY": s3_server.secret,
           "AWS_ENDPOINT_URL": s3_server.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "reorder_cli.cli", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    stats = cli("stats", url, "--json", "--deep")
    assert stats.returncode == 0, stats.stderr
    view = json.loads(stats.stdout)["data"]
    assert view["totals"] == doc["totals"] and view["deep"]["differences"] == []
    ok = cli("verify", url, "--with-inputs", "-q")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all good" in ok.stdout and "permutation" in ok.stdout
    # negative controls: a changed shard and an unlisted one are found
    s3_server.put(bucket, "o/00001.parquet", objects(s3_server, bucket, "o")["00000.parquet"])
    s3_server.put(bucket, "o/00099.parquet", b"stray")
    bad = cli("verify", url, "-q")
    assert bad.returncode == 1
    assert "00001.parquet: sha256" in bad.stdout and "00099.parquet: unexpected file" in bad.stdout
    missing = cli("stats", f"s3://{bucket}/nothing-here")
    assert missing.returncode == 2 and "no .manifest.json here" in missing.stderr


def test_slurm_scripts_of_a_run_with_work_dir_pass_it_to_every_task(tmp_path, parquet_corpus, config_file):
    """--executor slurm --dry-run: the scripts live in the run's folder of work_dir, and each task command
    names the work_dir; the tasks run that way."""
    from reorder_cli.workdir import locate

    work, out = tmp_path / "scratch", tmp_path / "out"
    reorder(config_file, parquet_corpus.files, out, method="str", sets=[*SETS, f"work_dir={work}"],
            extra=["--executor", "slurm", "--dry-run"])
    folder = locate(out, work).slurm
    keys = (folder / "keys.sh").read_text()
    assert f"task --work-dir {work} {out} keys" in keys
    assert not (out / ".reorder").exists()
    assert invoke("task", "--work-dir", work, out, "keys", "0").exit_code == 0
    assert one_line_error(invoke("task", out, "keys", "1")).startswith(f"error: {out}: no run here")
