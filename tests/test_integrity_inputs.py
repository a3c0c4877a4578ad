"""An input that changes under a run is caught; nothing stale is published.

An input's stamp (size, modification time in ns, inode, device; an object's size and ETag) is taken
when the run discovers it; the keys and scatter tasks, the rewrite in memory and the publish check it
(reorder_cli/formats/unchanged.py), and the run's identity holds it, so a resumed run refuses too. The
fingerprint alone (size and the first and last MiB) misses an edit in the middle of a bigger file: the
inputs here are over 2 MiB and the edit is in their middle. An edit in place with its modification time
set back is beyond a stamp: `verify --with-inputs` catches it. A shard in the output folder whose staged
copy is gone is reused only when its size and sha256 are its gather record's.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from reorder_cli.errors import ReorderError
from reorder_cli.publish import output
from reorder_cli.rewrite import in_memory, tasks
from reorder_cli.workdir import WorkDir

from .conftest import invoke, one_line_error, output_hashes, reorder, write_parquet

ROWS = 3000
MIDDLE = ROWS // 2
SETS = ["format=jsonl", "shard_rows=700"]
PAD = 1100  # bytes a row: 3,000 rows are about 3.3 MB, so the middle row is outside both MiB ends


def line(i: int, score: float) -> bytes:
    text = "x" * (PAD - 60)
    return f'{{"id": "r{i:05d}", "score": {score:.3f}, "text": "{text}"}}\n'.encode()


@pytest.fixture
def big(tmp_path) -> Path:
    rng = random.Random(7)
    path = tmp_path / "in" / "big.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(line(i, rng.randint(1000, 8999) / 1000) for i in range(ROWS)))
    assert path.stat().st_size > (2 << 20) + PAD
    return path


def edited(data: bytes) -> bytes:
    """``data`` with the score of its middle row changed, at the same size."""
    start = data.index(f'"id": "r{MIDDLE:05d}", "score": '.encode()) + len(f'"id": "r{MIDDLE:05d}", "score": ')
    assert (1 << 20) < start < len(data) - (1 << 20)  # where the fingerprint does not look
    new = b"9.999" if data[start:start + 5] != b"9.999" else b"9.998"
    return data[:start] + new + data[start + 5:]


def plan(config_file, big, out) -> None:
    reorder(config_file, [big], out, method="str", sets=SETS, extra=["--plan-only"])


def edit_in_place(path: Path, data: bytes, keep_mtime: bool) -> None:
    st = path.stat()
    with open(path, "r+b") as fh:  # the same inode
        fh.write(data)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later time, whatever the clock's grain


def verify_with_inputs(out) -> object:
    return invoke("verify", out, "--with-inputs")


# ------------------------------------------------------------------ a local input changed after --plan-only


def test_a_same_size_edit_in_the_middle_is_refused_by_the_tasks_and_the_run(tmp_path, config_file, big):
    out, original = tmp_path / "o", big.read_bytes()
    plan(config_file, big, out)
    edit_in_place(big, edited(original), keep_mtime=False)
    msg = one_line_error(invoke("task", out, "scatter", 0))
    assert str(big) in msg and "scatter task 0" in msg and "modification time" in msg and "--restart" in msg, msg
    msg = one_line_error(reorder(config_file, [big], out, method="str", sets=SETS, ok=False))
    assert f"input changed: {big.resolve()} (its modification time differs)" in msg, msg
    assert not (out / ".manifest.json").exists() and (out / ".reorder" / "plan" / "plan.json").exists()
    # its content put back, its time not: still another file as far as the stamp can tell
    edit_in_place(big, original, keep_mtime=False)
    msg = one_line_error(invoke("task", out, "scatter", 0))
    assert str(big) in msg and "modification time" in msg, msg


def test_a_file_replaced_with_its_time_set_back_is_caught_by_its_inode(tmp_path, config_file, big):
    out = tmp_path / "o"
    plan(config_file, big, out)
    st = big.stat()
    new = big.with_name("big.jsonl.new")
    new.write_bytes(edited(big.read_bytes()))  # an editor's save: a new file renamed over the old
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, big)
    assert big.stat().st_mtime_ns == st.st_mtime_ns and big.stat().st_size == st.st_size
    msg = one_line_error(invoke("task", out, "scatter", 0))
    assert str(big) in msg and "inode" in msg, msg
    msg = one_line_error(reorder(config_file, [big], out, method="str", sets=SETS, ok=False))
    assert f"input changed: {big.resolve()} (its inode differs)" in msg, msg


def test_a_file_put_back_with_its_time_resumes_and_publishes_the_run(tmp_path, config_file, big):
    """An input edited, then put back as it was (content and modification time, same inode), is the same
    input: the run resumes and gives the output of a run that never saw the edit."""
    out, original = tmp_path / "o", big.read_bytes()
    reorder(config_file, [big], tmp_path / "fresh", method="str", sets=SETS)
    plan(config_file, big, out)
    st = big.stat()
    edit_in_place(big, edited(original), keep_mtime=False)
    assert invoke("task", out, "scatter", 0).exit_code == 2
    edit_in_place(big, original, keep_mtime=True)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    reorder(config_file, [big], out, method="str", sets=SETS)
    assert output_hashes(out) == output_hashes(tmp_path / "fresh")
    assert verify_with_inputs(out).exit_code == 0


def test_an_edit_in_place_with_its_time_set_back_is_left_to_verify_with_inputs(tmp_path, config_file, big):
    """The limit of a stamp, documented: a same-size edit in place whose modification time is set back
    is not seen by the tasks; `verify --with-inputs` reads the inputs and refuses the output."""
    out, original = tmp_path / "o", big.read_bytes()
    plan(config_file, big, out)
    edit_in_place(big, edited(original), keep_mtime=True)
    assert invoke("task", out, "scatter", 0).exit_code == 0  # the edited row is scattered
    edit_in_place(big, original, keep_mtime=True)  # put back before publishing
    reorder(config_file, [big], out, method="str", sets=SETS)
    result = verify_with_inputs(out)
    assert result.exit_code != 0, result.output


# ------------------------------------------------------------------ an input changed during a run


@pytest.mark.parametrize("path", ["in-memory", "out-of-core"])
def test_an_input_changed_while_the_shards_are_written_is_not_published(tmp_path, config_file, big, monkeypatch,
                                                                         path):
    out, st = tmp_path / "o", big.stat()
    target = (tasks, "run_all") if path == "out-of-core" else (in_memory, "write_shards")
    real = getattr(*target)

    def then_touch(*args, **kwargs):
        shards = real(*args, **kwargs)
        os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return shards

    monkeypatch.setattr(*target, then_touch)
    sets = [*SETS, "rewrite=out-of-core"] if path == "out-of-core" else SETS
    msg = one_line_error(reorder(config_file, [big], out, method="str", sets=sets, ok=False))
    assert str(big) in msg and "publish stops" in msg, msg
    assert not [p for p in out.iterdir() if p.name != ".reorder"]  # nothing published
    assert (out / ".reorder" / "done").is_dir()  # the finished work is kept: the file may be put back
    monkeypatch.undo()
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    reorder(config_file, [big], out, method="str", sets=sets)
    reorder(config_file, [big], tmp_path / "fresh", method="str", sets=sets)
    assert output_hashes(out) == output_hashes(tmp_path / "fresh")


def test_a_keys_task_refuses_an_input_changed_since_the_run_was_prepared(tmp_path, config_file, big):
    out = tmp_path / "o"
    reorder(config_file, [big], out, method="str", sets=[*SETS, "rewrite=out-of-core"],
            extra=["--executor", "slurm", "--dry-run"])
    edit_in_place(big, edited(big.read_bytes()), keep_mtime=False)
    msg = one_line_error(invoke("task", out, "keys", 0))
    assert str(big) in msg and "keys task 0" in msg, msg


# ------------------------------------------------------------------ an object overwritten on a store


def test_an_object_overwritten_between_plan_and_scatter_is_refused_by_its_etag(tmp_path, s3_server, config_file,
                                                                               monkeypatch):
    import yaml

    bucket = s3_server.bucket("integrity-inputs")
    rows = [{"id": f"p{i:04d}", "score": (i * 37 % 61) / 20, "text": "t" * (i % 13)} for i in range(400)]
    local = write_parquet(tmp_path / "pq" / "a.parquet", rows, row_group_size=100)
    [url] = s3_server.upload([local], bucket, "pq")
    cfg = tmp_path / "s3.yaml"
    cfg.write_text(yaml.safe_dump({"score_field": "score", "seed": 42, "format": "parquet",
                                   "storage_options": s3_server.options()}))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)  # a task's credentials: the store's own chain
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    out = tmp_path / "o"
    reorder(cfg, [url], out, method="str", extra=["--plan-only"])
    rows[200]["score"] = 2.95  # the same rows and row groups: a scatter would read it without a hitch
    write_parquet(local, rows, row_group_size=100)
    s3_server.put(bucket, "pq/a.parquet", local.read_bytes())
    msg = one_line_error(invoke("task", out, "scatter", 0))
    assert url in msg and "ETag" in msg and "scatter task 0" in msg, msg


# ------------------------------------------------------------------ nothing stale is published


def test_a_stale_shard_whose_staged_copy_is_gone_is_made_again(tmp_path, config_file, big):
    """An older output's shard under the name of one of this run's, its staged copy gone (a publish
    interrupted over an older output): the shard is made again, not published as it is."""
    out = tmp_path / "o"
    reorder(config_file, [big], out, method="shuffle", sets=SETS)  # the older output: another method
    reorder(config_file, [big], out, method="str", sets=SETS, extra=["--plan-only", "--overwrite"])
    for stage in ("scatter", "gather"):
        for i in range(json.loads(invoke("status", out, "--json").stdout)["data"]["stages"][stage]["tasks"]):
            assert invoke("task", out, stage, i).exit_code == 0
    staged = out / ".reorder" / "shards" / "00000.jsonl"
    assert staged.exists() and staged.read_bytes() != (out / "00000.jsonl").read_bytes()
    staged.unlink()
    reorder(config_file, [big], out, method="str", sets=SETS, extra=["--overwrite"])
    reorder(config_file, [big], tmp_path / "fresh", method="str", sets=SETS)
    assert output_hashes(out) == output_hashes(tmp_path / "fresh")
    assert invoke("verify", out).exit_code == 0


def test_publish_refuses_a_shard_in_place_that_is_not_its_record(tmp_path):
    out, work = tmp_path / "o", WorkDir(tmp_path / "o")
    work.ensure()
    (out / "00000.jsonl").write_bytes(b'{"id": "old"}\n')
    record = {"file": "00000.jsonl", "bytes": 14, "sha256": "0" * 64}
    with pytest.raises(ReorderError) as err:
        output.publish(out, work, [record], {"shards": [record]})
    assert "00000.jsonl" in str(err.value) and "sha256" in str(err.value) and "\n" not in str(err.value)
    assert not (out / ".manifest.json").exists()
