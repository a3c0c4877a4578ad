"""Score expressions: the parser, the compiled Polars expression against plain Python on every
row, and expressions through the real CLI on JSONL and Parquet (errors, invalid rows, verify)."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli.errors import ReorderError
from reorder_cli.formats import score_expr
from tests.conftest import invoke, one_line_error, read_manifest, read_parquet_out, reorder

FIELDS = ["a", "b", "m.c", "m.d e"]
SHOWN = {"a": "a", "b": "b", "m.c": "m.c", "m.d e": 'm."d e"'}

# ------------------------------------------------------------------ plain Python, row by row


def py_eval(node, row: dict) -> float:
    """The expression on one row, in plain Python floats (IEEE: 1/0 = inf, log(-1) = NaN)."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "field":
        return row[node[1]]
    if kind == "neg":
        return -py_eval(node[1], row)
    if kind == "op":
        a, b = py_eval(node[2], row), py_eval(node[3], row)
        op = node[1]
        if op in ("<", "<=", ">", ">=", "==", "!="):
            if math.isnan(a) or math.isnan(b):
                return math.nan
            return float({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op])
        if op == "/":
            if b == 0:
                return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
            return a / b
        if op == "**":
            with np.errstate(all="ignore"):
                return float(np.float64(a) ** np.float64(b))
        with np.errstate(all="ignore"):
            return float({"+": np.float64(a) + b, "-": np.float64(a) - b, "*": np.float64(a) * b}[op])
    name, args = node[1], [py_eval(x, row) for x in node[2]]
    if name in ("min", "max"):
        return math.nan if any(math.isnan(x) for x in args) else (min if name == "min" else max)(args)
    if name == "abs":
        return abs(args[0])
    if name == "log":
        x = args[0]
        return math.nan if math.isnan(x) or x < 0 else -math.inf if x == 0 else math.log(x)
    if name == "exp":
        try:
            return math.exp(args[0])
        except OverflowError:
            return math.inf
    if name == "clip":
        x, lo, hi = args
        return math.nan if any(math.isnan(v) for v in args) else min(max(x, lo), hi)
    cond, a, b = args  # where
    return math.nan if math.isnan(cond) else (a if cond != 0 else b)


def render(node) -> str:
    kind = node[0]
    if kind == "num":
        return repr(node[1])
    if kind == "field":
        return SHOWN[node[1]]
    if kind == "neg":
        return f"(-{render(node[1])})"
    if kind == "op":
        return f"({render(node[2])} {node[1]} {render(node[3])})"
    return f"{node[1]}({', '.join(render(a) for a in node[2])})"


leaves = st.sampled_from(FIELDS).map(lambda f: ("field", f)) | st.sampled_from([0.0, 1.0, 2.5, 0.3, 10.0]).map(
    lambda v: ("num", v))


def _grow(children):
    ops = st.sampled_from(["+", "-", "*", "/", "**", "<", "<=", ">", ">=", "==", "!="])
    return (st.tuples(st.just("op"), ops, children, children)
            | st.tuples(st.just("neg"), children)
            | st.tuples(st.just("call"), st.sampled_from(["abs", "log", "exp"]), st.tuples(children))
            | st.tuples(st.just("call"), st.sampled_from(["min", "max"]), st.tuples(children, children, children))
            | st.tuples(st.just("call"), st.sampled_from(["clip", "where"]), st.tuples(children, children, children)))


trees = st.recursive(leaves, _grow, max_leaves=8)
values = st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5, -3.25, 100.0, math.nan]) | st.floats(-50, 50)


@settings(max_examples=400, deadline=None)
@given(tree=trees, data=st.data())
def test_expression_equals_plain_python_on_every_row(tree, data):
    if not score_expr.fields_of(tree):
        tree = ("op", "+", tree, ("field", "a"))
    n = 12
    columns = {f: np.array(data.draw(st.lists(values, min_size=n, max_size=n))) for f in FIELDS}
    scoring = score_expr.scoring(expression=render(tree))
    assert scoring.expr == tree  # the parser reads back what was rendered
    got = scoring.evaluate({f: columns[f] for f in scoring.fields})
    for i in range(n):
        row = {f: float(columns[f][i]) for f in FIELDS}
        want = math.nan if any(math.isnan(row[f]) for f in scoring.fields) else py_eval(tree, row)
        if not math.isfinite(want):
            assert math.isnan(got[i]), (render(tree), row, got[i], want)
        else:
            assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-300), (render(tree), row)


@pytest.mark.parametrize("text, want", [
    ("-2 ** 2", -4.0), ("2 ** 3 ** 2", 512.0), ("1 + 2 * 3", 7.0), ("(1 + 2) * 3", 9.0), ("10 / 4 / 5", 0.5),
    ("a < 2", 1.0), ("a >= 2", 0.0), ("where(a > 0, 7, 8)", 7.0), ("clip(a * 10, 0, 3)", 3.0),
    ("min(a, 0.5, 4)", 0.5), ("max(a, -1)", 1.0), ("abs(-a)", 1.0), ("log(exp(a))", 1.0), ("1e1 * a", 10.0),
    ("`a` + 'a' + \"a\"", 3.0), ("2 - - a", 3.0),
])
def test_precedence_and_functions(text, want):
    text = text if "a" in text else f"{text} + 0 * a"  # a score must read a field
    assert score_expr.scoring(expression=text).evaluate({"a": np.array([1.0])})[0] == pytest.approx(want)


@pytest.mark.parametrize("text, message", [
    ("a +", "position 4: expected a number"), ("(a", "position 3: expected ')'"), ("a b", "position 3: unexpected"),
    ("avg(a)", "unknown function 'avg' (known: abs, clip, exp, log, max, min, where)"),
    ("clip(a, 1)", "clip() takes 3 argument(s), got 2"), ("1 + 2", "references no field"),
    ("a < b < c", "comparisons do not chain"), ("a # b", "position 3: unexpected character '#'"),
    ("'a.b' + 1", "quoted field name"), ("", "expected an expression"),
])
def test_syntax_errors_point_at_the_character(text, message):
    with pytest.raises(ReorderError, match=None) as info:
        score_expr.scoring(expression=text) if text else score_expr.parse(3)
    assert message in str(info.value) or (not text and "expected an expression" in str(info.value)), info.value


# ------------------------------------------------------------------ through the CLI


def rows(n: int = 200, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": f"d{i}", "educational_value": float(rng.integers(0, 50)) / 10,
             "facts": {"trivia": float(np.round(rng.random() * 5, 2))}, "writing style": int(rng.integers(0, 6)),
             "text": "y" * (i % 5)} for i in range(n)]


EXPR = '0.4 * educational_value + 0.3 * facts.trivia + 0.3 * "writing style"'


def py_score(r: dict) -> float:
    return 0.4 * r["educational_value"] + 0.3 * r["facts"]["trivia"] + 0.3 * r["writing style"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_combined_score_orders_like_the_python_score(tmp_path, config_file, fmt):
    data = rows()
    path = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
    else:
        pq.write_table(pa.Table.from_pylist(data), path)
    out = tmp_path / "out"
    reorder(config_file, path, out, "sorting", sets=[f"score={EXPR}", "select.method=top-r", "select.r=0.5"])
    got = read_parquet_out(out).to_pylist()
    want = sorted(data, key=py_score)[-100:]  # the reference: stable ascending, last k; sorting keeps it so
    assert [r["id"] for r in got] == [r["id"] for r in want]
    doc = read_manifest(out)
    assert doc["score"] == EXPR and "score_field" in doc and doc["score_field"] is None
    assert doc["totals"]["score"]["min"] == pytest.approx(py_score(want[0]))
    for args in (["verify", out, "--with-inputs"], ["stats", out, "--deep"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_bad_operand_names_file_row_field_and_value(tmp_path, config_file, fmt):
    data = rows(30)
    data[11]["facts"]["trivia"] = "lots"
    path = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
        where = "line 12"
    else:
        for r in data:
            r["facts"]["trivia"] = str(r["facts"]["trivia"])  # one column type: numeric strings and one word
        pq.write_table(pa.Table.from_pylist(data), path)
        where = "row 11"
    err = one_line_error(reorder(config_file, path, tmp_path / "out", "saw", sets=[f"score={EXPR}"], ok=False))
    assert str(path) in err and where in err and "facts.trivia" in err and "'lots'" in err, err
    assert not (tmp_path / "out").exists()
    # the twin: invalid_scores=drop leaves that row out and says why in the manifest
    reorder(config_file, path, tmp_path / "out", "saw", sets=[f"score={EXPR}", "invalid_scores=drop"])
    inv = read_manifest(tmp_path / "out")["invalid_scores"]
    assert inv["dropped"] == 1 and "facts.trivia" in inv["samples"][0]["value"]


def test_a_non_finite_result_is_an_invalid_score(tmp_path, config_file):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "a": i}) + "\n" for i in range(5)))
    err = one_line_error(reorder(config_file, path, tmp_path / "out", "saw", sets=["score=log(a)"], ok=False))
    assert "line 1" in err and "no finite number" in err and "a=0.0" in err, err
    reorder(config_file, path, tmp_path / "out", "saw", sets=["score=log(a + 1)"])


def test_a_missing_field_column_is_named(tmp_path, config_file):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows(10)), path)
    err = one_line_error(reorder(config_file, path, tmp_path / "out", "saw", sets=["score=2 * nope + facts.trivia"],
                                 ok=False))
    assert "no column 'nope'" in err and str(path) in err
