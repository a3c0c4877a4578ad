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


def _start_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    before = os.environ.get("REORDER_TEST_BELOW_FLOOR")
    os.environ["REORDER_TEST_BELOW_FLOOR"] = "1"  # before the workers start: they inherit it
    _start_ray()
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("REORDER_TEST_BELOW_FLOOR", None)
    else:
        os.environ["REORDER_TEST_BELOW_FLOOR"] = before


@pytest.fixture(autouse=True)
def ray_up(local_ray):
    """The module's Ray, started again for a test that follows one that shut it down (the SIGKILL test)."""
    if not ray.is_initialized():
        _start_ray()


def test_a_ray_run_writes_the_bytes_of_a_local_run(tmp_path, config_file, jsonl_corpus, local):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=[*OOC, "ray.max_in_flight=1"],
            extra=["--executor", "ray"])
    assert output_hashes(out) == local
    assert not (out / ".reorder").exists()
    again = reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--executor", "ray"])
    assert "nothing to do" in again.stderr


def test_a_ray_run_with_a_combine_stage_writes_the_bytes_of_a_local_run(tmp_path, config_file, jsonl_corpus, local):
    """combine=2: Ray runs the combine tasks (3 scatter files, 2 a task) between scatter and gather."""
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=[*OOC, "combine=2"],
            extra=["--executor", "ray", "--keep-work"])
    assert output_hashes(out) == local
    assert len(list((out / ".reorder" / "done").glob("combine-*.json"))) == 2


def test_ray_gather_tasks_write_the_token_pieces_of_a_local_run(tmp_path, config_file, jsonl_corpus):
    """With a tokenizer, the Ray gather tasks tokenize their shards: pieces, export and manifest are the
    bytes of a local in-memory run's."""
    from .test_tokens import _hashes, make_tokenizer

    tok = make_tokenizer(tmp_path / "tok")
    sets = [f"tokenizer={tok}", "export=olmo"]
    reorder(config_file, jsonl_corpus.files, tmp_path / "local", method="saw", sets=["shard_rows=150", *sets])
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=[*OOC, *sets], extra=["--executor", "ray"])
    assert output_hashes(out) == output_hashes(tmp_path / "local")
    assert _hashes(out) == _hashes(tmp_path / "local")
    for name in ("tokens.npy", "tokens.csv.gz"):
        assert (out / "olmo" / name).read_bytes() == (tmp_path / "local" / "olmo" / name).read_bytes()


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
    report = json.loads(invoke("status", out, "--json").stdout)["data"]["stages"]["gather"]
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


def test_each_ray_task_declares_memory_limit_plus_the_slack(tmp_path, config_file, jsonl_corpus):
    from reorder_cli import config
    from reorder_cli.execute import ray_exec

    cfg = config.load(config_file, ["memory_limit=280MB"], method="saw", inputs=[str(f) for f in jsonl_corpus.files],
                      output=str(tmp_path / "out"))
    assert ray_exec.task_options(ray, cfg)["memory"] == 332 << 20  # 267.03 MiB + 64, whole MiB
    cfg = config.load(config_file, ["memory_limit=280MB", "ray.memory=1GB"], method="saw",
                      inputs=[str(f) for f in jsonl_corpus.files], output=str(tmp_path / "out"))
    assert ray_exec.task_options(ray, cfg)["memory"] == 10**9  # ray.memory wins
    cfg = config.load(config_file, ["memory_limit=10TB"], method="saw", inputs=[str(f) for f in jsonl_corpus.files],
                      output=str(tmp_path / "out"))
    with pytest.raises(Exception, match=r"ray: each task declares 9536808 MiB .* but the largest Ray node offers"):
        ray_exec.task_options(ray, cfg)  # Ray would wait for ever for a node that big


def test_a_sigkilled_worker_is_retried_and_the_bytes_are_those_of_a_local_run(tmp_path, config_file, jsonl_corpus,
                                                                              local):
    """Every gather task pauses (a fault hook) once it has started; the test SIGKILLs the Ray worker running one
    (its pid from the task's ``.started`` marker). Ray retries the task on a new worker; the run finishes with
    the bytes of a local run. A Ray started for this test carries the pause in its workers' environment."""
    import signal
    import threading
    import time

    from reorder_cli import config
    from reorder_cli.execute import ray_exec

    out = tmp_path / "out"
    work = WorkDir(out)
    flag = tmp_path / "paused"
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"REORDER_PAUSE_AT": "gather", "REORDER_PAUSE_SECONDS": "3",
                                       "REORDER_PAUSE_FLAG": str(flag), "REORDER_TEST_BELOW_FLOOR": "1"}})
    try:
        cfg = config.load(config_file, OOC, method="saw", inputs=[str(f) for f in jsonl_corpus.files],
                          output=str(out))
        outcome: dict = {}

        def drive():
            try:
                outcome["result"] = ray_exec.run(cfg)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        driver = threading.Thread(target=drive)
        driver.start()
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert time.monotonic() < deadline and driver.is_alive(), outcome
            time.sleep(0.05)
        marker = next(p for p in sorted(work.logs.glob("gather-*.started")))  # a gather task mid-way
        pid = json.loads(marker.read_text())["pid"]
        assert pid != os.getpid() and "ray" in Path(f"/proc/{pid}/cmdline").read_text().lower()  # a Ray worker
        os.kill(pid, signal.SIGKILL)
        driver.join(timeout=180)
        assert not driver.is_alive() and "error" not in outcome, outcome
        assert outcome["result"].status == "done"
        assert not Path(f"/proc/{pid}").exists()  # the worker did die
    finally:
        ray.shutdown()  # the next test of the module starts the module's Ray again (ray_up)
    assert output_hashes(out) == local


def test_a_mixture_as_ray_tasks_writes_the_bytes_of_a_local_run(tmp_path):
    from .mixture_data import write_config, write_inputs

    config = write_config(tmp_path, write_inputs(tmp_path / "in"))
    local = invoke("run", config, "--output", tmp_path / "local", "-q", "--set", "shard_rows=150")
    assert local.exit_code == 0, local.output
    done = invoke("run", config, "--output", tmp_path / "out", "-q", "--executor", "ray", *[x for s in OOC
                                                                                           for x in ("--set", s)])
    assert done.exit_code == 0, done.output
    assert output_hashes(tmp_path / "out") == output_hashes(tmp_path / "local")
    assert json.loads((tmp_path / "out" / ".manifest.json").read_text())["mixture"]["sources"][1]["epochs"] == 2
