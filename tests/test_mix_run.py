"""``reorder run`` on a mixture (``sources:``): the same bytes in memory, out of core and with any worker
count; each source in the order its own run gives; the manifest's counts and shares are the output's;
``verify`` proves the output; bad configs are one line and write nothing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from reorder_cli.mix import shares
from reorder_cli.mix.spec import schedule_of

from .conftest import invoke, one_line_error, output_hashes
from .mixture_data import BUDGET, is_subsequence, output_rows, source_keys, write_config, write_inputs

OOC = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150"]


def run(config: Path, out: Path, *sets: str):
    args = ["run", config, "--output", out, "-q"]
    for s in sets:
        args += ["--set", s]
    return invoke(*args)


@pytest.fixture
def mixture(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    inputs = write_inputs(tmp_path / "in")
    return write_config(tmp_path, inputs), inputs


@pytest.fixture
def in_memory(tmp_path, mixture) -> Path:
    out = tmp_path / "mem"
    result = run(mixture[0], out, "shard_rows=150")
    assert result.exit_code == 0, result.output
    return out


def _source(row: dict) -> str:
    return row["id"].split("-")[0]


def test_a_mixture_gives_the_same_bytes_in_memory_out_of_core_and_with_any_workers(tmp_path, mixture, in_memory,
                                                                                   monkeypatch):
    monkeypatch.setenv("REORDER_TEST_BELOW_FLOOR", "1")
    want = output_hashes(in_memory)
    assert len([n for n in want if n.endswith(".parquet")]) > 3  # several shards
    for name, sets in {"ooc": OOC, "ooc-1": [*OOC, "workers=1"], "mem-1": ["shard_rows=150", "workers=1"]}.items():
        result = run(mixture[0], tmp_path / name, *sets)
        assert result.exit_code == 0, result.output
        assert output_hashes(tmp_path / name) == want, name
    log = json.loads((tmp_path / "ooc" / ".run_log.json").read_text())
    assert log["path"] == "out-of-core"
    again = run(mixture[0], tmp_path / "ooc", *OOC)  # the same command again: nothing to do
    assert again.exit_code == 0 and "nothing to do" in again.stderr, again.output
    changed = yaml.safe_load(mixture[0].read_text())
    changed["sources"][0]["weight"] = 0.5  # negative control: another mixture is another run's output
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(changed, sort_keys=False))
    assert "another run" in one_line_error(run(other, tmp_path / "ooc", *OOC))


def _single(tmp_path: Path, name: str, inputs: dict[str, Path]) -> list[dict]:
    """The output of source ``name``'s own single-source run (its keys, the mixture's seed and format)."""
    keys = {k: v for k, v in source_keys()[name].items() if k not in ("weight", "max_epochs")}
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({"format": "parquet", "seed": 11, "input": str(inputs[name]), **keys}))
    result = invoke("run", cfg, "--output", tmp_path / f"single-{name}", "-q")
    assert result.exit_code == 0, result.output
    return output_rows(tmp_path / f"single-{name}")


def test_each_source_comes_in_the_order_of_its_own_run(tmp_path, mixture, in_memory):
    rows = output_rows(in_memory)
    manifest = json.loads((in_memory / ".manifest.json").read_text())["mixture"]
    by_name = {s["name"]: s for s in manifest["sources"]}
    for name in ("web", "code", "math"):
        own = _single(tmp_path, name, mixture[1])
        mine = [r for r in rows if _source(r) == name]
        assert len(mine) == by_name[name]["rows"]
        if by_name[name]["epochs"] == 1:  # web and math are cut to a subset: a subsequence, each row once
            assert by_name[name]["cut"]
            assert len({r["id"] for r in mine}) == len(mine) < len(own)
            assert is_subsequence(mine, own)
            swapped = mine[:]
            swapped[0], swapped[-1] = swapped[-1], swapped[0]
            assert not is_subsequence(swapped, own)  # negative control: the check sees an order changed
        else:  # code runs short: its whole order, then a prefix of it again
            assert by_name[name]["epochs"] == 2 and not by_name[name]["cut"]
            assert mine == (own * 2)[:len(mine)] and len(mine) > len(own)
            assert mine != (own[::-1] * 2)[:len(mine)]  # negative control


def test_the_manifest_counts_and_shares_are_the_outputs(in_memory):
    rows = output_rows(in_memory)
    doc = json.loads((in_memory / ".manifest.json").read_text())
    section = doc["mixture"]
    names = [s["name"] for s in section["sources"]]
    source = np.array([names.index(_source(r)) for r in rows])
    tokens = np.array([r["token_count"] for r in rows])
    for j, s in enumerate(section["sources"]):
        assert s["rows"] == int((source == j).sum())
        assert s["tokens"] == int(tokens[source == j].sum())
        assert s["distinct_rows"] == len({r["id"] for r in rows if _source(r) == s["name"]})
    assert sum(s["quota"] for s in section["sources"]) == BUDGET
    counts = Counter(r["id"] for r in rows)
    assert doc["totals"]["repeated_rows"] == sum(c - 1 for c in counts.values()) > 0
    measured = shares.measure(schedule_of(section), source, tokens, 100)
    assert section["shares"]["edges"] == [int(x) for x in measured.edges]
    got = np.array(section["shares"]["realised"])
    assert np.allclose(got, measured.share(measured.realised), atol=1e-6)
    # the provable bound holds window by window (docs/guides/mixtures.md), and on this mixture the issue's
    # bound too: within 0.5 points of the window or one document of the schedule, in every 1% of the tokens
    assert not shares.beyond_bound(measured).any()
    assert not shares.beyond_issue_bound(measured).any() and not shares.beyond_issue_bound(measured, "targeted").any()
    # negative control: the shares of the output reversed are not what the manifest records
    back = shares.measure(schedule_of(section), source[::-1], tokens[::-1], 100)
    assert not np.allclose(got, back.share(back.realised), atol=1e-6)
    assert shares.beyond_issue_bound(back).any()  # and it breaks the issue's bound: the check can fail


def test_verify_proves_a_mixture_and_finds_a_changed_shard(in_memory):
    good = invoke("verify", in_memory)
    assert good.exit_code == 0, good.output
    shard = sorted(in_memory.glob("*.parquet"))[1]
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    bad = invoke("verify", in_memory)
    assert bad.exit_code != 0 and shard.name in bad.output


def test_redistribute_stops_a_source_that_runs_out_and_the_others_fill_the_budget(tmp_path, mixture):
    keys = source_keys()
    keys["code"]["max_epochs"] = 1
    cfg = write_config(tmp_path, mixture[1], sources=keys, extra={"redistribute": True})
    out = tmp_path / "out"
    result = run(cfg, out)
    assert result.exit_code == 0, result.output
    section = json.loads((out / ".manifest.json").read_text())["mixture"]
    assert [s["source"] for s in section["stopped"]] == ["code"]
    code = next(s for s in section["sources"] if s["name"] == "code")
    assert code["epochs"] == 1 and code["rows"] == 120
    assert sum(s["tokens"] for s in section["sources"]) >= BUDGET
    plain = run(write_config(tmp_path, mixture[1], sources=keys), tmp_path / "refused")  # negative control
    assert "source 'code'" in one_line_error(plain) and "missing" in plain.stderr


def _mutate(cfg: dict, how: str) -> tuple[dict, str]:
    """A broken mixture config and the key its error must name."""
    s = cfg["sources"]
    if how == "duplicate":
        s[1]["name"] = "web"
        return cfg, "sources[1].name"
    if how == "negative":
        s[1]["weight"] = -0.5
        return cfg, "sources[1].weight"
    if how == "decreasing":
        s[0]["weight"] = [[0.5, 0.2], [0.2, 0.4]]
        return cfg, "sources[0].weight[1]"
    if how == "outside":
        s[0]["weight"] = [[0.0, 0.2], [1.5, 0.4]]
        return cfg, "sources[0].weight[1]"
    if how == "all-zero":
        for x in s:
            x["weight"] = [[0.0, 1.0], [0.5, 0.0], [1.0, 1.0]]
        return cfg, "sources"
    if how == "no-rows":
        s[2]["select"] = "threshold:1000"
        return cfg, "sources[2]"
    if how == "budget":
        cfg["budget"] = 10**7
        return cfg, "missing"
    if how == "output-key":
        s[0]["shard_size"] = "1MB"
        return cfg, "sources[0].shard_size"
    if how == "unknown":
        s[0]["wieght"] = 1
        return cfg, "sources[0].wieght"
    if how == "no-budget":
        del cfg["budget"]
        return cfg, "budget"
    if how == "top-input":
        cfg["input"] = s[0]["input"]
        return cfg, "input"
    if how == "shared-file":  # a row would belong to two sources
        s[2]["input"] = s[0]["input"]
        return cfg, "sources[2].input"
    if how == "no-match":
        s[1]["input"] = s[1]["input"].replace("part-0", "part-9")
        return cfg, "sources[1].input"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["duplicate", "negative", "decreasing", "outside", "all-zero", "no-rows", "budget",
                                 "output-key", "unknown", "no-budget", "top-input", "shared-file", "no-match"])
def test_a_bad_mixture_is_one_line_naming_the_key_and_writes_nothing(tmp_path, mixture, how):
    cfg, key = _mutate(yaml.safe_load(mixture[0].read_text()), how)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / "out"
    err = one_line_error(run(path, out))
    assert key in err, err
    assert not out.exists()


def test_a_mixture_takes_no_input_on_the_command_line(tmp_path, mixture):
    err = one_line_error(invoke("run", mixture[0], "--input", mixture[1]["web"], "--output", tmp_path / "o", "-q"))
    assert "--input" in err


def test_verify_with_inputs_proves_the_scheduled_rows_and_finds_an_input_changed_since(tmp_path, mixture, in_memory):
    good = invoke("verify", in_memory, "--with-inputs")
    assert good.exit_code == 0, good.output
    assert "exactly the scheduled rows" in good.output
    code = mixture[1]["code"]  # every row of code is scheduled (it repeats): change one's text, keep its keys
    lines = code.read_bytes().split(b"\n")
    row = json.loads(lines[5])
    row["text"] = row["text"] + " changed"
    lines[5] = json.dumps(row).encode()
    code.write_bytes(b"\n".join(lines))
    bad = invoke("verify", in_memory, "--with-inputs")
    assert bad.exit_code != 0
    assert "not the scheduled rows" in bad.output


def test_a_mixture_whose_keys_do_not_fit_memory_limit_is_refused_in_one_line(tmp_path, mixture, monkeypatch):
    monkeypatch.delenv("REORDER_TEST_BELOW_FLOOR", raising=False)  # a real run's checks
    out = tmp_path / "out"
    err = one_line_error(run(mixture[0], out, "memory_limit=65MB"))
    assert "memory_limit" in err and "'web'" in err
    assert not out.exists()
    assert run(mixture[0], tmp_path / "ok", "memory_limit=400MB").exit_code == 0  # negative control


def test_parquet_sources_that_repeat_are_read_once_and_give_the_bytes_of_the_out_of_core_path(tmp_path, monkeypatch):
    from .conftest import make_rows, write_parquet
    from .mixture_data import SOURCES

    monkeypatch.setenv("REORDER_TEST_BELOW_FLOOR", "1")
    inputs = {name: write_parquet(tmp_path / "pq" / name / "part-0.parquet", make_rows(n, seed=k + 10, prefix=name))
              for k, (name, n) in enumerate(SOURCES.items())}
    config = write_config(tmp_path, inputs)
    for name, sets in {"mem": ["shard_rows=150"], "ooc": OOC}.items():
        assert run(config, tmp_path / name, *sets).exit_code == 0
    assert output_hashes(tmp_path / "mem") == output_hashes(tmp_path / "ooc")
    section = json.loads((tmp_path / "mem" / ".manifest.json").read_text())["mixture"]
    assert next(s for s in section["sources"] if s["name"] == "code")["epochs"] == 2  # code's file listed twice
    rows = output_rows(tmp_path / "mem")
    code = [r for r in rows if _source(r) == "code"]
    assert code[:120] == code[120:240] or len(code) < 240  # the second epoch repeats the first, row for row
    assert code[120:] == code[:len(code) - 120]


@pytest.mark.parametrize(("path", "point"), [("out-of-core", "keys"), ("out-of-core", "scatter-done"),
                                             ("out-of-core", "gather-done"), ("in-memory", "gather-done"),
                                             ("out-of-core", "publish")])
def test_a_mixture_killed_at_any_point_resumes_to_the_same_bytes(tmp_path, mixture, in_memory, path, point):
    from .test_out_of_core import _run_until_killed

    sets = OOC if path == "out-of-core" else ["shard_rows=150"]
    args = ["run", str(mixture[0]), "--output", str(tmp_path / "out"), "-q"]
    for s in sets:
        args += ["--set", s]
    _run_until_killed(args, point, tmp_path / "flag")
    assert not (tmp_path / "out" / ".manifest.json").exists()  # nothing published yet
    result = run(mixture[0], tmp_path / "out", *sets)
    assert result.exit_code == 0, result.output
    assert output_hashes(tmp_path / "out") == output_hashes(in_memory)


def test_a_mixture_with_a_compressed_source_tokenized_and_exported_is_the_same_on_both_paths(tmp_path, monkeypatch):
    pytest.importorskip("tokenizers")
    from .conftest import compress
    from .test_tokens import make_tokenizer

    monkeypatch.setenv("REORDER_TEST_BELOW_FLOOR", "1")
    inputs = write_inputs(tmp_path / "in")
    zst = inputs["code"].with_suffix(".jsonl.zst")  # its decompressed copy is named by its index among all inputs
    zst.write_bytes(compress(inputs["code"].read_bytes(), "zstd"))
    inputs["code"].unlink()
    inputs["code"] = zst
    config = write_config(tmp_path, inputs, extra={"tokenizer": str(make_tokenizer(tmp_path / "tok")),
                                                   "export": "megatron"})
    hashes = {}
    for name, sets in {"mem": ["shard_rows=150"], "ooc": OOC}.items():
        result = run(config, tmp_path / name, *sets)
        assert result.exit_code == 0, result.output
        folder = tmp_path / name
        hashes[name] = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
                        if p.is_file() and p.name != ".run_log.json"}
    assert hashes["mem"] == hashes["ooc"]
    assert any(k.startswith("megatron/") for k in hashes["mem"]) and any(k.startswith("tokens/") for k in hashes["mem"])
    proof = invoke("verify", tmp_path / "mem", "--with-inputs")
    assert proof.exit_code == 0, proof.output


def test_config_show_and_validate_describe_a_mixture(mixture):
    shown = invoke("config", "show", mixture[0], "--json")
    assert shown.exit_code == 0, shown.output
    values = {k: v["value"] for k, v in json.loads(shown.stdout)["data"].items()}
    assert [s["method"] for s in values["sources"]] == ["str", "saw", "sorting"]
    assert values["budget"] == BUDGET and values["token_field"] == "token_count" and values["method"] == "mixture"
    valid = invoke("config", "validate", mixture[0])
    assert valid.exit_code == 0, valid.output
    schema = json.loads(invoke("config", "schema").stdout)
    props = schema["data"]["properties"] if "data" in schema else schema["properties"]
    assert {"sources", "budget", "token_field", "redistribute"} <= set(props)
