"""``reorder run`` end to end: byte-exact JSONL, schema-exact Parquet, orders checked against
the oracle row for row, shards, manifest, determinism and the invalid-score policies."""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reorder_cli import config, pipeline

from . import oracle
from .conftest import (
    RICH_SCHEMA,
    expected_order,
    ids_of_lines,
    invoke,
    make_rows,
    params,
    read_jsonl_out,
    read_manifest,
    read_parquet_out,
    read_shard_lines,
    reorder,
    shard_files,
    to_lines,
    write_bytes,
    write_jsonl,
    write_parquet,
)


def as_sets(over: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in over.items()]


def rows_by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["id"])


# ------------------------------------------------------------------ JSONL -> JSONL, against the oracle

ORACLE_CASES = [
    ("str", {}),
    ("saw", {}),
    ("sorting", {}),
    ("sorting", {"ascending": False, "window_size": 50}),
    ("sorting", {"use_gumbel": True, "temperature": 3.0, "seed": 9}),
    ("folding", {"folding_layer": 4}),
    ("folding", {"folding_layer": 2, "ascending": False, "window_size": 13}),
    ("zigzag", {}),
    ("zigzag", {"zigzag_layer": 4, "window_size": 7, "seed": 5}),
    ("str", {"num_sections": 3, "folding_ratio": 0.1, "folding_layer": 2, "window_size": 64, "ascending": False}),
    ("saw", {"num_sections": 4, "folding_ratio": 0.2, "folding_layer": 3, "window_size": 1}),
    ("stair", {"num_sections": 2, "folding_ratio": 0.3, "folding_layer": 5}),
]


@pytest.mark.parametrize(("method", "over"), ORACLE_CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(ORACLE_CASES)])
def test_jsonl_to_jsonl_matches_oracle_byte_exact(tmp_path, config_file, jsonl_corpus, method, over):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method=method, sets=["format=jsonl", *as_sets(over)])
    got = read_jsonl_out(out)
    # the same bytes, only reordered
    assert Counter(got) == Counter(jsonl_corpus.lines)
    # row for row in the oracle's order (global input order = files in order, rows in file order)
    oracle_method = "str" if method == "stair" else method
    order = expected_order(oracle_method, jsonl_corpus.scores, **over)
    assert ids_of_lines(got) == [jsonl_corpus.ids[i] for i in order]
    assert got == [jsonl_corpus.lines[i] for i in order]


def test_input_order_follows_argument_order(tmp_path, config_file, jsonl_corpus):
    """Files named in another order give another global input order (and so another output for ties)."""
    files = list(reversed(jsonl_corpus.files))
    reorder(config_file, files, tmp_path / "out", method="sorting", sets=["format=jsonl"])
    sizes = (400, 350, 450)
    lines = []
    for k in (2, 1, 0):
        start = sum(sizes[:k])
        lines += jsonl_corpus.lines[start : start + sizes[k]]
    scores = [json.loads(x)["score"] for x in lines]
    assert read_jsonl_out(tmp_path / "out") == [lines[i] for i in expected_order("sorting", scores)]


def test_folder_and_glob_inputs_are_sorted_by_path(tmp_path, config_file, jsonl_corpus):
    reorder(config_file, [tmp_path / "in"], tmp_path / "a", method="saw", sets=["format=jsonl"])
    reorder(config_file, [str(tmp_path / "in" / "part-*.jsonl")], tmp_path / "b", method="saw", sets=["format=jsonl"])
    expected = [jsonl_corpus.lines[i] for i in expected_order("saw", jsonl_corpus.scores)]
    assert read_jsonl_out(tmp_path / "a") == expected
    assert read_jsonl_out(tmp_path / "b") == expected


def test_segment_membership_and_shuffle(tmp_path, config_file, jsonl_corpus):
    over = {"x_pct": 20, "y_pct": 35, "front_is_high": True, "back_is_high": False, "seed": 3}
    reorder(config_file, jsonl_corpus.files, tmp_path / "seg", method="segment", sets=["format=jsonl", *as_sets(over)])
    got = read_jsonl_out(tmp_path / "seg")
    assert Counter(got) == Counter(jsonl_corpus.lines)
    index = {line: i for i, line in enumerate(jsonl_corpus.lines)}
    order = [index[line] for line in got]
    front, middle, back = oracle.segment_members(jsonl_corpus.scores, params("segment", **over))
    assert set(order[: len(front)]) == front
    assert set(order[len(front) : len(front) + len(middle)]) == middle
    assert set(order[len(front) + len(middle) :]) == back

    for seed, name in ((1, "s1"), (1, "s1b"), (2, "s2")):
        sets = ["format=jsonl", f"seed={seed}"]
        reorder(config_file, jsonl_corpus.files, tmp_path / name, method="shuffle", sets=sets)
    s1, s1b, s2 = (read_jsonl_out(tmp_path / n) for n in ("s1", "s1b", "s2"))
    assert Counter(s1) == Counter(jsonl_corpus.lines)
    assert s1 == s1b
    assert s1 != s2
    assert s1 != jsonl_corpus.lines


# ------------------------------------------------------------------ Parquet


def test_parquet_to_parquet_keeps_schema_and_values(tmp_path, config_file, parquet_corpus):
    out = tmp_path / "out"
    over = {"num_sections": 3, "folding_ratio": 0.15, "folding_layer": 2}
    reorder(config_file, parquet_corpus.files, out, method="saw", sets=["shard_rows=200", *as_sets(over)])
    files = shard_files(out)
    assert [p.name for p in files] == ["00000.parquet", "00001.parquet", "00002.parquet"]
    in_schema = pq.read_schema(parquet_corpus.files[0])
    assert in_schema.equals(RICH_SCHEMA)
    for p in files:
        schema = pq.read_schema(p)
        assert schema.equals(in_schema), (schema, in_schema)
        assert schema.field("id").type == pa.string()
        assert schema.field("token_count").type == pa.int32()
    table = read_parquet_out(out)
    got = table.to_pylist()
    assert rows_by_id(got) == rows_by_id(parquet_corpus.rows)
    assert [r["id"] for r in got] == parquet_corpus.expected_ids("saw", **over)


def simple_rows(n: int, seed: int, prefix: str) -> list[dict]:
    """Rows whose values survive a JSON <-> Parquet round trip unchanged (nested ones included)."""
    rows = make_rows(n, seed, prefix)
    for i, r in enumerate(rows):
        r["meta"] = {"lang": ["en", "de", "fr"][i % 3], "quality": (i % 7) / 4}
        r["tags"] = [f"t{j}" for j in range(i % 3)]
    return rows


@pytest.fixture
def twin_corpus(tmp_path):
    """The same rows as JSONL and as Parquet (two files each)."""
    rows = [simple_rows(320, 1, "a"), simple_rows(280, 2, "b")]
    jsonl = [write_jsonl(tmp_path / "j" / f"{k}.jsonl", to_lines(r, seed=k)) for k, r in enumerate(rows)]
    parquet = [write_parquet(tmp_path / "p" / f"{k}.parquet", r) for k, r in enumerate(rows)]
    return jsonl, parquet, rows[0] + rows[1]


@pytest.mark.parametrize(("src", "fmt"), [("j", "parquet"), ("p", "jsonl"), ("p", "jsonl.zst"), ("p", "parquet")])
def test_conversions_give_the_same_rows_in_the_same_order(tmp_path, config_file, twin_corpus, src, fmt):
    jsonl, parquet, rows = twin_corpus
    inputs = jsonl if src == "j" else parquet
    out = tmp_path / f"out-{src}-{fmt}"
    reorder(config_file, inputs, out, method="str", sets=[f"format={fmt}", "folding_ratio=0.3"])
    parquet_out = fmt == "parquet"
    got = read_parquet_out(out).to_pylist() if parquet_out else [json.loads(x) for x in read_jsonl_out(out)]
    order = expected_order("str", [r["score"] for r in rows], folding_ratio=0.3)
    assert got == [rows[i] for i in order]


def test_mixed_jsonl_and_parquet_inputs(tmp_path, config_file):
    a, b = simple_rows(200, 3, "a"), simple_rows(150, 4, "b")
    a_lines = to_lines(a, seed=3)
    files = [write_jsonl(tmp_path / "in" / "a.jsonl", a_lines), write_parquet(tmp_path / "in" / "b.parquet", b)]
    rows = a + b
    order = expected_order("zigzag", [r["score"] for r in rows])
    reorder(config_file, files, tmp_path / "out", method="zigzag", sets=["format=jsonl"])
    got = read_jsonl_out(tmp_path / "out")
    assert [json.loads(x) for x in got] == [rows[i] for i in order]
    # the JSONL-sourced records are still byte-exact
    assert [x for x, i in zip(got, order, strict=True) if i < len(a)] == [a_lines[i] for i in order if i < len(a)]
    reorder(config_file, files, tmp_path / "outp", method="zigzag")
    assert read_parquet_out(tmp_path / "outp").to_pylist() == [rows[i] for i in order]


# ------------------------------------------------------------------ compressed inputs


def test_gz_and_zst_inputs_match_plain(tmp_path, config_file, jsonl_corpus):
    data = [p.read_bytes() for p in jsonl_corpus.files]
    outs = {}
    for comp, ext in ((None, "jsonl"), ("gzip", "jsonl.gz"), ("zstd", "jsonl.zst")):
        files = [write_bytes(tmp_path / comp_dir(comp) / f"part-{k}.{ext}", d, comp) for k, d in enumerate(data)]
        out = tmp_path / f"out-{ext}"
        reorder(config_file, files, out, method="str", sets=["format=jsonl", "window_size=17"])
        outs[ext] = [p.read_bytes() for p in shard_files(out)]
        assert [i["compression"] for i in read_manifest(out)["inputs"]] == [comp] * 3
    assert outs["jsonl"] == outs["jsonl.gz"] == outs["jsonl.zst"]
    expected = [jsonl_corpus.lines[i] for i in expected_order("str", jsonl_corpus.scores, window_size=17)]
    assert read_jsonl_out(tmp_path / "out-jsonl.gz") == expected

    # one run over a plain, a gzip and a zstd file
    mixed = [
        write_bytes(tmp_path / "mixed" / "0.jsonl", data[0]),
        write_bytes(tmp_path / "mixed" / "1.jsonl.gz", data[1], "gzip"),
        write_bytes(tmp_path / "mixed" / "2.jsonl.zst", data[2], "zstd"),
    ]
    reorder(config_file, mixed, tmp_path / "out-mixed", method="str", sets=["format=jsonl", "window_size=17"])
    assert [p.read_bytes() for p in shard_files(tmp_path / "out-mixed")] == outs["jsonl"]
    reorder(config_file, mixed, tmp_path / "out-mixed-pq", method="str", sets=["window_size=17"])
    got = read_parquet_out(tmp_path / "out-mixed-pq").to_pylist()
    assert got == [jsonl_corpus.rows[i] for i in expected_order("str", jsonl_corpus.scores, window_size=17)]


def comp_dir(comp: str | None) -> str:
    return f"in-{comp or 'plain'}"


# ------------------------------------------------------------------ nested score field


def test_nested_score_field_jsonl_and_parquet(tmp_path, config_file):
    rows = make_rows(500, 7, "n")
    nested = [{"id": r["id"], "text": r["text"], "metadata": {"src": "web", "score": r["score"]}} for r in rows]
    scores = [r["score"] for r in rows]
    lines = to_lines(nested, seed=7)
    jfile = write_jsonl(tmp_path / "in" / "n.jsonl", lines)
    pfile = write_parquet(tmp_path / "pin" / "n.parquet", nested)
    assert pa.types.is_struct(pq.read_schema(pfile).field("metadata").type)
    over = {"num_sections": 2, "folding_ratio": 0.2, "folding_layer": 3}
    order = expected_order("saw", scores, **over)
    sets = ["score_field=metadata.score", *as_sets(over)]

    reorder(config_file, [jfile], tmp_path / "oj", method="saw", sets=["format=jsonl", *sets])
    assert read_jsonl_out(tmp_path / "oj") == [lines[i] for i in order]

    reorder(config_file, [pfile], tmp_path / "op", method="saw", sets=sets)
    assert pq.read_schema(shard_files(tmp_path / "op")[0]).equals(pq.read_schema(pfile))
    assert read_parquet_out(tmp_path / "op").to_pylist() == [nested[i] for i in order]
    assert read_manifest(tmp_path / "op")["score_field"] == "metadata.score"


# ------------------------------------------------------------------ line endings and blank lines


def test_unterminated_last_line_blank_lines_and_crlf(tmp_path, config_file):
    a, b, c = make_rows(120, 21, "a"), make_rows(90, 22, "b"), make_rows(60, 23, "c")
    a_lines = to_lines(a, seed=1)
    # file a: blank and whitespace-only lines between records, the last record without '\n'
    a_bytes = b"\n" + b"".join(line + (b"   \n" if i % 10 == 4 else b"\t\n" if i % 25 == 0 else b"")
                               for i, line in enumerate(a_lines))
    a_bytes = a_bytes.rstrip(b"\n\t ")
    assert not a_bytes.endswith(b"\n")
    # file b: CRLF line endings, a blank CRLF line inside
    b_lines = to_lines(b, newline=b"\r\n", seed=2)
    b_bytes = b"".join(b_lines[:40]) + b"\r\n" + b"".join(b_lines[40:])
    # file c: no newline at the end again, right after another file
    c_lines = to_lines(c, seed=3)
    c_bytes = b"".join(c_lines)[:-1]
    # file d: whitespace after the last newline (a blank last line without '\n')
    d = make_rows(30, 24, "d")
    d_lines = to_lines(d, seed=4)
    d_bytes = b"".join(d_lines) + b"  "
    files = [write_bytes(tmp_path / "in" / "a.jsonl", a_bytes), write_bytes(tmp_path / "in" / "b.jsonl", b_bytes),
             write_bytes(tmp_path / "in" / "c.jsonl", c_bytes), write_bytes(tmp_path / "in" / "d.jsonl", d_bytes)]
    lines = a_lines + b_lines + c_lines + d_lines  # what the output must hold: unterminated records get their '\n'
    rows = a + b + c + d
    order = expected_order("sorting", [r["score"] for r in rows], ascending=False)

    reorder(config_file, files, tmp_path / "out", method="sorting", sets=["format=jsonl", "ascending=false"])
    got = read_jsonl_out(tmp_path / "out")
    assert len(got) == len(rows)
    assert got == [lines[i] for i in order]
    assert sum(1 for x in got if x.endswith(b"\r\n")) == len(b_lines)
    m = read_manifest(tmp_path / "out")
    assert [i["rows"] for i in m["inputs"]] == [120, 90, 60, 30]

    # the same through the compressed readers, and into Parquet
    zfiles = [write_bytes(tmp_path / "z" / "a.jsonl.gz", a_bytes, "gzip"),
              write_bytes(tmp_path / "z" / "b.jsonl.zst", b_bytes, "zstd"),
              write_bytes(tmp_path / "z" / "c.jsonl.gz", c_bytes, "gzip"),
              write_bytes(tmp_path / "z" / "d.jsonl.zst", d_bytes, "zstd")]
    reorder(config_file, zfiles, tmp_path / "outz", method="sorting", sets=["format=jsonl", "ascending=false"])
    assert read_jsonl_out(tmp_path / "outz") == got
    reorder(config_file, files, tmp_path / "outp", method="sorting", sets=["ascending=false"])
    assert read_parquet_out(tmp_path / "outp").to_pylist() == [rows[i] for i in order]


# ------------------------------------------------------------------ shards


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "jsonl.zst"])
def test_shard_rows(tmp_path, config_file, jsonl_corpus, fmt):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="folding", sets=[f"format={fmt}", "shard_rows=130"])
    n = len(jsonl_corpus.rows)
    files = shard_files(out)
    ext = {"jsonl": "jsonl", "parquet": "parquet", "jsonl.zst": "jsonl.zst"}[fmt]
    assert [p.name for p in files] == [f"{i:05d}.{ext}" for i in range(math.ceil(n / 130))]
    m = read_manifest(out)
    assert [s["file"] for s in m["shards"]] == [p.name for p in files]
    assert [s["rows"] for s in m["shards"]] == [130] * (n // 130) + [n % 130]
    assert m["shards"][0]["positions"][0] == 0
    for s, t in zip(m["shards"], m["shards"][1:], strict=False):
        assert s["positions"][1] == t["positions"][0]
    assert m["shards"][-1]["positions"][1] == n
    for s in m["shards"]:
        assert s["positions"][1] - s["positions"][0] == s["rows"]
    if fmt == "parquet":
        per_file = [pq.ParquetFile(p).metadata.num_rows for p in files]
        ids = read_parquet_out(out).column("id").to_pylist()
    else:
        per_file = [len(read_shard_lines(p)) for p in files]
        ids = ids_of_lines(read_jsonl_out(out))
    assert per_file == [s["rows"] for s in m["shards"]]
    assert sum(per_file) == n
    assert ids == jsonl_corpus.expected_ids("folding")


def test_shard_size_limit_jsonl(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="str", sets=["format=jsonl", "shard_size=20KB"])
    files = shard_files(out)
    total = sum(len(x) for x in jsonl_corpus.lines)
    assert len(files) >= math.ceil(total / 20_000) > 1
    for p in files:
        assert 0 < p.stat().st_size <= 20_000, p
    assert read_jsonl_out(out) == [jsonl_corpus.lines[i] for i in expected_order("str", jsonl_corpus.scores)]


def test_shard_size_limit_parquet(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="str", sets=["shard_size=30KB"])
    files = shard_files(out)
    assert len(files) > 1
    assert all(p.suffix == ".parquet" for p in files)
    assert read_parquet_out(out).column("id").to_pylist() == jsonl_corpus.expected_ids("str")


def test_jsonl_zst_output_decompresses_to_the_jsonl_output(tmp_path, config_file, jsonl_corpus):
    sets = ["shard_rows=500", "window_size=9"]
    reorder(config_file, jsonl_corpus.files, tmp_path / "plain", method="zigzag", sets=["format=jsonl", *sets])
    reorder(config_file, jsonl_corpus.files, tmp_path / "zst", method="zigzag", sets=["format=jsonl.zst", *sets])
    plain, zst = shard_files(tmp_path / "plain"), shard_files(tmp_path / "zst")
    assert [p.name for p in zst] == ["00000.jsonl.zst", "00001.jsonl.zst", "00002.jsonl.zst"]
    for p, z in zip(plain, zst, strict=True):
        with zstandard.ZstdDecompressor().stream_reader(z.read_bytes()) as reader:
            assert reader.read() == p.read_bytes()
    m = read_manifest(tmp_path / "zst")
    assert m["output"]["compression"] == "zstd"
    assert all(s["compression"] == "zstd" for s in m["shards"])


# ------------------------------------------------------------------ manifest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_manifest_matches_files_and_rows(tmp_path, config_file, jsonl_corpus, fmt):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=[f"format={fmt}", "shard_rows=150"])
    m = read_manifest(out)
    n = len(jsonl_corpus.rows)
    order = expected_order("saw", jsonl_corpus.scores)
    out_scores = [jsonl_corpus.scores[i] for i in order]

    assert m["method"] == "saw"
    assert m["params"] == {k: v for k, v in params("saw").items() if k in m["params"]}
    assert m["params"]["num_sections"] == 3 and m["params"]["folding_ratio"] == 0.075
    assert m["seed"] == 42 and m["score_field"] == "score"
    prev_end = 0
    for s in m["shards"]:
        path = out / s["file"]
        assert path.is_file()
        assert s["bytes"] == path.stat().st_size
        assert s["sha256"] == sha256(path)
        start, end = s["positions"]
        assert start == prev_end and end - start == s["rows"]
        prev_end = end
        rows_on_disk = pq.ParquetFile(path).metadata.num_rows if fmt == "parquet" else len(read_shard_lines(path))
        assert rows_on_disk == s["rows"]
        chunk = out_scores[start:end]
        assert s["score"]["min"] == pytest.approx(min(chunk), abs=1e-6)
        assert s["score"]["max"] == pytest.approx(max(chunk), abs=1e-6)
        assert s["score"]["mean"] == pytest.approx(sum(chunk) / len(chunk), abs=1e-6)
    assert prev_end == n

    # inputs: relative paths that lead back to the files, with their row counts
    assert [i["rows"] for i in m["inputs"]] == [400, 350, 450]
    for entry, f in zip(m["inputs"], jsonl_corpus.files, strict=True):
        assert not Path(entry["path"]).is_absolute()
        assert (out / entry["path"]).resolve() == f.resolve()
        assert entry["bytes"] == f.stat().st_size
    for s in m["shards"]:
        assert not Path(s["file"]).is_absolute()

    t = m["totals"]
    assert (t["rows"], t["input_rows"], t["dropped_rows"], t["shards"]) == (n, n, 0, len(m["shards"]))
    assert t["bytes"] == sum(p.stat().st_size for p in shard_files(out))
    assert t["input_bytes"] == sum(f.stat().st_size for f in jsonl_corpus.files)
    assert t["score"]["mean"] == pytest.approx(sum(out_scores) / n, abs=1e-6)

    prof = m["profile"]
    assert prof["bins"] == 200
    assert len(prof["mean"]) == len(prof["min"]) == len(prof["max"]) == 200
    edges = prof["edges"]
    assert edges[0] == 0 and edges[-1] == n and len(edges) == 201
    for b in (0, 57, 199):
        chunk = out_scores[edges[b] : edges[b + 1]]
        assert prof["mean"][b] == pytest.approx(sum(chunk) / len(chunk), abs=1e-6)
        assert prof["min"][b] == pytest.approx(min(chunk)) and prof["max"][b] == pytest.approx(max(chunk))

    log = json.loads((out / ".run_log.json").read_text())
    assert log["rows"] == n and log["shards"] == len(m["shards"])
    assert not (out / ".reorder").exists()


def test_profile_has_n_bins_for_small_inputs(tmp_path, config_file):
    rows = make_rows(57, 5, "s")
    f = write_jsonl(tmp_path / "in" / "s.jsonl", to_lines(rows))
    reorder(config_file, [f], tmp_path / "out", method="sorting")
    prof = read_manifest(tmp_path / "out")["profile"]
    assert prof["bins"] == 57
    assert prof["mean"] == pytest.approx(sorted(r["score"] for r in rows))


@pytest.mark.parametrize(("method", "fmt"), [("shuffle", "parquet"), ("segment", "jsonl.zst"), ("str", "jsonl")])
def test_two_runs_are_byte_identical(tmp_path, config_file, jsonl_corpus, method, fmt):
    sets = [f"format={fmt}", "shard_rows=300", "window_size=40"]
    for name in ("a", "b"):
        reorder(config_file, jsonl_corpus.files, tmp_path / name, method=method, sets=sets)
    a, b = shard_files(tmp_path / "a"), shard_files(tmp_path / "b")
    assert len(a) == 4
    assert [p.name for p in a] == [p.name for p in b]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert (tmp_path / "a" / ".manifest.json").read_bytes() == (tmp_path / "b" / ".manifest.json").read_bytes()


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_workers_do_not_change_the_bytes(tmp_path, jsonl_corpus, fmt):
    docs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        raw = {"score_field": "score", "format": fmt, "shard_rows": 100, "workers": workers, "window_size": 30}
        cfg = config.resolve(raw, method="saw", inputs=[str(p) for p in jsonl_corpus.files], output=str(out))
        assert cfg.workers == workers
        result = pipeline.run(cfg)
        assert result.manifest.totals["rows"] == len(jsonl_corpus.rows)
        docs[workers] = ([p.read_bytes() for p in shard_files(out)], (out / ".manifest.json").read_bytes())
    assert len(docs[1][0]) == 12
    assert docs[1] == docs[2]


# ------------------------------------------------------------------ invalid scores

INVALID = {  # line index within the file -> raw score text
    3: None,  # the key is missing
    10: "null",
    17: '"abc"',
    50: "NaN",
    51: "Infinity",
    88: "-Infinity",
    120: '"nan"',
    130: "[1]",
    199: '""',
}


@pytest.fixture
def invalid_corpus(tmp_path):
    """Two JSONL files; the second has invalid scores at INVALID's lines."""
    a, b = make_rows(150, 31, "a"), make_rows(200, 32, "b")
    a_lines = to_lines(a, seed=31)
    b_lines = []
    for i, r in enumerate(b):
        if i in INVALID:
            rest = {k: v for k, v in r.items() if k != "score"}
            text = json.dumps(rest)
            if INVALID[i] is not None:
                text = text[:-1] + f', "score": {INVALID[i]}}}'
            b_lines.append(text.encode() + b"\n")
        else:
            b_lines.append(json.dumps(r).encode() + b"\n")
    files = [write_jsonl(tmp_path / "in" / "a.jsonl", a_lines), write_jsonl(tmp_path / "in" / "b.jsonl", b_lines)]
    lines, rows = a_lines + b_lines, a + b
    bad = [150 + i for i in sorted(INVALID)]
    return files, lines, rows, bad


@pytest.mark.parametrize("policy", ["drop", "first", "last"])
def test_invalid_scores_policies(tmp_path, config_file, invalid_corpus, policy):
    files, lines, rows, bad = invalid_corpus
    good = [g for g in range(len(rows)) if g not in bad]
    order = [good[i] for i in expected_order("str", [rows[g]["score"] for g in good])]
    if policy == "first":
        order = bad + order
    elif policy == "last":
        order = order + bad
    out = tmp_path / "out"
    reorder(config_file, files, out, method="str", sets=["format=jsonl", f"invalid_scores={policy}"])
    assert read_jsonl_out(out) == [lines[g] for g in order]
    m = read_manifest(out)
    inv = m["invalid_scores"]
    assert inv["policy"] == policy
    assert inv["count"] == len(bad)
    assert inv["dropped"] == (len(bad) if policy == "drop" else 0)
    assert m["totals"]["dropped_rows"] == inv["dropped"]
    assert m["totals"]["rows"] == len(order) and m["totals"]["input_rows"] == len(rows)
    samples = inv["samples"]
    assert [s["where"] for s in samples] == [f"line {i + 1}" for i in sorted(INVALID)]
    assert all(Path(s["file"]).name == "b.jsonl" and not Path(s["file"]).is_absolute() for s in samples)
    assert "abc" in samples[2]["value"]
    assert "missing" in samples[0]["value"] and "null" in samples[1]["value"]


def test_invalid_scores_drop_parquet(tmp_path, config_file):
    rows = make_rows(240, 41, "q")
    bad = [5, 60, 61, 200]
    for i, v in zip(bad, [None, float("nan"), float("inf"), None], strict=True):
        rows[i]["score"] = v
    f = write_parquet(tmp_path / "in" / "q.parquet", rows)
    reorder(config_file, [f], tmp_path / "out", method="sorting", sets=["invalid_scores=drop", "ascending=false"])
    good = [g for g in range(len(rows)) if g not in bad]
    order = [good[i] for i in expected_order("sorting", [rows[g]["score"] for g in good], ascending=False)]
    assert read_parquet_out(tmp_path / "out").column("id").to_pylist() == [rows[g]["id"] for g in order]
    inv = read_manifest(tmp_path / "out")["invalid_scores"]
    assert inv["count"] == inv["dropped"] == 4
    assert [s["where"] for s in inv["samples"]] == [f"row {i}" for i in bad]


# ------------------------------------------------------------------ property: always a permutation

score_values = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.5, 1.25, -0.75, 2.0]),
    st.sampled_from(["1.5", "2", "-1", "0.25", "1e0", " 3 "]),
    st.booleans(),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(score_values, min_size=1, max_size=40),
    method=st.sampled_from(["shuffle", "sorting", "folding", "zigzag", "segment", "str", "saw"]),
    layers=st.integers(1, 5),
    window=st.sampled_from([0, 3, 8]),
    fmt=st.sampled_from(["jsonl", "jsonl.zst"]),
)
def test_any_scores_any_method_is_a_permutation(config_file, values, method, layers, window, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = [json.dumps({"id": i, "score": v}).encode() + b"\n" for i, v in enumerate(values)]
        f = write_jsonl(tmp / "in.jsonl", lines)
        over = {"folding_layer": layers, "zigzag_layer": layers, "num_sections": layers, "window_size": window}
        sets = [f"format={fmt}", *(as_sets(over) if method not in ("shuffle", "segment") else [])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reorder(config_file, [f], tmp / "out", method=method, sets=sets)
        got = read_jsonl_out(tmp / "out")
        assert sorted(got) == sorted(lines)
        if method not in ("shuffle", "segment"):
            scores = [float(v) for v in values]
            assert [json.loads(x)["id"] for x in got] == expected_order(method, scores, **over)


# ------------------------------------------------------------------ score forms and input discovery


def test_score_forms_follow_python_float(tmp_path, config_file):
    """Ints, floats, numeric strings (as ``float(value)`` reads them) and booleans are scores."""
    forms = ["1", "2.5", '"1.5"', '" 2 "', '"1_000"', '"1e0"', '"\\u0031"', "true", "false", "-0.0", "1e2",
             '"-3.25"', "12345678901234567890", '"abc", "score": 0.75']  # the last: a duplicate key, the last wins
    values = [1, 2.5, 1.5, 2, 1000, 1.0, 1.0, 1, 0, 0.0, 100.0, -3.25, 12345678901234567890.0, 0.75]
    lines = [f'{{"id": {i}, "score": {f}}}\n'.encode() for i, f in enumerate(forms)] * 3
    f = write_jsonl(tmp_path / "in" / "forms.jsonl", lines)
    reorder(config_file, [f], tmp_path / "out", method="sorting", sets=["format=jsonl"])
    assert read_jsonl_out(tmp_path / "out") == [lines[i] for i in expected_order("sorting", values * 3)]


@pytest.mark.parametrize(
    ("arrow_type", "values", "as_float"),
    [
        (pa.int32(), [3, 1, 2, 1, 0, 3, 2], None),
        (pa.float32(), [0.5, 0.25, 0.5, 1.0, 0.0, 0.75, 0.25], None),
        (pa.bool_(), [True, False, True, False, False, True, True], None),
        (pa.string(), ["1.5", "0.5", " 2 ", "1e1", "0.5", "-1", "2"], [1.5, 0.5, 2, 10, 0.5, -1, 2]),
    ],
    ids=["int32", "float32", "bool", "string"],
)
def test_parquet_score_column_types(tmp_path, config_file, arrow_type, values, as_float):
    n = 70
    scores = [values[i % len(values)] for i in range(n)]
    table = pa.table({"id": pa.array(range(n), pa.int64()), "score": pa.array(scores, arrow_type)})
    f = tmp_path / "in" / "t.parquet"
    f.parent.mkdir()
    pq.write_table(table, f)
    reorder(config_file, [f], tmp_path / "out", method="zigzag", sets=["zigzag_layer=2"])
    floats = [float(v) for v in (as_float or values)]
    expected = expected_order("zigzag", [floats[i % len(values)] for i in range(n)], zigzag_layer=2)
    out = read_parquet_out(tmp_path / "out")
    assert out.column("id").to_pylist() == expected
    assert out.schema.field("score").type == arrow_type


def test_row_group_rows(tmp_path, config_file, parquet_corpus):
    reorder(config_file, parquet_corpus.files, tmp_path / "out", method="str", sets=["row_group_rows=50"])
    (f,) = shard_files(tmp_path / "out")
    meta = pq.ParquetFile(f).metadata
    assert meta.num_rows == len(parquet_corpus.rows)
    assert meta.num_row_groups == math.ceil(len(parquet_corpus.rows) / 50)
    assert all(meta.row_group(i).num_rows <= 50 for i in range(meta.num_row_groups))


def test_folder_recursion_hidden_files_and_mixed_formats(tmp_path, config_file):
    a, b, c = simple_rows(50, 81, "a"), simple_rows(60, 82, "b"), simple_rows(70, 83, "c")
    root = tmp_path / "data"
    write_jsonl(root / "a.jsonl", to_lines(a))
    write_parquet(root / "sub" / "b.parquet", b)
    write_bytes(root / "z" / "c.jsonl.gz", b"".join(to_lines(c)), "gzip")
    write_jsonl(root / ".hidden.jsonl", to_lines(simple_rows(5, 84, "h")))
    (root / "notes.txt").write_text("not data")
    rows = a + b + c  # sorted by path: a.jsonl, sub/b.parquet, z/c.jsonl.gz
    reorder(config_file, [root], tmp_path / "out", method="saw", sets=["format=jsonl"])
    got = [json.loads(x) for x in read_jsonl_out(tmp_path / "out")]
    assert got == [rows[i] for i in expected_order("saw", [r["score"] for r in rows])]
    assert [Path(i["path"]).name for i in read_manifest(tmp_path / "out")["inputs"]] == [
        "a.jsonl", "b.parquet", "c.jsonl.gz"]


def test_manifest_is_strict_json_with_invalid_rows_kept(tmp_path, config_file, invalid_corpus):
    files, _, rows, bad = invalid_corpus
    sets = ["invalid_scores=first", "shard_rows=5", "format=jsonl"]
    reorder(config_file, files, tmp_path / "out", method="sorting", sets=sets)
    text = (tmp_path / "out" / ".manifest.json").read_text()

    def no_constants(name):
        raise AssertionError(f"manifest.json holds {name}, which is not JSON")

    m = json.loads(text, parse_constant=no_constants)
    # the first shard holds only invalid rows: no score summary; the profile's first bins likewise
    assert m["shards"][0]["score"] == {"min": None, "mean": None, "max": None}
    assert m["profile"]["mean"][0] is None
    assert m["totals"]["rows"] == len(rows)
    good = [r["score"] for g, r in enumerate(rows) if g not in bad]
    assert m["totals"]["score"]["mean"] == pytest.approx(sum(good) / len(good), abs=1e-6)


def test_existing_file_with_glob_characters_in_its_name(tmp_path, config_file):
    """A path that exists is that file, even when its name holds glob characters (``[``, ``]``)."""
    rows = make_rows(40, 90, "g")
    f = write_jsonl(tmp_path / "in" / "part[1].jsonl", to_lines(rows))
    result = reorder(config_file, [f], tmp_path / "out", method="sorting", ok=False)
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "out")["totals"]["rows"] == 40


def test_summary_names_the_output_folder_verbatim(tmp_path, config_file):
    """The closing summary (not -q) prints the output folder as given, brackets and all."""
    f = write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(make_rows(30, 91, "s")))
    out = tmp_path / "run[v1]"
    result = invoke("run", config_file, "--method", "str", "--input", f, "--output", out)
    assert result.exit_code == 0, result.output
    assert read_manifest(out)["totals"]["rows"] == 30
    assert "run[v1]" in result.stderr.replace("\n", "")


# ------------------------------------------------------------------ JSONL -> Parquet: one schema for all records

SCHEMA_CASES = {
    "field-only-in-a-later-file": ([{"id": 1, "score": 1.5}], [{"id": 2, "score": 0.5, "lang": "en"}]),
    "int-then-float": ([{"id": 1, "score": 1.5, "q": 1}], [{"id": 2, "score": 0.5, "q": 2.5}]),
    "null-then-string": ([{"id": 1, "score": 1.5, "q": None}], [{"id": 2, "score": 0.5, "q": "x"}]),
    "same-file": ([{"id": 1, "score": 1.5}, {"id": 2, "score": 0.5, "lang": "en"}], [{"id": 3, "score": 0.7}]),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_jsonl_to_parquet_schema_covers_every_file(tmp_path, config_file, case):
    """The Parquet schema is inferred from all records of all JSONL inputs: no field is lost."""
    first, second = SCHEMA_CASES[case]
    files = [write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(first * 20)),
             write_jsonl(tmp_path / "in" / "b.jsonl", to_lines(second * 20))]
    rows = first * 20 + second * 20
    result = reorder(config_file, files, tmp_path / "out", method="sorting", ok=False)
    assert result.exit_code == 0, result.output
    got = read_parquet_out(tmp_path / "out").to_pylist()
    keys = sorted({k for r in rows for k in r})
    expected = [{k: rows[i].get(k) for k in keys} for i in expected_order("sorting", [r["score"] for r in rows])]
    assert [{k: r.get(k) for k in keys} for r in got] == expected
    assert sorted(got[0]) == keys


@pytest.mark.parametrize("raw", ["NaN", "Infinity", '"abc"'])
def test_dropped_rows_do_not_shape_the_parquet_output(tmp_path, config_file, raw):
    """invalid_scores=drop into Parquet: the kept rows are written as if the dropped ones never were."""
    rows = make_rows(60, 95, "k")
    lines = to_lines(rows)
    lines.insert(7, f'{{"id": "bad", "score": {raw}}}\n'.encode())
    f = write_jsonl(tmp_path / "in" / "a.jsonl", lines)
    result = reorder(config_file, [f], tmp_path / "out", method="str", sets=["invalid_scores=drop"], ok=False)
    assert result.exit_code == 0, result.output
    table = read_parquet_out(tmp_path / "out")
    assert table.schema.field("score").type == pa.float64()
    assert table.to_pylist() == [rows[i] for i in expected_order("str", [r["score"] for r in rows])]
    assert read_manifest(tmp_path / "out")["invalid_scores"]["dropped"] == 1
