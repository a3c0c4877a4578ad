"""The CI guard (tests/ci_skips.py) fails a run that skipped a test under CI, and only then."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pytest(tmp_path: Path, body: str, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(body)
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "REORDER_ALLOW_SKIPS")} | env
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.ci_skips", "-p", "no:cacheprovider",
                           str(tmp_path / "test_probe.py")], capture_output=True, text=True, env=environ,
                          cwd=tmp_path)


SKIPPING = "import pytest\n\ndef test_a():\n    pytest.importorskip('no_such_module_here')\n"
PASSING = "def test_a():\n    assert True\n"


@pytest.mark.parametrize("env, code", [({"CI": "true"}, 1), ({}, 0), ({"CI": "true", "REORDER_ALLOW_SKIPS": "1"}, 0)])
def test_a_skip_fails_only_under_ci(tmp_path, env, code):
    result = _pytest(tmp_path, SKIPPING, **env)
    assert result.returncode == code, result.stdout + result.stderr
    assert ("a skip is a failure" in result.stdout) == (code == 1)


def test_a_passing_run_passes_under_ci(tmp_path):
    result = _pytest(tmp_path, PASSING, CI="true")
    assert result.returncode == 0, result.stdout + result.stderr
