"""A budget below the floor is refused once, naming every floor (the runtime, the output row groups, the
input row groups) and the row_group_size that fits; ``reorder preview`` shows the same floor."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import invoke, one_line_error, reorder, wide_parquet


@pytest.fixture(autouse=True)
def _real_floor(monkeypatch):
    monkeypatch.delenv("REORDER_TEST_BELOW_FLOOR", raising=False)


@pytest.fixture
def inputs(tmp_path) -> list[Path]:
    """2 Parquet files of about 1.2 MB of rows each (rows of about 1 kB), row groups of 600 rows."""
    return wide_parquet(tmp_path / "in", 2, seed=3, row_group_size=600)


def test_the_refusal_names_every_floor_and_the_setting_that_fits(tmp_path, config_file, inputs):
    msg = one_line_error(reorder(config_file, inputs, tmp_path / "no", method="saw", ok=False,
                                 extra=["--memory-limit", "276MB"]))
    assert "memory_limit 276 MB is below" in msg and "MB for the runtime plus the larger of" in msg, msg
    assert "for output row groups of up to" in msg and "for input row groups of up to" in msg, msg
    least = int(re.search(r"at least (\d+) MB", msg).group(1))
    rgs, with_it = re.search(r"set row_group_size=(\d+)MB and at least (\d+) MB", msg).groups()
    assert int(with_it) <= 276 < least, msg
    assert not (tmp_path / "no").exists()
    # the setting it names runs within the budget it was refused
    out = tmp_path / "o"
    reorder(config_file, inputs, out, method="saw", sets=[f"row_group_size={rgs}MB"], extra=["--memory-limit", "276MB"])
    assert json.loads((out / ".run_log.json").read_text())["path"] == "out-of-core"
    # preview shows the same floor, before any run
    shown = invoke("preview", config_file, "-m", "saw", *[a for f in inputs for a in ("-i", f)], "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["data"]["orders"][0]["memory_floor"] // 10**6 == least
    text = " ".join(invoke("preview", config_file, "-m", "saw", *[a for f in inputs for a in ("-i", f)]).stdout.split())
    assert f"the least --memory-limit of a run is {least} MB" in text and "input row groups" in text, text
