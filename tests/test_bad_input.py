"""Bad input, bad config and refused output folders: exit code 2, one ``error:`` line that
names the culprit, and nothing written (no output folder, no shard, no work folder)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from .conftest import (
    compress,
    invoke,
    make_rows,
    one_line_error,
    read_manifest,
    reorder,
    shard_files,
    to_lines,
    write_bytes,
    write_jsonl,
    write_parquet,
)


def fails(config_file, inputs, out, method="str", sets=(), extra=()) -> str:
    """Run, expect a user error; return its single line."""
    return one_line_error(reorder(config_file, inputs, out, method=method, sets=sets, extra=extra, ok=False))


def assert_nothing_written(out: Path) -> None:
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


def good_lines(n: int = 30, seed: int = 0) -> list[bytes]:
    return to_lines(make_rows(n, seed=seed, prefix="g"), seed=seed)


def with_bad_line(lines: list[bytes], index: int, bad: bytes) -> bytes:
    """The file's bytes with ``bad`` (a full line, newline included) at 0-based line ``index``."""
    return b"".join(lines[:index]) + bad + b"".join(lines[index:])


# ------------------------------------------------------------------ malformed records

MALFORMED = [
    b'{"id": "x", "score": 1.5\n',
    b'{"id": "x", "score": 1.5} trailing garbage\n',
    b'{"id": "x" "score": 1.5}\n',
    b"not json at all\n",
    b'{"id": "x", "score": 1.5, "text": "unterminated}\n',
    b"{'id': 'x', 'score': 1.5}\n",
    b'["score", 1.5]\n',
    b'{"id": "x", "score": 1.5,}\n',
]


@pytest.mark.parametrize("bad", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_json_line(tmp_path, config_file, bad):
    lines = good_lines()
    lines.insert(2, b"   \n")  # a blank line still counts as a line of the file
    f = write_bytes(tmp_path / "in" / "broken.jsonl", with_bad_line(lines, 6, bad))
    ok = write_jsonl(tmp_path / "in" / "fine.jsonl", good_lines(20, 1))
    out = tmp_path / "out"
    msg = fails(config_file, [ok, f], out, sets=["format=jsonl"])
    assert "broken.jsonl" in msg and "line 7" in msg, msg
    assert_nothing_written(out)


INVALID_SCORES = [
    (None, "missing"),
    ("null", "null"),
    ("NaN", "nan"),
    ('"abc"', "abc"),
    ("Infinity", "inf"),
    ("-Infinity", "inf"),
    ('"inf"', "inf"),
    ("[1, 2]", "[1, 2]"),
    ('{"a": 1}', "'a'"),
    ('""', "''"),
]


@pytest.mark.parametrize(("raw", "shown"), INVALID_SCORES, ids=[s for _, s in INVALID_SCORES])
def test_invalid_score_is_an_error_by_default(tmp_path, config_file, raw, shown):
    lines = good_lines(40)
    text = '{"id": "bad", "text": "t"' + ("" if raw is None else f', "score": {raw}') + "}\n"
    f = write_bytes(tmp_path / "in" / "scores.jsonl", with_bad_line(lines, 11, text.encode()))
    out = tmp_path / "out"
    msg = fails(config_file, [f], out)
    assert "scores.jsonl" in msg and "line 12" in msg, msg
    assert shown.lower() in msg.lower(), msg
    assert "score" in msg
    assert_nothing_written(out)


def test_invalid_score_in_parquet_names_the_row(tmp_path, config_file):
    rows = make_rows(50, 3, "q")
    rows[17]["score"] = None
    f = write_parquet(tmp_path / "in" / "q.parquet", rows)
    out = tmp_path / "out"
    msg = fails(config_file, [f], out)
    assert "q.parquet" in msg and "row 17" in msg and "null" in msg, msg
    assert_nothing_written(out)


def test_invalid_utf8_line(tmp_path, config_file):
    bad = b'{"id": "x", "text": "caf\xe9 \xff", "score": 1.0}\n'
    f = write_bytes(tmp_path / "in" / "latin1.jsonl", with_bad_line(good_lines(), 4, bad))
    out = tmp_path / "out"
    msg = fails(config_file, [f], out, sets=["format=jsonl"])
    assert "latin1.jsonl" in msg and "line 5" in msg and "UTF-8" in msg, msg
    assert_nothing_written(out)


def test_all_scores_invalid_with_drop(tmp_path, config_file):
    f = write_jsonl(tmp_path / "in" / "a.jsonl", [b'{"id": 1, "score": null}\n', b'{"id": 2}\n'])
    out = tmp_path / "out"
    msg = fails(config_file, [f], out, sets=["invalid_scores=drop"])
    assert "valid score" in msg
    assert_nothing_written(out)


# ------------------------------------------------------------------ unreadable files


@pytest.mark.parametrize(("comp", "ext"), [("gzip", "jsonl.gz"), ("zstd", "jsonl.zst")])
def test_truncated_compressed_input(tmp_path, config_file, comp, ext):
    data = compress(b"".join(good_lines(400)), comp)
    f = write_bytes(tmp_path / "in" / f"cut.{ext}", data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    msg = fails(config_file, [f], out, sets=["format=jsonl"])
    assert f"cut.{ext}" in msg, msg
    assert_nothing_written(out)


@pytest.mark.parametrize(("comp", "ext"), [("gzip", "jsonl.gz"), ("zstd", "jsonl.zst")])
def test_not_actually_compressed(tmp_path, config_file, comp, ext):
    f = write_bytes(tmp_path / "in" / f"plain.{ext}", b"".join(good_lines()))
    out = tmp_path / "out"
    msg = fails(config_file, [f], out)
    assert f"plain.{ext}" in msg, msg
    assert_nothing_written(out)


def test_corrupt_parquet(tmp_path, config_file):
    f = write_bytes(tmp_path / "in" / "junk.parquet", b"PAR1 this is not parquet at all PAR1")
    out = tmp_path / "out"
    assert "junk.parquet" in fails(config_file, [f], out)
    assert_nothing_written(out)


@pytest.mark.parametrize("name", ["data.csv", "data.json", "data.jsonl.bz2", "data"])
def test_unknown_extension_given_explicitly(tmp_path, config_file, name):
    f = write_bytes(tmp_path / "in" / name, b"".join(good_lines()))
    out = tmp_path / "out"
    msg = fails(config_file, [f], out)
    assert name in msg and "extension" in msg, msg
    assert_nothing_written(out)


def test_missing_input_path(tmp_path, config_file):
    out = tmp_path / "out"
    msg = fails(config_file, [tmp_path / "nope.jsonl"], out)
    assert "nope.jsonl" in msg
    assert_nothing_written(out)


def test_empty_input_folder(tmp_path, config_file):
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "README.txt").write_text("not data")
    out = tmp_path / "out"
    for folder in ("empty", "other"):
        msg = fails(config_file, [tmp_path / folder], out)
        assert folder in msg, msg
        assert_nothing_written(out)


def test_glob_matching_nothing(tmp_path, config_file):
    write_jsonl(tmp_path / "in" / "a.jsonl", good_lines())
    out = tmp_path / "out"
    pattern = str(tmp_path / "in" / "*.parquet")
    msg = fails(config_file, [pattern], out)
    assert "*.parquet" in msg, msg
    assert_nothing_written(out)


@pytest.mark.parametrize(
    "contents",
    [[b""], [b"", b""], [b"\n\n  \n\t\n"], [b"", b"\r\n"]],
    ids=["one-empty", "two-empty", "blank-lines", "empty-and-crlf"],
)
def test_inputs_without_rows(tmp_path, config_file, contents):
    files = [write_bytes(tmp_path / "in" / f"{i}.jsonl", data) for i, data in enumerate(contents)]
    out = tmp_path / "out"
    msg = fails(config_file, files, out)
    assert "no rows" in msg and "0.jsonl" in msg, msg
    assert_nothing_written(out)


def test_compressed_inputs_without_rows(tmp_path, config_file):
    files = [write_bytes(tmp_path / "in" / "a.jsonl.gz", b"", "gzip"),
             write_bytes(tmp_path / "in" / "b.jsonl.zst", b"\n", "zstd")]
    out = tmp_path / "out"
    assert "no rows" in fails(config_file, files, out)
    assert_nothing_written(out)


def test_parquet_without_the_score_column(tmp_path, config_file):
    rows = [{k: v for k, v in r.items() if k != "score"} for r in make_rows(20)]
    f = write_parquet(tmp_path / "in" / "noscore.parquet", rows)
    out = tmp_path / "out"
    msg = fails(config_file, [f], out)
    assert "noscore.parquet" in msg and "'score'" in msg, msg
    assert_nothing_written(out)
    msg = fails(config_file, [f], out, sets=["score_field=url.score"])
    assert "noscore.parquet" in msg and "url.score" in msg, msg
    assert_nothing_written(out)


def test_parquet_inputs_with_different_schemas(tmp_path, config_file):
    a = write_parquet(tmp_path / "in" / "a.parquet", make_rows(30, 1, "a"))
    b = write_parquet(tmp_path / "in" / "b.parquet", [{**r, "extra": 1} for r in make_rows(30, 2, "b")])
    out = tmp_path / "out"
    msg = fails(config_file, [a, b], out)
    assert "b.parquet" in msg and "schema" in msg, msg
    assert_nothing_written(out)


def test_same_file_twice(tmp_path, config_file):
    f = write_jsonl(tmp_path / "in" / "a.jsonl", good_lines())
    out = tmp_path / "out"
    msg = fails(config_file, [f, tmp_path / "in"], out)
    assert "a.jsonl" in msg and "twice" in msg, msg
    assert_nothing_written(out)


# ------------------------------------------------------------------ output folders


@pytest.fixture
def one_input(tmp_path) -> Path:
    return write_jsonl(tmp_path / "in" / "a.jsonl", good_lines(250))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_output_folder_with_files_needs_overwrite(tmp_path, config_file, one_input):
    out = tmp_path / "out"
    reorder(config_file, [one_input], out, method="str", sets=["format=jsonl", "shard_rows=20"])
    before = snapshot(out)
    assert len(shard_files(out)) == 13
    msg = fails(config_file, [one_input], out, method="saw")
    assert "out" in msg and "--overwrite" in msg, msg
    assert snapshot(out) == before

    # with --overwrite the previous reorder output is replaced, shard for shard
    reorder(config_file, [one_input], out, method="saw", extra=["--overwrite"])
    assert [p.name for p in shard_files(out)] == ["00000.parquet"]
    assert sorted(p.name for p in out.iterdir()) == [".manifest.json", ".run_log.json", "00000.parquet"]
    assert read_manifest(out)["method"] == "saw"


def test_overwrite_refuses_a_folder_with_a_foreign_file(tmp_path, config_file, one_input):
    out = tmp_path / "out"
    reorder(config_file, [one_input], out, method="str")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    for extra in ([], ["--overwrite"]):  # another run (the same one again, without --overwrite, is a no-op)
        msg = fails(config_file, [one_input], out, method="saw", extra=extra)
        assert "out" in msg, msg
        assert snapshot(out) == before
    assert "notes.txt" in msg, msg


def test_foreign_folder_is_refused(tmp_path, config_file, one_input):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("important")
    for extra in ([], ["--overwrite"]):
        fails(config_file, [one_input], out, extra=extra)
        assert snapshot(out) == {"thesis.tex": b"important"}


def test_failed_overwrite_keeps_the_previous_output(tmp_path, config_file, one_input):
    out = tmp_path / "out"
    reorder(config_file, [one_input], out, method="str", sets=["shard_rows=100"])
    before = snapshot(out)
    # fails after the keys pass: the two Parquet inputs' schemas differ
    a = write_parquet(tmp_path / "pq" / "a.parquet", make_rows(30, 1, "a"))
    b = write_parquet(tmp_path / "pq" / "b.parquet", [{**r, "extra": 1} for r in make_rows(30, 2, "b")])
    fails(config_file, [a, b], out, extra=["--overwrite"])
    assert snapshot(out) == before
    # fails in the keys pass
    bad = write_bytes(tmp_path / "bad" / "x.jsonl", b'{"score": "abc"}\n')
    fails(config_file, [bad], out, extra=["--overwrite"])
    assert snapshot(out) == before


def test_failure_leaves_an_existing_empty_folder_empty(tmp_path, config_file):
    out = tmp_path / "out"
    out.mkdir()
    bad = write_bytes(tmp_path / "in" / "x.jsonl", b'{"score": 1}\n{"score": \n')
    fails(config_file, [bad], out)
    assert list(out.iterdir()) == []


def test_output_inside_an_input_folder(tmp_path, config_file, one_input):
    folder = one_input.parent
    for out in (folder / "out", folder, folder / "deeper" / "out"):
        msg = fails(config_file, [folder], out)
        assert "input" in msg, msg
    assert sorted(p.name for p in folder.rglob("*")) == ["a.jsonl"]
    # an output folder that holds a named input file is refused too
    msg = fails(config_file, [one_input], folder, extra=["--overwrite"])
    assert "input" in msg, msg
    assert sorted(p.name for p in folder.rglob("*")) == ["a.jsonl"]


def test_output_is_a_file(tmp_path, config_file, one_input):
    out = tmp_path / "out.txt"
    out.write_text("x")
    msg = fails(config_file, [one_input], out)
    assert "out.txt" in msg
    assert out.read_text() == "x"


# ------------------------------------------------------------------ config errors


def test_unknown_config_key_in_the_file(tmp_path, one_input):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("score_field: score\nfolding_layers: 5\n")
    out = tmp_path / "out"
    msg = fails(cfg, [one_input], out)
    assert "'folding_layers'" in msg, msg
    assert_nothing_written(out)


def test_unknown_config_key_via_set(tmp_path, config_file, one_input):
    out = tmp_path / "out"
    msg = fails(config_file, [one_input], out, sets=["windowsize=10"])
    assert "'windowsize'" in msg, msg
    assert_nothing_written(out)


OUT_OF_RANGE = [
    ("folding_layer", "0"),
    ("folding_ratio", "-1"),
    ("x_pct", "150"),
    ("y_pct", "-5"),
    ("num_sections", "0"),
    ("zigzag_layer", "0"),
    ("window_size", "-1"),
    ("temperature", "-0.5"),
    ("seed", "-1"),
    ("folding_layer", "2.5"),
    ("ascending", "maybe"),
    ("shard_rows", "-3"),
    ("shard_size", "12XB"),
    ("format", "csv"),
    ("invalid_scores", "ignore"),
    ("compression_level", "30"),
]


@pytest.mark.parametrize(("key", "value"), OUT_OF_RANGE, ids=[f"{k}={v}" for k, v in OUT_OF_RANGE])
@pytest.mark.parametrize("where", ["file", "set"])
def test_out_of_range_values(tmp_path, config_file, one_input, key, value, where):
    out = tmp_path / "out"
    if where == "file":
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(f"score_field: score\n{key}: {value}\n")
        msg = fails(cfg, [one_input], out)
    else:
        msg = fails(config_file, [one_input], out, sets=[f"{key}={value}"])
    assert f"'{key}'" in msg, msg
    assert_nothing_written(out)


@pytest.mark.parametrize("where", ["flag", "file"])
def test_unknown_method(tmp_path, config_file, one_input, where):
    out = tmp_path / "out"
    if where == "flag":
        msg = fails(config_file, [one_input], out, method="stairs")
    else:
        cfg = tmp_path / "m.yaml"
        cfg.write_text("method: zig-zag\n")
        msg = fails(cfg, [one_input], out, method=None)
    assert ("'stairs'" if where == "flag" else "'zig-zag'") in msg, msg
    assert "saw" in msg and "str" in msg, msg
    assert_nothing_written(out)


def test_no_method(tmp_path, config_file, one_input):
    out = tmp_path / "out"
    assert "method" in fails(config_file, [one_input], out, method=None)
    assert_nothing_written(out)


def test_missing_or_broken_config_file(tmp_path, one_input):
    out = tmp_path / "out"
    msg = fails(tmp_path / "absent.yaml", [one_input], out)
    assert "absent.yaml" in msg
    broken = tmp_path / "broken.yaml"
    broken.write_text("score_field: score\nseed: [1, 2\n")
    msg = fails(broken, [one_input], out)
    assert "broken.yaml" in msg
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    assert "list.yaml" in fails(listing, [one_input], out)
    assert_nothing_written(out)


def test_set_without_equals(tmp_path, config_file, one_input):
    out = tmp_path / "out"
    assert "key=value" in fails(config_file, [one_input], out, sets=["seed"])
    assert_nothing_written(out)


def test_errors_go_to_stderr_only(tmp_path, config_file, one_input):
    result = reorder(config_file, [one_input], tmp_path / "out", method="nope", ok=False)
    one_line_error(result)
    assert result.stdout == ""


def test_stats_error_is_one_line(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text("{not json")
    one_line_error(invoke("stats", tmp_path / "m"))
    (tmp_path / "m" / "manifest.json").write_text(json.dumps({"manifest_version": 99}))
    assert "99" in one_line_error(invoke("stats", tmp_path / "m"))


# ------------------------------------------------------------------ messages quote user data verbatim


@pytest.mark.parametrize("value", ["[/foo]", "[bold]x[/bold]", "[red]"])
def test_error_shows_the_score_value_verbatim(tmp_path, config_file, value):
    """Values that look like console markup are printed as they are, and never crash the CLI."""
    line = json.dumps({"id": "x", "score": value}).encode() + b"\n"
    f = write_bytes(tmp_path / "in" / "m.jsonl", with_bad_line(good_lines(), 3, line))
    out = tmp_path / "out"
    msg = fails(config_file, [f], out)
    assert "line 4" in msg and value in msg, msg
    assert_nothing_written(out)


def test_error_shows_the_output_folder_verbatim(tmp_path, config_file, one_input):
    out = tmp_path / "out[v2]"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    msg = fails(config_file, [one_input], out)
    assert "out[v2]" in msg, msg


def test_disk_full_while_writing_is_one_line_and_leaves_nothing(tmp_path, config_file, jsonl_corpus, monkeypatch):
    from reorder_cli.formats import writers

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))

    monkeypatch.setattr(writers.ShardWriter, "write_lines", no_space)
    out = tmp_path / "out"
    msg = fails(config_file, jsonl_corpus.files, out, sets=["format=jsonl"])
    assert "No space left on device" in msg and "nothing was written" in msg, msg
    assert_nothing_written(out)


def test_previous_output_survives_a_failed_overwrite_on_disk_full(tmp_path, config_file, jsonl_corpus, monkeypatch):
    from reorder_cli.formats import writers

    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="str", sets=["format=jsonl"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))

    monkeypatch.setattr(writers.ShardWriter, "write_lines", no_space)
    fails(config_file, jsonl_corpus.files, out, sets=["format=jsonl"], extra=["--overwrite"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
