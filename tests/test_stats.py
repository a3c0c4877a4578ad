"""``reorder stats`` and ``reorder methods``."""

from __future__ import annotations

import json

import pytest

from reorder_cli.methods import METHODS

from .conftest import expected_order, invoke, make_rows, one_line_error, read_manifest, reorder, to_lines, write_jsonl


@pytest.fixture
def finished(tmp_path, config_file):
    """A finished ``str`` run over 700 rows (two inputs, 4 shards), 3 rows with invalid scores dropped."""
    a, b = make_rows(400, 70, "a"), make_rows(303, 71, "b")
    b_lines = to_lines(b, seed=71)
    for i in (5, 6, 300):
        b_lines[i] = json.dumps({**b[i], "score": None}).encode() + b"\n"
    files = [write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(a, seed=70)),
             write_jsonl(tmp_path / "in" / "b.jsonl", b_lines)]
    out = tmp_path / "out"
    reorder(config_file, files, out, method="str", sets=["shard_rows=200", "invalid_scores=drop"])
    return out


def test_stats_shows_method_shards_and_profile(finished):
    result = invoke("stats", finished)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "method str" in text
    assert "num_sections=2" in text and "folding_ratio=0.225" in text
    for name in ("00000.parquet", "00001.parquet", "00002.parquet", "00003.parquet"):
        assert name in text
    assert "4 shard(s)" in text
    assert "700" in text and "703" in text  # rows written, rows read
    assert "invalid scores: 3" in text
    assert "mean score by output position" in text
    chart = text.split("mean score by output position", 1)[1]
    assert any(ch in chart for ch in "▁▂▃▄▅▆▇█")
    assert "first position" in chart and "last" in chart


def test_stats_accepts_the_manifest_file(finished):
    a = invoke("stats", finished)
    b = invoke("stats", finished / ".manifest.json")
    assert a.exit_code == b.exit_code == 0
    assert a.stdout == b.stdout


def test_stats_json(finished):
    result = invoke("stats", finished, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["data"]
    m = read_manifest(finished)
    assert doc["method"] == "str"
    assert doc["params"] == m["params"]
    t = doc["totals"]
    assert (t["rows"], t["input_rows"], t["dropped_rows"], t["shards"]) == (700, 703, 3, 4)
    assert t["bytes"] == sum((finished / s["file"]).stat().st_size for s in m["shards"])
    assert [s["rows"] for s in doc["shards"]] == [200, 200, 200, 100]
    assert [s["positions"] for s in doc["shards"]] == [[0, 200], [200, 400], [400, 600], [600, 700]]
    assert doc["invalid_scores"]["count"] == 3 and doc["invalid_scores"]["dropped"] == 3
    assert doc["profile"]["bins"] == 200 and len(doc["profile"]["mean"]) == 200
    assert doc["profile"] == m["profile"]


def test_stats_profile_follows_the_order(tmp_path, config_file):
    """Descending sort: the chart's mean scores go down from the first position to the last."""
    rows = make_rows(500, 72, "d")
    f = write_jsonl(tmp_path / "in" / "d.jsonl", to_lines(rows))
    reorder(config_file, [f], tmp_path / "out", method="sorting", sets=["ascending=false"])
    doc = json.loads(invoke("stats", tmp_path / "out", "--json").stdout)["data"]
    means = doc["profile"]["mean"]
    assert means == sorted(means, reverse=True)
    scores = sorted((r["score"] for r in rows), reverse=True)
    edges = doc["profile"]["edges"]
    for b in (0, 100, 199):
        chunk = scores[edges[b] : edges[b + 1]]
        assert means[b] == pytest.approx(sum(chunk) / len(chunk))
    first = expected_order("sorting", [r["score"] for r in rows], ascending=False)[0]
    assert doc["shards"][0]["score"]["max"] == pytest.approx(rows[first]["score"])


def test_stats_without_manifest(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "00000.parquet").write_bytes(b"x")
    msg = one_line_error(invoke("stats", tmp_path / "plain"))
    assert ".manifest.json" in msg and "plain" in msg
    msg = one_line_error(invoke("stats", tmp_path / "missing"))
    assert "missing" in msg
    one_line_error(invoke("stats", tmp_path / "plain", "--json"))


def test_methods_lists_every_method():
    result = invoke("methods")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for name in ("shuffle", "sorting", "folding", "zigzag", "segment", "str", "saw", "input"):
        assert name in text
    assert set(METHODS) == {"shuffle", "sorting", "folding", "zigzag", "segment", "str", "saw", "input"}
    assert "stair" in text
    for key in ("folding_ratio", "num_sections", "zigzag_layer", "x_pct", "use_gumbel", "window_size"):
        assert key in text


def test_help_and_version():
    result = invoke("--help")
    assert result.exit_code == 0
    for cmd in ("run", "stats", "methods"):
        assert cmd in result.stdout
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("reorder ")
