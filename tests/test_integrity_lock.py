"""One run of an output at a time (reorder_cli/run_lock.py), and the waits that must end.

Two runs of one output at once: one runs, the other is refused in one line naming the holder (no crash,
no stale marker, the output intact); a lock left by a dead process is taken over, one held elsewhere is
refused; the lock on a store (a moto S3: ``If-None-Match: *``, ``If-Match``); ``run_parallel`` stops at the
first failure; ``--wait`` with a failing ``squeue`` retries then stops in one line, and ``--wait-timeout``
ends it; a re-submission while the run's Slurm jobs are queued submits nothing (a real Slurm, marked)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reorder_cli.util import store
from reorder_cli.util.parallel import run_parallel
from reorder_cli.workdir import WorkDir, run_folder

from .conftest import invoke, one_line_error, output_hashes, reorder

SETS = ["shard_rows=150"]


def _args(config_file: Path, files, out: Path, *extra) -> list[str]:
    args = ["run", str(config_file), "--method", "saw", "--output", str(out), "-q"]
    for f in files:
        args += ["--input", str(f)]
    for s in SETS:
        args += ["--set", s]
    return args + list(extra)


def _start(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reorder_cli.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _paused(tmp_path: Path, seconds: float) -> tuple[dict, Path]:
    """The environment of a run that stops at ``keys`` (its lock held) for ``seconds``, and its flag file."""
    flag = tmp_path / "paused"
    return {**os.environ, "REORDER_PAUSE_AT": "keys", "REORDER_PAUSE_SECONDS": str(seconds),
            "REORDER_PAUSE_FLAG": str(flag)}, flag


def _until(flag: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def reference(tmp_path, config_file, jsonl_corpus) -> dict[str, str]:
    reorder(config_file, jsonl_corpus.files, tmp_path / "reference", method="saw", sets=SETS)
    return output_hashes(tmp_path / "reference")


# ------------------------------------------------------------------ two runs at once


def test_a_second_run_while_one_runs_is_refused_naming_the_holder(tmp_path, config_file, jsonl_corpus, reference):
    out = tmp_path / "out"
    env, flag = _paused(tmp_path, 6)
    first = _start(_args(config_file, jsonl_corpus.files, out), tmp_path, env)
    _until(flag, first)
    second = reorder(config_file, jsonl_corpus.files, out, method="saw", sets=SETS, ok=False)
    line = one_line_error(second)
    lock = out / ".reorder" / "lock"
    assert f"{lock}: another reorder run of this output is in progress: reorder run (pid {first.pid} on host " \
           f"{socket.gethostname()}" in line and f"delete {lock}" in line, line
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert output_hashes(out) == reference  # the refused run touched nothing
    assert not (out / ".reorder").exists()  # no stale marker, no lock


def test_identical_runs_started_together_never_crash(tmp_path, config_file, jsonl_corpus, reference):
    """The issue's race: two identical commands at once (twice). Each either runs or is refused by the lock:
    no TypeError, no other error, no stale ``done/`` marker; the output is the reference."""
    for trial in range(2):  # a loop over trials
        out = tmp_path / f"out{trial}"
        procs = [_start(_args(config_file, jsonl_corpus.files, out), tmp_path) for _ in range(2)]
        results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
        assert sorted(code for code, _ in results)[0] == 0, results  # one of them ran
        for code, err in results:
            assert "Traceback" not in err and "TypeError" not in err, err
            assert code == 0 or (code == 2 and "another reorder run of this output is in progress" in err
                                 and err.count("\n") == 1), results
        assert output_hashes(out) == reference
        assert not (out / ".reorder").exists()


# ------------------------------------------------------------------ stale locks


def _write_lock(where: Path, holder: dict) -> None:
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(json.dumps({"started": time.time(), "command": "reorder run", **holder}))


@pytest.mark.parametrize("gone", ["dead", "reused"])
def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, config_file, jsonl_corpus, reference, gone):
    """A run killed with -9 left its lock: its pid is gone, or is another process now (this one, whose start
    time differs from the one recorded)."""
    out = tmp_path / "out"
    lock = out / ".reorder" / "lock"
    holder = {"pid": _dead_pid()} if gone == "dead" else {"pid": os.getpid(), "pid_start": "1"}
    _write_lock(lock, {"host": socket.gethostname(), **holder})
    env, flag = _paused(tmp_path, 1)
    run = _start(_args(config_file, jsonl_corpus.files, out), tmp_path, env)
    _until(flag, run)
    assert json.loads(lock.read_text())["pid"] == run.pid  # taken over: the lock names the new run
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert output_hashes(out) == reference and not (out / ".reorder").exists()


def test_a_lock_held_on_another_host_is_refused_and_kept(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    lock = out / ".reorder" / "lock"
    _write_lock(lock, {"host": "node-17", "pid": 4242})
    line = one_line_error(reorder(config_file, jsonl_corpus.files, out, method="saw", sets=SETS, ok=False))
    assert "reorder run (pid 4242 on host node-17" in line and f"if that process is gone, delete {lock}" in line
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [".reorder", ".reorder/lock"]
    lock.unlink()  # what the message says
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=SETS)
    assert not (out / ".reorder").exists()


# ------------------------------------------------------------------ the lock on a store


def test_the_lock_on_a_store(tmp_path, s3_server, config_file, jsonl_corpus, reference):
    from .test_s3_output import s3_config

    bucket = s3_server.bucket("lock-test")
    cfg = s3_config(tmp_path, s3_server.options())
    out, work_dir = tmp_path / "out", f"s3://{bucket}/w"
    store.configure(s3_server.options())
    lock = store.URL(f"{work_dir}/{run_folder(out)}/lock")
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "command": "reorder run"}
    store.write_bytes(lock, json.dumps(me).encode())  # held by a live process
    sets = [*SETS, f"work_dir={work_dir}"]
    line = one_line_error(reorder(cfg, jsonl_corpus.files, out, method="saw", sets=sets, ok=False))
    assert f"{lock}: another reorder run of this output is in progress: reorder run (pid {os.getpid()}" in line
    assert not out.exists()  # refused before anything was written
    store.write_bytes(lock, json.dumps({**me, "pid": _dead_pid()}).encode())  # its holder died
    reorder(cfg, jsonl_corpus.files, out, method="saw", sets=sets)
    assert output_hashes(out) == reference
    assert store.read_or_none(lock) is None  # released
    assert store.create_only(lock, b"{}") and not store.create_only(lock, b"{}")  # If-None-Match: *


# ------------------------------------------------------------------ run_parallel


def test_run_parallel_stops_at_the_first_failure():
    """Item 1 fails while item 0 is still busy: nothing queued starts after it, and the call returns as soon as
    item 0 is over (not after the queue)."""
    started = []

    def task(i: int) -> int:
        started.append(i)
        if i == 1:
            raise ValueError("item 1 is bad")
        time.sleep(1.0 if i == 0 else 0.5)
        return i

    t0 = time.monotonic()
    with pytest.raises(ValueError, match="item 1 is bad"):
        run_parallel(task, list(range(8)), 2)
    assert sorted(started) == [0, 1]
    assert time.monotonic() - t0 < 1.4
    assert run_parallel(lambda i: i * i, list(range(5)), 2) == [0, 1, 4, 9, 16]  # the twin: no failure


# ------------------------------------------------------------------ --wait (a fake Slurm on PATH)

FAKE = {
    "sbatch": 'n=$(cat "$D/next" 2>/dev/null || echo 7001); echo $((n + 1)) > "$D/next"; echo "$n" >> "$D/ids"; '
              'echo "$n"',
    "scontrol": "exit 0",
}


def _fake_slurm(tmp_path: Path, squeue: str) -> dict:
    """A PATH whose sbatch hands out ids (never running anything), scontrol says yes, and squeue is ``squeue``."""
    folder = tmp_path / "fake-slurm"
    folder.mkdir()
    for name, body in {**FAKE, "squeue": squeue}.items():
        (folder / name).write_text(f'#!/bin/bash\nD={folder}\n{body}\n')
        (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


def _slurm_wait(tmp_path, config_file, files, env, *extra, timeout=120) -> subprocess.CompletedProcess:
    args = _args(config_file, files, tmp_path / "out", "--executor", "slurm", "--wait", *extra)
    return subprocess.run([sys.executable, "-m", "reorder_cli.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_wait_with_a_failing_squeue_retries_then_stops_in_one_line(tmp_path, config_file, jsonl_corpus):
    env = _fake_slurm(tmp_path, 'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1')
    t0 = time.monotonic()
    done = _slurm_wait(tmp_path, config_file, jsonl_corpus.files, env, timeout=90)
    assert done.returncode == 2, (done.stdout, done.stderr)
    err = done.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and "Traceback" not in err, err
    assert "--wait stopped: squeue failed 3 time(s): slurm_load_jobs error: Unable to contact slurm controller" \
           in err and "7001, 7002, 7003" in err, err
    assert time.monotonic() - t0 >= 4  # asked three times, two seconds apart


def test_wait_timeout_ends_the_wait_in_one_line(tmp_path, config_file, jsonl_corpus):
    env = _fake_slurm(tmp_path, 'cat "$D/ids"')  # the jobs stay queued for ever
    t0 = time.monotonic()
    done = _slurm_wait(tmp_path, config_file, jsonl_corpus.files, env, "--wait-timeout", "3")
    assert done.returncode == 2, (done.stdout, done.stderr)
    err = done.stderr.strip()
    assert err.count("\n") == 0 and "not published within --wait-timeout (3 s)" in err and "7001" in err, err
    assert 3 <= time.monotonic() - t0 < 60
    bad = invoke(*_args(config_file, jsonl_corpus.files, tmp_path / "o2", "--executor", "slurm", "--wait",
                        "--wait-timeout", "soon"))
    assert "--wait-timeout: expected a duration like 90, 30m or 2h, got 'soon'" in one_line_error(bad)


# ------------------------------------------------------------------ a real Slurm


@pytest.mark.slurm
def test_a_resubmission_while_the_jobs_are_queued_submits_nothing(tmp_path, config_file, jsonl_corpus):
    from .test_slurm import _gone, _slurm_up

    why = _slurm_up()
    if why:
        pytest.skip(why)
    out = tmp_path / "out"
    work = WorkDir(out)
    args = _args(config_file, jsonl_corpus.files, out, "--set", "slurm.mem=1G", "--executor", "slurm")
    cli = [sys.executable, "-m", "reorder_cli.cli"]
    first = subprocess.run([*cli, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    ids = json.loads((work.slurm / "jobs.json").read_text())["jobs"]
    try:
        subprocess.run(["scontrol", "hold", ",".join(ids)], capture_output=True, check=False)  # pending ones wait
        again = subprocess.run([*cli, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert again.stdout == ""  # no job id: nothing submitted
        assert "queued" in again.stderr and "nothing submitted" in again.stderr, again.stderr
        assert json.loads((work.slurm / "jobs.json").read_text())["jobs"] == ids
        local = reorder(config_file, jsonl_corpus.files, out, method="saw", sets=SETS, ok=False)
        line = one_line_error(local)
        assert "Slurm jobs" in line and "are queued or running" in line and "scancel" in line, line
    finally:
        subprocess.run(["scancel", *ids], check=False)
    _gone(ids)
    from reorder_cli import run_lock

    lock = out / ".reorder" / "lock"
    assert run_lock.judge(json.loads(lock.read_text()), lock) == "gone"  # the chain's lock is stale now
