"""The command line's surface: help texts, -h, completion, --json (one envelope, one schema), -q/-v, and
tables that a log does not wrap at 80 columns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import typer.main

import reorder_cli
from reorder_cli import cli_help
from reorder_cli.cli import app
from reorder_cli.loader.audit_log import AuditLog
from reorder_cli.methods import METHODS
from reorder_cli.util.stage_names import SLURM_JOBS, TASK_STAGES

from .conftest import invoke, make_rows, one_line_error, read_manifest, reorder, to_lines, write_jsonl

COMMANDS = ("run", "publish", "task", "status", "stats", "preview", "verify", "audit", "methods")
CONFIG_COMMANDS = ("show", "validate", "schema")  # `reorder config ...`
SCHEMA = json.loads((Path(reorder_cli.__file__).parent / "envelope.schema.json").read_text())
PYTHON_TYPE = re.compile(r"<(bool|str|int|float|path|list\[[^>]*\]|[a-z]+\|[a-z|]+)>")


def help_of(*command: str) -> str:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    return result.stdout


def flat(text: str) -> str:
    """Help text as one line: rich's box characters and line breaks gone."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


# ------------------------------------------------------------------ help texts


@pytest.mark.parametrize("command", ((), *((c,) for c in COMMANDS)))
def test_help_shows_no_python_types_and_takes_h(command):
    text = help_of(*command)
    assert not PYTHON_TYPE.search(text), PYTHON_TYPE.search(text).group(0)
    short = invoke(*command, "-h")
    assert short.exit_code == 0 and short.stdout == text, short.output


def test_the_type_probe_sees_a_python_type():
    """Negative control of the probe above: typer's own rendering of a type is caught."""
    assert PYTHON_TYPE.search("│ --overwrite   <bool>  Replace") and PYTHON_TYPE.search("-i <list[str]>")


def test_values_show_a_meaningful_metavar_and_flags_none():
    text = flat(help_of("run"))
    for option, metavar in (("--set", "KEY=VALUE"), ("--memory-limit", "SIZE"), ("--input -i", "PATH"),
                            ("--method -m", "METHOD"), ("--workers -w", "N"), ("--executor", "local|slurm|ray")):
        assert f"{option} {metavar} " in text, option
    assert "--overwrite Replace" in text and "--help -h Show" in text  # a flag: no metavar at all
    assert "--compare -c METHOD,... " in flat(help_of("preview"))


def test_every_command_takes_json_quiet_verbose_and_h():
    group = typer.main.get_command(app)
    assert sorted(group.commands) == sorted((*COMMANDS, "config"))
    config = group.commands["config"]
    assert sorted(config.commands) == sorted(CONFIG_COMMANDS)
    commands = {**{n: c for n, c in group.commands.items() if n != "config"},
                **{f"config {n}": c for n, c in config.commands.items()}}
    for name, command in commands.items():
        opts = {o for p in command.params for o in p.opts}
        assert {"--json", "--quiet", "-q", "--verbose", "-v"} <= opts, name


def test_help_texts_say_what_the_code_does():
    status = flat(help_of("status"))
    assert all(stage in status for stage in TASK_STAGES + SLURM_JOBS), status
    assert "plan," not in status
    task = help_of("task")
    assert "STAGE" in task and "phase" not in task.lower()
    for command in ("stats", "preview"):
        plot = flat(help_of(command))
        assert ".png, .svg or .pdf" in plot and "(PNG)" not in plot
    audit = flat(help_of("audit"))
    assert "score-by-position" not in audit and "position in the order" in audit
    preview = flat(help_of("preview"))
    # preview.configs(): with --compare the config's order-shaping keys are left out, each method has its own
    assert "takes the config's values where the config sets them" not in preview
    assert "every method takes its own defaults (the paper's settings) for the keys that shape its order" in preview


# ------------------------------------------------------------------ completion


def test_completion_of_methods_and_set_keys():
    assert {"shuffle", "sorting", "str", "saw", "segment"} <= set(cli_help.method_names("s"))
    assert cli_help.method_names("zig") == ["zigzag"]
    assert cli_help.method_list("str,sa") == ["str,saw"]
    assert cli_help.set_keys("shard_") == ["shard_size=", "shard_rows="]
    assert "slurm." in cli_help.set_keys("slu") and cli_help.set_keys("seed=4") == []


def test_the_shell_asks_and_the_cli_completes():
    """End to end, as bash asks (typer's completion protocol), in a fresh interpreter: no Polars or
    PyArrow is loaded to complete."""
    code = ("import sys\nfrom reorder_cli.cli import app\ntry:\n    app(prog_name='reorder')\nexcept SystemExit:\n"
            "    pass\nprint('LOADED', [m for m in ('polars', 'pyarrow') if m in sys.modules])")
    for words, want in (("reorder run c.yaml --method sa", "saw"), ("reorder run c.yaml --set work_", "work_dir="),
                        ("reorder preview c.yaml --compare str,zig", "str,zigzag")):
        env = {**os.environ, "_REORDER_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - 1)}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        lines = proc.stdout.splitlines()
        assert want in lines[:-1] and lines[-1] == "LOADED []", proc.stdout


# ------------------------------------------------------------------ --json: one envelope, one schema


def envelope(result, command: str) -> dict:
    """The one JSON document on stdout, valid against the schema, for ``command``."""
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["command"] == command
    if not doc["ok"]:
        assert result.exit_code != 0 and f"error: {doc['error']}" in result.stderr or result.exit_code == 1
    return doc


def test_the_schema_rejects_a_wrong_envelope():
    """Negative controls: the schema is not vacuous."""
    good = {"command": "verify", "ok": True, "warnings": [],
            "data": {"shards": 1, "rows": 2, "bytes": 3, "permutation": None, "differences": []}}
    jsonschema.validate(good, SCHEMA)
    for bad in ({k: v for k, v in good.items() if k != "warnings"}, {**good, "ok": False},
                {**good, "data": {"rows": 2}}, {**good, "command": "nope"}, {**good, "data": None},
                {**good, "ok": False, "error": "two\nlines"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


@pytest.fixture
def small(tmp_path, config_file):
    rows = make_rows(60, seed=3)
    files = [write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(rows, seed=3))]
    return tmp_path, config_file, files


def test_every_command_prints_one_valid_envelope(small):
    tmp_path, cfg, files = small
    out = tmp_path / "out"
    run = invoke("run", cfg, "-i", files[0], "-o", out, "-m", "str", "--set", "shard_rows=20", "--json")
    assert run.exit_code == 0, run.output
    data = envelope(run, "run")["data"]
    assert data["status"] == "done" and data["totals"]["rows"] == 60 and data["method"] == "str"
    assert "rows ->" not in run.stderr  # the summary line is the envelope now

    verified = envelope(invoke("verify", out, "--with-inputs", "--json"), "verify")
    assert verified["ok"] and verified["data"]["differences"] == [] and verified["data"]["rows"] == 60

    methods = envelope(invoke("methods", "--json"), "methods")["data"]
    assert [m["name"] for m in methods] == list(METHODS)

    status = envelope(invoke("status", out, "--json"), "status")["data"]
    assert status["finished"] is True

    stats = envelope(invoke("stats", out, "--json"), "stats")["data"]
    assert stats["totals"] == read_manifest(out)["totals"]

    preview = invoke("preview", cfg, "-i", files[0], "--compare", "str,saw", "--json")
    assert [o["method"] for o in envelope(preview, "preview")["data"]["orders"]] == ["str", "saw"]

    log = AuditLog(tmp_path / "audit.jsonl")
    for step in range(30):
        log.log(step, [2 * step, 2 * step + 1])
    log.close()
    audit = envelope(invoke("audit", out, tmp_path / "audit.jsonl", "--positions", "--json"), "audit")
    assert audit["ok"] and audit["data"]["held"] and audit["data"]["global_batch"] == 2

    planned = tmp_path / "planned"
    assert invoke("run", cfg, "-i", files[0], "-o", planned, "-m", "str", "--plan-only", "-q",
                  "--set", "rewrite=out-of-core").exit_code == 0
    tasks = envelope(invoke("task", planned, "--json"), "task")["data"]["stages"]
    assert tasks["scatter"]["tasks"] >= 1
    ran = envelope(invoke("task", planned, "scatter", "0", "--json"), "task")["data"]
    assert ran["stage"] == "scatter" and ran["index"] == 0 and ran["skipped"] is False


def test_errors_and_differences_are_envelopes_too(small):
    tmp_path, cfg, files = small
    missing = invoke("stats", tmp_path / "missing", "--json")
    doc = envelope(missing, "stats")
    assert doc == {"command": "stats", "ok": False, "data": None, "warnings": [], "error": doc["error"]}
    assert one_line_error(missing) == f"error: {doc['error']}"  # exit 2 and the stderr line, as without --json
    bad_set = invoke("run", cfg, "-i", files[0], "-o", tmp_path / "o", "--set", "shard_rows=-1", "--json")
    assert envelope(bad_set, "run")["error"] and bad_set.exit_code == 2

    out = tmp_path / "out"
    reorder(cfg, files, out, method="str", sets=["shard_rows=20"])
    shard = sorted(out.glob("*.parquet"))[1]
    shard.write_bytes(sorted(out.glob("*.parquet"))[0].read_bytes())
    verified = invoke("verify", out, "--json")
    doc = envelope(verified, "verify")
    assert verified.exit_code == 1 and not doc["ok"] and "difference(s) found" in doc["error"]
    assert any(shard.name in d for d in doc["data"]["differences"]), doc["data"]


def test_warnings_go_into_the_envelope(small):
    tmp_path, _, files = small
    cfg = tmp_path / "with-unused.yaml"
    cfg.write_text("score_field: score\nformat: parquet\nx_pct: 10\n")
    result = invoke("preview", cfg, "-i", files[0], "-m", "str", "--json")
    doc = envelope(result, "preview")
    assert any("'x_pct'" in w for w in doc["warnings"]) and "warning:" in result.stderr


# ------------------------------------------------------------------ -q and -v


def test_quiet_and_verbose(small):
    tmp_path, cfg, files = small
    base = ["run", cfg, "-i", files[0], "-m", "str"]
    plain = invoke(*base, "-o", tmp_path / "a")
    assert plain.exit_code == 0 and "rows ->" in plain.stderr
    quiet = invoke(*base, "-o", tmp_path / "b", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == "", quiet.output
    loud = invoke(*base, "-o", tmp_path / "c", "-v")
    assert loud.exit_code == 0 and re.search(r"^run: \d+\.\d\d s$", loud.stderr, re.M), loud.stderr
    assert "rows ->" in loud.stderr and "settings: str (score_field=score" in loud.stderr
    assert "settings:" not in plain.stderr
    assert "run:" not in invoke("methods").stderr and re.search(r"methods: [\d.]+ s", invoke("methods", "-v").stderr)
    assert "contradict" in one_line_error(invoke("methods", "-q", "-v"))


# ------------------------------------------------------------------ width off a terminal


def test_tables_are_not_wrapped_at_80_columns_off_a_terminal(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    text = invoke("methods").stdout
    assert max(map(len, text.splitlines())) > 100
    for name, m in METHODS.items():
        label = name + "".join(f" (alias {a})" for a in m.aliases)
        assert any(line.lstrip("│┃ ").startswith(label) for line in text.splitlines()), label
    monkeypatch.setenv("COLUMNS", "90")
    assert max(map(len, invoke("methods").stdout.splitlines())) <= 90  # COLUMNS, when given, wins


def test_help_and_completion_setup_load_no_engine():
    """`reorder CMD -h` stays light with the completion helpers wired in: they import the registries (numpy,
    yaml) only when the shell asks. (Typer's rich help itself loads rich.)"""
    engine = ("polars", "numpy", "pyarrow", "yaml", "matplotlib", "reorder_cli.config", "reorder_cli.render")
    code = ("import json, sys\nfrom typer.testing import CliRunner\nfrom reorder_cli.cli import app\n"
            f"for c in {[[c, '-h'] for c in COMMANDS] + [['-h']]!r}:\n"
            "    r = CliRunner().invoke(app, c)\n    assert r.exit_code == 0, r.output\n"
            f"print(json.dumps([m for m in {engine!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout.splitlines()[-1]) == []
