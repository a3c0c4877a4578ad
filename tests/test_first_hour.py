"""A new user's first hour (issue 14): the output format follows the inputs, ``shard_size`` is the size
on disk with deterministic cuts, the output folder from the config is named, a resumed publish says what
it did, ``scripts/corpus.py`` nests the score, pictures in SVG/PDF, and the README's STR example holds.

Deterministic: real files, the real CLI, no timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from .conftest import (
    Corpus,
    invoke,
    make_rows,
    one_line_error,
    read_jsonl_out,
    read_manifest,
    reorder,
    shard_files,
    to_lines,
    write_jsonl,
    write_parquet,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from corpus import make_frame, nest_score, write_corpus  # noqa: E402


@pytest.fixture
def auto_config(tmp_path: Path) -> Path:
    """A config that leaves ``format`` at its default (auto)."""
    path = tmp_path / "auto.yaml"
    path.write_text("score_field: score\nseed: 42\n")
    return path


def _messages(result) -> str:
    return result.stdout + result.stderr


def _run(config: Path, inputs, out: Path, *extra) -> object:
    """``reorder run`` without -q, so the notes and the summary line are printed."""
    args = ["run", config, "--method", "str", "--output", out, *extra]
    for i in [inputs] if isinstance(inputs, str | Path) else inputs:
        args += ["--input", i]
    result = invoke(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


# ------------------------------------------------------------------ format: auto


def _jsonl_input(tmp_path: Path, compression: str | None, name: str) -> tuple[Path, list[bytes]]:
    lines = to_lines(make_rows(120, seed=3, prefix=name), seed=3)
    suffix = {None: ".jsonl", "gzip": ".jsonl.gz", "zstd": ".jsonl.zst"}[compression]
    return write_jsonl(tmp_path / "in" / f"{name}{suffix}", lines, compression), lines


@pytest.mark.parametrize(("compression", "expected"), [(None, "jsonl"), ("zstd", "jsonl.zst"), ("gzip", "jsonl.zst")])
def test_auto_format_follows_jsonl_inputs(tmp_path, auto_config, compression, expected):
    path, lines = _jsonl_input(tmp_path, compression, "a")
    out = tmp_path / "out"
    result = _run(auto_config, path, out)
    names = [p.name for p in shard_files(out)]
    assert names and all(n.endswith("." + expected) for n in names), names
    assert {s["format"] for s in read_manifest(out)["shards"]} == {expected}
    assert f"{expected} (the inputs' format)" in _messages(result), _messages(result)
    assert sorted(read_jsonl_out(out)) == sorted(lines)  # the records, byte for byte, only reordered


def test_auto_format_follows_parquet_inputs(tmp_path, auto_config):
    path = write_parquet(tmp_path / "in" / "p.parquet", make_rows(150, seed=4))
    out = tmp_path / "out"
    result = _run(auto_config, path, out)
    assert [p.suffix for p in shard_files(out)] == [".parquet"]
    assert "parquet (the inputs' format)" in _messages(result)


def test_auto_format_of_mixed_inputs_is_parquet_and_says_why(tmp_path, auto_config):
    js, _ = _jsonl_input(tmp_path, None, "a")
    pq_path = write_parquet(tmp_path / "in" / "p.parquet", make_rows(150, seed=4, prefix="p"))
    out = tmp_path / "out"
    result = _run(auto_config, [js, pq_path], out)
    assert [p.suffix for p in shard_files(out)] == [".parquet"]
    assert "parquet (the default for inputs of mixed formats)" in _messages(result), _messages(result)


def test_an_explicit_format_wins_over_the_inputs(tmp_path, auto_config):
    """Negative control: with ``format`` set, JSONL inputs give what was asked, and no 'why' is printed."""
    path, _ = _jsonl_input(tmp_path, None, "a")
    out = tmp_path / "out"
    result = _run(auto_config, path, out, "--set", "format=parquet")
    assert [p.suffix for p in shard_files(out)] == [".parquet"]
    assert "the inputs' format" not in _messages(result)


# ------------------------------------------------------------------ shard_size on disk


def within(sizes: list[int], target: int, tolerance: float = 0.15) -> bool:
    """Every shard but the last (the remainder) within ``tolerance`` of ``target`` bytes."""
    full = sizes[:-1]
    return bool(full) and all(abs(s - target) <= tolerance * target for s in full)


@pytest.fixture(scope="module")
def fineweb(tmp_path_factory) -> Path:
    """A FineWeb-like corpus (scripts/corpus.py): 12,000 documents of ~600 characters, 3 JSONL and
    3 Parquet files, about 8 MB of JSONL."""
    folder = tmp_path_factory.mktemp("fineweb")
    write_corpus(make_frame(12_000, seed=5, median_chars=600), folder, 3, ["jsonl", "parquet"], row_group_size=2_000)
    return folder


SHARD_SIZE = 1_000_000


@pytest.mark.parametrize(("inputs", "fmt"), [("jsonl", "parquet"), ("jsonl", "jsonl.zst"), ("jsonl", "jsonl"),
                                              ("parquet", "parquet"), ("parquet", "jsonl.zst")])
def test_shard_size_is_the_size_on_disk(tmp_path, auto_config, fineweb, inputs, fmt):
    out = tmp_path / "out"
    reorder(auto_config, str(fineweb / f"*.{inputs}"), out, method="str",
            sets=[f"format={fmt}", f"shard_size={SHARD_SIZE}B", "row_group_size=256KB"])
    sizes = [p.stat().st_size for p in shard_files(out)]
    assert len(sizes) >= 3, sizes
    assert within(sizes, SHARD_SIZE), (fmt, sizes)
    assert [s["bytes"] for s in read_manifest(out)["shards"]] == sizes
    if fmt == "jsonl.zst":  # the old meaning (uncompressed bytes) would have cut shards several times smaller
        raw = len(zstandard.ZstdDecompressor().stream_reader(shard_files(out)[0].read_bytes()).read())
        assert raw > 2 * SHARD_SIZE, raw


def test_the_size_check_catches_shards_off_target():
    """Negative control of ``within``: 20% off, or a single shard, fails; the remainder may be small."""
    assert within([1_000_000, 1_100_000, 12], 1_000_000)
    assert not within([1_000_000, 1_200_000, 12], 1_000_000)
    assert not within([800_000, 1_000_000, 12], 1_000_000)
    assert not within([1_000_000], 1_000_000)


def _cuts(out: Path) -> list[tuple[int, int]]:
    """(first position, rows) of every shard, from the manifest."""
    return [(s["positions"][0], s["rows"]) for s in read_manifest(out)["shards"]]


def _bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in shard_files(out)} | {"manifest": (out / ".manifest.json").read_bytes()}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl.zst"])
def test_cuts_are_deterministic_whatever_the_workers_or_budget(tmp_path, auto_config, fineweb, fmt):
    sets = [f"format={fmt}", f"shard_size={SHARD_SIZE}B", "row_group_size=256KB"]
    variants = {"w1": ["workers=1"], "w2": ["workers=2"], "again": ["workers=2"],
                "ooc": ["rewrite=out-of-core", "memory_limit=1", "workers=2"]}
    outs = {}
    for name, extra in variants.items():
        outs[name] = tmp_path / name
        reorder(auto_config, str(fineweb / "*.jsonl"), outs[name], method="saw", sets=sets + extra)
    first = _bytes(outs["w1"])
    assert len(shard_files(outs["w1"])) >= 3
    for name, out in outs.items():
        assert _cuts(out) == _cuts(outs["w1"]), name
        assert _bytes(out) == first, name


def test_a_different_shard_size_moves_the_cuts(tmp_path, auto_config, fineweb):
    """Negative control of the comparison above: another shard_size gives other cut points."""
    base = ["format=parquet", "row_group_size=256KB"]
    reorder(auto_config, str(fineweb / "*.jsonl"), tmp_path / "a", method="saw", sets=[*base, "shard_size=1000000B"])
    reorder(auto_config, str(fineweb / "*.jsonl"), tmp_path / "b", method="saw", sets=[*base, "shard_size=700000B"])
    assert _cuts(tmp_path / "a") != _cuts(tmp_path / "b")


# ------------------------------------------------------------------ the output folder from the config


def test_the_output_folder_from_the_config_is_named(tmp_path):
    rows = make_rows(80, seed=1)
    src = write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(rows))
    target = tmp_path / "from-config"
    config = tmp_path / "cfg.yaml"
    config.write_text(f"score_field: score\nseed: 42\ninput: {src}\noutput: {target}\n")
    result = invoke("run", config, "--method", "str")
    assert result.exit_code == 0, result.output
    assert shard_files(target)
    msg = _messages(result)
    assert f"note: output folder {target} comes from the config file's 'output' key" in msg, msg


@pytest.mark.parametrize("how", ["--output", "--set"])
def test_no_note_when_the_command_line_names_the_output(tmp_path, how):
    """Negative control: -o/--output (or --set output=...) on the command line prints no such note."""
    rows = make_rows(80, seed=1)
    src = write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(rows))
    config = tmp_path / "cfg.yaml"
    config.write_text(f"score_field: score\nseed: 42\ninput: {src}\noutput: {tmp_path / 'from-config'}\n")
    target = tmp_path / "chosen"
    extra = ["--output", target] if how == "--output" else ["--set", f"output={target}"]
    result = invoke("run", config, "--method", "str", *extra)
    assert result.exit_code == 0, result.output
    assert shard_files(target) and not (tmp_path / "from-config").exists()
    assert "comes from the config file" not in _messages(result)


# ------------------------------------------------------------------ the summary line of a resumed publish


@pytest.fixture
def planned(tmp_path, auto_config) -> tuple[list[str], Path]:
    rows = make_rows(600, seed=2)
    src = write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(rows))
    out = tmp_path / "out"
    args = ["run", str(auto_config), "--method", "saw", "--input", str(src), "--output", str(out),
            "--set", "rewrite=out-of-core", "--set", "memory_limit=1", "--set", "shard_rows=150"]
    result = invoke(*args, "--plan-only")
    assert result.exit_code == 0, result.output
    assert "planned planned" not in _messages(result)
    assert "\nplanned " in "\n" + _messages(result), _messages(result)
    return args, out


def _tasks(out: Path, phase: str) -> int:
    listing = invoke("task", out).output
    return int(listing.split(f"{phase}: ")[1].split(" of ")[1].split()[0])


def test_publishing_finished_shards_says_it_only_moved_them(planned):
    args, out = planned
    for t in range(_tasks(out, "scatter")):
        assert invoke("task", out, "scatter", t).exit_code == 0
    for j in range(_tasks(out, "gather")):
        assert invoke("task", out, "gather", j).exit_code == 0
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    msg = _messages(result)
    assert "published the shards its tasks made" in msg and "interrupted" not in msg, msg  # planned, not interrupted
    assert "moved into place, nothing rewritten" in msg
    assert "MB/s" not in msg and "temporary space" not in msg, msg


def test_a_partly_resumed_run_counts_the_reused_shards(planned):
    args, out = planned
    for t in range(_tasks(out, "scatter")):
        assert invoke("task", out, "scatter", t).exit_code == 0
    assert invoke("task", out, "gather", 0).exit_code == 0
    total = _tasks(out, "gather")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    msg = _messages(result)
    assert f"resumed: 1 of {total} shard(s) came from an earlier, interrupted run" in msg, msg
    assert "MB/s" not in msg


def test_a_fresh_run_reports_its_rate(planned):
    """Negative control: a run that wrote everything itself reports its rate and path, not a resume."""
    args, out = planned
    result = invoke(*args[:-2], "--set", "shard_rows=150", "--restart")
    assert result.exit_code == 0, result.output
    msg = _messages(result)
    assert "MB/s of input" in msg and "out-of-core" in msg, msg
    assert "earlier, interrupted run" not in msg


# ------------------------------------------------------------------ scripts/corpus.py


def _corpus(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "corpus"
    subprocess.run([sys.executable, str(REPO / "scripts" / "corpus.py"), str(out), "--docs", "60", "--shards", "2",
                    "--median-chars", "40", *extra], check=True, capture_output=True)
    return out


def test_corpus_nests_the_score(tmp_path, auto_config):
    out = _corpus(tmp_path, "--score-field", "metadata.score")
    record = json.loads((out / "part-0000.jsonl").read_text().splitlines()[0])
    assert "score" not in record and set(record["metadata"]) == {"score", "int_score"}, record
    schema = pq.read_schema(out / "part-0000.parquet")
    assert "score" not in schema.names and schema.field("metadata").type.get_field_index("score") >= 0
    reorder(auto_config, str(out / "*.parquet"), tmp_path / "o", method="saw", sets=["score_field=metadata.score"])
    assert read_manifest(tmp_path / "o")["totals"]["rows"] == 60


def test_corpus_keeps_a_plain_score_by_default(tmp_path):
    """Negative control: without --score-field the score is a top-level field."""
    out = _corpus(tmp_path, "--formats", "jsonl")
    record = json.loads((out / "part-0000.jsonl").read_text().splitlines()[0])
    assert isinstance(record["score"], float) and "metadata" not in record
    assert not list(out.glob("*.parquet"))


def test_corpus_help_explains_every_flag():
    text = subprocess.run([sys.executable, str(REPO / "scripts" / "corpus.py"), "--help"], check=True,
                          capture_output=True, text=True).stdout
    for flag in ("--docs", "--shards", "--seed", "--median-chars", "--formats", "--score-field"):
        line = text.split(flag, 2)[-1].split("\n  --")[0]
        assert len(line.split()) > 2, (flag, line)  # a description, not just the metavar
    assert nest_score(make_frame(3), "metadata.score").columns[-1] == "metadata"


# ------------------------------------------------------------------ pictures: SVG, PDF, bad suffix


@pytest.fixture
def small(tmp_path) -> Corpus:
    rows = make_rows(300, seed=9)
    return Corpus([write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(rows))], rows)


@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<svg"), (".pdf", b"%PDF"), (".png", b"\x89PNG")])
def test_plot_writes_svg_pdf_and_png_deterministically(tmp_path, auto_config, small, suffix, magic):
    pytest.importorskip("matplotlib")
    pictures = [tmp_path / f"p{i}{suffix}" for i in range(2)]
    for picture in pictures:
        result = invoke("preview", auto_config, "--compare", "str,saw", "--input", small.files[0], "-q",
                        "--plot", picture)
        assert result.exit_code == 0, result.output
    data = pictures[0].read_bytes()
    assert magic in data[:400], data[:80]
    assert data == pictures[1].read_bytes()  # no date or random id in the file
    if suffix == ".svg":
        assert b"STR (S=2, L=3, r=0.225)" in data and b"300 rows" in data


@pytest.mark.parametrize("command", ["preview", "stats", "audit"])
def test_a_bad_plot_suffix_stops_before_any_work(tmp_path, auto_config, small, command):
    bad = tmp_path / "curves.jpg"
    missing = tmp_path / "no-such-output"
    if command == "preview":  # the input does not exist either: the suffix is checked first
        args = ["preview", auto_config, "--method", "str", "--input", tmp_path / "missing.jsonl"]
    elif command == "stats":
        args = ["stats", missing]
    else:
        args = ["audit", missing, tmp_path / "missing.log"]
    msg = one_line_error(invoke(*args, "--plot", bad))
    assert msg == f"error: {bad}: --plot writes .png, .svg or .pdf; give the file one of these suffixes", msg
    assert not bad.exists() and not missing.exists()


def test_the_suffix_check_lets_a_good_suffix_through(tmp_path, auto_config):
    """Positive twin: with .svg the same command goes on and fails on the missing input instead."""
    pytest.importorskip("matplotlib")
    msg = one_line_error(invoke("preview", auto_config, "--method", "str", "--input", tmp_path / "missing.jsonl",
                                "--plot", tmp_path / "c.svg"))
    assert "missing.jsonl" in msg and "--plot" not in msg, msg


# ------------------------------------------------------------------ the README's STR example


def _cycles(*extra: str) -> dict:
    result = invoke("preview", REPO / "configs" / "str.yaml", "--json", "-q", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["data"]["orders"][0]["metrics"]["cycles"]


def test_readme_str_example_on_the_sample(monkeypatch):
    """README: `reorder preview configs/str.yaml --window 64` on the sample shows 3 rises and 2 falls,
    while the default window (only two 1,024-row windows fit) shows 1 and 0."""
    monkeypatch.chdir(REPO)  # the config names the sample by a relative path, as in the Quickstart
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "`reorder preview configs/str.yaml --window 64` reports 3 rises and 2 falls" in readme
    got = _cycles("--window", "64")
    assert (got["rises"], got["falls"]) == (3, 2), got
    default = _cycles()  # the negative control: the figure the README no longer claims for the default
    assert (default["rises"], default["falls"]) == (1, 0), default

