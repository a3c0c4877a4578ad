"""``reorder publish OUTPUT``: finish a run planned with --plan-only from its work folder alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import invoke, make_rows, one_line_error, read_manifest, reorder, shard_files, to_lines, write_jsonl

SETS = ["format=parquet", "shard_rows=200", "row_group_rows=30", "num_sections=4"]


@pytest.fixture
def inputs(tmp_path) -> list[Path]:
    return [write_jsonl(tmp_path / "in" / f"part-{k}.jsonl", to_lines(make_rows(250 + 30 * k, seed=k, prefix=f"j{k}")))
            for k in range(2)]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in [*shard_files(folder), folder / ".manifest.json"]}


def _run_tasks(out: Path, *work_dir: str) -> None:
    for stage in ("scatter", "gather"):
        listing = invoke("task", out, *work_dir).output
        n = int(listing.split(f"{stage}: ")[1].split(" of ")[1].split()[0])
        for i in range(n):
            assert invoke("task", out, stage, i, *work_dir).exit_code == 0


def test_publish_needs_only_the_output_and_gives_the_bytes_of_run(tmp_path, config_file, inputs):
    reorder(config_file, inputs, tmp_path / "direct", method="saw", sets=SETS)
    out = tmp_path / "planned"
    planned = invoke("run", config_file, "-m", "saw", *[a for i in inputs for a in ("-i", i)], "-o", out,
                     *[a for s in SETS for a in ("--set", s)], "--plan-only")
    assert planned.exit_code == 0, planned.output
    assert f"reorder publish {out}" in " ".join(planned.stderr.split()), planned.stderr
    _run_tasks(out)
    result = invoke("publish", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "interrupted" not in result.stderr and "resuming" not in result.stderr, result.stderr
    assert "Scattering" not in result.stderr and "Writing shards" not in result.stderr, result.stderr
    assert "published the shards its tasks made" in " ".join(result.stderr.split()), result.stderr
    assert snapshot(out) == snapshot(tmp_path / "direct")
    assert read_manifest(out)["params"]["num_sections"] == 4  # the --set came from the work folder
    assert not (out / ".reorder").exists()


def test_publish_with_a_work_dir(tmp_path, config_file, inputs):
    reorder(config_file, inputs, tmp_path / "direct", method="str", sets=SETS)
    out, work = tmp_path / "planned", tmp_path / "work"
    reorder(config_file, inputs, out, method="str", sets=[*SETS, f"work_dir={work}"], extra=["--plan-only"])
    msg = one_line_error(invoke("publish", out))  # the run's work folder is elsewhere
    assert "no run to publish" in msg, msg
    _run_tasks(out, "--work-dir", str(work))
    assert invoke("publish", out, "--work-dir", work, "-q").exit_code == 0
    assert snapshot(out) == snapshot(tmp_path / "direct")


def test_publish_names_the_unfinished_tasks_and_writes_nothing(tmp_path, config_file, inputs):
    out = tmp_path / "planned"
    reorder(config_file, inputs, out, method="saw", sets=SETS, extra=["--plan-only"])
    assert invoke("task", out, "scatter", 0).exit_code == 0
    msg = one_line_error(invoke("publish", out))
    assert "tasks not finished" in msg and "scatter 1" in msg and "gather 0, 1" in msg, msg
    assert f"reorder task {out} STAGE INDEX" in msg, msg
    assert not shard_files(out) and not (out / ".manifest.json").exists()


def test_publish_refuses_a_folder_without_a_planned_run(tmp_path):
    msg = one_line_error(invoke("publish", tmp_path / "nothing"))
    assert "no run to publish" in msg, msg


def _stages(out) -> list[str]:
    result = invoke("status", out, "--json")
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout)["data"]["stages"])


def test_task_and_status_show_only_the_stages_that_run_as_tasks(tmp_path, config_file, inputs, monkeypatch):
    from reorder_cli.publish import output

    planned = tmp_path / "planned"  # planned here: its order was worked out while planning
    reorder(config_file, inputs, planned, method="saw", sets=SETS, extra=["--plan-only"])
    assert _stages(planned) == ["scatter", "gather", "publish"]
    assert [line.split(":")[0] for line in invoke("task", planned).stdout.splitlines()] == ["scatter", "gather"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(output, "publish", interrupted)  # a run planned in memory, stopped before publishing
    in_memory = tmp_path / "in-memory"
    assert reorder(config_file, inputs, in_memory, method="saw", sets=SETS, ok=False).exit_code == 130
    assert (in_memory / ".reorder").is_dir()
    assert _stages(in_memory) == ["gather", "publish"]  # no keys, split, sort, place, layout or scatter tasks
    assert [line.split(":")[0] for line in invoke("task", in_memory).stdout.splitlines()] == ["gather"]
