"""Hostile inputs: data formats, encodings and type conversion (issue 8, part A).

Each case runs the real CLI on real files, in memory and out of core where the paths
differ, and checks the one-line error (exit 2, the file and the line/row/field named, no
traceback), that nothing is left behind, and a positive twin (the valid neighbour works,
and ``verify --with-inputs`` proves what ``run`` accepted).

Catalogue
- lossy casts, JSONL next to Parquet: ``"id": 1000.7`` into int64, ``"text": {"a": 1}``
  and ``"text": 5`` into a string column: refused (file, line, field); twin: exact values.
- a type conflict between JSONL records (a number, then an object; a number, then a
  string) for a Parquet output: refused (file, line, field); twin: ints and floats mix.
- an integer a float column cannot hold exactly (2**53 + 1 next to floats): refused.
- a lone surrogate escape ``\\ud800``: refused for a Parquet output (file, line); kept
  byte for byte JSONL to JSONL; twin: a real surrogate pair converts.
- a UTF-8 byte-order mark: at the start of a file it is stripped (JSONL and Parquet
  outputs, verify agrees); at the start of another line it is an error (file, line);
  ``verify`` flags a shard line starting with one, or a line that is not a JSON object.
- invalid UTF-8 in a Parquet string column (a bit-flipped file): one message naming the
  file, the row and the column on all four paths; ``verify`` flags a corrupt shard.
- a Parquet score column of list type, and a ``score_field`` reaching into a list.
- a 400-digit integer score in JSONL: an invalid score (file, line), not a traceback.
- a JSONL file of only blank lines next to Parquet inputs: accepted, 0 rows from it.
- Parquet inputs whose schemas differ: the column and both types named; a difference in
  nullability alone is accepted and the output column is nullable.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ..conftest import invoke, one_line_error, read_jsonl_out, read_parquet_out, reorder, write_bytes, write_parquet

PATHS = {"in-memory": ["rewrite=in-memory"], "out-of-core": ["rewrite=out-of-core"]}


def rows(n: int, prefix: str = "p") -> list[dict]:
    return [{"id": i, "text": f"{prefix} row {i}", "score": (i * 7 % 10) / 4} for i in range(n)]


def jsonl_bytes(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def fails(config: Path, inputs, out: Path, sets=()) -> str:
    err = one_line_error(reorder(config, inputs, out, method="str", sets=sets, ok=False))
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))  # nothing left, not even OUTPUT/.reorder/
    return err


def verified(out: Path) -> str:
    result = invoke("verify", out, "--with-inputs", "-q")
    assert result.exit_code == 0, (result.exit_code, result.output)
    assert "permutation of the inputs" in result.stdout, result.stdout
    return result.stdout


def mixed(tmp_path: Path, bad: dict, line: int = 3) -> list[Path]:
    """a.parquet (id int64, text string, score double) and b.jsonl whose line ``line`` is ``bad``."""
    a = write_parquet(tmp_path / "in" / "a.parquet", rows(20))
    records = rows(6, "j")
    records[line - 1] = bad
    return [a, write_bytes(tmp_path / "in" / "b.jsonl", jsonl_bytes(records))]


# ------------------------------------------------------------------ lossy casts (JSONL next to Parquet)

LOSSY = [
    ({"id": 1000.7, "text": "x", "score": 1}, "field 'id'"),
    ({"id": 1000, "text": {"a": 1}, "score": 1}, "field 'text'"),
    ({"id": 1000, "text": 5, "score": 1}, "field 'text'"),
    ({"id": 1000, "text": "x", "score": 1, "extra": 2}, "field 'extra'"),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bad,field", LOSSY, ids=["float-into-int", "object-into-string", "number-into-string",
                                                   "unknown-field"])
def test_lossy_cast_is_refused(tmp_path, config_file, path, bad, field):
    err = fails(config_file, mixed(tmp_path, bad), tmp_path / "out", sets=["format=parquet", *PATHS[path]])
    assert "b.jsonl: line 3:" in err and field in err, err


@pytest.mark.parametrize("path", PATHS)
def test_exact_values_convert_and_verify(tmp_path, config_file, path):
    good = {"id": 1000, "text": "5", "score": 1}
    out = tmp_path / "out"
    reorder(config_file, mixed(tmp_path, good), out, method="str", sets=["format=parquet", *PATHS[path]])
    table = read_parquet_out(out)
    assert table.num_rows == 26 and 1000 in table.column("id").to_pylist() and "5" in table.column("text").to_pylist()
    verified(out)


def test_verify_applies_the_run_rules(tmp_path, config_file):
    """An input changed after the run to hold a lossy value: verify refuses it as run would."""
    inputs = mixed(tmp_path, {"id": 1000, "text": "x", "score": 1})
    out = tmp_path / "out"
    reorder(config_file, inputs, out, method="str", sets=["format=parquet"])
    write_bytes(inputs[1], inputs[1].read_bytes().replace(b'"text": "x"', b'"text": 5'))
    err = one_line_error(invoke("verify", out, "--with-inputs", "-q"))
    assert "b.jsonl: line 3:" in err and "field 'text'" in err, err


# ------------------------------------------------------------------ conflicts between JSONL records


CONFLICTS = [
    ([{"id": 1, "m": 1, "score": 1}, {"id": 2, "m": {"a": 1}, "score": 2}], "field 'm'"),
    ([{"id": 1, "m": 1, "score": 1}, {"id": 2, "m": "x", "score": 2}], "field 'm'"),
    ([{"id": 1, "score": 1}, {"id": 2, "score": "n/a"}], "field 'score'"),
    ([{"id": 1, "m": 1.5, "score": 1}, {"id": 2, "m": 2**53 + 1, "score": 2}], "field 'm'"),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("records,field", CONFLICTS, ids=["number-object", "number-string", "score-string",
                                                          "inexact-int"])
def test_type_conflict_between_records(tmp_path, config_file, path, records, field):
    data = jsonl_bytes([{"id": 100 + i, "m": 0, "score": 0.5} for i in range(3)] + records)
    src = write_bytes(tmp_path / "in" / "c.jsonl", data)
    err = fails(config_file, [src], tmp_path / "out", sets=["format=parquet", "invalid_scores=last", *PATHS[path]])
    assert "c.jsonl: line 5:" in err and field in err, err


@pytest.mark.parametrize("path", PATHS)
def test_ints_and_floats_mix_as_float(tmp_path, config_file, path):
    data = jsonl_bytes([{"id": i, "m": i if i % 2 else i + 0.5, "score": i / 3} for i in range(10)])
    src = write_bytes(tmp_path / "in" / "c.jsonl", data)
    out = tmp_path / "out"
    reorder(config_file, [src], out, method="str", sets=["format=parquet", *PATHS[path]])
    assert read_parquet_out(out).schema.field("m").type == pa.float64()
    verified(out)


# ------------------------------------------------------------------ lone surrogates


@pytest.mark.parametrize("path", PATHS)
def test_lone_surrogate_refused_for_parquet(tmp_path, config_file, path):
    data = jsonl_bytes(rows(4, "j")) + b'{"id": 9, "text": "bad \\ud800 here", "score": 1}\n'
    src = write_bytes(tmp_path / "in" / "s.jsonl", data)
    err = fails(config_file, [src], tmp_path / "out", sets=["format=parquet", *PATHS[path]])
    assert "s.jsonl: line 5:" in err and "surrogate" in err, err


def test_lone_surrogate_kept_jsonl_to_jsonl_and_pair_converts(tmp_path, config_file):
    bad = b'{"id": 9, "text": "bad \\ud800 here", "score": 1}\n'
    src = write_bytes(tmp_path / "in" / "s.jsonl", jsonl_bytes(rows(4, "j")) + bad)
    out = tmp_path / "out"
    reorder(config_file, [src], out, method="str", sets=["format=jsonl"])
    assert bad in read_jsonl_out(out)  # byte for byte
    verified(out)
    pair = write_bytes(tmp_path / "in2" / "p.jsonl", jsonl_bytes(rows(4)) + b'{"id": 9, "text": "\\ud83d\\ude00",'
                                                                          b' "score": 1}\n')
    reorder(config_file, [pair], tmp_path / "pq", method="str", sets=["format=parquet"])
    assert "\U0001f600" in read_parquet_out(tmp_path / "pq").column("text").to_pylist()


# ------------------------------------------------------------------ byte-order marks

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("path", PATHS)
def test_leading_bom_is_stripped(tmp_path, config_file, fmt, path):
    data = jsonl_bytes(rows(8, "j"))
    src = write_bytes(tmp_path / "in" / "b.jsonl", BOM + data)
    out = tmp_path / "out"
    reorder(config_file, [src], out, method="str", sets=[f"format={fmt}", *PATHS[path]])
    if fmt == "jsonl":
        got = read_jsonl_out(out)
        assert sorted(got) == sorted(data.splitlines(keepends=True)) and not any(BOM in line for line in got)
    else:
        assert read_parquet_out(out).num_rows == 8
    verified(out)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_bom_inside_the_file_is_refused(tmp_path, config_file, fmt):
    lines = jsonl_bytes(rows(6, "j")).splitlines(keepends=True)
    src = write_bytes(tmp_path / "in" / "b.jsonl", b"".join(lines[:2]) + BOM + b"".join(lines[2:]))
    err = fails(config_file, [src], tmp_path / "out", sets=[f"format={fmt}"])
    assert "b.jsonl: line 3:" in err and "byte-order mark" in err, err


@pytest.mark.parametrize("damage", ["bom", "not-an-object"])
def test_verify_checks_every_jsonl_line(tmp_path, config_file, damage):
    src = write_bytes(tmp_path / "in" / "a.jsonl", jsonl_bytes(rows(8, "j")))
    out = tmp_path / "out"
    reorder(config_file, [src], out, method="str", sets=["format=jsonl"])
    verified(out)  # the negative control
    shard = next(out.glob("*.jsonl"))
    lines = shard.read_bytes().splitlines(keepends=True)
    lines[3] = BOM + lines[3] if damage == "bom" else b"[1, 2]\n"
    shard.write_bytes(b"".join(lines))
    result = invoke("verify", out, "-q")
    assert result.exit_code == 1 and "line 4" in result.stdout, result.stdout


# ------------------------------------------------------------------ invalid UTF-8 in Parquet (a bit flip)


def corrupt_parquet(path: Path) -> Path:
    """A Parquet file whose row 5 has 'text' bytes that are not UTF-8 (flipped in place)."""
    recs = rows(12)
    recs[5]["text"] = "MARKERxx"
    pq.write_table(pa.Table.from_pylist(recs), path, compression="none", use_dictionary=False, write_statistics=False)
    data = path.read_bytes()
    assert data.count(b"MARKERxx") == 1
    path.write_bytes(data.replace(b"MARKERxx", b"MARKER\xff\xfe"))
    return path


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
@pytest.mark.parametrize("path", PATHS)
def test_invalid_utf8_in_parquet(tmp_path, config_file, fmt, path):
    (tmp_path / "in").mkdir()
    bad = corrupt_parquet(tmp_path / "in" / "bad.parquet")
    good = write_parquet(tmp_path / "in" / "good.parquet", rows(12))
    err = fails(config_file, [good, bad], tmp_path / "out", sets=[f"format={fmt}", *PATHS[path]])
    assert "bad.parquet: row 5: column 'text':" in err and "UTF-8" in err, err
    out = tmp_path / "twin"
    reorder(config_file, [good], out, method="str", sets=[f"format={fmt}", *PATHS[path]])
    verified(out)


def test_verify_validates_parquet_strings(tmp_path, config_file):
    src = write_parquet(tmp_path / "in" / "a.parquet", [{**r, "text": "MARKERxx" if r["id"] == 3 else r["text"]}
                                                        for r in rows(10)])
    out = tmp_path / "out"
    reorder(config_file, [src], out, method="str", sets=["format=parquet"])
    shard = next(out.glob("*.parquet"))
    pq.write_table(pq.read_table(shard), shard, compression="none", use_dictionary=False, write_statistics=False)
    result = invoke("verify", out, "-q")
    assert "all good" not in result.stdout  # the rewritten file differs in sha256 already; now corrupt it
    shard.write_bytes(shard.read_bytes().replace(b"MARKERxx", b"MARKER\xff\xfe"))
    result = invoke("verify", out, "-q")
    assert result.exit_code == 1 and "not valid UTF-8" in result.stdout, result.stdout


# ------------------------------------------------------------------ scores that cannot be one number


def test_list_score_column(tmp_path, config_file):
    src = tmp_path / "in" / "l.parquet"
    src.parent.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "score": [[1.0], [2.0]]}), src)
    err = fails(config_file, [src], tmp_path / "out")
    assert "l.parquet:" in err and "column 'score'" in err, err
    pq.write_table(pa.table({"id": [1, 2], "m": [[{"s": 1.0}], [{"s": 2.0}]], "score": [1.0, 2.0]}), src)
    err = fails(config_file, [src], tmp_path / "out", sets=["score_field=m.s"])
    assert "l.parquet:" in err and "list" in err, err
    reorder(config_file, [src], tmp_path / "twin", method="str")  # the number column works


def test_huge_integer_score(tmp_path, config_file):
    data = jsonl_bytes(rows(3, "j")) + b'{"id": 9, "text": "x", "score": ' + b"9" * 400 + b"}\n"
    src = write_bytes(tmp_path / "in" / "h.jsonl", data)
    err = fails(config_file, [src], tmp_path / "out")
    assert "h.jsonl: line 4:" in err and "too large" in err, err
    out = tmp_path / "twin"
    reorder(config_file, [src], out, method="str", sets=["invalid_scores=drop"])
    assert json.loads((out / ".manifest.json").read_text())["totals"]["rows"] == 3


# ------------------------------------------------------------------ empty JSONL next to Parquet


@pytest.mark.parametrize("path", PATHS)
def test_blank_jsonl_next_to_parquet(tmp_path, config_file, path):
    a = write_parquet(tmp_path / "in" / "a.parquet", rows(10))
    blank = write_bytes(tmp_path / "in" / "blank.jsonl", b"\n  \n\n")
    out = tmp_path / "out"
    reorder(config_file, [a, blank], out, method="str", sets=["format=parquet", *PATHS[path]])
    doc = json.loads((out / ".manifest.json").read_text())
    assert [i["rows"] for i in doc["inputs"]] == [10, 0]
    verified(out)


# ------------------------------------------------------------------ Parquet schemas


@pytest.mark.parametrize("path", PATHS)
def test_parquet_schemas_differ(tmp_path, config_file, path):
    a = write_parquet(tmp_path / "in" / "a.parquet", rows(5))
    b = write_parquet(tmp_path / "in" / "b.parquet", [{**r, "id": str(r["id"])} for r in rows(5)])
    err = fails(config_file, [a, b], tmp_path / "out", sets=[*PATHS[path]])
    assert "b.parquet" in err and "'id'" in err and "int64" in err and "string" in err, err


@pytest.mark.parametrize("path", PATHS)
def test_nullability_only_difference_is_accepted(tmp_path, config_file, path):
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False), ("text", pa.string()), ("score", pa.float64())])
    loose = pa.schema([("id", pa.int64()), ("text", pa.string()), ("score", pa.float64())])
    a = write_parquet(tmp_path / "in" / "a.parquet", rows(5), schema=strict)
    b = write_parquet(tmp_path / "in" / "b.parquet", rows(5), schema=loose)
    out = tmp_path / "out"
    reorder(config_file, [a, b], out, method="str", sets=[*PATHS[path]])
    assert read_parquet_out(out).schema.field("id").nullable
    verified(out)
