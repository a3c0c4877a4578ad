"""A mixture under ``--executor slurm`` (a real one-node Slurm, as tests/test_slurm.py): the driver plans the
mixture's order, the scatter and gather jobs write its shards, and the output is the bytes of a local run."""

from __future__ import annotations

import json

import pytest

from .conftest import output_hashes
from .mixture_data import write_config, write_inputs
from .test_slurm import OOC, _cli, _needs_slurm  # noqa: F401 - _needs_slurm: its autouse fixture, here too

pytestmark = pytest.mark.slurm


def test_a_mixture_as_slurm_jobs_writes_the_bytes_of_a_local_run(tmp_path):
    config = write_config(tmp_path, write_inputs(tmp_path / "in"))
    local = _cli(tmp_path, "run", config, "--output", "local", "-q", "--set", "shard_rows=150")
    assert local.returncode == 0, local.stderr
    args = ["run", config, "--output", "out"]
    for s in OOC:
        args += ["--set", s]
    done = _cli(tmp_path, *args, "--executor", "slurm", "--wait")
    assert done.returncode == 0, done.stderr
    assert output_hashes(tmp_path / "out") == output_hashes(tmp_path / "local")
    jobs = sorted(p.name for p in (tmp_path / "out").glob("*.parquet"))
    assert len(jobs) > 3
    section = json.loads((tmp_path / "out" / ".manifest.json").read_text())["mixture"]
    assert [s["name"] for s in section["sources"]] == ["web", "code", "math"]
