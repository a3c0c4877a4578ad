"""The sbatch scripts of ``--executor slurm`` (golden files: a change in them is a visible diff), array
splitting at MaxArraySize, the slurm: config section, and the executor's one-line errors. None of
these needs a running Slurm (tests/test_slurm.py submits to a real one)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from reorder_cli.execute import slurm
from reorder_cli.stages import STAGES
from reorder_cli.workdir import WorkDir

from .conftest import invoke, one_line_error, reorder

GOLDEN = Path(__file__).parent / "data" / "slurm"
OOC = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150"]


@pytest.fixture
def cluster_config(tmp_path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text("score_field: score\nseed: 42\nformat: parquet\nslurm:\n  partition: cpu\n  account: lab\n"
                    "  time: '2:00:00'\n  cpus_per_task: 2\n  extra_sbatch: ['--exclusive', '--constraint=avx2']\n"
                    "  setup:\n    - module load python\n    - source /opt/env/bin/activate\n")
    return path


def _normalised(text: str, tmp_path: Path) -> str:
    return text.replace(sys.executable, "PYTHON").replace(str(tmp_path), "TMP")


def dry_run_waves(config: Path, inputs, out: Path, sets: list[str], extra=()) -> list[dict[str, str]]:
    """``--executor slurm --dry-run`` wave by wave: after each dry run, the wave's tasks are run with
    ``reorder task`` (what its jobs would do), until a wave ends with the publish job. Returns each
    wave's scripts by name; checks that each dry run printed what it wrote and submitted nothing."""
    waves = []
    for _ in range(5):
        result = reorder(config, inputs, out, method="saw", sets=sets, extra=["--executor", "slurm", "--dry-run",
                                                                             *extra])
        folder = WorkDir(Path(out).absolute()).slurm
        scripts = {p.name: p.read_text() for p in sorted(folder.glob("*.sh"))}
        assert all(text in result.stdout for text in scripts.values())
        assert not (folder / "jobs.json").exists()  # nothing submitted
        waves.append(scripts)
        shutil.rmtree(folder)
        if "publish.sh" in scripts:
            return waves
        for stage in STAGES:
            for name, text in scripts.items():
                if name.removesuffix(".sh").split("-")[0] == stage:
                    for index in re.search(r"INDICES=\(([^)]*)\)", text).group(1).split():
                        assert invoke("task", out, stage, index).exit_code == 0, (stage, index)
    raise AssertionError("no wave ended with the publish job")


def test_dry_run_scripts_match_the_golden_files(tmp_path, cluster_config, jsonl_corpus, monkeypatch):
    """A fresh run goes in three waves: keys and split, then submit; sort, place and layout, then submit;
    scatter and gather, then publish."""
    monkeypatch.chdir(tmp_path)
    waves = dry_run_waves(cluster_config, ["in/*.jsonl"], "out",
                          [*OOC, "slurm.qos=high", "slurm.mem=3G", "slurm.max_parallel=4"])
    assert [sorted(w) for w in waves] == [["keys.sh", "split.sh", "submit.sh"],
                                          ["layout.sh", "place.sh", "sort.sh", "submit.sh"],
                                          ["gather.sh", "publish.sh", "scatter.sh"]]
    for k, wave in enumerate(waves, 1):
        for name, text in wave.items():
            got, golden = _normalised(text, tmp_path), GOLDEN / f"wave{k}" / name
            if os.environ.get("REORDER_REGEN_GOLDEN"):
                golden.parent.mkdir(exist_ok=True)
                golden.write_text(got)
            assert got == golden.read_text(), golden


def test_a_resubmit_covers_only_the_unfinished_tasks(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--plan-only"])
    for t in (0, 2):
        assert invoke("task", out, "scatter", t).exit_code == 0
    jobs = slurm.plan_jobs(out, {}, ["run"], slurm.DEFAULT_LIMITS, tmp_path)
    assert [(j.stage, j.indices, j.after) for j in jobs] == [
        ("scatter", [1], []), ("gather", list(range(8)), ["scatter"]), ("publish", [0], ["gather"])]
    assert "INDICES=(1)\n" in jobs[0].text and "#SBATCH --array=0-0\n" in jobs[0].text


def test_a_combine_stage_is_an_array_between_scatter_and_gather(tmp_path, config_file, jsonl_corpus):
    """combine=2 (3 scatter tasks): a combine array of 2 after the scatter, the gather after it; the dry-run
    waves run it and publish the bytes of a run without it (negative twin: combine=1 has no combine job)."""
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=[*OOC, "combine=2"], extra=["--plan-only"])
    jobs = slurm.plan_jobs(out, {}, ["run"], slurm.DEFAULT_LIMITS, tmp_path)
    assert [(j.stage, j.indices, j.after) for j in jobs] == [
        ("scatter", [0, 1, 2], []), ("combine", [0, 1], ["scatter"]), ("gather", list(range(8)), ["combine"]),
        ("publish", [0], ["gather"])]
    assert "task" in jobs[1].text and " combine " in jobs[1].text.replace('"', " ")
    off = tmp_path / "off"
    reorder(config_file, jsonl_corpus.files, off, method="saw", sets=[*OOC, "combine=1"], extra=["--plan-only"])
    assert [j.stage for j in slurm.plan_jobs(off, {}, ["run"], slurm.DEFAULT_LIMITS, tmp_path)] == \
        ["scatter", "gather", "publish"]


def test_arrays_are_split_below_max_array_size(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--plan-only"])
    jobs = slurm.plan_jobs(out, {}, ["run"], {"MaxArraySize": 4, "MaxJobCount": 100}, tmp_path)
    gathers = [j for j in jobs if j.stage == "gather"]
    assert [j.indices for j in gathers] == [[0, 1, 2], [3, 4, 5], [6, 7]]  # array indices stay 0..2 < 4
    assert [j.script.name for j in gathers] == ["gather-0.sh", "gather-1.sh", "gather-2.sh"]
    assert "#SBATCH --array=0-2\n" in gathers[1].text and "INDICES=(3 4 5)" in gathers[1].text
    # positive twin: one array when it fits
    assert len([j for j in slurm.plan_jobs(out, {}, ["run"], slurm.DEFAULT_LIMITS, tmp_path)
                if j.stage == "gather"]) == 1


def test_more_tasks_than_the_cluster_accepts_is_one_line(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=OOC, extra=["--plan-only"])
    with pytest.raises(Exception, match="11 unfinished tasks, more than this cluster accepts .MaxJobCount 10."):
        slurm.plan_jobs(out, {}, ["run"], {"MaxArraySize": 1001, "MaxJobCount": 10}, tmp_path)
    assert len(slurm.plan_jobs(out, {}, ["run"], {"MaxArraySize": 1001, "MaxJobCount": 11}, tmp_path)) == 3


@pytest.mark.parametrize(("setting", "message"), [
    ("slurm.partitionn=cpu", "unknown config key 'slurm.partitionn'"),
    ("slurm.cpus_per_task=0", "config key 'slurm.cpus_per_task'"),
    ("slurm=cpu", "config key 'slurm': expected a mapping"),
    ("slurm.time_scatter=2h", "config key 'slurm.time_scatter': expected a Slurm time such as 30 (minutes)"),
    ("slurm.time=-5", "config key 'slurm.time': expected a Slurm time"),
    ("slurm.time_bogus=1:00:00", "unknown config key 'slurm.time_bogus'"),
])
def test_bad_slurm_settings_are_one_line_and_write_nothing(tmp_path, config_file, jsonl_corpus, setting, message):
    out = tmp_path / "out"
    result = reorder(config_file, jsonl_corpus.files, out, method="saw", sets=[setting],
                     extra=["--executor", "slurm", "--dry-run"], ok=False)
    assert message in one_line_error(result)
    assert not out.exists()


def test_no_sbatch_on_path_is_one_line_and_writes_nothing(tmp_path, config_file, jsonl_corpus, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    out = tmp_path / "out"
    result = reorder(config_file, jsonl_corpus.files, out, method="saw", extra=["--executor", "slurm"], ok=False)
    assert "sbatch is not on PATH" in one_line_error(result)
    assert not out.exists()
    # positive twin: a dry run needs no sbatch
    reorder(config_file, jsonl_corpus.files, out, method="saw", extra=["--executor", "slurm", "--dry-run"])
    assert (WorkDir(out).slurm / "keys.sh").exists() and (WorkDir(out).slurm / "submit.sh").exists()


def test_executor_options_are_checked(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    bad = reorder(config_file, jsonl_corpus.files, out, method="saw", extra=["--executor", "kubernetes"], ok=False)
    assert "--executor: expected local, slurm or ray" in one_line_error(bad)
    bad = reorder(config_file, jsonl_corpus.files, out, method="saw", extra=["--wait"], ok=False)
    assert "--dry-run and --wait go with --executor slurm" in one_line_error(bad)
    assert not out.exists()


def test_ray_missing_is_one_line_naming_the_extra(tmp_path, config_file, jsonl_corpus):
    """Without Ray importable (``sys.modules['ray'] = None`` hides an installed one), --executor ray says
    how to install it and writes nothing."""
    import subprocess

    out = tmp_path / "out"
    code = ("import sys; sys.modules['ray'] = None; from reorder_cli.cli import app; "
            "app(sys.argv[1:], prog_name='reorder')")
    args = ["run", str(config_file), "--method", "saw", "--output", str(out), "--executor", "ray",
            *[a for f in jsonl_corpus.files for a in ("--input", str(f))]]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: --executor ray: Ray is not installed; pip install 'reorder[ray]'"
    assert not out.exists()


def test_the_publish_job_repeats_the_run_arguments():
    args = slurm.run_arguments(Path("c.yaml"), method="saw", inputs=["a", "b"], output="o", sets=["x=1"],
                               memory_limit="2GB", workers=3, keep_work=True)
    assert args == ["run", str(Path("c.yaml").absolute()), "--method", "saw", "--input", "a", "--input", "b",
                    "--output", "o", "--set", "x=1", "--memory-limit", "2GB", "--workers", "3", "--keep-work"]
    assert "--keep-work" not in slurm.run_arguments(Path("c.yaml"), method=None, inputs=None, output=None,
                                                    sets=None, memory_limit=None, workers=None)


def test_bad_input_fails_its_keys_task_in_one_line_and_publishes_nothing(tmp_path, config_file, jsonl_corpus):
    """The inputs are read by the keys tasks on the cluster: a bad file fails its own keys task with the
    usual one-line error (file and line); nothing is published, and the next stages wait for it."""
    bad = tmp_path / "in" / "bad.jsonl"
    bad.write_text('{"id": "x", "score": 1}\n{"id": "y", "score": \n')
    out = tmp_path / "out"
    files = [*jsonl_corpus.files, bad]
    reorder(config_file, files, out, method="saw", sets=OOC, extra=["--executor", "slurm", "--dry-run"])
    for i in range(len(jsonl_corpus.files)):  # positive twins: the good files' keys tasks
        assert invoke("task", out, "keys", i).exit_code == 0
    result = invoke("task", out, "keys", len(files) - 1)
    assert result.exit_code == 2 and "bad.jsonl: line 2" in one_line_error(result)
    result = invoke("task", out, "split", 0)
    assert result.exit_code == 2 and "keys task 3 has not finished" in one_line_error(result)
    assert sorted(p.name for p in out.iterdir()) == [".reorder"]  # no shard, no manifest


def test_task_memory_is_the_budget_plus_the_slack_in_whole_mib():
    from reorder_cli.execute import resources

    assert resources.task_memory_mib(1 << 30) == 1024 + 64  # exact MiB: nothing to round
    assert resources.task_memory_mib(280 * 10**6) == 332  # 267.03 MiB + 64, rounded up
    assert resources.task_memory_mib((1 << 30) + 1) == 1024 + 64 + 1  # one byte more: one MiB more
    assert resources.slurm_mem({}, 280 * 10**6) == "332M"
    assert resources.slurm_mem({"mem": "8G"}, 280 * 10**6) == "8G"  # an explicit slurm.mem wins
    assert resources.ray_memory({}, 280 * 10**6) == 332 << 20
    assert resources.ray_memory({"memory": 4 * 10**9}, 280 * 10**6) == 4 * 10**9


def test_derived_mem_and_per_stage_time_match_the_golden_files(tmp_path, config_file, jsonl_corpus, monkeypatch):
    """No slurm.mem: every job declares memory_limit + 64 MB; slurm.time is every stage's default and
    slurm.time_STAGE overrides it for that stage (2:00:00 given with --set stays a time, not 7200)."""
    monkeypatch.chdir(tmp_path)
    waves = dry_run_waves(config_file, ["in/*.jsonl"], "out",
                          ["rewrite=out-of-core", "memory_limit=500MB", "shard_rows=150", "slurm.time=1:00:00",
                           "slurm.time_gather=2:00:00", "slurm.time_publish=15", "slurm.time_sort=30"])
    texts = {}
    for wave in waves:
        texts |= {name.removesuffix(".sh"): text for name, text in wave.items()}
    for name in ("scatter", "gather", "publish"):
        got = _normalised(texts[name], tmp_path)
        golden = GOLDEN / "derived" / f"{name}.sh"
        if os.environ.get("REORDER_REGEN_GOLDEN"):
            golden.parent.mkdir(exist_ok=True)
            golden.write_text(got)
        assert got == golden.read_text(), name
    assert "#SBATCH --time=30\n" in texts["sort"] and "#SBATCH --time=1:00:00\n" in texts["keys"]
    assert all("#SBATCH --mem=541M\n" in t for t in texts.values())  # 500e6 B = 476.8 MiB, + 64, rounded up
    assert "#SBATCH --time=1:00:00\n" in texts["scatter"] and "#SBATCH --time=2:00:00\n" in texts["gather"]
    assert "#SBATCH --time=15\n" in texts["publish"]


def test_a_cluster_run_plans_each_task_for_the_whole_budget(tmp_path, config_file, jsonl_corpus):
    """memory_limit is a task's budget under a cluster executor: the plan is sized for one worker, whatever
    --workers says (a local run with 2 workers gives each half)."""
    from reorder_cli.plan import stored as stored_plan

    sets = ["rewrite=out-of-core", "memory_limit=300MB", "shard_rows=150", "row_group_rows=20"]
    cluster, local = tmp_path / "cluster", tmp_path / "local"
    dry_run_waves(config_file, jsonl_corpus.files, cluster, sets, extra=["--workers", "2"])
    reorder(config_file, jsonl_corpus.files, local, method="saw", sets=sets, extra=["--plan-only", "--workers", "2"])
    one, two = (stored_plan.load(WorkDir(p)).meta["bucket_bytes"] for p in (cluster, local))
    assert one == 2 * two, (one, two)


@pytest.mark.parametrize("setting", ["slurm.time_scatter", "slurm.time", "slurm.time_bogus"])
def test_a_valid_time_reaches_the_scripts(tmp_path, config_file, jsonl_corpus, setting):
    """The positive twins of the bad times above."""
    out = tmp_path / "out"
    # positive twin: the same key with a valid time
    good = setting.replace("bogus", "keys").replace("scatter", "keys") + "=1-12:00:00"  # a stage of wave 1
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=[good], extra=["--executor", "slurm", "--dry-run"])
    assert "#SBATCH --time=1-12:00:00\n" in "".join(p.read_text() for p in WorkDir(out).slurm.glob("*.sh"))


def test_a_time_in_the_config_file_is_read_as_written(tmp_path, config_file, jsonl_corpus):
    """YAML 1.1 reads an unquoted 2:00:00 as the number 7200 (Slurm: 7200 minutes); here it stays 2:00:00."""
    config_file.write_text(config_file.read_text() + "slurm:\n  time: 2:00:00\n  time_keys: 45\n")
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", extra=["--executor", "slurm", "--dry-run"])
    texts = {p.stem: p.read_text() for p in WorkDir(out).slurm.glob("*.sh")}
    assert "#SBATCH --time=2:00:00\n" in texts["submit"] and "#SBATCH --time=45\n" in texts["keys"]
