"""A run as stages of tasks (reorder_cli/stages/), end to end through the command line: prepared as
a cluster executor prepares it (a Slurm dry run), every task run by `reorder task` in stage order, then
published; the shards and manifest equal a local in-memory run's, for every method and the options
that touch the order (ties in both directions, JIT, Gumbel, segment from one end or two, selection,
invalid scores first, last or dropped)."""

from __future__ import annotations

import json

import pytest

from reorder_cli.stages import STAGES

from .conftest import invoke, make_rows, one_line_error, output_hashes, reorder, to_lines, write_jsonl

TASKS = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150"]  # tiny budgets: many ranges and chunks

CASES = {
    "str-desc-jit": ("str", ["ascending=false", "window_size=7"]),
    "saw": ("saw", ["window_size=3"]),
    "sorting-gumbel": ("sorting", ["use_gumbel=true", "temperature=40", "window_size=5"]),
    "folding": ("folding", ["ascending=false"]),
    "zigzag": ("zigzag", ["zigzag_layer=4"]),
    "segment-one-end": ("segment", ["x_pct=10", "y_pct=15", "front_is_high=true", "back_is_high=true"]),
    "segment-two-ends": ("segment", ["x_pct=20", "y_pct=30", "front_is_high=false", "back_is_high=true"]),
    "shuffle-drop": ("shuffle", ["invalid_scores=drop"]),
    "input-top-r": ("input", ["select.method=top-r", "select.r=0.5"]),
    "saw-threshold-first": ("saw", ["select.method=threshold", "select.threshold=2.0", "invalid_scores=first"]),
}


@pytest.fixture
def scored_with_invalid(tmp_path) -> list:
    """Three JSONL inputs, one gzip-compressed, ~61 distinct scores (heavy ties), every 19th score null."""
    files = []
    for k, (n, compression) in enumerate(((400, None), (350, "gzip"), (450, None))):
        rows = make_rows(n, seed=k, prefix=f"f{k}")
        for row in rows[k::19]:
            row["score"] = None
        suffix = ".gz" if compression else ""
        files.append(write_jsonl(tmp_path / "in" / f"part-{k}.jsonl{suffix}", to_lines(rows, seed=k), compression))
    return files


def run_as_tasks(out) -> int:
    """Every task of every stage, in order, by `reorder task`; returns how many ran."""
    ran = 0
    for stage in STAGES:
        report = json.loads(invoke("status", out, "--json").stdout)["data"]["stages"].get(stage)
        if report is None:
            continue  # planned in one process: no tasks
        for i in range(report["tasks"]):
            result = invoke("task", out, stage, i)
            assert result.exit_code == 0, (stage, i, result.output)
            ran += 1
    return ran


@pytest.mark.parametrize("case", sorted(CASES))
def test_tasks_give_the_bytes_of_an_in_memory_run(tmp_path, config_file, scored_with_invalid, case):
    method, sets = CASES[case]
    if not any(s.startswith("invalid_scores=") for s in sets):
        sets = [*sets, "invalid_scores=last"]
    mem, tasks = tmp_path / "mem", tmp_path / "tasks"
    reorder(config_file, scored_with_invalid, mem, method=method, sets=[*sets, "shard_rows=150"])
    reorder(config_file, scored_with_invalid, tasks, method=method, sets=[*sets, *TASKS],
            extra=["--executor", "slurm", "--dry-run"])
    assert run_as_tasks(tasks) > len(STAGES)
    reorder(config_file, scored_with_invalid, tasks, method=method, sets=[*sets, *TASKS])  # publishes
    assert output_hashes(tasks) == output_hashes(mem)
    assert len(output_hashes(mem)) > 2


def test_a_task_on_a_node_that_cannot_see_the_run_says_so(tmp_path, config_file, scored_with_invalid):
    """An output folder not shared with the node running a task: one line saying so, exit 2."""
    result = invoke("task", tmp_path / "elsewhere", "keys", 0)
    assert result.exit_code == 2 and "filesystem both share" in one_line_error(result)
    out = tmp_path / "out"  # positive twin: the folder is there
    reorder(config_file, scored_with_invalid, out, method="saw", sets=[*TASKS, "invalid_scores=last"],
            extra=["--executor", "slurm", "--dry-run"])
    assert invoke("task", out, "keys", 0).exit_code == 0


def test_a_task_run_twice_at_once_writes_the_same_bytes(tmp_path, config_file, scored_with_invalid):
    """Every task of every stage run twice, the second time while ignoring its marker (a requeued job
    racing the first): the output is still the in-memory run's."""
    from reorder_cli.stages import run_task
    from reorder_cli.workdir import WorkDir

    sets = ["window_size=3", "invalid_scores=first"]
    mem, out = tmp_path / "mem", tmp_path / "out"
    reorder(config_file, scored_with_invalid, mem, method="str", sets=[*sets, "shard_rows=150"])
    reorder(config_file, scored_with_invalid, out, method="str", sets=[*sets, *TASKS, "combine=2"],
            extra=["--executor", "slurm", "--dry-run"])  # combine: 2 scatter files a task
    work = WorkDir(out.absolute())
    for stage in STAGES:
        report = json.loads(invoke("status", out, "--json").stdout)["data"]["stages"][stage]
        for i in range(report["tasks"]):
            run_task(work, stage, i)
            run_task(work, stage, i)  # again, over its own finished output
    assert len(list(work.done.glob("combine-*.json"))) == 2
    reorder(config_file, scored_with_invalid, out, method="str", sets=[*sets, *TASKS, "combine=2"])
    assert output_hashes(out) == output_hashes(mem)


def test_the_registry_holds_every_stage_in_order(monkeypatch):
    """STAGES is the registry's order, each stage waiting for the one before; a registry that misses a stage,
    or whose stage waits for another, fails when it is put together (the negative controls)."""
    from reorder_cli.stages import ORDER, REGISTRY, registry
    from reorder_cli.util.stage_names import TASK_STAGES

    assert STAGES == tuple(REGISTRY) == TASK_STAGES and ORDER == ("split", "sort", "place", "layout")
    assert [s.after for s in REGISTRY.values()] == [None, *STAGES[:-1]]
    assert all(s.title and s.description and s.reads for s in REGISTRY.values())
    monkeypatch.delitem(registry._RECORDS, "sort")
    with pytest.raises(RuntimeError, match="stage registry holds"):
        registry._in_order()
    monkeypatch.undo()
    gather = registry._RECORDS["gather"]
    monkeypatch.setitem(registry._RECORDS, "gather", type(gather)(**{**gather.__dict__, "after": "layout"}))
    with pytest.raises(RuntimeError, match="gather waits for layout, but follows combine"):
        registry._in_order()
