"""The Hugging Face Trainer under torchrun on 2 CPU processes, fed an output through
OrderedMapDataset, with reorder's AuditCallback recording what each rank's model received:
sequential sampling keeps the windows (the audit holds), the default random sampler does not (the
audit must fail it). The output has 305 rows, not a multiple of W·b or of G: the tail."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .conftest import invoke, reorder
from .loader_helpers import SIGNALLED, hf_trainer_steps, run_torchrun

pytest.importorskip("transformers")
pytestmark = pytest.mark.trainer
SCRIPT = Path(__file__).with_name("trainer_script.py")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    from .conftest import make_rows, write_parquet

    base = tmp_path_factory.mktemp("hf")
    inp = write_parquet(base / "in" / "a.parquet", make_rows(305, seed=3))
    (base / "cfg.yaml").write_text("score_field: score\nseed: 42\n")
    folder = base / "out"
    reorder(base / "cfg.yaml", [inp], folder, method="str", sets=["shard_rows=100", "row_group_rows=30"])
    return folder


def torchrun(out: Path, tmp: Path, mode: str, *extra: str, script: Path = SCRIPT) -> list[Path]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(SCRIPT.parent.parent)}

    def reset():
        for stale in tmp.glob("audit.rank*.jsonl"):
            stale.unlink()
        shutil.rmtree(tmp / "work", ignore_errors=True)

    run_torchrun(script, [out, tmp / "audit.jsonl", mode, tmp / "work", *extra], env, reset)
    return sorted(tmp.glob("audit.rank*.jsonl"))


def torchrun_runs(out: Path, tmp: Path, runs: dict[str, tuple[str, ...]]) -> dict[str, list[Path]]:
    """One torchrun of tests/trainer_script.py that trains each of ``runs`` (name: mode, then K and MAX_STEPS
    if given) in turn, in the same 2 ranks; each run's audit logs (one per rank), by name."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(SCRIPT.parent.parent)}
    args: list = [out]
    for k, (name, (mode, *extra)) in enumerate(runs.items()):
        args += [*(["--"] if k else []), tmp / name / "audit.jsonl", mode, tmp / name / "work", *extra]

    def reset():
        for name in runs:
            shutil.rmtree(tmp / name, ignore_errors=True)
            (tmp / name).mkdir(parents=True)

    run_torchrun(SCRIPT, args, env, reset, timeout=240 * len(runs))
    return {name: sorted((tmp / name).glob("audit.rank*.jsonl")) for name in runs}


#: Every training the tests below check, in one launch of torchrun (the launch and the imports of torch and
#: transformers in each rank cost more than these small trainings): name -> mode, then K and MAX_STEPS.
RUNS = {"sequential": ("sequential",), "random": ("random",), "epoch": ("sequential", "4", "epoch"),
        "recipe": ("sequential", "4", "recipe")}


@pytest.fixture(scope="module")
def logs(out, tmp_path_factory) -> dict[str, list[Path]]:
    return torchrun_runs(out, tmp_path_factory.mktemp("runs"), RUNS)


def test_only_a_rank_killed_by_a_signal_is_run_again():
    """The retry above covers the runtime's aborts only: a rank that failed in Python (exit code 1) is not."""
    assert SIGNALLED.search("    rank      : 0 (local_rank: 0)\n    exitcode  : -6 (pid: 15772)\n")
    assert not SIGNALLED.search("    rank      : 0 (local_rank: 0)\n    exitcode  : 1 (pid: 15772)\n")


@pytest.mark.parametrize("mode", ["sequential", "random"])
def test_hf_trainer_under_torchrun(out, logs, mode):
    logs = logs[mode]
    assert len(logs) == 2
    result = invoke("audit", out, *logs, "--json")
    report = json.loads(result.stdout)["data"]
    assert report["steps"] == 12 and report["global_batch"] == 2 * 3 * 2 and report["ranks_per_step"] == 2
    if mode == "sequential":
        assert result.exit_code == 0 and report["held"], report
    else:
        assert result.exit_code == 1 and report["in_window"] < 0.5 and report["first_bad_step"] == 0, report


def logged_steps(logs: list[Path]) -> list[list[str]]:
    """The ids each optimizer step consumed, the ranks' lines pooled."""
    steps: dict[int, list[str]] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            steps.setdefault(rec["step"], []).extend(rec["ids"])
    return [steps[s] for s in sorted(steps)]


@pytest.mark.parametrize("max_steps", ["epoch", "recipe"])
def test_hf_trainer_tail(out, logs, tmp_path, max_steps):
    """305 rows, W=2, b=3, k=4, G=24: 50 micro-batches per rank. On its own (one epoch) the Trainer takes 13 steps,
    the last over the 2 micro-batches per rank left, positions [288, 300), and drops 300..304; the audit takes that
    step as the tail. With the recipe's max_steps (OrderedMapDataset.optimizer_steps) it stops after 12 whole
    windows, as OrderedDataset does. A tail with one wrong row fails the audit."""
    from reorder_cli.loader import OrderedMapDataset

    from .test_loader import ids_in_order

    logs = logs[max_steps]
    ids = ids_in_order(out)
    steps = logged_steps(logs)
    recipe = OrderedMapDataset(out).optimizer_steps(3, 4, 2)
    assert recipe == 12
    model = hf_trainer_steps(len(ids), 2, 3, 4, max_steps=recipe if max_steps == "recipe" else -1)
    assert [sorted(s) for s in steps] == [sorted(ids[p] for p in s) for s in model]  # the model is the Trainer
    result = invoke("audit", out, *logs, "--json")
    report = json.loads(result.stdout)["data"]
    assert result.exit_code == 0 and report["held"] and report["global_batch"] == 24, report
    if max_steps == "recipe":
        assert report["steps"] == 12 and report["samples"] == 288 and report["tail_samples"] == 0, report
        return
    assert report["steps"] == 13 and report["samples"] == 300 and report["tail_samples"] == 12, report
    # negative control: the Trainer's own logs with one row of the tail step swapped for a dropped row
    bad = []
    for log in logs:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        if log == logs[0]:
            lines[-1]["ids"][0] = ids[300]
        bad.append(tmp_path / f"bad.{log.name}")
        bad[-1].write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    result = invoke("audit", out, *bad, "--json")
    report = json.loads(result.stdout)["data"]
    assert result.exit_code == 1 and report["first_bad_step"] == 12 and report["never_seen"] == 1, report

