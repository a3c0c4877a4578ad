"""Configs: the reference's own YAML files work unchanged, command-line values win over the
file, ``stair`` is ``str``, and sizes parse with decimal and binary units."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from reorder_cli import config
from reorder_cli.errors import ReorderError

from . import oracle
from .conftest import (
    expected_order,
    ids_of_lines,
    invoke,
    make_rows,
    params,
    read_jsonl_out,
    read_manifest,
    reorder,
    shard_files,
    to_lines,
    write_jsonl,
)

# The configs of the reference implementation (microsoft/data-efficacy, data_ordering/config/), verbatim.
REFERENCE_CONFIGS = {
    "stair": (
        "name: stair ordering\nversion: 1.0\ndescription: Config of section (hybrid sorting/folding) method in data "
        "ordering.\n\n\nscore_field: average_test_score\nascending: False\nreverse_even_layers: False\nfolding_layer: 3"
        "\nnum_sections: 2\nfolding_ratio: 0.225\nwindow_size: 0\nseed: 42"
    ),
    "str": (
        "name: section\nversion: 1.0\ndescription: Config of section (hybrid sorting/folding) method in data "
        "ordering.\n\n\nscore_field: score\nascending: True\nreverse_even_layers: False\nfolding_layer: 2\n"
        "num_sections: 3\nfolding_ratio: 0.1\nwindow_size: 100000\nseed: 42"
    ),
    "saw": (
        "name: section\nversion: 1.0\ndescription: Config of section (hybrid sorting/folding) method in data "
        "ordering.\n\n\nscore_field: score\nascending: True\nreverse_even_layers: True\nfolding_layer: 3\n"
        "num_sections: 3\nfolding_ratio: 0.1\nwindow_size: 100000\nseed: 42"
    ),
    "sorting": (
        "name: sorting\nversion: 1.1\ndescription: Config of sorting method with local window shuffling.\n\n"
        "score_field: average_test_score\nascending: true\nuse_gumbel: false\ntemperature: 0\nwindow_size: 0\n"
        "seed: 42\n"
    ),
    "zigzag": (
        "name: zigzag\nversion: 2.0\ndescription: Config of zigzag method in data ordering.\n\n"
        "score_field: average_test_score\nzigzag_layer: 5\nuse_gumbel: false\ntemperature: 0\nseed: 42\n"
        "window_size: 0\nascending: false"
    ),
    "folding": (
        "name: folding\nversion: 1.0\ndescription: Config of folding method in data ordering.\n\n"
        "score_field: average_test_score\nfolding_layer: 5\nwindow_size: 0\nseed: 42\nascending: true\n"
    ),
    "segment": (
        "name: segment\nversion: 1.0\ndescription: Config of segment-based ordering method.\n\n\nscore_field: score"
        "\n\nx_pct: 30\ny_pct: 30\nfront_is_high: false\nback_is_high: true\n\nseed: 42"
    ),
    "shuffle": "name: shuffle\nversion: 1.0\ndescription: Config of shuffle method in data ordering.\n\n"
    "score_field: score\nseed: 42\n",
}

# What each reference config means, as oracle parameters (the method named on the command line).
REFERENCE_PARAMS = {
    "stair": ("str", "average_test_score", dict(ascending=False, folding_layer=3, num_sections=2, folding_ratio=0.225)),
    "str": ("str", "score", dict(folding_layer=2, num_sections=3, folding_ratio=0.1, window_size=100000)),
    "saw": ("saw", "score", dict(folding_layer=3, num_sections=3, folding_ratio=0.1, window_size=100000)),
    "sorting": ("sorting", "average_test_score", dict(use_gumbel=False, temperature=0.0)),
    "zigzag": ("zigzag", "average_test_score", dict(zigzag_layer=5, ascending=False)),
    "folding": ("folding", "average_test_score", dict(folding_layer=5)),
}


def test_sorting_config_with_gumbel(tmp_path, two_score_corpus):
    files, rows, lines = two_score_corpus
    cfg = tmp_path / "sorting.yaml"
    cfg.write_text(REFERENCE_CONFIGS["sorting"].replace("use_gumbel: false", "use_gumbel: true")
                   .replace("temperature: 0", "temperature: 4.0").replace("window_size: 0", "window_size: 25"))
    reorder(cfg, files, tmp_path / "out", method="sorting", sets=["format=jsonl"])
    over = dict(use_gumbel=True, temperature=4.0, window_size=25)
    order = expected_order("sorting", [r["average_test_score"] for r in rows], **over)
    assert read_jsonl_out(tmp_path / "out") == [lines[i] for i in order]
    assert order != expected_order("sorting", [r["average_test_score"] for r in rows], window_size=25)
    p = read_manifest(tmp_path / "out")["params"]
    assert p["use_gumbel"] is True and p["temperature"] == 4.0


@pytest.fixture
def two_score_corpus(tmp_path):
    """Rows with two different scores, ``score`` and ``average_test_score``: reading the wrong one shows."""
    files, rows, lines = [], [], []
    for k, n in enumerate((330, 270)):
        part = make_rows(n, seed=50 + k, prefix=f"t{k}")
        for i, r in enumerate(part):
            r["average_test_score"] = round((i * 7919 + k) % 41 / 8, 3)
        part_lines = to_lines(part, seed=k)
        files.append(write_jsonl(tmp_path / "in" / f"{k}.jsonl", part_lines))
        rows += part
        lines += part_lines
    return files, rows, lines


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_reference_configs_work_unchanged(tmp_path, two_score_corpus, name):
    files, rows, lines = two_score_corpus
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(REFERENCE_CONFIGS[name])
    method, field, over = REFERENCE_PARAMS[name]
    out = tmp_path / "out"
    result = reorder(cfg, files, out, method=name, sets=["format=jsonl"])
    got = read_jsonl_out(out)
    order = expected_order(method, [r[field] for r in rows], **over)
    assert got == [lines[i] for i in order]
    m = read_manifest(out)
    assert m["method"] == method
    assert m["score_field"] == field
    for key, value in over.items():
        if key in m["params"]:
            assert m["params"][key] == value, key
    if "reverse_even_layers" in REFERENCE_CONFIGS[name]:
        assert "reverse_even_layers" in result.stderr  # noted as ignored, not an error


def test_reference_segment_config(tmp_path, two_score_corpus):
    files, rows, lines = two_score_corpus
    cfg = tmp_path / "segment.yaml"
    cfg.write_text(REFERENCE_CONFIGS["segment"])
    reorder(cfg, files, tmp_path / "out", method="segment", sets=["format=jsonl"])
    got = read_jsonl_out(tmp_path / "out")
    index = {line: i for i, line in enumerate(lines)}
    order = [index[x] for x in got]
    p = params("segment", x_pct=30, y_pct=30, front_is_high=False, back_is_high=True, seed=42)
    front, middle, back = oracle.segment_members([r["score"] for r in rows], p)
    assert (len(front), len(back)) == (180, 180)
    assert set(order[:180]) == front
    assert set(order[180:-180]) == middle
    assert set(order[-180:]) == back
    assert read_manifest(tmp_path / "out")["params"]["x_pct"] == 30


def test_reference_shuffle_config(tmp_path, two_score_corpus):
    files, rows, lines = two_score_corpus
    cfg = tmp_path / "shuffle.yaml"
    cfg.write_text(REFERENCE_CONFIGS["shuffle"])
    reorder(cfg, files, tmp_path / "out", method="shuffle", sets=["format=jsonl"])
    got = read_jsonl_out(tmp_path / "out")
    assert Counter(got) == Counter(lines) and got != lines


def test_the_repos_configs_run(tmp_path, monkeypatch):
    """configs/*.yaml name their method, input and output; they run from the repo root as given."""
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(repo)
    for path in sorted((repo / "configs").glob("*.yaml")):
        out = tmp_path / path.stem
        result = invoke("run", path, "--output", out, "-q")
        assert result.exit_code == 0, (path, result.output)
        m = read_manifest(out)
        assert m["method"] == path.stem or "selection" in m  # the selection examples name what they select
        rows, unselected = m["totals"]["rows"], m["totals"].get("unselected_rows", 0)
        if "mixture" in m:  # rows not scheduled, and rows given more than once (a source's epochs)
            unselected += m["totals"]["unscheduled_rows"] - m["totals"]["repeated_rows"]
            assert m["totals"]["repeated_rows"] > 0 and len(m["mixture"]["sources"]) == 3
        assert rows + unselected == sum(i["rows"] for i in m["inputs"]) and rows > 0
        assert (unselected > 0) == ("selection" in m or "mixture" in m)


# ------------------------------------------------------------------ precedence


@pytest.fixture
def small(tmp_path):
    rows = make_rows(260, 60, "s")
    lines = to_lines(rows, seed=60)
    return write_jsonl(tmp_path / "in" / "s.jsonl", lines), rows, lines


def test_set_overrides_win_over_the_file(tmp_path, small):
    f, rows, lines = small
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: folding\nscore_field: score\nfolding_layer: 3\nascending: true\nformat: parquet\n")
    out = tmp_path / "out"
    reorder(cfg, [f], out, sets=["folding_layer=5", "ascending=false", "format=jsonl"])
    assert read_jsonl_out(out) == [lines[i] for i in expected_order("folding", [r["score"] for r in rows],
                                                                     folding_layer=5, ascending=False)]
    m = read_manifest(out)
    assert m["params"]["folding_layer"] == 5 and m["params"]["ascending"] is False
    assert m["output"]["format"] == "jsonl"
    # the last --set of a key wins
    reorder(cfg, [f], tmp_path / "out2", sets=["folding_layer=5", "folding_layer=2"])
    assert read_manifest(tmp_path / "out2")["params"]["folding_layer"] == 2


def test_method_flag_wins_over_the_file(tmp_path, small):
    f, rows, lines = small
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: saw\nzigzag_layer: 4\n")
    reorder(cfg, [f], tmp_path / "out", method="zigzag", sets=["format=jsonl"])
    assert read_manifest(tmp_path / "out")["method"] == "zigzag"
    assert read_jsonl_out(tmp_path / "out") == [lines[i] for i in expected_order("zigzag", [r["score"] for r in rows],
                                                                                   zigzag_layer=4)]


def test_input_and_output_flags_win_over_the_file(tmp_path, small):
    f, rows, _ = small
    other = write_jsonl(tmp_path / "other" / "o.jsonl", to_lines(make_rows(40, 61, "o")))
    cfg = tmp_path / "c.yaml"
    cfg_out = json.dumps(str(tmp_path / "cfg-out"))
    cfg.write_text(f"method: sorting\ninput: {json.dumps(str(other))}\noutput: {cfg_out}\n")
    out = tmp_path / "flag-out"
    result = invoke("run", cfg, "-i", f, "-o", out, "-q", "--set", "format=jsonl")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "cfg-out").exists()
    expected = [rows[i]["id"] for i in expected_order("sorting", [r["score"] for r in rows])]
    assert ids_of_lines(read_jsonl_out(out)) == expected
    # without the flags, the file's input and output are used
    result = invoke("run", cfg, "-q")
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "cfg-out")["totals"]["rows"] == 40


def test_config_paths_are_relative_to_the_config_file(tmp_path, small, monkeypatch):
    f, rows, _ = small
    (tmp_path / "conf").mkdir()
    cfg = tmp_path / "conf" / "c.yaml"
    cfg.write_text("method: str\ninput:\n  - ../in/s.jsonl\noutput: ../results/str\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "conf/c.yaml", "-q")
    assert result.exit_code == 0, result.output
    m = read_manifest(tmp_path / "results" / "str")
    assert m["totals"]["rows"] == len(rows)
    assert m["inputs"][0]["path"] == "../../in/s.jsonl"


@pytest.mark.parametrize("how", ["flag", "file"])
def test_stair_alias(tmp_path, small, how):
    f, _, _ = small
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: stair\n" if how == "file" else "score_field: score\n")
    reorder(cfg, [f], tmp_path / "alias", method="stair" if how == "flag" else None)
    reorder(cfg, [f], tmp_path / "plain", method="str")
    assert read_manifest(tmp_path / "alias")["method"] == "str"
    a, b = shard_files(tmp_path / "alias"), shard_files(tmp_path / "plain")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_paper_defaults_for_str_and_saw():
    common = {"inputs": ["x.jsonl"], "output": "out"}
    s = config.resolve({}, method="str", **common).params
    assert (s["num_sections"], s["folding_layer"], s["folding_ratio"]) == (2, 3, 0.225)
    w = config.resolve({}, method="saw", **common).params
    assert (w["num_sections"], w["folding_layer"], w["folding_ratio"]) == (3, 2, 0.075)
    assert s["ascending"] is True and s["seed"] == 42 and s["window_size"] == 0
    overridden = config.resolve({"folding_ratio": 0.5}, method="saw", **common).params
    assert overridden["folding_ratio"] == 0.5 and overridden["num_sections"] == 3


def test_descriptive_keys_are_ignored():
    cfg = config.resolve({"name": "x", "version": 2.0, "description": "d", "folding_layer": 4},
                         method="folding", inputs=["a.jsonl"], output="o")
    assert cfg.params["folding_layer"] == 4
    assert "name" not in cfg.params and "version" not in cfg.params


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("256MB", 256 * 10**6),
        ("1GiB", 2**30),
        ("1.5GiB", 3 * 2**29),
        ("64kb", 64_000),
        ("64KiB", 65_536),
        ("10 MB", 10**7),
        ("1000", 1000),
        (1000, 1000),
        ("0", 0),
        ("2T", 2 * 10**12),
    ],
)
def test_parse_size(text, value):
    assert config.parse_size(text) == value


@pytest.mark.parametrize("text", ["12XB", "MB", "-1MB", "", "1.2.3GB", True])
def test_parse_size_rejects(text):
    with pytest.raises(ReorderError, match="size"):
        config.parse_size(text, "shard_size")


def test_sizes_in_a_config(tmp_path, small):
    f, _, _ = small
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: str\nformat: parquet\nshard_size: 1GiB\nrow_group_size: 256MB\n")
    reorder(cfg, [f], tmp_path / "big")
    out = read_manifest(tmp_path / "big")["output"]
    assert out["shard_size"] == 2**30 and out["row_group_size"] == 256 * 10**6
    assert len(shard_files(tmp_path / "big")) == 1
    reorder(cfg, [f], tmp_path / "smallshards", sets=["shard_size=5KB", "format=jsonl"])
    files = shard_files(tmp_path / "smallshards")
    assert len(files) > 3 and all(p.stat().st_size <= 5000 for p in files)
    assert read_manifest(tmp_path / "smallshards")["output"]["shard_size"] == 5000
