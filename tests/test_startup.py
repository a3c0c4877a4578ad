"""`reorder --help` and `--version` start fast: the CLI module loads no heavy library until a command runs.

Deterministic, not timed: what is imported is checked in a fresh interpreter (sys.modules).
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("polars", "numpy", "pyarrow", "rich.table", "yaml", "matplotlib")


def _loaded(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library():
    assert _loaded("import reorder_cli.cli") == []


def test_version_loads_no_heavy_library():
    code = ("from typer.testing import CliRunner\nfrom reorder_cli.cli import app\n"
            "r = CliRunner().invoke(app, ['--version'])\n"
            "assert r.exit_code == 0 and 'reorder 0.' in r.output, r.output")
    assert _loaded(code) == []


def test_the_probe_sees_a_heavy_import():
    """Negative control: the same probe reports a library that was imported."""
    assert _loaded("import reorder_cli.cli, numpy") == ["numpy"]


def test_a_command_still_loads_what_it_needs(tmp_path):
    """Positive twin: running a command imports the engine (lazily) and works."""
    code = ("from typer.testing import CliRunner\nfrom reorder_cli.cli import app\n"
            "r = CliRunner().invoke(app, ['methods'])\nassert r.exit_code == 0 and 'saw' in r.output, r.output")
    assert "numpy" in _loaded(code)
