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

from .conftest import invoke, one_line_error, output_hashes, reorder

pytestmark = pytest.mark.slurm

OOC = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150", "slurm.mem=1G"]


def _slurm_up() -> str | None:
    """None when a Slurm cluster answers, else why not."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (apt-get install -y slurm-wlm munge; bash scripts/slurm-local.sh start, as root)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not {"idle", "mixed", "allocated"} & set(proc.stdout.split()):
        return f"Slurm is installed but no node is up (bash scripts/slurm-local.sh start): {proc.stderr.strip()}"
    return None


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
    assert len(ids) == 3 and all(i.isdigit() for i in ids), done.stdout  # scatter array, gather array, publish
    assert output_hashes(tmp_path / "out") == local
    report = json.loads(invoke("status", tmp_path / "out", "--json").stdout)
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
    ids = json.loads((work.slurm / "jobs.json").read_text())["jobs"]
    subprocess.run(["scancel", f"{ids[0]}_1"], check=True)  # element 1 of the scatter array: task 1
    stdout, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 1, (stdout, stderr)
    assert f"scatter task 1 failed; its log: {work.log('scatter', 1)}" in stderr, stderr
    _gone(ids)
    assert work.count_finished("gather") == 0 and not list(work.logs.glob("gather-*"))  # dependents never ran
    assert not (out / ".manifest.json").exists()
    report = json.loads(invoke("status", out, "--json").stdout)["stages"]
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
    assert "scatter.sh: sbatch refused it:" in line and "partition" in line.lower(), line
    assert not (WorkDir(out).slurm / "jobs.json").exists()
