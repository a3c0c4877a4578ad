"""Parquet shards' row groups encoded in parallel and stitched (``formats/parquet_stitch.py``): the bytes
are those of one serial ``pq.ParquetWriter`` given the same tables, for flat, wide and nested columns,
any batch sizes, an empty shard; the digest is the file's sha256; a failing batch leaves no file; a
footer the codec cannot give back falls back to the serial writer. Negative controls: offsets not
shifted, or a part's bytes changed, give other bytes (the comparison can fail)."""

from __future__ import annotations

import hashlib
import io
import itertools

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reorder_cli.formats import parquet_stitch, writers
from reorder_cli.formats.writers import ShardWriter

PROPS = writers.parquet_properties(3)


def _flat(rows: int, start: int = 0) -> pa.Table:
    r = range(start, start + rows)
    return pa.table({
        "id": pa.array([f"doc-{i}" for i in r], pa.large_string()),
        "text": pa.array([("word " * (i % 37)) or None for i in r], pa.large_string()),
        "score": pa.array([i * 0.37 if i % 11 else None for i in r], pa.float64()),
        **{f"int_{k}": pa.array([(i * (k + 3)) % (1 << (k + 3)) for i in r], t)
           for k, t in enumerate([pa.int8(), pa.int16(), pa.int32(), pa.int64()])},
        "flag": pa.array([i % 3 == 0 for i in r], pa.bool_()),
        "f32": pa.array([float(i) / 7 for i in r], pa.float32()),
    })


NESTED_TYPE = pa.struct([
    ("score", pa.float64()),
    ("source", pa.struct([("url", pa.string()), ("dump", pa.int32())])),
    ("tags", pa.list_(pa.string())),
    ("spans", pa.list_(pa.struct([("start", pa.int64()), ("label", pa.string())]))),
])


def _nested(rows: int, start: int = 0) -> pa.Table:
    meta = [None if i % 13 == 5 else {
        "score": i / 3,
        "source": None if i % 7 == 0 else {"url": f"https://x/{i}", "dump": i % 5},
        "tags": [f"t{j}" for j in range(i % 4)] if i % 6 else None,
        "spans": [{"start": j, "label": None if j % 2 else f"l{j}"} for j in range(i % 3)],
    } for i in range(start, start + rows)]
    return pa.table({"id": pa.array([str(i) for i in range(start, start + rows)], pa.string()),
                     "metadata": pa.array(meta, NESTED_TYPE)})


def _serial(tables: list[pa.Table], schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, **PROPS) as writer:
        for table in tables:
            writer.write_table(table, row_group_size=max(1, table.num_rows))
    return sink.getvalue().to_pybytes()


def _stitched(tables: list[pa.Table], schema: pa.Schema) -> bytes:
    out = io.BytesIO()
    stitch = parquet_stitch.Stitcher(out)
    for table in tables:
        stitch.add(parquet_stitch.encode_part(table, schema, **PROPS))
    stitch.finish()
    return out.getvalue()


def _batches(make, sizes: list[int]) -> list[pa.Table]:
    out, start = [], 0
    for n in sizes:
        out.append(make(n, start))
        start += n
    return out


@pytest.mark.parametrize("make", [_flat, _nested], ids=["flat", "nested"])
@pytest.mark.parametrize("sizes", [[500], [1000, 3000, 7], [1, 1, 1], [20] * 20, [300, 0, 300]])
def test_stitched_bytes_are_the_serial_writers(make, sizes):
    tables = _batches(make, sizes)
    expected = _serial(tables, tables[0].schema)
    assert _stitched(tables, tables[0].schema) == expected
    assert pq.read_table(io.BytesIO(expected)).equals(pa.concat_tables(tables))


def test_many_columns_and_row_groups():  # lists of more than 14 elements in the footer (long list headers)
    wide = pa.table({f"c{k}": pa.array(range(k, k + 400), pa.int64()) for k in range(40)})
    tables = [wide.slice(i, 20) for i in range(0, 400, 20)]
    assert _stitched(tables, wide.schema) == _serial(tables, wide.schema)


def test_footer_round_trips_through_the_codec():
    data = _serial(_batches(_nested, [100, 50]), _nested(1).schema)
    size = int.from_bytes(data[-8:-4], "little")
    footer = data[len(data) - 8 - size : -8]
    assert parquet_stitch.encode(parquet_stitch.decode(footer)) == footer


def test_negative_controls_offsets_and_bytes(monkeypatch):
    tables = _batches(_flat, [400, 400])
    expected = _serial(tables, tables[0].schema)
    with monkeypatch.context() as m:  # offsets left as in each part's own file
        m.setattr(parquet_stitch, "_shift_row_group", lambda group, shift, ordinal: group)
        assert _stitched(tables, tables[0].schema) != expected
    other = _batches(_flat, [400, 400])
    other[1] = _flat(400, 401)  # one row's values differ
    assert _stitched(other, tables[0].schema) != expected


def _shard(tmp_path, tables, schema, name="00000.parquet", ahead=2) -> tuple[dict, bytes]:
    writer = ShardWriter(tmp_path / name, "parquet", 3, schema, ahead)
    try:
        for table in tables:
            writer.write_table(table)
        record = writer.finish(0, 0, sum(t.num_rows for t in tables))
    except BaseException:
        writer.abort()
        raise
    return record, (tmp_path / name).read_bytes()


@pytest.mark.parametrize("ahead", [1, 2, 4, "changing"])
@pytest.mark.parametrize("sizes", [[700, 900, 5, 300], [], [1]])
def test_shard_writer_bytes_and_digest(tmp_path, sizes, ahead):
    """The serial writer's bytes whatever the row groups encoded at once, and when that number changes from
    one row group to the next (a shard left alone as the others finish takes their cores)."""
    if ahead == "changing":
        ahead = itertools.cycle([1, 3, 2, 1, 4]).__next__
    tables = _batches(_nested, sizes) if sizes else []
    schema = _nested(1).schema
    record, data = _shard(tmp_path, tables, schema, ahead=ahead)
    assert data == _serial(tables, schema)
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["bytes"] == len(data)
    assert [p.name for p in tmp_path.iterdir()] == ["00000.parquet"]  # no temporary left


def test_encoding_ahead():
    from reorder_cli.formats import writers

    cores = writers.os.cpu_count() or 1
    assert writers.encoding_ahead(1, 1) == 1  # the budget allowed one worker: one batch at a time
    assert writers.encoding_ahead(2, 1) == min(2, cores)  # one shard, two workers allowed: both encode it
    assert writers.encoding_ahead(2, 8) == 1  # shards fill the workers already


def test_a_failing_batch_aborts_and_leaves_no_file(tmp_path):
    schema = _flat(1).schema
    bad = _flat(50).drop_columns(["score"])  # does not fit the schema: its encoding fails
    with pytest.raises((pa.ArrowException, ValueError)):
        _shard(tmp_path, [_flat(100), bad, _flat(100, 150)], schema)
    assert list(tmp_path.iterdir()) == []


def test_a_footer_the_codec_cannot_give_back_falls_back_to_the_serial_writer(tmp_path, monkeypatch):
    def refuse(data):
        raise parquet_stitch.StitchError("no")

    monkeypatch.setattr(parquet_stitch, "Part", refuse)
    tables = _batches(_flat, [300, 200, 100])
    record, data = _shard(tmp_path, tables, tables[0].schema)
    assert data == _serial(tables, tables[0].schema)
    assert record["sha256"] == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ the in-memory path (rewrite/table.py)


def _run_hashes(tmp_path, config_file, inputs, name, sets=()) -> dict[str, str]:
    from .conftest import output_hashes, reorder

    out = tmp_path / name
    reorder(config_file, inputs, out, method="str", sets=sets)
    return output_hashes(out)


@pytest.mark.parametrize("sets", [("workers=1",), ("row_group_size=20KB", "shard_size=40KB", "workers=2"),
                                  ("row_group_size=20KB", "rewrite=out-of-core", "workers=2")],
                         ids=["one-shard", "shards", "out-of-core"])
def test_runs_write_the_serial_writers_bytes(tmp_path, config_file, parquet_corpus, monkeypatch, sets):
    """A run's shards and manifest, stitched, with 1 to 3 row groups encoding at once, are the bytes of
    the serial writer (every part refused: the code of before)."""
    from reorder_cli.rewrite import in_memory

    runs = []
    for ahead in (1, 2, 3):
        monkeypatch.setattr(in_memory, "encoding_ahead", lambda workers, shards, n=ahead: n)
        runs.append(_run_hashes(tmp_path, config_file, parquet_corpus.files, f"ahead{ahead}", sets))

    def refuse(data):
        raise parquet_stitch.StitchError("no")

    monkeypatch.setattr(parquet_stitch, "Part", refuse)
    serial = _run_hashes(tmp_path, config_file, parquet_corpus.files, "serial", sets)
    assert all(run == serial for run in runs) and any(n.endswith(".parquet") for n in serial)


def test_in_memory_path_refuses_a_string_that_is_not_utf8(tmp_path, config_file):
    from .conftest import one_line_error, reorder

    text = pa.array([f"t{i}".encode() for i in range(40)], pa.binary()).to_pylist()
    text[7] = b"bad \xff\xfe"
    table = pa.table({"id": pa.array([str(i) for i in range(40)]), "score": pa.array([i / 3 for i in range(40)]),
                      "text": pa.array(text, pa.binary()).view(pa.string())})
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "bad.parquet", row_group_size=16)
    msg = one_line_error(reorder(config_file, [tmp_path / "in" / "bad.parquet"], tmp_path / "out", method="str",
                                 sets=("rewrite=in-memory",), ok=False))
    assert "bad.parquet" in msg and "row 7" in msg and "UTF-8" in msg, msg


def test_shard_bytes_samples_encoded_at_once_give_the_loops_ratio(parquet_corpus, jsonl_corpus, monkeypatch):
    """plan/shard_bytes.py encodes its samples on the encoding threads: the ratio (and so the cut points)
    is the one of a loop over the files in order."""
    from reorder_cli.formats.discover import InputFile
    from reorder_cli.plan import shard_bytes

    files = [InputFile(p, "parquet", None, p.stat().st_size) for p in parquet_corpus.files]
    files += [InputFile(p, "jsonl", None, p.stat().st_size) for p in jsonl_corpus.files]
    threaded = [shard_bytes.compression_ratio(files, fmt, 3) for fmt in ("parquet", "jsonl.zst")]

    class Loop:
        map = staticmethod(lambda fn, items: [fn(i) for i in items])

    monkeypatch.setattr(parquet_stitch, "pool", lambda: Loop)
    assert threaded == [shard_bytes.compression_ratio(files, fmt, 3) for fmt in ("parquet", "jsonl.zst")]
    assert all(r != 1.0 for r in threaded)


@pytest.mark.parametrize("make", [_flat, _nested], ids=["flat", "nested"])
@pytest.mark.parametrize("n", [2, 3, 20])
def test_row_groups_encoded_in_runs_of_columns(tmp_path, monkeypatch, make, n):
    """A row group cut into runs of columns, encoded apart and joined, is the serial writer's bytes."""
    tables = _batches(make, [900, 400, 1])
    schema = tables[0].schema
    groups = parquet_stitch.column_groups(tables[0], n)
    assert [i for g in groups for i in g] == list(range(schema.__len__())) and all(groups)
    head = parquet_stitch.encode_part(tables[0].slice(0, 0), schema, **PROPS)
    out = io.BytesIO()
    stitch = parquet_stitch.Stitcher(out)
    for table in tables:
        parts = [parquet_stitch.encode_columns(table, schema, g, **PROPS) for g in groups]
        stitch.add(parquet_stitch.join_columns(head, parts))
    stitch.finish()
    assert out.getvalue() == _serial(tables, schema)
    monkeypatch.setattr(ShardWriter, "SPLIT_BYTES", 0)  # and through the shard writer
    assert _shard(tmp_path, tables, schema, ahead=n)[1] == _serial(tables, schema)


def test_runs_of_columns_negative_control():
    tables = _batches(_flat, [500])
    schema = tables[0].schema
    head = parquet_stitch.encode_part(tables[0].slice(0, 0), schema, **PROPS)
    groups = parquet_stitch.column_groups(tables[0], 2)
    parts = [parquet_stitch.encode_columns(tables[0], schema, g, **PROPS) for g in groups]
    out = io.BytesIO()
    stitch = parquet_stitch.Stitcher(out)
    stitch.add(parquet_stitch.join_columns(head, parts[::-1]))  # runs in the wrong order
    stitch.finish()
    assert out.getvalue() != _serial(tables, schema)


def test_a_stitched_shard_that_does_not_read_back_as_written_is_refused_and_left_nowhere(tmp_path):
    from reorder_cli.errors import ReorderError

    table = pa.table({"id": list(range(100)), "text": [f"row {i}" for i in range(100)]})
    good = ShardWriter(tmp_path / "00000.parquet", "parquet", 3, table.schema, ahead=2)
    for part in (table.slice(0, 50), table.slice(50)):
        good.write_table(part)
    assert good.finish(0, 0, 100)["rows"] == 100  # read back: 100 rows, the schema written
    bad = ShardWriter(tmp_path / "00001.parquet", "parquet", 3, table.schema, ahead=2)
    for part in (table.slice(0, 50), table.slice(50)):
        bad.write_table(part)
    with pytest.raises(ReorderError, match="do not read back as written"):
        bad.finish(1, 100, 101)  # told one row more than it holds: the footer read back disagrees
    bad.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000.parquet"]
