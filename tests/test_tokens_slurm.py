"""Token pieces under ``--executor slurm`` (a real one-node Slurm, as tests/test_slurm.py): the gather jobs
tokenize their shards, and the pieces and manifest are the bytes of a local run's."""

from __future__ import annotations

import pytest

from .conftest import output_hashes, reorder
from .test_slurm import OOC, _cli, _slurm_up
from .test_tokens import _hashes, make_tokenizer

pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True)
def _needs_slurm():
    why = _slurm_up()
    if why:
        pytest.skip(why)


def test_slurm_gather_jobs_write_the_token_pieces_of_a_local_run(tmp_path, config_file, jsonl_corpus):
    tok = make_tokenizer(tmp_path / "tok")
    sets = [f"tokenizer={tok}", "add_bos=true"]
    local = ["shard_rows=150", *sets]  # in memory
    reorder(config_file, jsonl_corpus.files, tmp_path / "local", method="saw", sets=local)
    args = ["run", config_file, "--method", "saw", "--output", "out"]
    for f in jsonl_corpus.files:
        args += ["--input", f]
    for s in [*OOC, *sets]:
        args += ["--set", s]
    done = _cli(tmp_path, *args, "--executor", "slurm", "--wait")
    assert done.returncode == 0, done.stderr
    assert output_hashes(tmp_path / "out") == output_hashes(tmp_path / "local")
    assert _hashes(tmp_path / "out") == _hashes(tmp_path / "local")
