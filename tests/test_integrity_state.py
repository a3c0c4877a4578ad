"""The working state is never silently discarded, and what a task wrote is durable before its marker and
checked before use (issue 23).

- An unreadable or corrupt state file (state.json, run.json, a marker, jobs.json) is one line naming it,
  exit 2, and the work folder (its finished markers) is still there; a transient read error is retried.
- A sort output, a piece of the plan or a scatter file that is shorter or longer than its task's marker
  recorded is one line naming the file and the task to re-run (never an IndexError), and that task,
  run again, mends it.
- Layout reads the keys tasks' files where they are: each file of the work folder is one task's.
- Temporary names are unique to the host, the process and the call; a task's files and their folder
  are synced before its marker.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from reorder_cli import stages
from reorder_cli.util import atomic
from reorder_cli.workdir import WorkDir

from .conftest import invoke, make_rows, one_line_error, output_hashes, reorder, to_lines, write_jsonl

TASKS = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150", "invalid_scores=last"]


@pytest.fixture
def inputs(tmp_path) -> list[Path]:
    """Two small JSONL inputs, every 13th score null."""
    files = []
    for k, n in enumerate((220, 180)):
        rows = make_rows(n, seed=k, prefix=f"f{k}")
        for row in rows[k::13]:
            row["score"] = None
        files.append(write_jsonl(tmp_path / "in" / f"part-{k}.jsonl", to_lines(rows, seed=k)))
    return files


def prepare(config_file, inputs, out: Path) -> WorkDir:
    """A run prepared as a cluster executor prepares it (a Slurm dry run): state.json and run.json."""
    reorder(config_file, inputs, out, method="saw", sets=TASKS, extra=["--executor", "slurm", "--dry-run"])
    return WorkDir(out.absolute())


def run_through(work: WorkDir, last: str) -> None:
    """Every task of every stage up to ``last``, in order, in this process."""
    for stage in stages.STAGES[: stages.STAGES.index(last) + 1]:
        for i in stages.todo(work, stage):
            stages.run_task(work, stage, i)


def markers(work: WorkDir) -> list[str]:
    return sorted(p.name for p in work.done.iterdir())


def again(config_file, inputs, out: Path, *extra):
    """The same command again, locally (it resumes, or publishes)."""
    return reorder(config_file, inputs, out, method="saw", sets=TASKS, extra=list(extra), ok=False)


# ------------------------------------------------------------------ state files


@pytest.mark.parametrize("damage", ["corrupt", "a folder"])
def test_a_damaged_state_json_is_an_error_and_the_work_is_kept(tmp_path, config_file, inputs, damage):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    run_through(work, "keys")
    before = markers(work)
    state = work.root / "state.json"
    if damage == "corrupt":
        state.write_bytes(state.read_bytes()[:20])
    else:
        state.unlink()
        state.mkdir()
    err = one_line_error(again(config_file, inputs, out))
    assert "state.json" in err and "--restart" in err, err
    assert markers(work) == before and len(before) == 2  # nothing deleted
    assert again(config_file, inputs, out, "--restart").exit_code == 0  # what the user asks for


def test_a_missing_state_json_beside_finished_tasks_is_an_error(tmp_path, config_file, inputs):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    run_through(work, "keys")
    (work.root / "state.json").unlink()
    err = one_line_error(again(config_file, inputs, out))
    assert "state.json: missing" in err and "--restart" in err, err
    assert len(markers(work)) == 2


def test_a_transient_read_error_of_state_json_is_retried(tmp_path, config_file, inputs, monkeypatch):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    run_through(work, "keys")
    failures = {"left": 2}
    real = Path.read_bytes

    def flaky(self):
        if self.name == "state.json" and failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.EIO, "Input/output error", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", flaky)
    assert again(config_file, inputs, out).exit_code == 0
    assert failures["left"] == 0
    assert json.loads((out / ".run_log.json").read_text())["resumed"] is True


def test_a_corrupt_run_json_is_an_error(tmp_path, config_file, inputs):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    run_through(work, "keys")
    work.spec.write_text("{\"config\": ")
    err = one_line_error(invoke("task", out, "split", 0))
    assert "run.json: corrupt" in err, err
    assert len(markers(work)) == 2


def test_a_corrupt_marker_is_an_error_and_the_work_is_kept(tmp_path, config_file, inputs):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    run_through(work, "sort")
    before = markers(work)
    work.marker("sort", 0).write_text("{\"rows\": 1")
    err = one_line_error(invoke("task", out, "place", 0))
    assert "done/sort-00000.json: corrupt" in err and f"reorder task {out.absolute()} sort 0" in err, err
    err = one_line_error(again(config_file, inputs, out))  # the local run: the same line, nothing deleted
    assert "done/sort-00000.json: corrupt" in err, err
    assert markers(work) == before


@pytest.mark.skipif(shutil.which("squeue") is None, reason="needs squeue (reorder status asks Slurm)")
def test_a_corrupt_jobs_json_is_an_error(tmp_path, config_file, inputs):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    work.slurm.mkdir(parents=True, exist_ok=True)
    (work.slurm / "jobs.json").write_text("{\"jobs\": [\"12")
    err = one_line_error(invoke("status", out))
    assert "jobs.json: corrupt" in err, err
    assert (work.root / "state.json").exists()


# ------------------------------------------------------------------ task outputs checked before use


def _cut(path: Path, how: str, record: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-record] if how == "short" else data + b"\0" * record)


@pytest.mark.parametrize("how", ["short", "long"])
def test_a_damaged_sort_output_is_named_with_its_task(tmp_path, config_file, inputs, how):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    run_through(work, "sort")
    target = max(work.order.glob("sort-*.bin"), key=lambda p: p.stat().st_size)
    task = int(target.stem.split("-")[1])
    _cut(target, how, 24)  # one ROW record
    err = one_line_error(invoke("task", out, "place", 0))
    assert f"{target}: " in err and f"its task sort {task} recorded" in err, err
    assert f"reorder task {out.absolute()} sort {task}" in err, err
    assert invoke("task", out, "sort", task).exit_code == 0  # run again (its files were damaged), not skipped
    assert invoke("task", out, "place", 0).exit_code == 0


def test_a_damaged_piece_of_the_plan_is_named_with_its_task(tmp_path, config_file, inputs):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    run_through(work, "place")
    target = work.plan / "ends-00001.bin"
    _cut(target, "short", 8)
    err = one_line_error(invoke("task", out, "layout", 0))
    assert f"{target}: " in err and "its task place 1 recorded" in err, err


@pytest.mark.parametrize("name", ["00000.arrow", "00001.buckets.npy"])
def test_a_damaged_scatter_file_is_named_with_its_task(tmp_path, config_file, inputs, name):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    run_through(work, "scatter")
    target = work.scatter / name
    _cut(target, "short", 8)
    err = one_line_error(invoke("task", out, "gather", 0))
    assert f"{target}: " in err and f"its task scatter {int(name[:5])} recorded" in err, err
    assert len(markers(work)) > 5  # nothing deleted


def test_layout_reads_the_keys_files_in_place_and_twice_gives_the_same_output(tmp_path, config_file, inputs):
    """Layout no longer moves the keys tasks' records-* files: they stay as their markers recorded, a
    layout run twice finds them, and the run's output is the in-memory run's."""
    out, mem = tmp_path / "out", tmp_path / "mem"
    work = prepare(config_file, inputs, out)
    run_through(work, "place")
    keys_before = {p.name: p.read_bytes() for p in work.keys.iterdir() if p.is_file()}
    assert any(n.startswith("records-") for n in keys_before)
    stages.run_task(work, "layout", 0)
    stages.run_task(work, "layout", 0)  # again, over its own finished output (a requeued job)
    assert {p.name: p.read_bytes() for p in work.keys.iterdir() if p.is_file()} == keys_before
    assert not list(work.plan.glob("records-*"))
    run_through(work, "gather")
    assert again(config_file, inputs, out).exit_code == 0
    reorder(config_file, inputs, mem, method="saw", sets=["shard_rows=150", "invalid_scores=last"])
    assert output_hashes(out) == output_hashes(mem)


# ------------------------------------------------------------------ temporary names, durability


def test_temporary_names_are_unique_to_host_process_and_call(tmp_path):
    target = tmp_path / "x.bin"
    a, b = atomic.temporary(target), atomic.temporary(target)
    assert a != b and a.parent == target.parent
    host = "".join(c if c.isalnum() or c in "_-" else "_" for c in socket.gethostname())[:40]
    for name in (a.name, b.name):
        assert name.startswith(f"x.bin.{host}-{os.getpid()}-") and name.endswith(atomic.TMP_SUFFIX)


@pytest.mark.parametrize("stage", ["sort", "place"])
def test_a_tasks_files_and_folder_are_synced_before_its_marker(tmp_path, config_file, inputs, monkeypatch, stage):
    out = tmp_path / "out"
    work = prepare(config_file, inputs, out)
    run_through(work, stages.STAGES[stages.STAGES.index(stage) - 1])
    synced: list[str] = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    stages.run_task(work, stage, 0)
    marker = next(k for k, p in enumerate(synced) if f"done/{stage}-00000.json" in p)
    before = synced[:marker]
    folder = work.order if stage == "sort" else work.plan
    outputs = ["sort-00000.bin"] if stage == "sort" else ["order-00000.bin", "scores-00000.bin", "ends-00000.bin",
                                                               "sample-00000.bin", "pairs-00000.bin"]
    for name in outputs:
        assert any(Path(p).parent == folder and Path(p).name.startswith(name) for p in before), (name, synced)
    assert str(folder) in before, synced
