"""The command line explains itself (issue 21, config side): CONFIG.yaml optional, first-class flags,
chained selections, ``reorder config show|validate|schema``, did-you-mean hints, paths relative to
the config file, unused keys on one line."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reorder_cli import config
from reorder_cli.export import EXPORTS
from reorder_cli.mix import spec as mix_spec
from tests.conftest import invoke, one_line_error, read_jsonl_out, read_manifest, shard_files
from tests.test_select import ref_tokens, ref_top_r, scored_corpus


def shards(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in shard_files(folder)}


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


# ------------------------------------------------------------------ CONFIG.yaml is optional


def test_run_and_preview_need_no_config_file(tmp_path):
    path, _ = scored_corpus(tmp_path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    ok(invoke("run", "--method", "saw", "-i", path, "-o", tmp_path / "bare", "-q"))
    ok(invoke("run", empty, "--method", "saw", "-i", path, "-o", tmp_path / "with", "-q"))
    assert shards(tmp_path / "bare") == shards(tmp_path / "with")
    assert read_manifest(tmp_path / "bare") == read_manifest(tmp_path / "with")
    assert read_manifest(tmp_path / "bare")["params"]["folding_ratio"] == 0.075  # the method's (paper) default
    preview = ok(invoke("preview", "-m", "str", "-i", path, "--json"))
    assert json.loads(preview.stdout)["data"]["orders"][0]["method"] == "str"
    # without a method anywhere: one line saying what to pass
    assert "no method" in one_line_error(invoke("run", "-i", path, "-o", tmp_path / "none", "-q"))


# ------------------------------------------------------------------ first-class flags = --set


def test_flags_are_set_and_win_over_the_file(tmp_path):
    path, _ = scored_corpus(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: str\nscore_field: tok\nshard_size: 1GB\nformat: parquet\n")
    ok(invoke("run", cfg, "-i", path, "-o", tmp_path / "flags", "-q", "--score-field", "q", "--shard-size", "2KB",
              "--format", "jsonl", "--select", "top-r:0.5"))
    ok(invoke("run", cfg, "-i", path, "-o", tmp_path / "sets", "-q", "--set", "score_field=q", "--set",
              "shard_size=2KB", "--set", "format=jsonl", "--set", "select={method: top-r, r: 0.5}"))
    assert shards(tmp_path / "flags") == shards(tmp_path / "sets")
    doc = read_manifest(tmp_path / "flags")
    assert doc == read_manifest(tmp_path / "sets")
    assert doc["score_field"] == "q" and doc["output"]["format"] == "jsonl" and len(shard_files(tmp_path / "flags")) > 1
    # --score: an expression instead of the file's score_field
    ok(invoke("run", cfg, "-i", path, "-o", tmp_path / "expr", "-q", "--score", "q + meta.edu", "--format", "jsonl"))
    assert read_manifest(tmp_path / "expr")["score"] == "q + meta.edu"


# ------------------------------------------------------------------ chains of selections


def chain_oracle(rows: list[dict], r: float, budget: int) -> list[str]:
    """top-r, then a token budget over the rows it kept (the reference's rules, one after the other)."""
    kept = sorted(ref_top_r(rows, r), key=lambda x: int(x["id"][1:]))  # input order, for ties
    return sorted(x["id"] for x in ref_tokens(kept, budget))


@pytest.mark.parametrize("how", ["flags", "file"])
def test_a_chain_applies_each_selection_to_what_the_one_before_kept(tmp_path, how):
    path, rows = scored_corpus(tmp_path, 400, seed=5)
    cfg = tmp_path / "c.yaml"
    if how == "file":
        cfg.write_text("select:\n  - top-r:0.6\n  - {method: tokens, budget: 2500, token_field: tok}\nformat: jsonl\n")
        args = [cfg]
    else:
        args = ["--select", "top-r:0.6", "--select", "tokens:2500", "--token-field", "tok", "--format", "jsonl"]
    out, ooc = tmp_path / "mem", tmp_path / "ooc"
    ok(invoke("run", *args, "-m", "input", "-i", path, "-o", out, "-q"))
    ok(invoke("run", *args, "-m", "input", "-i", path, "-o", ooc, "-q", "--set", "rewrite=out-of-core",
              "--set", "memory_limit=1"))
    assert json.loads((ooc / ".run_log.json").read_text())["keys"] == "out-of-core"
    assert shards(out) == shards(ooc) and read_manifest(out) == read_manifest(ooc)
    kept = [json.loads(line)["id"] for line in read_jsonl_out(out)]
    assert sorted(kept) == chain_oracle(rows, 0.6, 2500)
    sel = read_manifest(out)["selection"]
    assert sel["params"] == [{"method": "top-r", "r": 0.6}, {"method": "tokens", "budget": 2500, "token_field": "tok"}]
    assert [s["rows_after"] for s in sel["steps"]] == [int(400 * 0.6), len(kept)]
    assert sel["rows_before"] == 400 and sel["rows_after"] == len(kept)
    assert sel["tokens_after"] == sum(r["tok"] for r in rows if r["id"] in set(kept))
    verified = ok(invoke("verify", out, "--with-inputs", "-q"))
    assert "exactly the selected rows" in verified.stdout


def test_a_chain_in_saw_order_and_its_refusals(tmp_path):
    path, rows = scored_corpus(tmp_path, 300, seed=2)
    ok(invoke("run", "-m", "saw", "-i", path, "-o", tmp_path / "saw", "-q", "--select", "threshold:1",
              "--select", "top-k:50", "--format", "jsonl"))
    kept = {json.loads(line)["id"] for line in read_jsonl_out(tmp_path / "saw")}
    above = sorted((r for r in rows if r["score"] > 1), key=lambda r: (r["score"], int(r["id"][1:])))
    assert kept == {r["id"] for r in above[-50:]}
    msg = one_line_error(invoke("run", "-m", "saw", "-i", path, "-o", tmp_path / "x", "-q", "--select", "top-r:0.5",
                                "--select", "tokens:100"))
    assert "select[1].token_field" in msg and "--token-field" in msg
    cfg = tmp_path / "two.yaml"
    cfg.write_text("select:\n  - {method: tokens, budget: 9, token_field: a}\n  - {method: tokens, budget: 5, "
                   "token_field: b}\n")
    assert "different token fields" in one_line_error(invoke("run", cfg, "-m", "saw", "-i", path, "-o",
                                                             tmp_path / "x", "-q"))
    chain = ["--select", "top-r:0.5", "--select", "top-k:10"]
    msg = one_line_error(invoke("run", "-m", "saw", "-i", path, "-o", tmp_path / "x", "-q", *chain,
                                "--token-field", "tok"))
    assert "select.token_field: no selection of the chain reads token_field" in msg
    msg = one_line_error(invoke("run", "-m", "saw", "-i", path, "-o", tmp_path / "x", "-q", *chain, "--set",
                                "select.method=tokens"))
    assert "select.method: the selection is a chain" in msg
    cfg.write_text("select: []\n")
    assert "an empty list" in one_line_error(invoke("run", cfg, "-m", "saw", "-i", path, "-o", tmp_path / "x", "-q"))
    assert not (tmp_path / "x").exists()
    # select.method=none turns a chain off; select.r reaches the step that reads it
    ok(invoke("run", "-m", "input", "-i", path, "-o", tmp_path / "off", "-q", *chain, "--set", "select.method=none"))
    assert "selection" not in read_manifest(tmp_path / "off")
    ok(invoke("run", "-m", "input", "-i", path, "-o", tmp_path / "r", "-q", *chain, "--set", "select.r=0.1"))
    assert read_manifest(tmp_path / "r")["selection"]["steps"][0]["rows_after"] == 30


# ------------------------------------------------------------------ reorder config show | validate | schema


def test_config_show_says_where_each_value_comes_from(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: saw\nseed: 7\ninput: data/in.jsonl\n")
    result = ok(invoke("config", "show", cfg, "-o", "out", "--set", "num_sections=3", "--format", "jsonl", "--json"))
    shown = json.loads(result.stdout)["data"]
    assert shown["seed"] == {"value": 7, "source": f"file {cfg}"}
    assert shown["num_sections"] == {"value": 3, "source": "--set"}
    assert shown["format"] == {"value": "jsonl", "source": "--format"}
    assert shown["folding_ratio"] == {"value": 0.075, "source": "default of saw"}
    assert shown["ascending"]["source"] == "default"
    assert shown["output"] == {"value": "out", "source": "command line"}
    assert shown["input"]["value"] == [str(tmp_path / "data" / "in.jsonl")]  # relative to the config file
    text = ok(invoke("config", "show", cfg)).stdout
    hidden = ok(invoke("config", "show", cfg, "--set", "storage_options.secret=abc123", "--json")).stdout
    assert json.loads(hidden)["data"]["storage_options"]["value"] == {"secret": "***"} and "abc123" not in hidden
    assert "seed: 7  # file" in text and "method: saw  # file" in text


def test_config_validate(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: str\nselect: [top-r:0.5, top-k:10]\n")
    assert "a valid config (method str)" in ok(invoke("config", "validate", cfg)).output
    cfg.write_text("method: str\nfolding_ratoi: 0.1\n")
    msg = one_line_error(invoke("config", "validate", cfg))
    assert "'folding_ratoi'; did you mean folding_ratio?" in msg


def test_config_schema_comes_from_the_key_table_and_accepts_the_repos_configs(tmp_path):
    schema = json.loads(ok(invoke("config", "schema")).stdout)
    mixture = {k for k in mix_spec.KEY_HELP if "[" not in k}  # a mixture's top-level keys (configs/mixture.yaml)
    assert set(schema["properties"]) == set(config.KEYS) | set(config.IGNORED_KEYS) | mixture
    for key in config.KEYS.values():
        assert schema["properties"][key.name]["description"].startswith(key.help)
    assert schema["properties"]["seed"]["type"] == "integer"
    # the row formats, then the trainer-native exports `format:` is an alias for (rows in parquet)
    assert schema["properties"]["format"]["enum"] == ["auto", "parquet", "jsonl.zst", "jsonl", *config.EXPORT_FORMATS]
    assert set(config.EXPORT_FORMATS) == set(EXPORTS)  # the config's names are the exporters' registry
    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "configs").glob("*.yaml")):
        jsonschema.validate(config.read_yaml(path), schema)
    jsonschema.validate({"select": ["top-r:0.6", {"method": "tokens", "budget": "10B", "token_field": "n"}]}, schema)
    for bad in ({"seed": "x"}, {"format": "csv"}, {"sed": 1}, {"slurm": {"partiton": "cpu"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


# ------------------------------------------------------------------ did you mean


def test_close_matches_are_suggested(tmp_path):
    path, _ = scored_corpus(tmp_path)
    (tmp_path / "empty.yaml").write_text("")  # a config file: the hints are tested alone
    run = [tmp_path / "empty.yaml", "-i", path, "-o", tmp_path / "x", "-q"]
    assert "did you mean str?" in one_line_error(invoke("run", "-m", "stt", *run))
    assert "did you mean seed?" in one_line_error(invoke("run", "-m", "str", "--set", "sede=3", *run))
    assert "did you mean top-r?" in one_line_error(invoke("run", "-m", "str", "--select", "top_r:0.5", *run))
    assert "did you mean jsonl?" in one_line_error(invoke("run", "-m", "str", "--format", "jsnol", *run))
    assert "did you mean partition?" in one_line_error(invoke("run", "-m", "str", "--set", "slurm.partiton=a", *run))
    assert "did you mean --score-field q?" in one_line_error(invoke("run", "-m", "str", "--score-field", "qq", *run))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_score_inside_a_struct_is_suggested(tmp_path, fmt):
    rows = [{"id": i, "metadata": {"score": float(i % 5), "src": "w"}} for i in range(20)]
    path = tmp_path / f"in.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "empty.yaml").write_text("")
    msg = one_line_error(invoke("run", tmp_path / "empty.yaml", "-m", "str", "-i", path, "-o", tmp_path / "x", "-q"))
    assert msg.endswith("did you mean --score-field metadata.score?") and str(path) in msg, msg
    ok(invoke("run", tmp_path / "empty.yaml", "-m", "str", "-i", path, "-o", tmp_path / "x", "-q", "--set",
              "score_field=metadata.score"))


# ------------------------------------------------------------------ paths; unused keys


def test_paths_in_the_file_are_relative_to_it_and_on_the_command_line_to_the_cwd(tmp_path, monkeypatch):
    path, rows = scored_corpus(tmp_path)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "sel.yaml").write_text("method: top-k\nk: 10\n")
    cfg = tmp_path / "conf" / "c.yaml"
    cfg.write_text("method: input\ninput: ../in.jsonl\noutput: ../out\nselect: sel.yaml\nformat: jsonl\n")
    monkeypatch.chdir(tmp_path)
    ok(invoke("run", "conf/c.yaml", "-q"))
    assert len(read_jsonl_out(tmp_path / "out")) == 10
    ok(invoke("run", "conf/c.yaml", "-i", "in.jsonl", "-o", "cli-out", "-q"))  # the cwd's in.jsonl and cli-out
    assert len(read_jsonl_out(tmp_path / "cli-out")) == 10


def test_unused_keys_are_one_warning_line(tmp_path):
    path, _ = scored_corpus(tmp_path)
    (tmp_path / "empty.yaml").write_text("")
    result = ok(invoke("run", tmp_path / "empty.yaml", "-m", "sorting", "-i", path, "-o", tmp_path / "o", "-q",
                       "--set", "zigzag_layer=4", "--set", "x_pct=10", "--set", "num_sections=3"))
    lines = [line for line in result.stderr.splitlines() if "not used" in line]
    assert len(lines) == 1, result.stderr
    assert "'zigzag_layer' (read by zigzag)" in lines[0] and "'x_pct' (read by segment)" in lines[0]
    assert "'num_sections' (read by str, saw)" in lines[0] and "method sorting" in lines[0]


def test_choose_equals_the_chain_of_selects():
    """The chain's one cut keeps what applying each selection to the rows kept before keeps, in any chunking."""
    from reorder_cli.plan import select

    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(5, 80))
        scores = rng.integers(0, 6, n).astype(float)
        scores[rng.random(n) < 0.1] = np.nan
        tokens = rng.integers(0, 9, n)
        chain = [{"method": "top-r", "r": 0.7}, {"method": "tokens", "budget": int(rng.integers(1, 60)),
                                                  "token_field": "t"}, {"method": "threshold", "threshold": 1.0}]
        keep = ~np.isnan(scores)
        try:
            for p in chain:
                masked = np.where(keep, scores, np.nan)
                keep = select.select(p, n, select.in_memory(masked, tokens), n).cut.keep(0, masked)
        except Exception:  # a step that keeps nothing: the chain refuses too
            with pytest.raises(Exception):  # noqa: B017
                select.choose(chain, n, select.in_memory(scores, tokens), n)
            continue
        for chunk in (n, 3, 7):
            got = select.choose(chain, n, select.in_memory(scores, tokens), chunk)
            assert np.array_equal(got.cut.keep(0, scores), keep)
