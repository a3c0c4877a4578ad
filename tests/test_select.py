"""Selection before ordering (top-k, top-r, threshold, tokens) against a transcription of the
reference's ``data_selection``, in memory and out of core, through the real CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli.plan import select
from tests import oracle
from tests.conftest import (
    ids_of_lines,
    invoke,
    one_line_error,
    params,
    read_jsonl_out,
    read_manifest,
    reorder,
)

# ------------------------------------------------------------------ the reference, transcribed


def ref_top_k(rows: list[dict], k: int) -> list[dict]:
    """``data_selection/top_k.py``: sorted ascending (stable), the last k unless k >= len."""
    out = sorted(rows, key=lambda x: x["score"], reverse=False)
    if k < len(out):
        out = out[-k:]
    return out


def ref_top_r(rows: list[dict], r: float) -> list[dict]:
    return ref_top_k(rows, int(len(rows) * float(max(0, r))))


def ref_threshold(rows: list[dict], threshold: float) -> list[dict]:
    return [x for x in rows if x["score"] > threshold]


def ref_tokens(rows: list[dict], budget: int) -> list[dict]:
    """This tool's token budget, walked one row at a time: highest score first, ties later rows
    first; a row is kept while the tokens kept before it are below the budget."""
    walk = list(reversed(sorted(rows, key=lambda x: x["score"])))
    kept, total = [], 0
    for x in walk:
        if total >= budget:
            break
        kept.append(x)
        total += x["tok"]
    return kept


def kept_rows(p: dict, scores: np.ndarray, tokens: np.ndarray | None = None, chunk: int | None = None) -> set[int]:
    n = len(scores)
    chosen = select.select(p, n, select.in_memory(scores, tokens), chunk or max(1, n))
    return set(np.flatnonzero(chosen.cut.keep(0, scores)).tolist())


def rows_of(scores, tokens=None) -> list[dict]:
    return [{"i": i, "score": float(s), "tok": 0 if tokens is None else int(tokens[i])} for i, s in enumerate(scores)]


scores_st = st.lists(st.sampled_from([-2.0, -0.0, 0.0, 0.5, 1.0, 1.0, 3.0, 7.25, 1e300, -1e-300]) | st.floats(
    -1e6, 1e6, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(scores=scores_st, k=st.integers(1, 70), chunk=st.integers(1, 17))
def test_top_k_keeps_the_references_set(scores, k, chunk):
    s = np.array(scores)
    want = {x["i"] for x in ref_top_k(rows_of(s), k)}
    assert kept_rows({"method": "top-k", "k": k}, s, chunk=chunk) == want
    assert kept_rows({"method": "top-k", "k": k}, s) == want  # one chunk (in memory) = many (out of core)


@settings(max_examples=200, deadline=None)
@given(scores=scores_st, r=st.floats(0, 1), chunk=st.integers(1, 9))
def test_top_r_keeps_the_references_set(scores, r, chunk):
    s = np.array(scores)
    want = {x["i"] for x in ref_top_r(rows_of(s), r)}
    if int(len(s) * r) == 0:  # the reference keeps everything (x[-0:]); here: a one-line error
        with pytest.raises(Exception, match="keeps no row"):
            kept_rows({"method": "top-r", "r": r}, s, chunk=chunk)
        return
    assert kept_rows({"method": "top-r", "r": r}, s, chunk=chunk) == want


@settings(max_examples=200, deadline=None)
@given(scores=scores_st, threshold=st.sampled_from([0.0, 1.0, 0.5, -2.0]) | st.floats(-1e6, 1e6))
def test_threshold_keeps_the_references_set(scores, threshold):
    s = np.array(scores)
    want = {x["i"] for x in ref_threshold(rows_of(s), threshold)}
    if not want:
        with pytest.raises(Exception, match="keeps none"):
            kept_rows({"method": "threshold", "threshold": threshold}, s)
        return
    assert kept_rows({"method": "threshold", "threshold": threshold}, s) == want


@settings(max_examples=300, deadline=None)
@given(data=st.data(), budget=st.integers(1, 400), chunk=st.integers(1, 13))
def test_tokens_keep_the_walks_set(data, budget, chunk):
    scores = np.array(data.draw(scores_st))
    tokens = np.array(data.draw(st.lists(st.integers(0, 40), min_size=len(scores), max_size=len(scores))),
                      dtype=np.int64)
    rows = rows_of(scores, tokens)
    want = {x["i"] for x in ref_tokens(rows, budget)}
    p = {"method": "tokens", "budget": budget, "token_field": "tok"}
    assert kept_rows(p, scores, tokens, chunk) == want
    chosen = select.select(p, len(scores), select.in_memory(scores, tokens), chunk)
    assert chosen.tokens_after == sum(int(tokens[i]) for i in want)


def test_invalid_rows_are_never_selected():
    s = np.array([1.0, np.nan, 3.0, np.nan, 2.0])
    assert kept_rows({"method": "top-k", "k": 2}, s) == {2, 4}
    chosen = select.select({"method": "top-k", "k": 9}, 5, select.in_memory(s, None))
    assert (chosen.rows_before, chosen.rows_after) == (3, 3)


# ------------------------------------------------------------------ through the CLI, row for row


def scored_corpus(tmp_path: Path, n: int = 300, seed: int = 0) -> tuple[Path, list[dict]]:
    rng = np.random.default_rng(seed)
    rows = [{"id": f"d{i}", "score": float(rng.integers(0, 12)) / 2, "q": float(np.round(rng.random(), 3)),
             "meta": {"edu": int(rng.integers(0, 5))}, "tok": int(rng.integers(1, 50)), "text": "x" * int(i % 7)}
            for i in range(n)]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


SELECTIONS = {
    "top-k": (["select.method=top-k", "select.k=97"], lambda rows: ref_top_k(rows, 97)),
    "top-r": (["select.method=top-r", "select.r=0.3"], lambda rows: ref_top_r(rows, 0.3)),
    "threshold": (["select.method=threshold", "select.threshold=3.5"], lambda rows: ref_threshold(rows, 3.5)),
}


@pytest.mark.parametrize("how", list(SELECTIONS))
@pytest.mark.parametrize("method", ["str", "saw", "sorting"])
def test_select_then_order_equals_the_reference_pipeline(tmp_path, config_file, how, method):
    """The reference's data_selection output (a list of rows) fed to its data_ordering equals
    ``reorder run`` with the select: section, row for row."""
    path, rows = scored_corpus(tmp_path)
    sets, ref_select = SELECTIONS[how]
    reorder(config_file, path, tmp_path / "out", method, sets=[*sets, "format=jsonl"])
    selected = ref_select(rows)
    order = oracle.order(method, [r["score"] for r in selected], params(method))
    assert ids_of_lines(read_jsonl_out(tmp_path / "out")) == [selected[i]["id"] for i in order]
    sel = read_manifest(tmp_path / "out")["selection"]
    assert sel["rows_after"] == len(selected) and sel["dropped"] == len(rows) - len(selected)


def test_method_input_keeps_the_selected_rows_in_input_order(tmp_path, config_file):
    path, rows = scored_corpus(tmp_path)
    reorder(config_file, path, tmp_path / "out", "input", sets=["select.method=threshold", "select.threshold=4",
                                                                "format=jsonl"])
    assert ids_of_lines(read_jsonl_out(tmp_path / "out")) == [r["id"] for r in rows if r["score"] > 4]
    reorder(config_file, path, tmp_path / "all", "input", sets=["format=jsonl"])  # its twin: no selection
    assert read_jsonl_out(tmp_path / "all") == path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("sets", [["select.method=top-r", "select.r=0.37"],
                                  ["select.method=tokens", "select.budget=2000", "select.token_field=tok"],
                                  ["select.method=threshold", "select.threshold=2"],
                                  ["select=top-r:0.6", "select=tokens:2000", "select.token_field=tok"]])
@pytest.mark.parametrize("method", ["saw", "input", "segment", "shuffle"])
def test_in_memory_and_out_of_core_give_the_same_bytes(tmp_path, config_file, sets, method):
    path, _ = scored_corpus(tmp_path, 500, seed=3)
    lines = path.read_text().splitlines()
    lines[7] = lines[7].replace('"score": ', '"score": "x", "was": ')  # an invalid score: placed last
    path.write_text("\n".join(lines) + "\n")
    common = [*sets, "invalid_scores=last", "format=jsonl"]
    reorder(config_file, path, tmp_path / "mem", method, sets=common)
    reorder(config_file, path, tmp_path / "ooc", method, sets=[*common, "rewrite=out-of-core", "memory_limit=1"])
    log = json.loads((tmp_path / "ooc" / ".run_log.json").read_text())
    assert log["keys"] == "out-of-core"
    assert read_jsonl_out(tmp_path / "mem") == read_jsonl_out(tmp_path / "ooc")
    a, b = read_manifest(tmp_path / "mem"), read_manifest(tmp_path / "ooc")
    assert a["selection"] == b["selection"] and a["totals"] == b["totals"]
    assert a["invalid_scores"]["count"] == 1 and json.loads(read_jsonl_out(tmp_path / "mem")[-1])["id"] == "d7"


def test_manifest_records_the_selection_and_verify_proves_the_subset(tmp_path, config_file):
    path, rows = scored_corpus(tmp_path)
    out = tmp_path / "out"
    reorder(config_file, path, out, "saw", sets=["select.method=tokens", "select.budget=1500",
                                                 "select.token_field=tok", "format=jsonl"])
    doc = read_manifest(out)
    sel = doc["selection"]
    want = ref_tokens(rows, 1500)
    assert sel["params"] == {"method": "tokens", "budget": 1500, "token_field": "tok"}
    assert (sel["rows_before"], sel["rows_after"]) == (300, len(want))
    assert sel["tokens_before"] == sum(r["tok"] for r in rows)
    assert sel["tokens_after"] == sum(r["tok"] for r in want) >= 1500
    assert sel["cutoff"] == min(r["score"] for r in want)
    assert doc["totals"]["unselected_rows"] == 300 - len(want) and doc["totals"]["dropped_rows"] == 0
    result = invoke("verify", out, "--with-inputs")
    assert result.exit_code == 0, result.output
    assert "exactly the selected rows" in result.output
    # negative control: one dropped row swapped in for a kept one is caught
    shard = next(out.glob("0*.jsonl"))
    kept = shard.read_bytes().splitlines(keepends=True)
    dropped_ids = {r["id"] for r in rows} - {r["id"] for r in want}
    stranger = next(json.dumps(r) + "\n" for r in rows if r["id"] in dropped_ids)
    shard.write_bytes(stranger.encode() + b"".join(kept[1:]))
    result = invoke("verify", out, "--with-inputs")
    assert result.exit_code != 0 and "not the selected rows" in result.output


def test_stats_and_preview_show_what_is_kept(tmp_path, config_file):
    path, _ = scored_corpus(tmp_path)
    reorder(config_file, path, tmp_path / "out", "saw", sets=["select.method=top-k", "select.k=50"])
    result = invoke("stats", tmp_path / "out")
    assert result.exit_code == 0 and "kept 50 of 300 rows" in result.output
    result = invoke("preview", config_file, "--method", "saw", "-i", path, "--set", "select.method=threshold",
                    "--set", "select.threshold=3")
    assert result.exit_code == 0, result.output
    assert "select threshold (threshold=3.0) kept" in result.output and "score > 3" in result.output
    assert not (tmp_path / "out2").exists()


def test_reference_selection_config_works_as_the_select_section(tmp_path):
    """The reference's data_selection/config/top-k.yaml (name, version, description, score_field, k)
    as a file named by ``select:``; the method follows from its key."""
    path, rows = scored_corpus(tmp_path)
    (tmp_path / "top-k.yaml").write_text("name: top-k\nversion: 1.0\ndescription: Config of top-k method in data "
                                         "selection.\n\nscore_field: score\nk: 10\n")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"score_field: score\nformat: jsonl\nselect: {tmp_path / 'top-k.yaml'}\n")
    reorder(cfg, path, tmp_path / "out", "sorting")
    want = ref_top_k(rows, 10)
    assert ids_of_lines(read_jsonl_out(tmp_path / "out")) == [r["id"] for r in want]  # ascending = sorting's order
    reorder(cfg, path, tmp_path / "out2", "sorting", sets=["select.k=5"])  # a --set reaches into the file's section
    assert len(read_jsonl_out(tmp_path / "out2")) == 5
    reorder(cfg, path, tmp_path / "out3", "sorting", sets=["select.method=none"])  # and turns it off
    assert len(read_jsonl_out(tmp_path / "out3")) == len(rows)
    assert "selection" not in read_manifest(tmp_path / "out3")


# ------------------------------------------------------------------ bad input, each with its valid twin

BAD = [
    (["select.method=top-r", "select.r=1.5"], "select.r", "[0.0, 1.0]", ["select.method=top-r", "select.r=1.0"]),
    (["select.method=top-r", "select.r=-0.1"], "select.r", "[0.0, 1.0]", ["select.method=top-r", "select.r=0.5"]),
    (["select.method=top-k", "select.k=-3"], "select.k", ">= 1", ["select.method=top-k", "select.k=3"]),
    (["select.method=tokens", "select.budget=10K"], "select.token_field", "token_field",
     ["select.method=tokens", "select.budget=10K", "select.token_field=tok"]),
    (["select.method=top-k", "select.k=3", "select.r=0.5"], "select.r", "not read", ["select.method=top-k",
                                                                                       "select.k=3"]),
    (["select.method=best"], "select.method", "top-k, top-r, threshold, tokens", ["select.method=top-k",
                                                                                  "select.k=1"]),
    (["select.kk=3"], "select.kk", "known", ["select.k=3"]),
    (["select.method=threshold", "select.threshold=100"], "select", "keeps none", ["select.method=threshold",
                                                                                    "select.threshold=5"]),
    (["select.method=top-r", "select.r=0.001"], "top-r", "keeps no row", ["select.method=top-r", "select.r=0.01"]),
    (["score=2 * (q + 1"], "score", "position 11: expected ')'", ["score=2 * (q + 1)"]),
    (["score=2 * mean(q)"], "score", "known: abs, clip, exp, log, max, min, where", ["score=2 * max(q, 0)"]),
    (["score=3"], "score", "references no field", ["score=3 * q"]),
]


@pytest.mark.parametrize("bad, key, allowed, good", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_selection_and_expressions(tmp_path, config_file, bad, key, allowed, good):
    path, _ = scored_corpus(tmp_path)
    out = tmp_path / "out"
    err = one_line_error(reorder(config_file, path, out, "saw", sets=bad, ok=False))
    assert key in err and allowed in err, err
    assert not out.exists()
    reorder(config_file, path, out, "saw", sets=good)


def test_score_and_score_field_in_one_config(tmp_path):
    path, _ = scored_corpus(tmp_path)
    cfg = tmp_path / "both.yaml"
    cfg.write_text("score_field: score\nscore: 2 * q\n")
    err = one_line_error(reorder(cfg, path, tmp_path / "out", "saw", ok=False))
    assert "'score' and 'score_field' are exclusive" in err and not (tmp_path / "out").exists()
    cfg.write_text("score: 2 * q\n")
    reorder(cfg, path, tmp_path / "out", "saw")


TOKEN_CASES = [("jsonl", None, "null"), ("jsonl", "12", None), ("jsonl", 3.5, "not an integer"),
               ("jsonl", -2, "negative"), ("jsonl", "missing", "missing"), ("jsonl", 7, None),
               ("parquet", None, "null"), ("parquet", 3.5, "not an integer"), ("parquet", -2, "negative"),
               ("parquet", 7, None)]  # a Parquet column holds one type, and a missing value is a null


@pytest.mark.parametrize("fmt, value, why", TOKEN_CASES)
def test_token_field_missing_or_not_an_integer(tmp_path, config_file, fmt, value, why):
    path, rows = scored_corpus(tmp_path, 40)
    if value == "missing":
        del rows[17]["tok"]
    else:
        rows[17]["tok"] = value
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        path = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = ["select.method=tokens", "select.budget=100", "select.token_field=tok"]
    result = reorder(config_file, path, tmp_path / "out", "saw", sets=sets, ok=why is None)
    if why is None:  # the twins: an integer (also as a JSON string of digits) is read as that integer
        assert read_manifest(tmp_path / "out")["selection"]["tokens_before"] == sum(
            int(r["tok"]) for r in rows)
        return
    err = one_line_error(result)
    where = "line 18" if fmt == "jsonl" else "row 17"
    assert str(path) in err and where in err and "token field 'tok'" in err and why in err, err
    assert not (tmp_path / "out").exists()


def test_k_larger_than_the_rows_keeps_all(tmp_path, config_file):
    path, rows = scored_corpus(tmp_path, 30)
    reorder(config_file, path, tmp_path / "out", "input", sets=["select.method=top-k", "select.k=1000",
                                                                "format=jsonl"])
    sel = read_manifest(tmp_path / "out")["selection"]
    assert sel["rows_after"] == 30 and sel["cutoff"] is None and math.isfinite(len(rows))


def test_a_changed_selection_is_not_already_done(tmp_path, config_file):
    """The output depends on the selection and the score expression: the same command with another
    ``select.r`` (or score) is not 'already done'; the same command again is."""
    path, _ = scored_corpus(tmp_path)
    out = tmp_path / "out"
    reorder(config_file, path, out, "saw", sets=["select.method=top-r", "select.r=0.5"])
    reorder(config_file, path, out, "saw", sets=["select.method=top-r", "select.r=0.5"])  # already done
    assert read_manifest(out)["selection"]["rows_after"] == 150
    changed = reorder(config_file, path, out, "saw", sets=["select.method=top-r", "select.r=0.2"], ok=False)
    assert changed.exit_code == 2 and "--overwrite" in changed.stderr
    reorder(config_file, path, out, "saw", sets=["select.method=top-r", "select.r=0.2"], extra=["--overwrite"])
    assert read_manifest(out)["selection"]["rows_after"] == 60


@pytest.mark.parametrize("name", ["select-top-r", "select-only", "qurater-combined"])
def test_shipped_configs_load(name):
    from reorder_cli import config

    cfg = config.load(Path(__file__).parent.parent / "configs" / f"{name}.yaml", inputs=["x"], output="o")
    assert cfg.select and cfg.select["method"] in ("top-r", "threshold")
    assert (cfg.score is not None) == (name == "qurater-combined")


def test_select_overrides_reach_nested_keys():
    from reorder_cli import config

    sets = config.parse_overrides(["select.method=tokens", "select.budget=10B", "select.token_field=n", "seed=3"])
    assert sets == {"select": {"method": "tokens", "budget": "10B", "token_field": "n"}, "seed": 3}
    merged = config.merge({"select": {"method": "top-r", "r": 0.5}, "seed": 1}, config.parse_overrides(["select.r=.2"]))
    assert merged == {"select": {"method": "top-r", "r": 0.2}, "seed": 1}
    cfg = config.resolve({**sets}, method="saw", inputs=["x"], output="o")
    assert cfg.select == {"method": "tokens", "budget": 10**10, "token_field": "n"}


def test_a_selection_file_for_another_score_field(tmp_path, config_file):
    path, _ = scored_corpus(tmp_path)
    (tmp_path / "t.yaml").write_text("score_field: quality\nthreshold: 0.6\n")
    err = one_line_error(reorder(config_file, path, tmp_path / "out", "saw", sets=[f"select={tmp_path / 't.yaml'}"],
                                 ok=False))
    assert "select.score_field" in err and "quality" in err and not (tmp_path / "out").exists()
    (tmp_path / "t.yaml").write_text("score_field: score\nthreshold: 0.6\n")
    reorder(config_file, path, tmp_path / "out", "saw", sets=[f"select={tmp_path / 't.yaml'}"])


def test_preview_draws_kept_and_dropped_scores(tmp_path, config_file):
    pytest.importorskip("matplotlib")
    path, _ = scored_corpus(tmp_path)
    picture = tmp_path / "p.png"
    result = invoke("preview", config_file, "--method", "saw", "-i", path, "--set", "select.method=top-k",
                    "--set", "select.k=40", "--plot", picture)
    assert result.exit_code == 0, result.output
    drawn = tmp_path / "p-selection.png"
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.exists()
    assert str(drawn) in result.output.replace("\n", "")
    result = invoke("preview", config_file, "--method", "saw", "-i", path, "--plot", tmp_path / "q.png")  # no select
    assert result.exit_code == 0 and not (tmp_path / "q-selection.png").exists()


def test_verify_recomputes_the_cut_from_the_inputs(tmp_path, config_file):
    """Negative control of the recomputation: inputs whose scores changed since the run give another cut,
    and verify names the difference; the unchanged twin passes."""
    path, rows = scored_corpus(tmp_path)
    out = tmp_path / "out"
    reorder(config_file, path, out, "saw", sets=["select.method=threshold", "select.threshold=4.5", "format=jsonl"])
    assert invoke("verify", out, "--with-inputs").exit_code == 0
    best = max(range(len(rows)), key=lambda i: (rows[i]["score"], i))
    rows[best]["score"] = -1.0  # a kept row now falls below the threshold
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("verify", out, "--with-inputs")
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "inputs: selection: recomputed from the inputs, the selection gives rows_after" in text, text
    assert "output: not the selected rows" in text, text


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_expression_and_tokens_out_of_core_give_the_same_bytes(tmp_path, config_file, fmt):
    path, rows = scored_corpus(tmp_path, 400, seed=5)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        path = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=64)
    sets = ["score=q * 10 + meta.edu - 0.5 * (score > 3)", "select.method=tokens", "select.budget=3000",
            "select.token_field=tok", f"format={fmt}"]
    reorder(config_file, path, tmp_path / "mem", "str", sets=sets)
    reorder(config_file, path, tmp_path / "ooc", "str", sets=[*sets, "rewrite=out-of-core", "memory_limit=1"])
    assert json.loads((tmp_path / "ooc" / ".run_log.json").read_text())["keys"] == "out-of-core"
    shards = [sorted(p.name for p in (tmp_path / d).iterdir() if not p.name.startswith(".")) for d in ("mem", "ooc")]
    assert shards[0] == shards[1]
    for name in shards[0]:
        assert (tmp_path / "mem" / name).read_bytes() == (tmp_path / "ooc" / name).read_bytes()
    a, b = read_manifest(tmp_path / "mem"), read_manifest(tmp_path / "ooc")
    assert a["selection"] == b["selection"] and a["selection"]["tokens_after"] >= 3000
    score = {r["id"]: r["q"] * 10 + r["meta"]["edu"] - 0.5 * (r["score"] > 3) for r in rows}
    want = ref_tokens([{**r, "score": score[r["id"]]} for r in rows], 3000)
    assert a["selection"]["rows_after"] == len(want)
