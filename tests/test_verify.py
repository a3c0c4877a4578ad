"""``reorder verify``: a finished output checked against its manifest and, given the inputs,
proved a permutation of them. Outputs are made with ``reorder run`` and then damaged."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from .conftest import (
    invoke,
    make_rows,
    one_line_error,
    read_manifest,
    read_shard_lines,
    reorder,
    shard_files,
    to_lines,
    write_bytes,
    write_jsonl,
    write_parquet,
)

EXT = {"parquet": ".parquet", "jsonl": ".jsonl", "jsonl.zst": ".jsonl.zst"}


# ------------------------------------------------------------------ helpers


def make_output(tmp_path: Path, config_file: Path, files, fmt: str, name: str = "out", sets=()) -> Path:
    out = tmp_path / name
    reorder(config_file, files, out, method="str", sets=[f"format={fmt}", "shard_rows=300", *sets])
    return out


def verify(*args):
    return invoke("verify", *args, "-q")


def clean(result, permutation: bool = False) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("all good:"), result.stdout
    assert ("permutation of the inputs" in lines[0]) == permutation, lines[0]
    return lines[0]


def problems(result) -> list[str]:
    """The difference lines of a failed verify (exit 1), the summary line checked and dropped."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    lines = result.stdout.strip().splitlines()
    assert "difference(s) found" in lines[-1], lines
    assert f"{len(lines) - 1} difference(s)" in lines[-1]
    assert "Traceback" not in result.output
    return lines[:-1]


def has(lines: list[str], where: str, kind: str) -> bool:
    return any(line.startswith(f"{where}: {kind}:") for line in lines)


def shard(out: Path, index: int) -> Path:
    return shard_files(out)[index]


def read_lines(path: Path) -> list[bytes]:
    return read_shard_lines(path)


def write_lines(path: Path, lines: list[bytes]) -> None:
    data = b"".join(lines)
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if path.name.endswith(".zst") else data)


def shard_scores(path: Path) -> list[float]:
    if path.suffix == ".parquet":
        return pq.read_table(path).column("score").to_pylist()
    return [json.loads(line)["score"] for line in read_lines(path)]


def summary(scores: list[float]) -> dict:
    return {"min": round(min(scores), 6), "mean": round(sum(scores) / len(scores), 6), "max": round(max(scores), 6)}


def forge_manifest(out: Path) -> None:
    """Rewrite the manifest so that its bookkeeping matches the (tampered) shards again:
    only the permutation check against the inputs can then tell."""
    m = read_manifest(out)
    end, every = 0, []
    for s in m["shards"]:
        path = out / s["file"]
        scores = shard_scores(path)
        every += scores
        s.update(bytes=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), rows=len(scores),
                 positions=[end, end + len(scores)], score=summary(scores))
        end += len(scores)
    t = m["totals"]
    m["inputs"][-1]["rows"] += end - t["rows"]
    t.update(rows=end, input_rows=end + t["dropped_rows"], bytes=sum(s["bytes"] for s in m["shards"]),
             score=summary(every))
    (out / ".manifest.json").write_text(json.dumps(m, indent=2))


def edit_manifest(out: Path, change) -> None:
    m = read_manifest(out)
    change(m)
    (out / ".manifest.json").write_text(json.dumps(m, indent=2))


@pytest.fixture
def pq_out(tmp_path, config_file, jsonl_corpus) -> Path:
    """JSONL -> Parquet, 4 shards."""
    return make_output(tmp_path, config_file, jsonl_corpus.files, "parquet")


@pytest.fixture(params=["parquet", "jsonl", "jsonl.zst"])
def any_out(request, tmp_path, config_file, jsonl_corpus) -> Path:
    return make_output(tmp_path, config_file, jsonl_corpus.files, request.param)


# ------------------------------------------------------------------ good outputs


@pytest.mark.parametrize(("source", "fmt"), [
    ("jsonl", "parquet"), ("jsonl", "jsonl"), ("jsonl", "jsonl.zst"), ("parquet", "parquet"), ("parquet", "jsonl"),
])
def test_a_good_output_verifies_clean(tmp_path, config_file, jsonl_corpus, parquet_corpus, source, fmt):
    corpus = jsonl_corpus if source == "jsonl" else parquet_corpus
    out = make_output(tmp_path, config_file, corpus.files, fmt)
    assert len(shard_files(out)) >= 2
    line = clean(verify(out))
    assert f"{len(shard_files(out))} shard(s), {len(corpus.rows):,} rows" in line
    # the inputs the manifest records, or given again (as a folder), prove the permutation
    for extra in (["--with-inputs"], ["--input", corpus.files[0].parent]):
        result = verify(out, *extra)
        assert f"{len(corpus.rows):,} input rows" in clean(result, permutation=True)
        assert result.stderr.strip() == ""
    each = [x for f in corpus.files for x in ("-i", f)]
    clean(verify(out / ".manifest.json", "--inputs", *each[1:], "--workers", "1"), permutation=True)


def test_compressed_and_mixed_inputs(tmp_path, config_file):
    rows_a, rows_b, rows_c = make_rows(120, 1, "a"), make_rows(90, 2, "b"), make_rows(70, 3, "c")
    data_a = b"".join(to_lines(rows_a, seed=1))[:-1]  # the last line without its newline
    # b: CRLF records (the '\r' is part of a record) and blank lines at the end
    files = [write_bytes(tmp_path / "in" / "a.jsonl.gz", data_a, "gzip"),
             write_bytes(tmp_path / "in" / "b.jsonl.zst", b"".join(to_lines(rows_b, b"\r\n", 2)) + b"\n \n", "zstd"),
             write_parquet(tmp_path / "in" / "c.parquet", rows_c)]
    for fmt in ("jsonl", "parquet"):
        out = make_output(tmp_path, config_file, files, fmt, name=f"out-{fmt}", sets=["shard_rows=100"])
        assert "280 input rows" in clean(verify(out, "--with-inputs"), permutation=True)


def test_verify_ignores_the_work_folder_and_run_log(any_out):
    assert (any_out / ".run_log.json").is_file()
    work = any_out / ".reorder"
    work.mkdir()
    shutil.copy(shard(any_out, 0), work / shard(any_out, 0).name)
    (work / "00007.parquet.tmp").write_bytes(b"partial")
    clean(verify(any_out))


# ------------------------------------------------------------------ damaged shards


def test_a_flipped_byte(any_out):
    path = shard(any_out, 1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    lines = problems(verify(any_out))
    assert has(lines, path.name, "sha256")
    assert not has(lines, path.name, "size")
    assert all(line.startswith(path.name) for line in lines), lines


def test_a_truncated_shard(any_out):
    path = shard(any_out, 2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    lines = problems(verify(any_out))
    assert has(lines, path.name, "size") and has(lines, path.name, "sha256")
    if path.suffix == ".parquet" or path.name.endswith(".zst"):
        assert has(lines, path.name, "unreadable")
    else:  # cut inside the last record: it is malformed, or short of its newline
        assert has(lines, path.name, "unreadable") or has(lines, path.name, "truncated")


def test_a_truncated_jsonl_shard_at_a_record_boundary(tmp_path, config_file, jsonl_corpus):
    out = make_output(tmp_path, config_file, jsonl_corpus.files, "jsonl")
    path = shard(out, 0)
    write_lines(path, read_lines(path)[:-3])
    lines = problems(verify(out))
    assert has(lines, path.name, "rows")
    assert "the file holds 297 rows, the manifest says 300" in "\n".join(lines)


def test_a_missing_shard(any_out):
    path = shard(any_out, 2)
    path.unlink()
    lines = problems(verify(any_out))
    assert lines == [f"{path.name}: missing: the manifest lists it but there is no such file"]


def test_two_shards_swapped(any_out):
    a, b = shard(any_out, 0), shard(any_out, 1)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    lines = problems(verify(any_out))
    for path in (a, b):
        assert has(lines, path.name, "sha256")
        assert has(lines, path.name, "score")  # STR's first shards hold different scores
    assert not has(lines, "manifest", "totals")


def test_rows_reordered_inside_a_shard(any_out, jsonl_corpus):
    path = shard(any_out, 1)
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        pq.write_table(table.take(pa.array(range(table.num_rows - 1, -1, -1))), path, compression="zstd")
    else:
        write_lines(path, read_lines(path)[::-1])
    lines = problems(verify(any_out))
    assert has(lines, path.name, "sha256")
    assert not has(lines, path.name, "rows") and not has(lines, path.name, "score")
    # still a permutation of the inputs: only the order inside the shard changed
    lines = problems(verify(any_out, "--with-inputs"))
    assert not has(lines, "output", "not a permutation")


def test_an_extra_row_appended(any_out):
    path = shard(any_out, 3)
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path, compression="zstd")
    else:
        lines = read_lines(path)
        write_lines(path, lines + lines[:1])
    rows = read_manifest(any_out)["shards"][3]["rows"]
    lines = problems(verify(any_out, "--with-inputs"))
    assert f"{path.name}: rows: the file holds {rows + 1:,} rows, the manifest says {rows:,}" in lines
    assert has(lines, path.name, "sha256")
    assert has(lines, "output", "not a permutation")


def test_a_corrupt_record_in_a_jsonl_shard(tmp_path, config_file, jsonl_corpus):
    out = make_output(tmp_path, config_file, jsonl_corpus.files, "jsonl")
    path = shard(out, 1)
    lines = read_lines(path)
    lines[5] = b'{"id": "x", "score": 1.0\n'
    write_lines(path, lines)
    found = problems(verify(out))
    assert any(line.startswith(f"{path.name}: unreadable: line 6: malformed JSON") for line in found), found


def test_an_unexpected_shard_file(pq_out):
    shutil.copy(shard(pq_out, 0), pq_out / "00004.parquet")
    (pq_out / "notes.txt").write_text("not a shard: ignored")
    lines = problems(verify(pq_out))
    assert lines == ["00004.parquet: unexpected file: a shard-like file that the manifest does not list"]


def test_a_parquet_shard_with_another_schema(pq_out):
    path = shard(pq_out, 1)
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["url"]), path)
    lines = problems(verify(pq_out))
    assert has(lines, path.name, "schema") and has(lines, path.name, "sha256")


# ------------------------------------------------------------------ an edited manifest


def test_edited_shard_rows_break_positions_and_totals(pq_out):
    edit_manifest(pq_out, lambda m: m["shards"][1].update(rows=m["shards"][1]["rows"] + 1))
    lines = problems(verify(pq_out))
    assert "00001.parquet: rows: the file holds 300 rows, the manifest says 301" in lines
    # [300, 600) no longer holds 301 rows; the next shard still starts where this one ends
    assert "00001.parquet: positions: [300, 600) spans 300 positions, but the shard has 301 rows" in lines
    assert not has(lines, "00002.parquet", "positions")
    assert "manifest: totals: rows is 1200, expected 1201 (the sum of the shards' rows)" in lines


@pytest.mark.parametrize(("change", "where", "kind"), [
    (lambda m: m["shards"][2]["score"].update(mean=m["shards"][2]["score"]["mean"] + 0.01), "00002.parquet", "score"),
    (lambda m: m["shards"][0].update(sha256="0" * 64), "00000.parquet", "sha256"),
    (lambda m: m["shards"][3].update(bytes=m["shards"][3]["bytes"] + 1), "00003.parquet", "size"),
    (lambda m: m["shards"][1].update(positions=[301, 600]), "00001.parquet", "positions"),
    (lambda m: m["shards"][2].update(positions=[599, 899]), "00002.parquet", "positions"),
    (lambda m: m["shards"][3].update(positions=[900, 1201]), "manifest", "totals"),
    (lambda m: m["shards"][1].update(file="00009.parquet"), "00009.parquet", "name"),
    (lambda m: m["shards"].__setitem__(slice(0, 2), m["shards"][1::-1]), "00000.parquet", "name"),
    (lambda m: m["totals"].update(rows=1), "manifest", "totals"),
    (lambda m: m["totals"]["score"].update(max=99.0), "manifest", "totals"),
    (lambda m: m["invalid_scores"].update(dropped=3), "manifest", "invalid_scores"),
    (lambda m: m["shards"].pop(), "00003.parquet", "unexpected file"),
], ids=["score", "sha256", "bytes", "positions", "overlap", "end", "name", "order", "totals-rows", "totals-score",
        "dropped", "pop"])
def test_an_edited_manifest(pq_out, change, where, kind):
    edit_manifest(pq_out, change)
    lines = problems(verify(pq_out))
    assert has(lines, where, kind), lines


def test_a_broken_manifest_is_a_usage_error(pq_out, tmp_path):
    edit_manifest(pq_out, lambda m: m["shards"][0].pop("sha256"))
    assert "shard 0 has no valid 'sha256'" in one_line_error(verify(pq_out))
    assert "no .manifest.json here" in one_line_error(verify(tmp_path))


# ------------------------------------------------------------------ the permutation proof


def test_an_input_row_changed(tmp_path, config_file, jsonl_corpus):
    out = make_output(tmp_path, config_file, jsonl_corpus.files, "jsonl")
    path = jsonl_corpus.files[1]
    lines = path.read_bytes().splitlines(keepends=True)
    assert b"f1-00010" in lines[10]
    lines[10] = lines[10].replace(b"f1-00010", b"f1-0001X")
    path.write_bytes(b"".join(lines))
    clean(verify(out))  # the output itself is intact
    result = verify(out, "--with-inputs")
    assert has(problems(result), "output", "not a permutation")
    assert "the rows differ" in result.stdout
    assert f"{path}: changed since the run" in result.stderr.replace("\n", "")


@pytest.mark.parametrize("fmt", ["jsonl.zst", "parquet"])
def test_a_row_missing_from_the_output(tmp_path, config_file, jsonl_corpus, fmt):
    out = make_output(tmp_path, config_file, jsonl_corpus.files, fmt)
    path = shard(out, 2)
    if fmt == "parquet":
        table = pq.read_table(path)
        pq.write_table(pa.concat_tables([table.slice(0, 7), table.slice(8)]), path)
    else:
        lines = read_lines(path)
        write_lines(path, lines[:7] + lines[8:])
    forge_manifest(out)
    clean(verify(out))  # the bookkeeping alone no longer tells
    result = verify(out, "--with-inputs")
    assert has(problems(result), "output", "not a permutation")
    assert "1,199 output rows vs 1,200 input rows: the row counts differ" in result.stdout


@pytest.mark.parametrize(("source", "fmt"), [("jsonl", "jsonl"), ("jsonl", "parquet"), ("parquet", "parquet"),
                                             ("parquet", "jsonl")])
def test_a_duplicated_row(tmp_path, config_file, jsonl_corpus, parquet_corpus, source, fmt):
    """One row written twice, another not at all: same count, same shard sizes in rows."""
    corpus = jsonl_corpus if source == "jsonl" else parquet_corpus
    out = make_output(tmp_path, config_file, corpus.files, fmt)
    path = shard(out, 1)
    if fmt == "parquet":
        table = pq.read_table(path)
        pq.write_table(pa.concat_tables([table.slice(0, 1), table.slice(0, 1), table.slice(2)]), path)
    else:
        lines = read_lines(path)
        write_lines(path, [lines[0], *lines[0:1], *lines[2:]])
    forge_manifest(out)
    clean(verify(out))
    result = verify(out, "--input", corpus.files[0].parent)
    assert has(problems(result), "output", "not a permutation")
    assert "the rows differ" in result.stdout


@pytest.fixture
def invalid_inputs(tmp_path) -> list[Path]:
    """Two JSONL files; the second has 4 invalid scores (null, text, NaN, missing)."""
    a, b = make_rows(150, 61, "a"), make_rows(200, 62, "b")
    b_lines = to_lines(b, seed=62)
    for i, raw in ((3, "null"), (40, '"n/a"'), (41, "NaN")):
        b_lines[i] = json.dumps({**b[i], "score": 0}).replace('"score": 0', f'"score": {raw}').encode() + b"\n"
    b_lines[99] = json.dumps({k: v for k, v in b[99].items() if k != "score"}).encode() + b"\n"
    return [write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(a, seed=61)),
            write_jsonl(tmp_path / "in" / "b.jsonl", b_lines)]


@pytest.mark.parametrize(("policy", "fmt"), [("drop", "jsonl"), ("drop", "parquet"), ("last", "jsonl")])
def test_invalid_scores_policies(tmp_path, config_file, invalid_inputs, fmt, policy):
    out = make_output(tmp_path, config_file, invalid_inputs, fmt, sets=[f"invalid_scores={policy}"])
    line = clean(verify(out, "--with-inputs"), permutation=True)
    assert "350 input rows" in line
    assert ("4 dropped as invalid" in line) == (policy == "drop")


def test_drop_policy_counts_the_dropped_rows(tmp_path, config_file, invalid_inputs):
    out = make_output(tmp_path, config_file, invalid_inputs, "jsonl", sets=["invalid_scores=drop"])
    # a fifth invalid score in an input: one more row dropped than the run dropped
    path = invalid_inputs[0]
    lines = path.read_bytes().splitlines(keepends=True)
    lines[0] = json.dumps({**json.loads(lines[0]), "score": None}).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    found = problems(verify(out, "--with-inputs"))
    assert "inputs: invalid scores: 5 input rows have an invalid score, the manifest counted 4" in found
    assert has(found, "output", "not a permutation")


def test_inputs_other_than_the_runs_are_warned_about(tmp_path, config_file, jsonl_corpus):
    out = make_output(tmp_path, config_file, jsonl_corpus.files[:2], "jsonl")
    result = verify(out, "--input", jsonl_corpus.files[1], "--input", jsonl_corpus.files[2])
    assert has(problems(result), "output", "not a permutation")
    err = result.stderr.replace("\n", "")
    assert f"{jsonl_corpus.files[2]}: not an input of this run" in err
    assert "part-0.jsonl: an input of the run that was not given" in err


def test_usage_errors(pq_out, tmp_path, jsonl_corpus):
    assert "not both" in one_line_error(verify(pq_out, "--with-inputs", "--input", jsonl_corpus.files[0]))
    assert "no such file or folder" in one_line_error(verify(pq_out, "--input", tmp_path / "nope.jsonl"))
    jsonl_corpus.files[0].unlink()
    assert "no such file or folder" in one_line_error(verify(pq_out, "--with-inputs"))


def test_the_row_multiset_ignores_order_and_chunking_but_not_content():
    from reorder_cli.inspect.rowhash import RowMultiset

    lines = [f'{{"id": {i}}}\n'.encode() for i in range(50)]

    def digest(chunks) -> str:
        m = RowMultiset()
        for chunk in chunks:
            part = RowMultiset()
            part.add_lines(pa.array(chunk, pa.large_binary()))
            m.merge(part)
        return m.digest()

    whole = digest([lines])
    assert digest([lines[::-1]]) == whole
    assert digest([lines[30:], lines[:7], lines[7:30]]) == whole
    assert digest([lines[:-1] + [lines[0]]]) != whole  # a row twice, another missing
    assert digest([lines[:-1]]) != whole
