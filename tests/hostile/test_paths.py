"""Hostile inputs, part B (issue 8): paths, input discovery, config mistakes and re-runs.

Every case checks the message (the file or key named, one line, no traceback, exit 2),
that nothing is left behind, and a positive twin (the valid neighbour still works).

Catalogue:

 1. cluster tasks run from another working directory (JSONL, JSONL.gz and Parquet inputs
    given as relative paths): the stored plan holds absolute paths.
 2. one file under two names (hard link, symlink, a folder and its symlink): refused,
    both names given.
 3. ``-o afile/sub`` where ``afile`` is a regular file: refused; a run that fails under a
    new nested output folder removes every folder it created.
 4. a non-finite number (``.inf``, ``.nan``) for any numeric key: refused, key named.
 5. the disk fills while key files are written (a real, small tmpfs): "No space left on
    device" and the file's path.
 6. discovery: a ``**`` glob or a folder with symlink loops ends, warning about the loop;
    ``-i ''`` is refused; files skipped for their extension are named on stderr and in
    .run_log.json.
 7. config: a duplicated YAML key (key and both lines named); ``seed: null`` (any null);
    a key the method does not read is warned about, with the methods that read it.
 8. re-runs: the same command on a finished output is a no-op success; a changed output
    says what changed and how to redo; another run's output names the differences;
    publishing twice is a no-op.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import (
    invoke,
    make_rows,
    one_line_error,
    reorder,
    shard_files,
    to_lines,
    write_jsonl,
    write_parquet,
)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def cli(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI in a new process, in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "reorder_cli.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def one_input(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(make_rows(120, seed=3, prefix="a")))


# ------------------------------------------------------------------ 1. tasks from another folder


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_cluster_tasks_run_from_another_working_directory(tmp_path, config_file, kind):
    if kind == "jsonl":
        write_jsonl(tmp_path / "data" / "part-0.jsonl", to_lines(make_rows(150, 1, "a")))
        write_jsonl(tmp_path / "data" / "part-1.jsonl.gz", to_lines(make_rows(130, 2, "b")), "gzip")
        inputs = ["data/part-0.jsonl", "data/part-1.jsonl.gz"]
    else:
        write_parquet(tmp_path / "data" / "part-0.parquet", make_rows(150, 1, "a"), row_group_size=40)
        write_parquet(tmp_path / "data" / "part-1.parquet", make_rows(130, 2, "b"), row_group_size=40)
        inputs = ["data/part-0.parquet", "data/part-1.parquet"]
    args = ["run", config_file, "--method", "saw", *[x for i in inputs for x in ("-i", i)], "-q",
            "--set", "shard_rows=100"]
    assert cli(*args, "-o", "direct", cwd=tmp_path).returncode == 0
    plan = cli(*args, "-o", "tasks", "--plan-only", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    stored = json.loads((tmp_path / "tasks" / ".reorder" / "plan" / "plan.json").read_text())
    assert all(Path(f["path"]).is_absolute() for f in stored["files"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = Path("..") / "tasks"  # the output folder as the other process names it
    for t in range(len(stored["slices"])):
        done = cli("task", out, "scatter", t, cwd=elsewhere)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    for j in range(len(stored["shards"])):
        done = cli("task", out, "gather", j, cwd=elsewhere)
        assert done.returncode == 0, done.stderr
    assert cli(*args, "-o", "tasks", cwd=tmp_path).returncode == 0  # publish, from the planning folder
    assert snapshot(tmp_path / "tasks").keys() == snapshot(tmp_path / "direct").keys()
    for name in (".manifest.json", *[p.name for p in shard_files(tmp_path / "direct")]):
        assert (tmp_path / "tasks" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name


# ------------------------------------------------------------------ 2. one file under two names


@pytest.mark.parametrize("link", ["hard", "symlink", "folder-symlink"])
def test_the_same_file_under_two_names_is_refused(tmp_path, config_file, one_input, link):
    if link == "hard":
        other = tmp_path / "in" / "hard.jsonl"
        os.link(one_input, other)
        args = [one_input, other]
    elif link == "symlink":
        other = tmp_path / "elsewhere" / "soft.jsonl"
        other.parent.mkdir()
        other.symlink_to(one_input)
        args = [one_input, other]
    else:
        (tmp_path / "in-link").symlink_to(tmp_path / "in", target_is_directory=True)
        args = [tmp_path / "in", tmp_path / "in-link"]
    out = tmp_path / "out"
    msg = one_line_error(reorder(config_file, args, out, method="str", ok=False))
    assert str(args[1]) in msg and "same file" in msg and "each input row must appear once" in msg, msg
    assert str(args[0]) in msg or str(one_input) in msg, msg
    assert not out.exists()
    # positive twin: a copy is another file
    copy = tmp_path / "copy" / "a.jsonl"
    copy.parent.mkdir()
    shutil.copyfile(one_input, copy)
    reorder(config_file, [one_input, copy], out, method="str")
    assert json.loads((out / ".manifest.json").read_text())["totals"]["rows"] == 240


# ------------------------------------------------------------------ 3. output under a regular file


def test_an_output_under_a_regular_file_is_refused(tmp_path, config_file, one_input):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    msg = one_line_error(reorder(config_file, [one_input], afile / "sub", method="str", ok=False))
    assert f"{afile} is a file, not a folder" in msg, msg
    assert afile.read_text() == "keep me"
    # positive twin: under a folder, even one not there yet
    reorder(config_file, [one_input], tmp_path / "adir" / "sub", method="str")
    assert (tmp_path / "adir" / "sub" / ".manifest.json").exists()


def test_a_failed_run_removes_every_folder_it_created(tmp_path, config_file):
    bad = write_jsonl(tmp_path / "in" / "bad.jsonl", [b'{"score": "abc"}\n'])
    one_line_error(reorder(config_file, [bad], tmp_path / "new" / "deep" / "out", method="str", ok=False))
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------ 4. non-finite numbers


@pytest.mark.parametrize(("key", "value"), [
    ("folding_ratio", ".inf"), ("folding_ratio", ".nan"), ("temperature", "-.inf"), ("x_pct", ".nan"),
    ("seed", ".inf"), ("num_sections", ".inf"), ("window_size", ".nan"), ("memory_limit", ".inf"),
    ("shard_size", ".nan"), ("workers", ".inf"),
])
def test_a_non_finite_number_is_refused(tmp_path, one_input, key, value):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"score_field: score\n{key}: {value}\n")
    out = tmp_path / "out"
    msg = one_line_error(reorder(cfg, [one_input], out, method="str", ok=False))
    assert f"config key '{key}'" in msg, msg
    assert not out.exists()


def test_finite_numbers_still_work(tmp_path, one_input):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("score_field: score\nfolding_ratio: 0.1\nseed: 7\n")
    reorder(cfg, [one_input], tmp_path / "out", method="str")
    assert json.loads((tmp_path / "out" / ".manifest.json").read_text())["params"]["folding_ratio"] == 0.1


# ------------------------------------------------------------------ 5. a full disk while writing key files


def _small_fs_run(tmp_path: Path, size: str, run_args: list[str]) -> subprocess.CompletedProcess:
    """``reorder run`` with its output on a real tmpfs of ``size``, mounted in a private mount
    namespace (so nothing outlives the test); prints what the tmpfs holds afterwards."""
    small = tmp_path / "small"
    small.mkdir(exist_ok=True)
    cmd = " ".join(["mount -t tmpfs -o size=" + size, "tmpfs", str(small), "||", "exit 77;",
                    sys.executable, "-m", "reorder_cli.cli", *run_args, "; rc=$?; echo LEFT:; ls -A", str(small),
                    "; exit $rc"])
    return subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=300)


def test_a_full_disk_while_writing_key_files_says_so_and_names_the_file(tmp_path, config_file):
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare to mount a small tmpfs")
    rows = [{"id": f"r{i}", "score": (i * 7919 % 1000) / 1000, "t": "x" * 20} for i in range(60_000)]
    big = write_jsonl(tmp_path / "in" / "big.jsonl", [json.dumps(r).encode() + b"\n" for r in rows])
    args = ["run", str(config_file), "--method", "str", "-i", str(big), "-o", str(tmp_path / "small" / "out"), "-q",
            "--set", "memory_limit=20MB"]
    proc = _small_fs_run(tmp_path, "300k", args)
    if proc.returncode == 77:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    err, left = proc.stderr.strip(), proc.stdout.split("LEFT:")[1].split()
    assert proc.returncode == 2, (proc.returncode, err)
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert "No space left on device" in err and str(tmp_path / "small" / "out" / ".reorder") in err, err
    assert "requested and" not in err, err
    assert left == [], left  # nothing left on the small disk
    # positive twin: the same run on a tmpfs big enough
    ok = _small_fs_run(tmp_path, "64m", args)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split("LEFT:")[1].split() == ["out"]


# ------------------------------------------------------------------ 6. input discovery


def _loop_tree(root: Path) -> None:
    write_jsonl(root / "a" / "x.jsonl", to_lines(make_rows(50, 1, "x")))
    write_jsonl(root / "a" / "b" / "y.jsonl", to_lines(make_rows(60, 2, "y")))
    (root / "a" / "b" / "up").symlink_to("..", target_is_directory=True)
    (root / "a" / "b" / "top").symlink_to("../..", target_is_directory=True)


@pytest.mark.parametrize("arg", ["loop/**/*.jsonl", "loop"])
def test_symlink_loops_are_followed_once_and_reported(tmp_path, config_file, arg):
    _loop_tree(tmp_path / "loop")
    proc = cli("run", config_file, "--method", "str", "-i", arg, "-o", "out", "-q", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "loop/a/b/top" in proc.stderr and "read once" in proc.stderr, proc.stderr
    doc = json.loads((tmp_path / "out" / ".manifest.json").read_text())
    assert [i["path"] for i in doc["inputs"]] == ["../loop/a/b/y.jsonl", "../loop/a/x.jsonl"]
    # positive twin: a tree without loops gives the same output, and no warning
    (tmp_path / "loop" / "a" / "b" / "up").unlink()
    (tmp_path / "loop" / "a" / "b" / "top").unlink()
    plain = cli("run", config_file, "--method", "str", "-i", arg, "-o", "plain", "-q", cwd=tmp_path, timeout=60)
    assert plain.returncode == 0 and "warning" not in plain.stderr, plain.stderr
    assert snapshot(tmp_path / "plain").keys() == snapshot(tmp_path / "out").keys()
    for p in shard_files(tmp_path / "plain"):
        assert p.read_bytes() == (tmp_path / "out" / p.name).read_bytes()


def test_an_empty_input_argument_is_refused(tmp_path, config_file, one_input):
    write_jsonl(tmp_path / "stray.jsonl", to_lines(make_rows(10, 9, "s")))  # what '' would have read
    proc = cli("run", config_file, "--method", "str", "-i", "", "-o", "out", "-q", cwd=tmp_path)
    msg = one_line(proc)
    assert "input argument is empty" in msg, msg
    assert not (tmp_path / "out").exists()
    # positive twin: naming the folder reads it
    named = cli("run", config_file, "--method", "str", "-i", ".", "-o", "../out", "-q", cwd=tmp_path / "in")
    assert named.returncode == 0, named.stderr


def test_files_skipped_for_their_extension_are_named(tmp_path, config_file, one_input):
    for name in ("data.csv", "notes.txt", "more.tsv", "x.json", "y.arrow", "z.bin", "w.xml"):
        (one_input.parent / name).write_text("skip me")
    (one_input.parent / ".hidden").write_text("hidden files are not named")
    out = tmp_path / "out"
    result = reorder(config_file, [one_input.parent], out, method="str")
    assert "skipped 7 file(s) of an unknown extension" in result.stderr, result.stderr
    assert str(one_input.parent / "data.csv") in result.stderr and "and 2 more" in result.stderr, result.stderr
    assert ".hidden" not in result.stderr
    log = json.loads((out / ".run_log.json").read_text())
    assert log["skipped_inputs"]["count"] == 7
    assert str(one_input.parent / "data.csv") in log["skipped_inputs"]["files"]
    # positive twin: a folder of inputs only skips nothing and says nothing
    clean = reorder(config_file, [one_input], tmp_path / "clean", method="str")
    assert "skipped" not in clean.stderr
    assert json.loads((tmp_path / "clean" / ".run_log.json").read_text())["skipped_inputs"]["count"] == 0


# ------------------------------------------------------------------ 7. config mistakes


def test_a_duplicated_yaml_key_is_refused_naming_both_lines(tmp_path, one_input):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("score_field: score\nseed: 1\nnum_sections: 3\nseed: 2\n")
    msg = one_line_error(reorder(cfg, [one_input], tmp_path / "out", method="str", ok=False))
    assert str(cfg) in msg and "'seed'" in msg and "lines 2 and 4" in msg, msg
    assert not (tmp_path / "out").exists()
    cfg.write_text("score_field: score\nseed: 1\nnum_sections: 3\n")  # positive twin
    reorder(cfg, [one_input], tmp_path / "out", method="str")


@pytest.mark.parametrize("key", ["seed", "folding_ratio", "format"])
def test_a_null_value_is_refused(tmp_path, one_input, key):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"score_field: score\n{key}: null\n")
    msg = one_line_error(reorder(cfg, [one_input], tmp_path / "out", method="str", ok=False))
    assert f"config key '{key}'" in msg and "null" in msg, msg
    assert not (tmp_path / "out").exists()
    msg = one_line_error(reorder(tmp_path / "cfg.yaml", [one_input], tmp_path / "out", method="str",
                                 sets=[f"{key}=~"], ok=False))
    assert f"config key '{key}'" in msg, msg
    cfg.write_text("score_field: score\n")  # positive twin: leaving the key out takes its default
    reorder(cfg, [one_input], tmp_path / "out", method="str")
    assert json.loads((tmp_path / "out" / ".manifest.json").read_text())["seed"] == 42


def test_a_key_the_method_does_not_read_is_warned_about(tmp_path, config_file, one_input):
    result = reorder(config_file, [one_input], tmp_path / "saw", method="saw", sets=["zigzag_layer=7"])
    assert "warning: config key 'zigzag_layer' is not used by method saw; it is read by: zigzag" in result.stderr, \
        result.stderr
    # positive twins: the method that reads it, descriptive keys and tool keys say nothing
    cfg = tmp_path / "named.yaml"
    cfg.write_text("name: mine\ndescription: a run\nscore_field: score\nformat: jsonl\nworkers: 1\n")
    quiet = reorder(cfg, [one_input], tmp_path / "zig", method="zigzag", sets=["zigzag_layer=7"])
    assert "warning" not in quiet.stderr, quiet.stderr
    # a preview comparing methods warns only about keys none of them reads
    both = invoke("preview", config_file, "-i", one_input, "--compare", "saw,zigzag", "--set", "zigzag_layer=7",
                  "--set", "x_pct=10", "--json")
    assert both.exit_code == 0, both.output
    assert "'zigzag_layer'" not in both.stderr and "config key 'x_pct' is not used by method saw, zigzag" in \
        both.stderr, both.stderr


# ------------------------------------------------------------------ 8. re-runs


def test_the_same_command_again_is_a_no_op_success(tmp_path, config_file, one_input):
    out = tmp_path / "out"
    reorder(config_file, [one_input], out, method="str", sets=["shard_rows=50"])
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    again = reorder(config_file, [one_input], out, method="str", sets=["shard_rows=50"])
    assert "nothing to do" in again.stderr and "3 shard(s)" in again.stderr, again.stderr
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before


@pytest.mark.parametrize("change", ["missing", "altered", "resized", "extra"])
def test_a_changed_output_says_what_changed_and_how_to_redo(tmp_path, config_file, one_input, change):
    out = tmp_path / "out"
    sets = ["shard_rows=50", "format=jsonl"]
    reorder(config_file, [one_input], out, method="str", sets=sets)
    pristine = snapshot(out)
    shard = out / "00001.jsonl"
    if change == "missing":
        shard.unlink()
        what = "00001.jsonl is missing"
    elif change == "altered":
        data = bytearray(shard.read_bytes())
        data[5] = ord("X") if data[5] != ord("X") else ord("Y")
        shard.write_bytes(bytes(data))
        what = "00001.jsonl was altered"
    elif change == "resized":
        shard.write_bytes(shard.read_bytes() + b"\n")
        what = "00001.jsonl has"
    else:
        (out / "00007.jsonl").write_bytes(b"")
        what = "00007.jsonl is not in the manifest"
    changed = snapshot(out)
    msg = one_line_error(reorder(config_file, [one_input], out, method="str", sets=sets, ok=False))
    assert str(out) in msg and what in msg and "--overwrite" in msg, msg
    assert snapshot(out) == changed  # refusing touches nothing
    reorder(config_file, [one_input], out, method="str", sets=sets, extra=["--overwrite"])
    redone = snapshot(out)
    redone.pop(".run_log.json"), pristine.pop(".run_log.json")
    assert redone == pristine


def test_another_runs_output_names_the_differences(tmp_path, config_file, one_input):
    out = tmp_path / "out"
    reorder(config_file, [one_input], out, method="str")
    before = snapshot(out)
    msg = one_line_error(reorder(config_file, [one_input], out, method="str", sets=["seed=7"], ok=False))
    assert "another run" in msg and "seed 42 -> 7" in msg and "--overwrite" in msg, msg
    assert snapshot(out) == before
    one_input.write_bytes(one_input.read_bytes() + b'{"id": "new", "score": 1}\n')
    msg = one_line_error(reorder(config_file, [one_input], out, method="str", ok=False))
    assert f"input changed: {one_input.resolve()}" in msg, msg


def test_publishing_twice_is_a_no_op(tmp_path, config_file, one_input):
    out = tmp_path / "out"
    sets = ["rewrite=out-of-core", "shard_rows=40"]
    reorder(config_file, [one_input], out, method="saw", sets=sets, extra=["--plan-only"])
    status = invoke("task", out).output
    for phase in ("scatter", "gather"):
        total = int(status.split(f"{phase}: 0 of ")[1].split()[0])
        for i in range(total):
            assert invoke("task", out, phase, i).exit_code == 0
    reorder(config_file, [one_input], out, method="saw", sets=sets)
    published = snapshot(out)
    again = reorder(config_file, [one_input], out, method="saw", sets=sets)
    assert "nothing to do" in again.stderr, again.stderr
    assert snapshot(out) == published
