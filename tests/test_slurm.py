"""``--executor slurm`` against a real one-node Slurm (``scripts/slurm-local.sh start``, as root; CI starts
it): the bytes equal a local run's; a cancelled array element stops its dependents, ``--wait`` and
``reorder status`` name it, and the same command resubmits only what is unfinished and ends with the
same bytes; a script Slurm rejects is one line. Without a running Slurm these tests are skipped (CI
counts a skip as a failure)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reorder_cli.workdir import WorkDir

from .conftest import invoke, one_line_error, output_hashes, reorder, shard_files

pytestmark = pytest.mark.slurm

OOC = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150", "slurm.mem=1G"]


def _slurm_up() -> str | None:
    """None when a Slurm cluster answers, else why not."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (apt-get install -y slurm-wlm munge; bash scripts/slurm-local.sh start, as root)"
    deadline = time.monotonic() + 60  # a node still completing the jobs of the test before is up
    while True:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
        states = {state.rstrip("*~#!%$@^-+") for state in proc.stdout.split()}
        if proc.returncode == 0 and {"idle", "mixed", "allocated", "completing"} & states:
            return None
        if proc.returncode != 0 or time.monotonic() > deadline:  # no controller answers: no wait
            return (f"Slurm is installed but no node is up (bash scripts/slurm-local.sh start): "
                    f"{proc.stderr.strip() or ', '.join(sorted(states))}")
        time.sleep(1)


@pytest.fixture(autouse=True)
def _needs_slurm():
    why = _slurm_up()
    if why:
        pytest.skip(why)


def _cli(cwd: Path, *args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reorder_cli.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def _run_args(config_file: Path, files, out: str) -> list:
    args = ["run", config_file, "--method", "saw", "--output", out]
    for f in files:
        args += ["--input", f]
    for s in OOC:
        args += ["--set", s]
    return args


def _gone(ids: list[str], timeout: float = 120) -> None:
    """Wait until Slurm holds none of ``ids`` pending or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = subprocess.run(["squeue", "-h", "-o", "%F", "-t", "PD,R,CG,CF,S"], capture_output=True, text=True)
        if not set(proc.stdout.split()) & set(ids):
            return
        time.sleep(0.5)
    raise AssertionError(f"jobs {ids} still in the queue")


def test_a_slurm_run_writes_the_bytes_of_a_local_run(tmp_path, config_file, jsonl_corpus, local):
    args = _run_args(config_file, jsonl_corpus.files, "out")
    done = _cli(tmp_path, *args, "--executor", "slurm", "--wait")
    assert done.returncode == 0, done.stderr
    ids = [line.split()[0] for line in done.stdout.splitlines()]
    # the first wave: the keys array, the split job and the submit job that submits the next wave
    assert len(ids) == 3 and all(i.isdigit() for i in ids), done.stdout
    assert output_hashes(tmp_path / "out") == local
    report = json.loads(invoke("status", tmp_path / "out", "--json").stdout)["data"]
    assert report["finished"] and report["stages"]["publish"]["state"] == "done"
    again = _cli(tmp_path, *args, "--executor", "slurm", "--wait")
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert again.stdout == ""  # nothing submitted


def test_a_cancelled_task_stops_its_dependents_and_a_resubmit_finishes_it(tmp_path, config_file, jsonl_corpus,
                                                                         local):
    out = tmp_path / "out"
    work = WorkDir(out)
    args = _run_args(config_file, jsonl_corpus.files, "out")
    env = {**os.environ, "REORDER_PAUSE_AT": "scatter", "REORDER_PAUSE_SECONDS": "5",
           "REORDER_PAUSE_FLAG": str(tmp_path / "paused")}
    waiting = subprocess.Popen([sys.executable, "-m", "reorder_cli.cli", *map(str, args), "--executor", "slurm",
                                "--wait"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while not (work.log("scatter", 1).exists() and (tmp_path / "paused").exists()):
        assert time.monotonic() < deadline and waiting.poll() is None, waiting.communicate()
        time.sleep(0.2)
    submitted = json.loads((work.slurm / "jobs.json").read_text())  # the three waves' jobs
    ids = submitted["jobs"]
    assert [a["stage"] for a in submitted["arrays"]] == ["keys", "split", "submit", "sort", "place", "layout",
                                                         "submit", "scatter", "gather", "publish"]
    scatter = next(a for a in submitted["arrays"] if a["stage"] == "scatter")
    subprocess.run(["scancel", f"{scatter['id']}_{scatter['indices'].index(1)}"], check=True)  # task 1
    stdout, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 1, (stdout, stderr)
    assert f"scatter task 1 failed; its log: {work.log('scatter', 1)}" in stderr, stderr
    _gone(ids)
    assert work.count_finished("gather") == 0 and not list(work.logs.glob("gather-*"))  # dependents never ran
    assert not (out / ".manifest.json").exists()
    report = json.loads(invoke("status", out, "--json").stdout)["data"]["stages"]
    assert report["scatter"]["failed"] == [{"index": 1, "log": str(work.log("scatter", 1))}]
    assert report["scatter"]["done"] == 2 and report["gather"]["done"] == 0
    assert "cancelled" in work.log("scatter", 1).read_text()
    status_text = invoke("status", out).stdout
    assert f"failed: scatter 1  log: {work.log('scatter', 1)}" in status_text, status_text

    again = _cli(tmp_path, *args, "--executor", "slurm", "--wait")
    assert again.returncode == 0, again.stderr
    # only the unfinished task is resubmitted
    assert again.stdout.splitlines()[0].split()[1:4] == ["scatter", "1", "task(s)"], again.stdout
    assert output_hashes(out) == local


def test_a_script_slurm_rejects_is_one_line(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    bad = reorder(config_file, jsonl_corpus.files, out, method="saw", sets=[*OOC, "slurm.partition=no-such-part"],
                  extra=["--executor", "slurm"], ok=False)
    line = one_line_error(bad)
    assert "keys.sh: sbatch refused it:" in line and "partition" in line.lower(), line
    assert not (WorkDir(out).slurm / "jobs.json").exists()


PROBE = '''import atexit, os, resource, sys


def _peak():
    folder = os.environ.get("REORDER_PEAK_DIR")
    if folder and "--executor" not in sys.argv:  # the jobs' processes, not the command that submits them
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with open(os.path.join(folder, f"{os.getpid()}.txt"), "w") as f:
            f.write(f"{kb} {' '.join(sys.argv[1:])}")


atexit.register(_peak)
'''


def test_each_slurm_task_declares_memory_limit_plus_the_slack_and_stays_within_it(tmp_path, config_file,
                                                                                  jsonl_corpus, local, monkeypatch):
    """A budget at this run's floor (no test hook below it): every job declares memory_limit + 64 MB as
    ``--mem``, and the peak RSS of every job's ``reorder`` process (a ``sitecustomize`` on PYTHONPATH records
    its ``ru_maxrss`` at exit; Slurm exports the environment to the jobs) stays under it."""
    monkeypatch.delenv("REORDER_TEST_BELOW_FLOOR")
    probe, peaks = tmp_path / "probe", tmp_path / "peaks"
    probe.mkdir()
    peaks.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": str(probe), "REORDER_PEAK_DIR": str(peaks)}
    args = ["run", config_file, "--method", "saw", "--output", "out", "--set", "rewrite=out-of-core", "--set",
            "shard_rows=150", "--memory-limit", "280MB", "--keep-work",
            *[a for f in jsonl_corpus.files for a in ("--input", f)]]
    done = _cli(tmp_path, *args, "--executor", "slurm", "--wait", env=env)
    assert done.returncode == 0, done.stderr
    assert output_hashes(tmp_path / "out") == local  # the budget changes no byte
    declared = 332  # MiB: 280e6 B = 267.03 MiB, + 64, rounded up
    scripts = sorted(WorkDir(tmp_path / "out").slurm.glob("*.sh"))
    assert len(scripts) == 9 and all(f"#SBATCH --mem={declared}M\n" in p.read_text() for p in scripts)
    arrays = json.loads((WorkDir(tmp_path / "out").slurm / "jobs.json").read_text())["arrays"]
    n_tasks = sum(len(a["indices"]) for a in arrays if a["stage"] not in ("submit", "publish"))
    found = [p.read_text().split(" ", 1) for p in peaks.glob("*.txt")]
    tasks = [(int(kb), argv) for kb, argv in found]
    kinds = [argv.split()[0] for _, argv in tasks]
    assert n_tasks >= 3 + 1 + 1 + 1 + 1 + 3 + 8  # keys, split, sort, place, layout, scatter, gather
    assert (kinds.count("task"), kinds.count("run")) == (n_tasks, 1), tasks  # every task, the publish
    worst = max(kb for kb, _ in tasks) / 1024
    assert worst < declared, f"peak {worst:.0f} MiB of {declared} MiB declared: {tasks}"
    assert min(kb for kb, _ in tasks) > 50 * 1024  # the probe measured the processes (the libraries alone weigh more)


def test_running_tasks_then_a_cancelled_chain_leaves_nothing_published_and_the_command_finishes(
        tmp_path, config_file, jsonl_corpus, local):
    """Gather tasks held by a fault pause are *running* in ``reorder status`` (Slurm's queue says so: their
    ``.started`` markers removed, they still are). Then every job of the chain is cancelled (scancel of the ids
    in jobs.json): no manifest and no shard under its final name, ``reorder status`` lists what is left, and the
    same command finishes with the bytes of a local run."""
    out = tmp_path / "out"
    work = WorkDir(out)
    args = _run_args(config_file, jsonl_corpus.files, "out")
    env = {**os.environ, "REORDER_PAUSE_AT": "gather", "REORDER_PAUSE_SECONDS": "60",
           "REORDER_PAUSE_FLAG": str(tmp_path / "paused")}
    submitted = _cli(tmp_path, *args, "--executor", "slurm", env=env)
    assert submitted.returncode == 0, submitted.stderr
    ids = json.loads((work.slurm / "jobs.json").read_text())["jobs"]
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "paused").exists():
            assert time.monotonic() < deadline, invoke("status", out).stdout
            time.sleep(0.2)
        ids = json.loads((work.slurm / "jobs.json").read_text())["jobs"]  # every wave's, the last included
        report = json.loads(invoke("status", out, "--json").stdout)["data"]["stages"]
        assert report["scatter"]["state"] == "done" and report["gather"]["state"] == "running", report
        running = report["gather"]["running"]
        assert running and all(work.log("gather", t["index"]).exists() for t in running), running
        assert report["gather"]["pending"] == 8 - len(running)
        for marker in work.logs.glob("*.started"):
            marker.unlink()
        again = json.loads(invoke("status", out, "--json").stdout)["data"]["stages"]["gather"]["running"]
        assert again == running  # from squeue alone
        assert "gather  running : 0 of 8 done" in invoke("status", out).stdout
    finally:
        subprocess.run(["scancel", *ids], check=True)  # the whole chain: only this test's job ids
    _gone(ids)
    assert not (out / ".manifest.json").exists() and shard_files(out) == []  # nothing half-published
    report = json.loads(invoke("status", out, "--json").stdout)["data"]
    assert not report["finished"]
    gather = report["stages"]["gather"]
    assert gather["running"] == [] and gather["done"] == 0 and gather["pending"] == 8
    assert {t["index"] for t in gather["failed"]} == {t["index"] for t in running}  # the cancelled ones, named
    assert report["stages"]["publish"]["state"] == "pending"
    text = invoke("status", out).stdout
    assert "gather  failed" in text and f"failed: gather {running[0]['index']}  log:" in text, text

    finished = _cli(tmp_path, *args, "--executor", "slurm", "--wait")
    assert finished.returncode == 0, finished.stderr
    assert [line.split()[1:3] for line in finished.stdout.splitlines()] == [["gather", "8"], ["publish", "1"]]
    assert output_hashes(out) == local


def test_bad_input_fails_its_keys_task_and_wait_names_it(tmp_path, config_file, jsonl_corpus):
    """The inputs are read on the cluster, by the keys tasks: a file cut mid-record fails its own task;
    `--wait` exits 1 naming it and its log, which holds the one-line error (file and line); the later
    waves are never submitted and nothing is published."""
    bad = tmp_path / "in" / "bad.jsonl"
    bad.write_text('{"id": "x", "score": 1}\n{"id": "y", "score": \n')
    out = tmp_path / "out"
    work = WorkDir(out)
    args = _run_args(config_file, [*jsonl_corpus.files, bad], "out")
    done = _cli(tmp_path, *args, "--executor", "slurm", "--wait")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"keys task 3 failed; its log: {work.log('keys', 3)}" in done.stderr, done.stderr
    assert "bad.jsonl: line 2" in work.log("keys", 3).read_text()
    arrays = json.loads((work.slurm / "jobs.json").read_text())["arrays"]
    _gone([a["id"] for a in arrays])
    assert [a["stage"] for a in arrays] == ["keys", "split", "submit"]  # the next waves never came
    assert sorted(p.name for p in out.iterdir()) == [".reorder"]  # no shard, no manifest
    report = json.loads(invoke("status", out, "--json").stdout)["data"]["stages"]
    assert report["keys"]["failed"] == [{"index": 3, "log": str(work.log("keys", 3))}]
    assert report["keys"]["done"] == 3
