"""``reorder status OUTPUT``: each stage's done / pending counts, failed tasks with their logs, on a
planned run, a run part-way through, a finished run, and a folder that holds no run."""

from __future__ import annotations

import json

from reorder_cli.workdir import WorkDir

from .conftest import invoke, one_line_error, reorder

OOC = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150"]


def _status(out) -> dict:
    result = invoke("status", out, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["data"]


def test_status_follows_a_planned_run_task_by_task_to_the_end(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    args = (config_file, jsonl_corpus.files, out)
    reorder(*args, method="saw", sets=OOC, extra=["--plan-only"])
    st = _status(out)["stages"]
    # planned in one process: no tasks, not shown (as `reorder task` lists them); no Slurm submit job
    assert list(st) == ["scatter", "gather", "publish"], list(st)
    listing = invoke("task", out).stdout
    assert [line.split(":")[0] for line in listing.splitlines()] == ["scatter", "gather"], listing
    scatters, gathers = st["scatter"]["tasks"], st["gather"]["tasks"]
    assert scatters == 3 and gathers == 8
    assert st["scatter"]["pending"] == 3 and st["gather"]["state"] == "pending" and st["publish"]["done"] == 0
    assert invoke("task", out, "scatter", 1).exit_code == 0
    st = _status(out)["stages"]
    assert (st["scatter"]["done"], st["scatter"]["pending"]) == (1, 2)
    text = invoke("status", out).stdout
    assert "scatter pending : 1 of 3 done, 2 pending" in text, text
    for t in range(scatters):
        invoke("task", out, "scatter", t)
    for j in range(gathers):
        invoke("task", out, "gather", j)
    st = _status(out)["stages"]
    assert st["scatter"]["state"] == st["gather"]["state"] == "done" and st["publish"]["state"] == "pending"
    reorder(*args, method="saw", sets=OOC)
    report = _status(out)
    assert report["finished"] and report["stages"]["gather"]["done"] == gathers
    assert "finished: " in invoke("status", out).stdout


def test_a_failed_task_is_named_with_its_log_until_it_finishes(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--plan-only"])
    work = WorkDir(out)
    work.logs.mkdir(exist_ok=True)
    work.failed("scatter", 2).touch()  # what a cluster executor's job script leaves when the task fails
    st = _status(out)["stages"]["scatter"]
    assert st["state"] == "failed" and st["failed"] == [{"index": 2, "log": str(work.log("scatter", 2))}]
    assert f"failed: scatter 2  log: {work.log('scatter', 2)}" in invoke("status", out).stdout
    assert invoke("task", out, "scatter", 2).exit_code == 0  # finished since: no longer failed
    assert _status(out)["stages"]["scatter"]["failed"] == []


def test_status_of_a_folder_without_a_run_is_one_line(tmp_path):
    assert "no run here" in one_line_error(invoke("status", tmp_path))
    assert "no run here" in one_line_error(invoke("status", tmp_path / "missing"))
    assert not (tmp_path / "missing").exists()


def test_a_run_kept_with_keep_work_is_finished_and_an_overwrite_in_progress_is_not(tmp_path, config_file,
                                                                                    jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--keep-work"])
    assert (out / ".reorder").is_dir() and _status(out)["finished"]
    # negative control: another run planned over it with --overwrite; the old manifest is not its output
    reorder(config_file, jsonl_corpus.files, out, method="str", sets=OOC,
            extra=["--plan-only", "--overwrite", "--restart"])
    report = _status(out)
    assert not report["finished"] and report["stages"]["publish"]["state"] == "pending"


def test_a_started_task_is_running_while_its_process_lives(tmp_path, config_file, jsonl_corpus):
    """A real ``reorder task`` held by a fault pause is running (its ``.started`` marker names a live process
    here); killed with SIGKILL it cannot remove the marker, and is pending again (the process is gone)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--plan-only"])
    work = WorkDir(out)
    flag = tmp_path / "paused"
    env = {**os.environ, "REORDER_PAUSE_AT": "scatter", "REORDER_PAUSE_FLAG": str(flag)}
    proc = subprocess.Popen([sys.executable, "-m", "reorder_cli.cli", "task", str(out), "scatter", "1"], env=env)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        st = _status(out)["stages"]["scatter"]
        assert st["state"] == "running" and st["running"] == [{"index": 1, "log": str(work.log("scatter", 1))}]
        assert (st["done"], st["pending"]) == (0, 2)
        text = invoke("status", out).stdout
        assert "scatter running : 0 of 3 done, 1 running, 2 pending" in text, text
        assert f"running: scatter 1  log: {work.log('scatter', 1)}" in text, text
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert work.started("scatter", 1).exists()  # a killed task leaves its marker ...
    st = _status(out)["stages"]["scatter"]  # ... but it is not believed: the process is gone
    assert st["state"] == "pending" and st["running"] == [] and st["pending"] == 3
    # a task that ends removes its marker, finished or failed
    assert invoke("task", out, "scatter", 1).exit_code == 0
    assert not work.started("scatter", 1).exists()
    assert _status(out)["stages"]["scatter"]["done"] == 1


def test_markers_of_other_hosts_are_believed_only_without_a_slurm_queue(tmp_path, config_file, jsonl_corpus):
    """A marker written on another host (a Ray worker elsewhere) cannot be checked from here: the task is
    shown running on that host. A finished task is never running, whatever its marker says."""
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--plan-only"])
    work = WorkDir(out)
    work.logs.mkdir(exist_ok=True)
    work.started("scatter", 0).write_text(json.dumps({"host": "node-17.example", "pid": 1, "started": 0}))
    work.started("scatter", 2).write_text(json.dumps({"host": "node-18.example", "pid": 1, "started": 0}))
    assert invoke("task", out, "scatter", 2).exit_code == 0  # its marker is stale: it finished since
    st = _status(out)["stages"]["scatter"]
    assert st["running"] == [{"index": 0, "log": str(work.log("scatter", 0)), "host": "node-17.example"}]
    assert (st["state"], st["done"], st["pending"]) == ("running", 1, 1)
    assert "running: scatter 0  on node-17.example" in invoke("status", out).stdout


def test_status_follows_a_run_planned_as_tasks_stage_by_stage(tmp_path, config_file, jsonl_corpus):
    """A run prepared for a cluster (here: a Slurm dry run) starts at the keys stage; each stage's size is
    unknown (tasks: null) until the stage before it has finished, and `reorder task` runs any stage."""
    from reorder_cli.stages import STAGES

    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--executor", "slurm", "--dry-run"])
    st = _status(out)["stages"]
    assert (st["keys"]["tasks"], st["keys"]["pending"], st["split"]["tasks"]) == (3, 3, 1)
    assert all(st[s]["tasks"] is None and st[s]["state"] == "pending" for s in ("sort", "place", "scatter", "gather"))
    assert "sort: not known yet" in invoke("task", out).stdout
    early = invoke("task", out, "split", 0)  # negative control: a stage before its predecessor finished
    assert early.exit_code == 2 and "keys task 0 has not finished (3 pending)" in one_line_error(early)
    for stage in STAGES:
        if stage == "combine" and stage not in _status(out)["stages"]:
            continue  # K = 1 (3 scatter tasks): no combine tasks, not shown
        n = _status(out)["stages"][stage]["tasks"]
        assert n is not None, stage
        for i in range(n):
            assert invoke("task", out, stage, i).exit_code == 0, (stage, i)
        assert _status(out)["stages"][stage]["state"] == "done", stage
    again = invoke("task", out, "sort", 0)
    assert again.exit_code == 0 and "already finished" in again.stderr  # a finished task is skipped
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC)  # publishes
    assert _status(out)["finished"]
