"""``export: mds`` read by MosaicML streaming's own ``StreamingDataset`` (the real library, see
``mds_helpers.import_streaming``): the shards are byte for byte those of the library's ``MDSWriter``; every row's
values and tokens read back; under torchrun (2 ranks, gloo, 2 DataLoader workers each) the recipe's global
batches are exactly the windows of the manifest's order and the audit passes, while ``shuffle=True`` or two
canonical nodes (the default on two physical nodes) break the order and fail the audit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reorder_cli.errors import ReorderError
from reorder_cli.export import EXPORTS, ExportInput, mds

from .conftest import (
    RICH_SCHEMA,
    invoke,
    make_rows,
    read_jsonl_out,
    read_manifest,
    read_parquet_out,
    reorder,
    rich_rows,
    shard_files,
    write_jsonl,
    write_parquet,
)
from .mds_helpers import import_streaming, tiny_tokenizer, tokenize, write_token_pieces
from .test_trainers import SIGNALLED

streaming = import_streaming()  # a plain import: installed in CI (the 'trainer' marker)
pytestmark = pytest.mark.trainer
SCRIPT = Path(__file__).with_name("mds_script.py")
B, W = 3, 2  # per-rank batch, ranks (2 DataLoader workers each)


def run(tmp: Path, fmt: str, inputs: list[Path], shard_rows: int) -> Path:
    (tmp / "cfg.yaml").write_text(f"score_field: score\nseed: 42\nformat: {fmt}\n")
    out = tmp / "out"
    reorder(tmp / "cfg.yaml", inputs, out, method="str", sets=[f"shard_rows={shard_rows}"])
    return out


def export(out: Path, tokenizer: Path | None, fmt: str = "parquet") -> tuple[Path, dict]:
    shards = shard_files(out)
    files = lengths = None
    if tokenizer is not None:
        texts = [[r["text"] for r in (pq.read_table(p).to_pylist() if fmt == "parquet" else
                                      [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()])]
                 for p in shards]
        files, lengths = write_token_pieces(shards, texts, tokenizer)
    dest = out / "mds"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    entry = mds.assemble(ExportInput(shards, fmt, files, lengths, np.dtype("uint16") if files else None), dest)
    return dest, entry


@pytest.fixture(scope="module")
def tokens_export(tmp_path_factory):
    """48 rows in 3 shards (20, 20, 8) in STR order, a real run with ``--set tokenizer=`` (a tiny tokenizer
    built here) and ``--set export=mds``: the token pieces and ``OUT/mds/`` are the tool's."""
    base = tmp_path_factory.mktemp("mds")
    tok = tiny_tokenizer(base / "tokenizer.json")
    (base / "cfg.yaml").write_text("score_field: score\nseed: 42\nformat: parquet\n")
    out = base / "out"
    reorder(base / "cfg.yaml", [write_parquet(base / "in" / "a.parquet", make_rows(48, seed=5))], out, method="str",
            sets=["shard_rows=20", f"tokenizer={tok}", 'eos_token="[EOS]"', "export=mds"])
    return out, out / "mds", read_manifest(out)["export"], tok


def test_registered_and_the_shards_are_the_library_writers_bytes(tokens_export, tmp_path):
    out, dest, entry, tok = tokens_export
    assert EXPORTS["mds"] is mds and not mds.NEEDS_TOKENS
    assert entry["samples"] == 48 and entry["shards"] == 3 and entry["columns"]["tokens"] == "ndarray:uint16"
    index = json.loads((dest / "index.json").read_text())
    rows = read_parquet_out(out).to_pylist()
    at = 0
    for k, shard in enumerate(index["shards"]):
        ref = tmp_path / f"ref{k}"
        with streaming.MDSWriter(columns=entry["columns"], out=str(ref), size_limit=None) as w:
            for r in rows[at: at + shard["samples"]]:
                w.write({**r, "tokens": tokenize(tok, [r["text"]])[0]})
        at += shard["samples"]
        assert (dest / f"shard.{k:05d}.mds").read_bytes() == (ref / "shard.00000.mds").read_bytes()
        theirs = json.loads((ref / "index.json").read_text())["shards"][0]
        theirs["raw_data"]["basename"] = f"shard.{k:05d}.mds"
        assert shard == theirs
    for f in entry["files"]:  # the manifest's entry names every file, with its size and sha256
        p = out / f["file"]
        assert p.stat().st_size == f["bytes"]
    assert sorted(p.name for p in dest.iterdir()) == sorted(Path(f["file"]).name for f in entry["files"])
    again = tmp_path / "again"
    again.mkdir()
    pieces = read_manifest(out)["tokens"]["shards"]
    src = ExportInput(shard_files(out), "parquet", [out / p["file"] for p in pieces],
                      [out / p["lengths"] for p in pieces], np.dtype("uint16"))
    assert mds.assemble(src, again) == entry  # deterministic: same inputs, same bytes


def test_the_runs_token_stream_is_an_independent_tokenization_of_the_manifest_order(tokens_export):
    out, _, _, tok = tokens_export
    doc = read_manifest(out)
    texts = [t for s in doc["shards"] for t in pq.read_table(out / s["file"]).column("text").to_pylist()]
    docs = tokenize(tok, texts)
    assert doc["tokens"]["dtype"] == "uint16" and (doc["tokens"]["eos"], doc["tokens"]["bos"]) == (1, None)
    stream = np.concatenate([np.fromfile(out / p["file"], dtype="<u2") for p in doc["tokens"]["shards"]])
    assert np.array_equal(stream, np.concatenate(docs))
    lengths = np.concatenate([np.load(out / p["lengths"]) for p in doc["tokens"]["shards"]])
    assert np.array_equal(lengths, [len(d) for d in docs])


def test_every_row_and_its_tokens_read_back(tokens_export):
    out, dest, _, tok = tokens_export
    ds = streaming.StreamingDataset(local=str(dest), shuffle=False, num_canonical_nodes=1, batch_size=1)
    rows = read_parquet_out(out).to_pylist()
    assert len(ds) == len(rows)
    expected = tokenize(tok, [r["text"] for r in rows])  # an independent tokenization of the manifest order
    for i, r in enumerate(rows):
        got = ds[i]
        assert got["tokens"].dtype == np.uint16 and np.array_equal(got["tokens"], expected[i])
        assert {k: v for k, v in got.items() if k != "tokens"} == r


def test_columns_only_round_trip_parquet_and_jsonl(tmp_path):
    """No tokenizer: every value of every row reads back, nested, boolean and null values included
    (columns with a null are json); JSONL rows with a field missing read it as None."""
    pq_out = run(tmp_path / "p", "parquet", [write_parquet(tmp_path / "p" / "in.parquet", rich_rows(70, seed=2),
                                                           RICH_SCHEMA, row_group_size=16)], 30)
    dest, entry = export(pq_out, None)
    assert "tokens" not in entry["columns"] and entry["columns"]["url"] == "json"
    assert entry["columns"]["text"] == "str" and entry["columns"]["token_count"] == "int64"
    rows = read_parquet_out(pq_out).to_pylist()
    ds = streaming.StreamingDataset(local=str(dest), batch_size=1)
    assert [ds[i] for i in range(len(ds))] == rows

    recs = make_rows(50, seed=9)
    for i, r in enumerate(recs):
        if i % 7 == 2:
            del r["url"]
        if i % 5 == 1:
            r["extra"] = {"flag": i % 2 == 0, "list": [i, 0.5]}
    lines = [json.dumps(r).encode() + b"\n" for r in recs]
    for fmt in ("jsonl", "jsonl.zst"):
        js_out = run(tmp_path / fmt, fmt, [write_jsonl(tmp_path / fmt / "in.jsonl", lines)], 20)
        dest, entry = export(js_out, None, fmt)
        assert entry["columns"]["url"] == "json" and entry["columns"]["extra"] == "json"
        expected = [json.loads(x) for x in read_jsonl_out(js_out)]
        ds = streaming.StreamingDataset(local=str(dest), batch_size=1)
        assert len(ds) == len(expected) == 50
        for i, r in enumerate(expected):
            assert ds[i] == {k: r.get(k) for k in entry["columns"]}


def refusal(tmp_path: Path, rows: list[dict], schema=None, tokens: list[np.ndarray] | None = None) -> str:
    shards = [write_parquet(tmp_path / "out" / f"0000{k}.parquet", part, schema) for k, part in
              enumerate([rows[: len(rows) // 2], rows[len(rows) // 2:]])]
    files = lengths = None
    if tokens is not None:
        files, lengths = [], []
        for k, shard in enumerate(shards):
            part = tokens[: len(rows) // 2] if k == 0 else tokens[len(rows) // 2:]
            files.append(shard.with_suffix(".tokens"))
            lengths.append(shard.with_name(f"0000{k}.lengths.npy"))
            (np.concatenate(part) if part else np.zeros(0)).astype("<u2").tofile(files[-1])
            np.save(lengths[-1], np.array([len(t) for t in part], dtype=np.int64))
    dest = tmp_path / "mds"
    dest.mkdir()
    with pytest.raises(ReorderError) as err:
        mds.assemble(ExportInput(shards, "parquet", files, lengths, np.dtype("uint16") if files else None), dest)
    assert list(dest.iterdir()) == []  # nothing half-written
    message = str(err.value)
    assert "\n" not in message
    return message


def test_refusals_name_the_file_and_leave_nothing(tmp_path):
    rows = [{"id": f"d{i}", "text": "alpha"} for i in range(6)]
    ok = [np.array([3, 1], dtype=np.uint16)] * 6
    bad = ok[:4] + [np.array([], dtype=np.uint16)] + ok[:1]
    assert "00001.tokens: row 1 has no token" in refusal(tmp_path / "a", rows, tokens=bad)
    assert "already have a column 'tokens'" in refusal(tmp_path / "b", [{**r, "tokens": 1} for r in rows], tokens=ok)
    when = pa.schema([("id", pa.string()), ("at", pa.timestamp("s"))])
    msg = refusal(tmp_path / "c", [{"id": "x", "at": 0}] * 4, when)
    assert "00000.parquet: column 'at' is timestamp[ms], which the MDS export does not encode" in msg
    assert "00001.lengths.npy: 2 lengths for 3 rows" in refusal(tmp_path / "d", rows, tokens=ok[:5])
    shards = shard_files(tmp_path / "d" / "out")
    with pytest.raises(ReorderError, match="1 token files and 2 lengths files for 2 row shards"):
        mds.assemble(ExportInput(shards, "parquet", [shards[0].with_suffix(".tokens")],
                                 [p.with_name(p.stem + ".lengths.npy") for p in shards], np.dtype("uint16")),
                     tmp_path / "d" / "mds")


def test_a_dictionary_column_is_its_values(tmp_path):
    table = pa.table({"id": ["a", "b", "a"], "n": [1, 2, 3]}).cast(
        pa.schema([("id", pa.dictionary(pa.int32(), pa.string())), ("n", pa.int64())]))
    pq.write_table(table, tmp_path / "00000.parquet")
    (tmp_path / "mds").mkdir()
    entry = mds.assemble(ExportInput([tmp_path / "00000.parquet"], "parquet"), tmp_path / "mds")
    assert entry["columns"] == {"id": "str", "n": "int64"}
    ds = streaming.StreamingDataset(local=str(tmp_path / "mds"), batch_size=1)
    assert [ds[i] for i in range(3)] == [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "a", "n": 3}]


# ------------------------------------------------------------------ under torchrun


def torchrun(dest: Path, tmp: Path, mode: str) -> tuple[list[Path], list[list[dict]]]:
    """The script on 2 ranks (gloo); a rank killed by a signal runs again, as test_trainers.torchrun does."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(SCRIPT.parent.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(W),
           str(SCRIPT), str(dest), str(tmp / "audit.jsonl"), mode, str(B), str(tmp)]
    for _attempt in range(3):
        for stale in [*tmp.glob("audit.rank*.jsonl"), tmp / "global.json"]:
            stale.unlink(missing_ok=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0 or not SIGNALLED.search(done.stderr):
            break
    assert done.returncode == 0, done.stderr[-3000:]
    return sorted(tmp.glob("audit.rank*.jsonl")), json.loads((tmp / "global.json").read_text())


@pytest.mark.parametrize("mode", ["recipe", "shuffle", "nodes"])
def test_streaming_dataset_under_torchrun(tokens_export, tmp_path, mode):
    """2 ranks x 2 workers, b = 3: global batch t must be positions [6t, 6t + 6). The recipe's are, with each
    sample's text and tokens those of its position; with shuffle=True, or two canonical nodes (what an unset
    num_canonical_nodes becomes on two physical nodes), they are not, and the audit fails their logs."""
    out, dest, _, tok = tokens_export
    logs, batches = torchrun(dest, tmp_path, mode)
    assert len(logs) == W
    windows = [sorted(s["position"] for s in batch) for batch in batches]
    result = invoke("audit", out, *logs, "--positions", "--json")
    report = json.loads(result.stdout)["data"]
    if mode != "recipe":
        assert windows != [list(range(t * W * B, (t + 1) * W * B)) for t in range(len(windows))]
        assert result.exit_code == 1 and not report["held"], report
        return
    assert windows == [list(range(t * W * B, (t + 1) * W * B)) for t in range(48 // (W * B))]
    rows = read_parquet_out(out).to_pylist()
    for s in (s for batch in batches for s in batch):
        assert s["text"] == rows[s["position"]]["text"]
        assert s["tokens"] == tokenize(tok, [s["text"]])[0].tolist()  # an independent tokenization
    assert result.exit_code == 0 and report["held"] and report["global_batch"] == W * B, report


def test_the_recipe_sets_the_order_settings_and_refuses_others(tokens_export):
    from reorder_cli.loader.mds import POSITION, ordered_streaming_dataset

    _, dest, _, _ = tokens_export
    ds = ordered_streaming_dataset(dest, 3, positions=True)
    assert (ds.shuffle, ds.num_canonical_nodes, ds.batch_size) == (False, 1, 3)
    assert [ds[i][POSITION] for i in (0, 7, 47)] == [0, 7, 47]
    for bad in ({"shuffle": True}, {"num_canonical_nodes": 2}):
        with pytest.raises(ReorderError, match="breaks the order of the MDS export"):
            ordered_streaming_dataset(dest, 3, **bad)
    with pytest.raises(ReorderError, match="batch_size must be the DataLoader's per-rank batch size"):
        ordered_streaming_dataset(dest, 0)
