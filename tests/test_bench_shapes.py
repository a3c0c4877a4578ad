"""The corpus shapes of ``scripts/corpus.py`` and ``scripts/bench.py --shape`` (issue 22, part 1).

Each shape has its columns and types and a score at its ``score_field``; ``reorder run`` (STR,
Parquet) gives a permutation of its rows, in the oracle's STR order; ``fineweb`` is byte for byte the
corpus of before the shapes (the sample in the repo, and digests computed from the code before the
change); the bench's data folder, marker, reorder cases and JSON name the shape. A few hundred rows.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from .conftest import expected_order, read_manifest, read_parquet_out, reorder

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import bench  # noqa: E402
from corpus import SHAPES, make_frame, write_corpus  # noqa: E402

ROWS = 300

NESTED = pl.Schema({
    "id": pl.String,
    "text": pl.String,
    "token_count": pl.Int64,
    "metadata": pl.Struct({
        "score": pl.Float64,
        "int_score": pl.Int64,
        "source": pl.Struct({"url": pl.String, "domain": pl.String, "crawl": pl.String, "dump": pl.Int32}),
        "quality": pl.Struct({
            "language": pl.String,
            "language_score": pl.Float64,
            "flags": pl.Struct({"has_code": pl.Boolean, "has_math": pl.Boolean, "boilerplate": pl.Float32}),
        }),
    }),
    "annotations": pl.List(pl.Struct({"label": pl.String, "start": pl.Int64, "end": pl.Int64,
                                      "confidence": pl.Float32})),
    "tags": pl.List(pl.String),
})
WIDE = pl.Schema({
    "id": pl.String, "text": pl.String, "score": pl.Float64, "int_score": pl.Int64, "token_count": pl.Int64,
    **{f"int_{k:02d}": (pl.Int64, pl.Int32, pl.Int16, pl.Int8)[k % 4] for k in range(10)},
    **{f"float_{k:02d}": (pl.Float64, pl.Float32)[k % 2] for k in range(10)},
    **{f"str_{k:02d}": pl.String for k in range(8)},
    **{f"bool_{k:02d}": pl.Boolean for k in range(7)},
})
SCHEMAS = {
    "fineweb": pl.Schema({"id": pl.String, "text": pl.String, "url": pl.String, "token_count": pl.Int64,
                          "score": pl.Float64, "int_score": pl.Int64}),
    "long": pl.Schema({"id": pl.String, "text": pl.String, "url": pl.String, "token_count": pl.Int64,
                       "score": pl.Float64}),
    "wide": WIDE,
    "nested": NESTED,
}

#: sha256 of ``make_frame(docs, seed, median_chars).write_ndjson()``, computed with scripts/corpus.py as it
#: was before the shapes (commit 27c6096): the fineweb shape must not change a byte.
FINEWEB_DIGESTS = {
    (500, 0, 2500): "7143eac44a551bc94e1752175f5f23cce765c653aa824289ca8f96d4ff5e81c9",
    (300, 7, 60): "707a8067828ddf2d06ba8218144b9b48f9099b5621ef35f02a2d77413f64e54b",
}


@functools.cache
def frame_of(shape: str, seed: int = 0) -> pl.DataFrame:
    """``make_frame(ROWS, seed, shape=shape)``, drawn once (the long shape's word pool takes seconds)."""
    return make_frame(ROWS, seed, shape=shape)


def scores_of(frame: pl.DataFrame, field: str) -> pl.Series:
    """The column at the dotted path ``field`` (``metadata.score``)."""
    first, *rest = field.split(".")
    expr = pl.col(first)
    for name in rest:
        expr = expr.struct.field(name)
    return frame.select(expr).to_series()


def assert_permutation(before: pl.DataFrame, after: pl.DataFrame) -> None:
    """``after`` holds exactly the rows of ``before`` (ids are unique), every value and type kept."""
    assert before.get_column("id").is_unique().all()
    assert after.schema == before.schema, (after.schema, before.schema)
    assert after.height == before.height, (after.height, before.height)
    assert after.sort("id").equals(before.sort("id")), "the rows differ"


def ndjson_digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.write_ndjson().encode()).hexdigest()


# ------------------------------------------------------------------ columns, types, sizes


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_has_its_columns_and_types(shape):
    frame = frame_of(shape)
    assert frame.schema == SCHEMAS[shape]
    assert frame.height == ROWS and frame.get_column("id").is_unique().all()
    score = scores_of(frame, SHAPES[shape].score_field)
    assert score.dtype == pl.Float64 and score.null_count() == 0
    assert score.n_unique() < ROWS  # 3 decimals: ties
    assert frame.get_column("text").null_count() == 0


def test_every_shape_is_listed_here():
    """Negative control of the schema test: a shape added without its expected schema fails here."""
    assert set(SCHEMAS) == set(SHAPES)
    assert SCHEMAS["fineweb"] != SCHEMAS["long"] and len(SCHEMAS["wide"]) == 40


@pytest.mark.parametrize(("shape", "low", "high"), [("fineweb", 2000, 3000), ("long", 17_000, 23_000),
                                                    ("wide", 120, 200), ("nested", 650, 950)])
def test_text_lengths_have_the_shapes_median_and_a_tail(shape, low, high):
    chars = frame_of(shape).get_column("text").str.len_chars()
    assert low <= chars.median() <= high, chars.median()
    assert chars.max() > 1.8 * chars.median()  # lognormal: a long tail
    assert (make_frame(ROWS, shape=shape, median_chars=100).get_column("text").str.len_chars().median() < 150)


def test_wide_has_nulls_in_every_third_extra_column():
    frame = frame_of("wide")
    extra = frame.columns[5:]
    with_nulls = [c for c in extra if frame.get_column(c).null_count()]
    assert with_nulls == extra[2::3], with_nulls
    assert all(0 < frame.get_column(c).null_count() < ROWS * 0.15 for c in with_nulls)


def test_nested_lists_vary_in_length_and_hold_structs():
    frame = frame_of("nested")
    spans = frame.get_column("annotations").list.len()
    tags = frame.get_column("tags").list.len()
    assert spans.min() == 0 and spans.max() >= 4 and tags.min() == 0 and 3 <= tags.max() <= 8
    flat = frame.select(pl.col("annotations").explode()).unnest("annotations")
    assert (flat.get_column("end") > flat.get_column("start")).all()
    language_score = scores_of(frame, "metadata.quality.language_score")
    assert 0 < language_score.null_count() < ROWS * 0.1


@pytest.mark.parametrize("shape", list(SHAPES))
def test_shapes_are_deterministic_by_seed(shape):
    a, b, c = frame_of(shape), make_frame(ROWS, 0, shape=shape), frame_of(shape, 4)
    assert a.equals(b)
    assert not a.equals(c)  # negative control: another seed, other rows


def test_an_unknown_shape_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "corpus.py"), str(tmp_path / "c"),
                             "--shape", "square"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'square'" in result.stderr
    assert not (tmp_path / "c").exists()


def test_the_nested_shape_takes_no_other_score_field(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "corpus.py"), str(tmp_path / "c"), "--docs",
                             "20", "--shape", "nested", "--score-field", "score"], capture_output=True, text=True)
    assert result.returncode == 1 and "metadata.score" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------ fineweb unchanged


def test_fineweb_is_the_sample_in_the_repo(tmp_path):
    """tests/data/sample was made by corpus.py before the shapes (docs/development.md gives the command)."""
    out = tmp_path / "sample"
    subprocess.run([sys.executable, str(REPO / "scripts" / "corpus.py"), str(out), "--docs", "2000", "--shards",
                    "2", "--median-chars", "60", "--formats", "jsonl"], check=True, capture_output=True)
    sample = REPO / "tests" / "data" / "sample"
    names = sorted(p.name for p in sample.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        assert (out / name).read_bytes() == (sample / name).read_bytes(), name


@pytest.mark.parametrize(("docs", "seed", "median"), list(FINEWEB_DIGESTS))
def test_fineweb_rows_have_the_digest_of_before(docs, seed, median):
    assert ndjson_digest(make_frame(docs, seed, median)) == FINEWEB_DIGESTS[(docs, seed, median)]
    assert ndjson_digest(make_frame(docs, seed, median, shape="fineweb")) == FINEWEB_DIGESTS[(docs, seed, median)]


def test_the_digest_sees_one_changed_score():
    """Negative control: one score off by 0.001 changes the digest."""
    frame = make_frame(500, 0, 2500)
    changed = frame.with_columns(pl.when(pl.int_range(pl.len()) == 250).then(pl.col("score") + 0.001)
                                 .otherwise(pl.col("score")).alias("score"))
    assert ndjson_digest(changed) != FINEWEB_DIGESTS[(500, 0, 2500)]


# ------------------------------------------------------------------ reorder run on each shape


@pytest.mark.parametrize("shape", list(SHAPES))
def test_reorder_str_parquet_gives_a_permutation_of_each_shape(tmp_path, config_file, shape):
    spec = SHAPES[shape]
    frame = frame_of(shape, 5)
    write_corpus(frame, tmp_path / "in", 2, ["parquet"], row_group_size=64)
    out = tmp_path / "out"
    reorder(config_file, str(tmp_path / "in" / "*.parquet"), out, method="str",
            sets=[f"score_field={spec.score_field}"])
    after = pl.from_arrow(read_parquet_out(out))
    assert_permutation(frame, after)
    order = expected_order("str", scores_of(frame, spec.score_field).to_list())
    assert after.get_column("id").to_list() == frame.get_column("id").gather(order).to_list()
    assert order != sorted(order)  # the order is not the input's
    assert read_manifest(out)["totals"]["rows"] == ROWS


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_permutation_check_catches_a_dropped_duplicated_or_changed_row(shape):
    """Negative controls of assert_permutation."""
    frame = frame_of(shape, 5)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    assert_permutation(frame, shuffled)
    dropped = shuffled.slice(1)
    duplicated = pl.concat([shuffled.slice(1), shuffled.slice(2, 1)])
    changed = shuffled.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("x")).otherwise(pl.col("text"))
                                    .alias("text"))
    for bad in (dropped, duplicated, changed):
        with pytest.raises(AssertionError):
            assert_permutation(frame, bad)


# ------------------------------------------------------------------ scripts/bench.py --shape


@pytest.fixture
def bench_globals(monkeypatch):
    """parse_args sets bench.SHAPE and bench.SHARDS; put them back after the test."""
    monkeypatch.setattr(bench, "SHAPE", bench.SHAPE)
    monkeypatch.setattr(bench, "SHARDS", bench.SHARDS)


def test_bench_names_the_shape_and_takes_its_score_field(tmp_path, bench_globals):
    args = bench.parse_args(["--docs", "300", "--shape", "nested"])
    assert args.data.name == "data-nested-300" and bench.score_field() == "metadata.score"
    case = bench.reorder_case("str", "parquet", tmp_path, tmp_path / "o", None)
    assert "score_field=metadata.score" in case.argv
    duck = bench.snippet_case("duckdb ORDER BY parquet", bench.DUCKDB_PARQUET, [], tmp_path, "parquet", "x")
    assert "ORDER BY metadata.score)" in duck.argv[2]
    args = bench.parse_args(["--docs", "300"])
    assert args.shape == "fineweb" and args.data.name == "data-fineweb-300"
    case = bench.reorder_case("str", "parquet", tmp_path, tmp_path / "o", None)
    assert not any(a.startswith("score_field=") for a in case.argv)  # configs/str.yaml's score


def test_bench_does_not_reuse_a_corpus_of_another_shape(tmp_path, bench_globals):
    bench.SHARDS = 2
    data = tmp_path / "data"
    bench.SHAPE = "wide"
    bench.ensure_corpus(data, 100, ["parquet"])
    assert len(pq.read_schema(data / "part-0000.parquet").names) == 40
    written = (data / "part-0000.parquet").stat().st_mtime_ns
    stale = [data / "part-0005.parquet", data / "part-0001.jsonl", data / "tokenizer" / "tokenizer.json",
             data / "reordered-str" / ".manifest.json", data / "all.jsonl"]  # another corpus's, made from it
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_text("{}")
    bench.ensure_corpus(data, 100, ["parquet"])  # same corpus: kept, with what was made from it
    assert (data / "part-0000.parquet").stat().st_mtime_ns == written
    assert all(path.exists() for path in stale)
    bench.SHAPE = "nested"
    bench.ensure_corpus(data, 100, ["parquet"])
    assert "metadata" in pq.read_schema(data / "part-0000.parquet").names
    assert json.loads((data / "corpus.json").read_text())["shape"] == "nested"
    assert not any(path.exists() for path in stale)
    assert sorted(p.name for p in data.iterdir()) == ["corpus.json", "part-0000.parquet", "part-0001.parquet"]


def _bench(tmp_path: Path, shape: str, *extra: str) -> dict:
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--docs", str(ROWS), "--shards", "2", "--formats",
         "parquet", "--shape", shape, "--repeat", "1", "--data", str(tmp_path / "data"), "--out",
         str(tmp_path / "run"), "--json", str(report), *extra],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"corpus: {shape} shape (score_field {SHAPES[shape].score_field})" in result.stdout
    return json.loads(report.read_text())


def test_bench_runs_reorder_against_the_floor_on_the_nested_shape(tmp_path):
    """The reorder cases read metadata.score (the --tokens test below runs reorder on every shape)."""
    shape = "nested"
    report = _bench(tmp_path, shape, "--cases", "reorder str parquet->parquet,polars sink")
    assert report["corpus"]["shape"] == shape and report["corpus"]["score_field"] == SHAPES[shape].score_field
    results = {r["case"]: r for r in report["results"]}
    assert {"reorder str parquet->parquet", "polars sink parquet"} <= set(results)  # and the select cases
    assert all(r["error"] is None for r in results.values()), results
    assert results["reorder str parquet->parquet"]["vs_floor"] > 0


@pytest.mark.parametrize("shape", list(SHAPES))
def test_bench_tokens_runs_on_each_shape(tmp_path, shape):
    report = _bench(tmp_path, shape, "--tokens")
    results = {r["case"]: r for r in report["results"]}
    assert set(results) == {"reorder str parquet->parquet", "reorder str parquet + megatron export",
                            bench.TOKENS_FLOOR}
    assert all(r["error"] is None for r in results.values()), results
    assert results["reorder str parquet + megatron export"]["vs_floor"] > 0
    logs = sorted((tmp_path / "run" / "_logs").glob("tokenize-in-input-order*.log"))
    tokens = int(logs[0].read_text().split("tokens")[-1])
    chars = frame_of(shape).get_column("text").str.len_chars().sum()
    assert chars / 12 < tokens < chars, (tokens, chars)  # every text tokenized
    assert np.isfinite(results[bench.TOKENS_FLOOR]["median_seconds"])
