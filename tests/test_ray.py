"""``--executor ray`` on a real local Ray (``ray.init(num_cpus=2)``, once for the module): the bytes equal
a local run's; a task that raises stops the run with one line naming it, ``reorder status`` names it,
and the same command then finishes with the same bytes. Needs the extra 'ray' (CI installs it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reorder_cli.workdir import WorkDir

from .conftest import invoke, one_line_error, output_hashes, reorder

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

OOC = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    before = os.environ.get("REORDER_TEST_BELOW_FLOOR")
    os.environ["REORDER_TEST_BELOW_FLOOR"] = "1"  # before the workers start: they inherit it
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("REORDER_TEST_BELOW_FLOOR", None)
    else:
        os.environ["REORDER_TEST_BELOW_FLOOR"] = before


def test_a_ray_run_writes_the_bytes_of_a_local_run(tmp_path, config_file, jsonl_corpus, local):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=[*OOC, "ray.max_in_flight=1"],
            extra=["--executor", "ray"])
    assert output_hashes(out) == local
    assert not (out / ".reorder").exists()
    again = reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--executor", "ray"])
    assert "nothing to do" in again.stderr


def test_a_task_that_raises_stops_the_run_and_the_same_command_finishes(tmp_path, config_file, jsonl_corpus,
                                                                        local):
    out = tmp_path / "out"
    work = WorkDir(out)
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--plan-only"])
    for t in range(3):
        assert invoke("task", out, "scatter", t).exit_code == 0
    good = work.scatter_data(1).read_bytes()
    work.scatter_data(1).write_bytes(b"not an arrow file")  # every gather reads scatter 1's rows: they raise
    bad = reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--executor", "ray"],
                  ok=False)
    line = one_line_error(bad)
    assert line.startswith("error: ray: gather task ") and "failed:" in line and "re-run the same command" in line
    assert not (out / ".manifest.json").exists()
    report = json.loads(invoke("status", out, "--json").stdout)["stages"]["gather"]
    assert report["state"] == "failed" and len(report["failed"]) == 1
    assert Path(report["failed"][0]["log"]).read_text().strip()  # the error is in its log
    work.scatter_data(1).write_bytes(good)  # the cause fixed: the same command resumes and finishes
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--executor", "ray"])
    assert output_hashes(out) == local


def test_an_unreachable_ray_address_is_one_line_and_writes_nothing(tmp_path, config_file, jsonl_corpus, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens on port 1
    out = tmp_path / "out"
    msg = one_line_error(reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC,
                                 extra=["--executor", "ray"], ok=False))
    assert "127.0.0.1:1" in msg and "cannot be reached" in msg, msg
    assert not out.exists()
