"""The Hugging Face Trainer under torchrun on 2 CPU processes, fed an output through
OrderedMapDataset, with reorder's AuditCallback recording what each rank's model received:
sequential sampling keeps the windows (the audit holds), the default random sampler does not (the
audit must fail it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import invoke, reorder

pytest.importorskip("transformers")
pytestmark = pytest.mark.trainer
SCRIPT = Path(__file__).with_name("trainer_script.py")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    from .conftest import make_rows, write_parquet

    base = tmp_path_factory.mktemp("hf")
    inp = write_parquet(base / "in" / "a.parquet", make_rows(300, seed=3))
    (base / "cfg.yaml").write_text("score_field: score\nseed: 42\n")
    folder = base / "out"
    reorder(base / "cfg.yaml", [inp], folder, method="str", sets=["shard_rows=100", "row_group_rows=30"])
    return folder


def torchrun(out: Path, tmp: Path, mode: str) -> list[Path]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(SCRIPT.parent.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), str(out), str(tmp / "audit.jsonl"), mode, str(tmp / "work")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return sorted(tmp.glob("audit.rank*.jsonl"))


@pytest.mark.parametrize("mode", ["sequential", "random"])
def test_hf_trainer_under_torchrun(out, tmp_path, mode):
    logs = torchrun(out, tmp_path, mode)
    assert len(logs) == 2
    result = invoke("audit", out, *logs, "--json")
    report = json.loads(result.stdout)
    assert report["steps"] == 12 and report["global_batch"] == 2 * 3 * 2 and report["ranks_per_step"] == 2
    if mode == "sequential":
        assert result.exit_code == 0 and report["held"], report
    else:
        assert result.exit_code == 1 and report["in_window"] < 0.5 and report["first_bad_step"] == 0, report
