"""Hostile inputs, issue 23: untrusted inputs on the new surfaces.

Every case is a class of input, driven with hypothesis where it fits, and each must end in a correct
result or ONE line (exit 2, no traceback), never a silent fallback.

Catalogue
- score expressions: a field name is a literal name (regex- and wildcard-looking names included), an
  expression of any depth or length evaluates or is refused with its stated limit, never RecursionError,
  and a nest of min/max/clip evaluates in time linear in its size.
- token sums of a selection are exact, or refused past 2**53 (no int64 wrap-around).
- every numeric key of the registry (ordering, tool, select, slurm and ray keys) with huge values on a
  tiny corpus under a small --memory-limit: a one-line error or a correct output.
- the manifest is untrusted for every reader (stats --deep, verify, audit, status, the loader): a shard
  path leaving the output folder and randomly corrupted fields are one line; so is a malformed run.json
  for status.
- audit logs: ids of mixed or nested types, floats or bools as positions, huge step numbers: one line
  naming the line (never a false pass).
- loader integer arguments: 2.5, "3", True are refused, not truncated; a huge micro batch is refused.
- the disk-space refusal gives sizes in readable units (not "0.00 GB").
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reorder_cli import config
from reorder_cli.errors import ReorderError
from reorder_cli.formats import score_expr
from reorder_cli.loader import OrderedReader, Source
from reorder_cli.plan import select

from ..conftest import (
    ids_of_lines,
    invoke,
    make_rows,
    one_line_error,
    read_jsonl_out,
    reorder,
    to_lines,
    write_jsonl,
)


def jsonl_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    """A small finished JSONL output (60 rows, 3 shards), made once; tests copy it before editing."""
    root = tmp_path_factory.mktemp("untrusted")
    cfg = root / "cfg.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\nshard_rows: 20\n")
    src = write_jsonl(root / "in" / "a.jsonl", to_lines(make_rows(60, seed=5, prefix="u")))
    out = root / "out"
    reorder(cfg, [src], out, method="str")
    return out


def copy_of(output: Path, tmp_path: Path, name: str = "out") -> Path:
    dest = tmp_path / name
    shutil.copytree(output, dest)
    return dest


# ------------------------------------------------------------------ score expressions

NAME_CHARS = "^$*?+()|{}\\a-"


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.text(NAME_CHARS, min_size=1, max_size=6), min_size=2, max_size=2, unique=True),
       values=st.lists(st.floats(-100, 100), min_size=6, max_size=6))
def test_a_field_name_is_a_literal_name_never_a_pattern(names, values):
    """`^a$`, `*`, `a|b` ... name one column each, however Polars would read them as a selector."""
    a, b = names
    cols = {"a": np.array(values[:3]), a: np.array(values[3:]), b: np.array(values[:3]) * 2}
    scoring = score_expr.scoring(expression=f"`{a}` * 10 + `{b}`")
    got = scoring.evaluate({f: cols[f] for f in scoring.fields})
    assert scoring.fields == (a, b)
    np.testing.assert_array_equal(got, cols[a] * 10 + cols[b])


def test_regex_and_wildcard_field_names_through_the_cli(tmp_path):
    rows = [{"id": i, "^s$": i % 7, "*": 1.0, "s": 100 - i} for i in range(30)]
    src = jsonl_rows(tmp_path / "in.jsonl", rows)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text('score: "`^s$` + 0 * `*`"\nformat: jsonl\n')
    reorder(cfg, [src], tmp_path / "out", method="sorting")
    got = [json.loads(line)["^s$"] for line in (tmp_path / "out" / "00000.jsonl").read_text().splitlines()]
    assert got == sorted(r["^s$"] for r in rows)  # sorted by the literal field, not by "s" (a regex match)


def nested(kind: str, depth: int) -> str:
    return {"paren": "(" * depth + "a" + ")" * depth, "sign": "-" * depth + "a",
            "call": "abs(" * depth + "a" + ")" * depth, "power": "1 ** " * depth + "a",
            "min": "min(" * depth + "a" + ", 2)" * depth}[kind]


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["paren", "sign", "call", "power", "min"]), depth=st.integers(0, 400))
def test_any_depth_evaluates_or_is_refused_with_the_stated_limit(kind, depth):
    text = nested(kind, depth)
    try:
        scoring = score_expr.scoring(expression=text)
    except ReorderError as exc:
        assert depth >= score_expr.MAX_DEPTH and f"nested more than {score_expr.MAX_DEPTH} levels" in str(exc)
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert depth < score_expr.MAX_DEPTH + (kind == "paren")  # the operand inside parentheses is one level
    a = np.array([0.5, 3.0, -4.0])
    got = scoring.evaluate({"a": a})
    want = {"paren": a, "sign": a * (-1) ** depth, "call": np.abs(a) if depth else a,
            "power": np.ones(3) if depth else a, "min": np.minimum(a, 2) if depth else a}[kind]
    np.testing.assert_allclose(got, want)


@settings(max_examples=10, deadline=None)
@given(terms=st.integers(1, 4000), op=st.sampled_from(["+", "-"]))
def test_any_length_evaluates_or_is_refused_with_the_stated_limit(terms, op):
    text = f" {op} ".join(["a"] * terms)
    a = np.array([1.0, 2.0])
    try:
        scoring = score_expr.scoring(expression=text)
    except ReorderError as exc:
        assert len(text) > score_expr.MAX_LENGTH and f"the limit is {score_expr.MAX_LENGTH:,}" in str(exc)
        return
    want = a * terms if op == "+" else a * (2 - terms)
    np.testing.assert_allclose(scoring.evaluate({"a": a}), want)


def test_a_nest_of_min_max_clip_evaluates_in_linear_time():
    """Each node once: min(min(...)) nine deep used to expand to 3**9 copies of its operands."""
    text = "clip(" * 3 + "min(" * 6 + "a" + ", b)" * 6 + ", 0, 9)" * 3
    t = time.perf_counter()
    got = score_expr.scoring(expression=text).evaluate({"a": np.arange(1000.0), "b": np.full(1000, 5.0)})
    assert time.perf_counter() - t < 2.0
    np.testing.assert_array_equal(got, np.minimum(np.arange(1000.0), 5.0))


# ------------------------------------------------------------------ token sums


def test_token_sums_never_wrap_around():
    """Two rows of 2**62 tokens sum to 2**63: past int64 (NumPy's sum wraps to a negative total)."""
    scores = np.array([1.0, 2.0, 3.0])
    tokens = np.array([2**62, 2**62, 5], dtype=np.int64)
    params = {"method": "tokens", "budget": 10, "token_field": "tok"}
    with pytest.raises(ReorderError, match=r"sum to 9,223,372,036,854,775,813, over 9,007,199,254,740,992"):
        select.select(params, 3, select.in_memory(scores, tokens))


@settings(max_examples=40, deadline=None)
@given(tokens=st.lists(st.integers(0, 2**50), min_size=1, max_size=40), budget=st.integers(1, 2**53))
def test_token_sums_are_exact(tokens, budget):
    scores = np.arange(len(tokens), dtype=np.float64)
    arr = np.array(tokens, dtype=np.int64)
    params = {"method": "tokens", "budget": budget, "token_field": "tok"}
    if sum(tokens) > select.MAX_TOKENS:
        with pytest.raises(ReorderError):
            select.select(params, len(tokens), select.in_memory(scores, arr), chunk=7)
        return
    if not sum(tokens):
        return
    got = select.select(params, len(tokens), select.in_memory(scores, arr), chunk=7)
    assert got.tokens_before == sum(tokens)
    kept = [t for t, keep in zip(tokens, got.cut.keep(0, scores), strict=True) if keep]
    assert got.tokens_after == sum(kept)
    assert sum(kept) >= min(budget, sum(tokens))  # the highest scores first, until the budget is reached


def test_a_token_budget_past_int64_through_the_cli(tmp_path):
    rows = [{"id": i, "score": i / 10, "tok": 2**62} for i in range(4)]
    src = jsonl_rows(tmp_path / "in.jsonl", rows)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("format: jsonl\nselect: {method: tokens, budget: 10B, token_field: tok}\n")
    msg = one_line_error(reorder(cfg, [src], tmp_path / "out", method="sorting", ok=False))
    assert "sum to 18,446,744,073,709,551,616" in msg and "token field" in msg, msg
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ every numeric key, huge values


def _numeric(checks: dict) -> list[str]:
    """The keys whose check takes an integer (sizes and counts and floats included; not the expression)."""
    out = []
    for name, check in checks.items():
        try:
            check(name, 7)
        except ReorderError:
            continue
        if name != "score":
            out.append(name)
    return out


NUMERIC = ([k for k in _numeric({k.name: k.check for k in config.KEYS.values()})]
           + [f"select.{k}" for k in _numeric(dict(config._SELECT_CHECKS))]
           + [f"slurm.{k}" for k in _numeric(config.SLURM_CHECKS)]
           + [f"ray.{k}" for k in _numeric(config.RAY_CHECKS)])
HUGE = [2**63 - 1, 1.7e308, 10**30, 10**15, 2**63, 2**64 + 1]  # the most hostile first: hypothesis starts there


def _method_for(key: str) -> str:
    k = config.KEYS.get(key)
    return k.methods[0] if k is not None and k.methods else "str"


def test_the_numeric_keys_are_all_found():
    assert {"window_size", "num_sections", "folding_layer", "zigzag_layer", "shard_rows", "row_group_rows",
            "shard_size", "workers", "memory_limit", "select.k", "select.budget", "ray.memory"} <= set(NUMERIC)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    return jsonl_rows(root / "in.jsonl", [{"id": i, "score": (i * 7) % 10 / 3, "tok": i + 1} for i in range(24)])


@pytest.mark.parametrize("key", NUMERIC)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.sampled_from(HUGE), rewrite=st.sampled_from(["in-memory", "out-of-core"]))
def test_every_numeric_key_takes_a_huge_value_or_refuses_it(tmp_path, tiny, key, value, rewrite):
    section, _, name = key.rpartition(".")
    if section == "select":
        body = {"k": f"select: {{k: {value}}}", "budget": f"select: {{method: tokens, budget: {value}, token_field: "
                "tok}", "threshold": f"select: {{threshold: {value}}}", "r": f"select: {{r: {value}}}"}[name]
    elif section:
        body = f"{section}: {{{name}: {value}}}"
    else:
        body = f"{key}: {value}"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"score_field: score\nformat: jsonl\n{body}\n")
    out = tmp_path / f"out-{abs(hash(value))}"
    result = reorder(cfg, [tiny], out, method=_method_for(key), sets=[f"rewrite={rewrite}"],
                    extra=["--memory-limit", "300MB"], ok=False)
    if result.exit_code == 0:
        check = invoke("verify", out, "--with-inputs", "-q")
        assert check.exit_code == 0, check.output
        assert "permutation" in check.stdout or "selected rows" in check.stdout, check.stdout
    else:
        msg = one_line_error(result)
        assert f"'{key}'" in msg or "select" in msg, msg
        assert not out.exists()


# ------------------------------------------------------------------ the manifest, for every reader


def readers(out: Path, log: Path) -> dict[str, object]:
    """Each reader of a manifest on ``out``: a CLI result (or the loader's ReorderError as a string)."""
    results = {name: invoke(*args) for name, args in {
        "stats": ("stats", out, "--deep"), "verify": ("verify", out, "-q"), "audit": ("audit", out, log),
        "status": ("status", out)}.items()}
    try:
        Source(out)
        results["loader"] = None
    except ReorderError as exc:
        results["loader"] = str(exc)
    return results


def ids_log(out: Path, tmp_path: Path) -> Path:
    ids = ids_of_lines(read_jsonl_out(out))
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "ids": ids[s * 20:(s + 1) * 20]}) + "\n" for s in range(3)))
    return log


@pytest.mark.parametrize("where", ["parent", "absolute", "nested"])
def test_a_shard_path_leaving_the_folder_is_refused_by_every_reader(output, tmp_path, where):
    out = copy_of(output, tmp_path)
    log = ids_log(out, tmp_path)
    doc = json.loads((out / ".manifest.json").read_text())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(out / "00000.jsonl", outside / "00000.jsonl")  # the escape leads to a real, readable file
    doc["shards"][0]["file"] = {"parent": "../elsewhere/00000.jsonl", "absolute": str(outside / "00000.jsonl"),
                                "nested": "../out/00000.jsonl"}[where]
    (out / ".manifest.json").write_text(json.dumps(doc))
    results = readers(out, log)
    for name, result in results.items():
        msg = result if name == "loader" else one_line_error(result)
        assert "shard 0" in msg and "not a plain file name inside the output folder" in msg, (name, msg)


CORRUPT = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=5), st.lists(st.integers(), max_size=3),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FIELDS = [("shards",), ("totals",), ("inputs",), ("output",), ("method",), ("params",), ("profile",),
          ("invalid_scores",), ("score_field",), ("shards", 0), ("shards", 1, "file"), ("shards", 1, "rows"),
          ("shards", 2, "positions"), ("shards", 0, "bytes"), ("shards", 2, "score"), ("totals", "rows"),
          ("output", "format"), ("inputs", 0), ("inputs", 0, "path"), ("shards", 1, "positions", 0),
          ("metrics",), ("metrics", "params"), ("metrics", "params", "window"), ("metrics", "params", "bins"),
          ("selection",), ("score",)]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=CORRUPT)
def test_a_corrupted_manifest_is_one_line_for_every_reader(output, tmp_path_factory, field, value):
    tmp = tmp_path_factory.mktemp("corrupt")
    out = copy_of(output, tmp)
    log = ids_log(out, tmp)
    doc = json.loads((out / ".manifest.json").read_text())
    target = doc
    for part in field[:-1]:
        target = target[part]
    target[field[-1]] = value
    (out / ".manifest.json").write_text(json.dumps(doc))
    for name, result in readers(out, log).items():
        if name == "loader" or result.exit_code in (0, 1):
            assert name == "loader" or "Traceback" not in result.output, (name, result.output)
            continue  # a value of the right type: read, and compared (verify's differences, audit's report)
        one_line_error(result)


@pytest.mark.parametrize(("key", "value"), [("window", "x"), ("bins", 1.5), ("window", True), ("boundary_pct", None),
                                            ("cycle_threshold", [1])])
def test_the_recorded_metric_parameters_are_checked_by_stats_deep(output, tmp_path, key, value):
    out = copy_of(output, tmp_path)
    doc = json.loads((out / ".manifest.json").read_text())
    doc["metrics"]["params"][key] = value
    (out / ".manifest.json").write_text(json.dumps(doc))
    msg = one_line_error(invoke("stats", out, "--deep"))
    assert f"metrics.params.{key}" in msg, msg


@pytest.mark.parametrize("text", ["{", "[]", '{"manifest_version": 1}', "[" * 100_000 + "]" * 100_000,
                                  '{"manifest_version": 1, "shards": "x"}'])
def test_a_malformed_manifest_file_is_one_line_for_every_reader(output, tmp_path, text):
    out = copy_of(output, tmp_path)
    log = ids_log(out, tmp_path)
    (out / ".manifest.json").write_text(text)
    for name, result in readers(out, log).items():
        msg = result if name == "loader" else one_line_error(result)
        assert ".manifest.json" in msg, (name, msg)


@pytest.mark.parametrize("text", ["{", '{"config": 5}', "[]", '{"config": {}, "files": [], "memory": 1}'])
@pytest.mark.parametrize(("extra", "name"), [(["--executor", "slurm", "--dry-run"], "run.json"),
                                             (["--plan-only"], "plan/plan.json")], ids=["run.json", "plan.json"])
def test_status_reads_malformed_run_files_as_one_line(tmp_path, text, extra, name):
    src = write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(make_rows(30, seed=2, prefix="r")))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\n")
    out = tmp_path / "out"
    reorder(cfg, [src], out, method="str", sets=["rewrite=out-of-core"], extra=extra)
    assert invoke("status", out).exit_code == 0
    (out / ".reorder" / name).write_text(text)
    msg = one_line_error(invoke("status", out))
    assert "malformed" in msg, msg


# ------------------------------------------------------------------ audit logs

IDS = st.one_of(st.lists(st.one_of(st.text(max_size=3), st.integers(), st.floats(), st.booleans(), st.none(),
                                   st.lists(st.integers(), max_size=2)), min_size=1, max_size=4))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=IDS, step=st.one_of(st.integers(0, 3), st.integers(2**62 + 1, 2**80), st.integers(-2**80, -1),
                               st.floats(), st.text(max_size=2)),
       positions=st.booleans())
def test_an_audit_line_of_any_json_types_is_one_line_or_a_real_report(output, tmp_path_factory, ids, step, positions):
    tmp = tmp_path_factory.mktemp("audit")
    good = ids_log(output, tmp).read_text().splitlines()
    log = tmp / "bad.jsonl"
    log.write_text("\n".join([good[0], json.dumps({"step": step, "ids": ids})]) + "\n")
    result = invoke("audit", output, log, *(["--positions"] if positions else []))
    kinds = {type(i) for i in ids}
    well_formed = (type(step) is int and 0 <= step <= 2**62 and kinds == {str} and not positions)
    if well_formed:
        assert result.exit_code in (0, 1), result.output  # read and judged
        return
    msg = one_line_error(result)
    assert "line 2" in msg or "--positions" in msg, msg


def test_positions_that_are_not_integers_are_never_a_false_pass(output, tmp_path):
    rows = len(read_jsonl_out(output))
    for cast in (float, bool, str):
        log = tmp_path / f"{cast.__name__}.jsonl"
        log.write_text("".join(json.dumps({"step": s, "ids": [cast(p) for p in range(s * 20, (s + 1) * 20)]}) + "\n"
                               for s in range(rows // 20)))
        msg = one_line_error(invoke("audit", output, log, "--positions"))
        assert "line 1" in msg or "integer" in msg, msg
    good = tmp_path / "int.jsonl"
    good.write_text("".join(json.dumps({"step": s, "ids": list(range(s * 20, (s + 1) * 20))}) + "\n"
                            for s in range(rows // 20)))
    assert invoke("audit", output, good, "--positions").exit_code == 0


@pytest.mark.parametrize("option", [["--start-sample", str(10**30)], ["--global-batch", str(2**63)],
                                    ["--start-sample", "-1"]])
def test_audit_options_past_the_output_are_one_line(output, tmp_path, option):
    msg = one_line_error(invoke("audit", output, ids_log(output, tmp_path), *option))
    assert option[0] in msg, msg


# ------------------------------------------------------------------ the loader's integer arguments

ARGS = ["micro_batch_size", "grad_accum_steps", "rank", "world_size", "start_step", "start_sample"]


@pytest.mark.parametrize("arg", ARGS)
@pytest.mark.parametrize("value", [2.5, "3", True, 2.0, 10**20, -1, None])
def test_a_loader_integer_argument_is_refused_not_truncated(output, arg, value):
    kwargs = {"micro_batch_size": 2, "world_size": 2} | {arg: value}
    if value is None and arg == "start_sample":
        return  # None: start from start_step
    with pytest.raises(ReorderError, match=arg):
        OrderedReader(output, **kwargs)


def test_loader_integers_that_are_fine(output):
    reader = OrderedReader(output, micro_batch_size=np.int64(1000), drop_last=False)
    assert len(reader) == 60 and len(list(reader.micro_batches())) == 1  # a batch beyond the rows: one short one
    with pytest.raises(ReorderError, match="samples_consumed"):
        reader.load_state_dict({"samples_consumed": 1.5})
    with pytest.raises(ReorderError, match="steps"):
        reader.state_dict(steps=2.5)


# ------------------------------------------------------------------ the disk-space refusal


def test_the_disk_space_refusal_gives_sizes_to_act_on(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(make_rows(200, seed=1, prefix="d")))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\n")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    msg = one_line_error(reorder(cfg, [src], tmp_path / "o", method="str",
                                 sets=["rewrite=out-of-core", "memory_limit=1"], ok=False))
    assert "0.00" not in msg, msg
    sizes = re.findall(r"(\d+(?:\.\d)?) (B|KB|MB|GB)", msg)
    assert len(sizes) >= 3 and ("1.0", "KB") in sizes, msg
