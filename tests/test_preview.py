"""``reorder preview``, the metrics in the manifest, ``stats --deep`` and the pictures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reorder_cli.methods import order_rows
from reorder_cli.metrics import guidance as metrics

from .conftest import (
    expected_order,
    invoke,
    make_rows,
    one_line_error,
    read_manifest,
    reorder,
    shard_files,
    to_lines,
    write_jsonl,
)


def preview_json(*args) -> dict:
    result = invoke("preview", *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)["data"]


def listing(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


# ------------------------------------------------------------------ the manifest records the metrics


def test_manifest_metrics_are_those_of_the_output_order(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=["window_size=50"])
    m = read_manifest(out)
    scores = np.array(jsonl_corpus.scores)[expected_order("saw", jsonl_corpus.scores, window_size=50)]
    assert m["metrics"] == metrics.compute(scores)
    assert m["metrics"]["params"] == {"window": 1024, "boundary_pct": 5.0, "cycle_threshold": 0.25, "bins": 200}
    assert m["metrics"]["rows"] == len(scores)


def test_stats_shows_the_metrics(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="sorting")
    result = invoke("stats", out)
    assert result.exit_code == 0, result.output
    assert "guidance metrics" in result.stdout and "local" in result.stdout and "quarter ranges" in result.stdout
    doc = json.loads(invoke("stats", out, "--json").stdout)["data"]
    assert doc["metrics"] == read_manifest(out)["metrics"]


# ------------------------------------------------------------------ preview


def test_preview_matches_what_run_records_and_writes_nothing(tmp_path, jsonl_corpus):
    cfg = tmp_path / "str.yaml"
    cfg.write_text(f"method: str\ninput: {tmp_path / 'in'}\noutput: {tmp_path / 'out'}\nwindow_size: 30\n")
    before = listing(tmp_path)
    doc = preview_json(cfg)
    assert listing(tmp_path) == before  # no output folder, no spill, nothing
    (o,) = doc["orders"]
    assert o["method"] == "str" and o["params"]["window_size"] == 30
    assert doc["inputs"]["rows"] == o["rows"] == len(jsonl_corpus.rows)
    reorder(cfg, [tmp_path / "in"], tmp_path / "out")
    m = read_manifest(tmp_path / "out")
    assert o["metrics"] == m["metrics"] and o["profile"] == m["profile"] and o["params"] == m["params"]


def test_preview_compare_gives_paper_defaults_unless_set(tmp_path, jsonl_corpus):
    """--compare: the config file's order-shaping keys are not borrowed (a warning names them);
    --set applies a value to every method; data keys (seed) still come from the file."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("num_sections: 4\nseed: 7\n")
    result = invoke("preview", cfg, "--input", tmp_path / "in", "--compare", "str,saw", "-q", "--json")
    assert result.exit_code == 0 and "the config's num_sections is not used" in result.stderr, result.stderr
    by = {o["method"]: o for o in json.loads(result.stdout)["data"]["orders"]}
    assert by["str"]["params"]["num_sections"] == 2 and by["saw"]["params"]["num_sections"] == 3
    doc = preview_json(cfg, "--input", tmp_path / "in", "--compare", "str, saw,sorting,shuffle",
                       "--set", "num_sections=4")
    by = {o["method"]: o for o in doc["orders"]}
    assert list(by) == ["str", "saw", "sorting", "shuffle"]
    assert by["str"]["params"]["num_sections"] == by["saw"]["params"]["num_sections"] == 4
    assert by["str"]["params"]["folding_ratio"] == 0.225 and by["saw"]["params"]["folding_ratio"] == 0.075
    assert by["saw"]["params"]["folding_layer"] == 2
    assert all(o["params"]["seed"] == 7 for o in doc["orders"])
    scores = jsonl_corpus.scores
    for name, o in by.items():
        order = order_rows(name, np.array(scores), o["params"]) if name == "shuffle" else \
            expected_order(name, scores, **o["params"])
        expected = np.array(scores)[order]
        assert o["metrics"] == metrics.compute(expected), name
    assert by["sorting"]["metrics"]["local_diversity"] < by["shuffle"]["metrics"]["local_diversity"]


def test_preview_table_and_profiles(tmp_path, config_file, jsonl_corpus):
    result = invoke("preview", config_file, "--input", tmp_path / "in", "--compare", "str,saw,shuffle", "-q",
                    "--window", "100", "--boundary-pct", "10")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "1,200 rows from 3 file(s)" in text and "nothing written" in text
    table = text.split("guidance metrics", 1)[1].split("start/end:", 1)[0]
    lines = [line.split() for line in table.splitlines() if line.split()[:1] in (["STR"], ["SAW"], ["Random,"])]
    assert [row[0] for row in lines] == ["STR", "SAW", "Random,"]  # readable names: "STR (S=2, L=3, r=0.225)"
    lines = [row[-11:] for row in lines]  # the 11 cells after the label
    lines = [["label", *row] for row in lines]
    doc = preview_json(config_file, "--input", tmp_path / "in", "--compare", "str,saw,shuffle",
                       "--window", "100", "--boundary-pct", "10")
    for row, o in zip(lines, doc["orders"], strict=True):
        assert float(row[1]) == pytest.approx(o["metrics"]["boundary"]["start"], abs=0.006)
        assert row[3:5] == [str(o["metrics"]["cycles"]["rises"]), str(o["metrics"]["cycles"]["falls"])]
        assert float(row[-1]) == pytest.approx(o["metrics"]["local_diversity"], abs=0.006)
    assert "first/last 10%" in text and "windows of 100 rows" in text
    assert text.count("mean score by output position") == 3 and "first position" in text


def test_preview_of_compressed_jsonl_matches_plain_and_leaves_nothing(tmp_path, config_file, jsonl_corpus):
    zst = [write_jsonl(tmp_path / "z" / f"{f.stem}.jsonl.zst", [f.read_bytes()], "zstd") for f in jsonl_corpus.files]
    before = listing(tmp_path)
    plain = preview_json(config_file, "--input", tmp_path / "in", "--method", "saw")
    packed = preview_json(config_file, *[x for z in zst for x in ("--input", z)], "--method", "saw")
    assert listing(tmp_path) == before
    assert packed["orders"] == plain["orders"]


def test_preview_invalid_scores_follow_the_policy(tmp_path, config_file):
    rows = make_rows(300, 8, "v")
    lines = to_lines(rows)
    lines[5] = json.dumps({**rows[5], "score": "n/a"}).encode() + b"\n"
    f = write_jsonl(tmp_path / "v.jsonl", lines)
    msg = one_line_error(invoke("preview", config_file, "--input", f, "--method", "str", "-q"))
    assert "line 6" in msg and "n/a" in msg
    doc = preview_json(config_file, "--input", f, "--method", "str", "--set", "invalid_scores=last")
    assert doc["orders"][0]["rows"] == 300 and doc["orders"][0]["metrics"]["rows"] == 299
    doc = preview_json(config_file, "--input", f, "--method", "str", "--set", "invalid_scores=drop")
    assert doc["orders"][0]["rows"] == 299 and doc["orders"][0]["dropped_rows"] == 1


@pytest.mark.parametrize(("args", "text"), [
    (["--method", "str", "--compare", "saw"], "not both"),
    (["--compare", "str,bogus"], "unknown method 'bogus'"),
    (["--compare", " , "], "--compare expects"),
    (["--method", "str", "--window", "0"], "--window"),
    (["--method", "str", "--boundary-pct", "75"], "--boundary-pct"),
    (["--method", "str", "--plot", "x.png", "--plot-size", "big"], "--plot-size"),
])
def test_preview_bad_options(tmp_path, config_file, jsonl_corpus, args, text):
    msg = one_line_error(invoke("preview", config_file, "--input", tmp_path / "in", *args))
    assert text in msg
    assert not (tmp_path / "x.png").exists()


def test_preview_without_method_or_input(tmp_path, config_file, jsonl_corpus):
    assert "no method" in one_line_error(invoke("preview", config_file, "--input", tmp_path / "in"))
    assert "no input" in one_line_error(invoke("preview", config_file, "--method", "str"))


# ------------------------------------------------------------------ pictures


def png(path: Path) -> Image.Image:
    img = Image.open(path)
    img.load()
    assert img.format == "PNG"
    return img


def test_preview_plot_one_panel_per_method(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "curves.png"
    result = invoke("preview", config_file, "--input", tmp_path / "in", "--compare", "str,saw,sorting,shuffle",
                    "-q", "--plot", out, "--plot-size", "900x1000")
    assert result.exit_code == 0, result.output
    img = png(out)
    assert img.size == (900, 1000)
    pixels = np.asarray(img.convert("RGB"))
    assert pixels.std() > 10  # not a blank canvas
    default = tmp_path / "default.png"
    assert invoke("preview", config_file, "--input", tmp_path / "in", "--compare", "str,saw,sorting,shuffle", "-q",
                  "--plot", default).exit_code == 0
    assert png(default).size == (1200, 1200)  # 300 pixels a panel


def test_stats_plot_reads_the_shards(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="str", sets=["format=jsonl.zst", "shard_rows=400"])
    picture = tmp_path / "str.png"
    result = invoke("stats", out, "--plot", picture)
    assert result.exit_code == 0, result.output
    assert png(picture).size == (1200, 400)
    assert not (out / ".reorder").exists() and "str.png" not in {p.name for p in out.iterdir()}


def test_missing_plot_extra(tmp_path, config_file, jsonl_corpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    msg = one_line_error(invoke("preview", config_file, "--input", tmp_path / "in", "--method", "str",
                                "--plot", tmp_path / "x.png"))
    assert msg == ("error: plotting needs the optional extra: pip install 'reorder[plot]' "
                   "(in a checkout: pip install '.[plot]')")
    assert not (tmp_path / "x.png").exists()
    # the terminal profile needs no extra
    result = invoke("preview", config_file, "--input", tmp_path / "in", "--method", "str", "-q")
    assert result.exit_code == 0 and "first position" in result.stdout


def test_sample_positions_are_uniform_and_deterministic():
    from reorder_cli.inspect.plot import sample_positions

    a = sample_positions(1_000_000, 50_000)
    assert np.array_equal(a, sample_positions(1_000_000, 50_000))
    assert len(a) == 50_000 and np.all(np.diff(a) > 0) and a[0] >= 0 and a[-1] < 1_000_000
    assert np.array_equal(np.histogram(a, bins=10, range=(0, 1_000_000))[0], [5000] * 10)
    assert np.array_equal(sample_positions(7, 50_000), np.arange(7))


# ------------------------------------------------------------------ stats --deep


@pytest.fixture
def finished(tmp_path, config_file, jsonl_corpus):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=["shard_rows=300", "format=parquet"])
    return out


def test_deep_agrees_with_a_fresh_output(finished):
    result = invoke("stats", finished, "--deep")
    assert result.exit_code == 0, result.output
    assert "match the manifest" in result.stderr
    doc = json.loads(invoke("stats", finished, "--deep", "--json").stdout)["data"]
    assert doc["deep"] == {"differences": []}


def test_deep_reports_a_tampered_manifest(finished):
    path = finished / ".manifest.json"
    m = json.loads(path.read_text())
    m["metrics"]["local_diversity"] += 0.01
    m["profile"]["mean"][3] += 1
    path.write_text(json.dumps(m))
    assert invoke("stats", finished).exit_code == 0  # the manifest alone cannot tell
    msg = one_line_error(invoke("stats", finished, "--deep"))
    assert "disagree" in msg and "profile.mean[3]" in msg and "metrics.local_diversity" in msg


def test_deep_reports_swapped_shards(finished):
    a, b = shard_files(finished)[:2]
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    msg = one_line_error(invoke("stats", finished, "--deep"))
    assert "shards (" in msg and "shards[0].score.min" in msg and "profile (" in msg and "metrics (" in msg


def test_deep_reports_a_missing_shard(finished):
    shard_files(finished)[1].unlink()
    msg = one_line_error(invoke("stats", finished, "--deep"))
    assert "00001.parquet" in msg and "missing" in msg


def test_manifest_without_metrics(finished):
    """A manifest written before metrics existed: stats says so; --deep computes them."""
    path = finished / ".manifest.json"
    m = json.loads(path.read_text())
    recorded = m.pop("metrics")
    path.write_text(json.dumps(m))
    result = invoke("stats", finished)
    assert result.exit_code == 0 and "not recorded" in result.stdout
    doc = json.loads(invoke("stats", finished, "--deep", "--json").stdout)["data"]
    assert doc["metrics"] == recorded and doc["deep"] == {"differences": []}
