"""The mutation check of the order tasks (scripts/mutation_check.py): every deliberate off-by-one in
plan/order_tasks.py and the rank maps / STR-SAW regions they rely on fails the order-task tests, and the
unmutated copy passes them. Marked ``mutation`` (a few minutes; deselect with ``-m "not mutation"``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import mutation_check  # noqa: E402

pytestmark = pytest.mark.mutation


def test_every_mutant_is_killed():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "mutation_check.py")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": killed by ") == len(mutation_check.MUTANTS), result.stdout


def test_a_mutant_that_changes_nothing_is_reported_as_surviving():
    """Negative control of the check: a mutant the tests cannot see (a comment) is reported, not passed."""
    test = "tests/test_order_tasks_review.py::test_a_single_row"
    blind = mutation_check.Mutant("a-comment", mutation_check.OT, "SAMPLE_STEP = 4096",
                                  "SAMPLE_STEP = 4096  # mutated", (test,))
    problems = mutation_check.check(mutants=(blind,), echo=lambda line: None, jobs=1)
    assert len(problems) == 1 and problems[0].startswith("mutant a-comment ") and "survived" in problems[0]


@pytest.mark.parametrize("times", [0, 2])
def test_a_patch_that_no_longer_applies_is_an_error(tmp_path, times):
    (tmp_path / "f.py").write_text("x = 1\n" * times)
    mutant = mutation_check.Mutant("gone", "f.py", "x = 1", "x = 2", ())
    with pytest.raises(SystemExit, match=f"mutant 'gone': f.py holds its text {times} times, not once"):
        mutation_check.apply(tmp_path, mutant)
    assert (tmp_path / "f.py").read_text() == "x = 1\n" * times
