"""Token pieces (issue 19): with ``tokenizer: PATH`` every output shard gets ``NNNNN.tokens`` and
``NNNNN.lengths.npy``, published in ``OUT/tokens/``; the stream equals an independent tokenization of the
manifest order, token for token; the bytes do not depend on the path, workers or budget; every refusal is
one line and leaves nothing behind; an export is assembled into ``OUT/<name>/`` (a stand-in exporter here)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from reorder_cli.export import EXPORTS

from .conftest import (
    WORDS,
    invoke,
    make_rows,
    one_line_error,
    read_jsonl_out,
    read_manifest,
    read_parquet_out,
    reorder,
    to_lines,
    write_jsonl,
    write_parquet,
)

SPECIALS = ["[UNK]", "<s>", "</s>"]


def make_tokenizer(folder: Path, config: bool = True, first_id: int = 0) -> Path:
    """A WordLevel tokenizer over the test corpus's words (whitespace split), saved as ``folder/tokenizer.json``;
    ``tokenizer_config.json`` beside it names <s> and </s> (``config``). ``first_id``: the words' ids start there."""
    words = sorted({part for w in WORDS for part in w.split()})
    vocab = {t: i for i, t in enumerate(SPECIALS)} | {w: first_id + 3 + i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    if config:
        (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return folder


def stream(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """The whole token stream and the lengths, in the manifest's shard order."""
    doc = read_manifest(out)["tokens"]
    dtype = np.dtype(doc["dtype"]).newbyteorder("<")
    ids = [np.fromfile(out / s["file"], dtype=dtype) for s in doc["shards"]]
    lengths = [np.load(out / s["lengths"]) for s in doc["shards"]]
    return np.concatenate(ids), np.concatenate(lengths)


def independent(texts: list[str], folder: Path, bos: int | None, eos: int | None) -> np.ndarray:
    """The ``tokenizers`` library called directly on ``texts``, each [BOS] + ids + [EOS]."""
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    out: list[int] = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        out += ([bos] if bos is not None else []) + enc.ids + ([eos] if eos is not None else [])
    return np.asarray(out, dtype=np.int64)


@pytest.fixture
def tok(tmp_path) -> Path:
    return make_tokenizer(tmp_path / "tok")


def _texts_jsonl(out: Path) -> list[str]:
    return [json.loads(line)["text"] for line in read_jsonl_out(out)]


def test_the_token_stream_is_an_independent_tokenization_of_the_manifest_order(tmp_path, jsonl_corpus, tok):
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\nshard_rows: 300\n")
    reorder(cfg, jsonl_corpus.files, out, method="str", sets=[f"tokenizer={tok}", "add_bos=true"])
    ids, lengths = stream(out)
    texts = _texts_jsonl(out)
    want = independent(texts, tok, 1, 2)
    assert np.array_equal(ids.astype(np.int64), want)
    assert len(lengths) == len(texts) and lengths.dtype == np.int64 and int(lengths.sum()) == len(ids)
    doc = read_manifest(out)
    t = doc["tokens"]
    assert t["dtype"] == "uint16" and t["bos"] == 1 and t["eos"] == 2 and t["total"] == len(ids)
    assert t["tokenizer"]["sha256"] == hashlib.sha256((tok / "tokenizer.json").read_bytes()).hexdigest()
    assert [s["offset"] for s in t["shards"]] == [0, *np.cumsum([s["tokens"] for s in t["shards"]])[:-1].tolist()]
    assert len(t["shards"]) == len(doc["shards"]) == 4
    for s, row_shard in zip(t["shards"], doc["shards"], strict=True):  # piece i belongs to row shard i
        assert s["file"] == f"tokens/{row_shard['file'].split('.')[0]}.tokens"
        assert len(np.load(out / s["lengths"])) == row_shard["rows"]
    assert invoke("verify", out).exit_code == 0


def test_parquet_rows_and_a_nested_text_field(tmp_path, tok):
    rows = make_rows(120, seed=3)
    for r in rows:
        r["doc"] = {"body": r.pop("text")}
    src = write_parquet(tmp_path / "in" / "a.parquet", rows)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: parquet\nshard_rows: 50\n")
    out = tmp_path / "out"
    reorder(cfg, [src], out, method="saw", sets=[f"tokenizer={tok}", "text_field=doc.body", "add_eos=false"])
    texts = [d["body"] for d in read_parquet_out(out).column("doc").to_pylist()]
    ids, _ = stream(out)
    assert np.array_equal(ids.astype(np.int64), independent(texts, tok, None, None))


def _hashes(out: Path) -> dict[str, str]:
    files = [out / ".manifest.json", *sorted((out / "tokens").iterdir())]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_the_pieces_are_the_same_bytes_in_memory_out_of_core_and_whatever_the_workers(tmp_path, jsonl_corpus, tok):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: jsonl.zst\nshard_rows: 250\n")
    runs = {"mem": ["rewrite=in-memory", "workers=1"],
            "ooc": ["rewrite=out-of-core", "memory_limit=1", "workers=2"]}
    got = {}
    for name, sets in runs.items():
        reorder(cfg, jsonl_corpus.files, tmp_path / name, method="str", sets=[f"tokenizer={tok}", *sets])
        got[name] = _hashes(tmp_path / name)
    assert got["mem"] == got["ooc"] and len(got["mem"]) == 1 + 2 * 5


def test_a_rerun_is_already_done_and_a_changed_tokenizer_is_another_run(tmp_path, jsonl_corpus, tok):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\n")
    out = tmp_path / "out"
    sets = [f"tokenizer={tok}"]
    reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets)
    again = reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets)
    assert "nothing to do" in again.stderr
    make_tokenizer(tok, first_id=10)  # other ids: another run
    other = reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets, ok=False)
    assert "another run" in one_line_error(other) and "tokens" in other.stderr


def test_an_altered_token_piece_is_reported_by_verify_and_not_reused(tmp_path, jsonl_corpus, tok):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\n")
    out = tmp_path / "out"
    reorder(cfg, jsonl_corpus.files, out, method="str", sets=[f"tokenizer={tok}"])
    piece = out / "tokens" / "00000.tokens"
    data = bytearray(piece.read_bytes())
    data[0] ^= 1
    piece.write_bytes(bytes(data))
    report = invoke("verify", out)
    assert report.exit_code != 0 and "00000.tokens" in report.output and "sha256" in report.output


# ------------------------------------------------------------------ refusals: one line, nothing left behind


def _jsonl_with(tmp_path: Path, bad: dict, at: int = 7) -> Path:
    rows = make_rows(30, seed=5)
    rows[at] = {**rows[at], **bad} if "text" in bad else {k: v for k, v in rows[at].items() if k != "text"}
    return write_jsonl(tmp_path / "in" / "bad.jsonl", to_lines(rows))


@pytest.mark.parametrize(("bad", "why"), [({}, "is missing"), ({"text": None}, "is null"),
                                          ({"text": 5}, "is a int"), ({"text": ["a"]}, "is a list")])
@pytest.mark.parametrize("path", ["in-memory", "out-of-core"])
def test_a_document_without_a_string_text_is_one_line_naming_its_input_line(tmp_path, tok, bad, why, path):
    src = _jsonl_with(tmp_path, bad)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\n")
    out = tmp_path / "out"
    sets = [f"tokenizer={tok}", f"rewrite={path}", "memory_limit=1" if path == "out-of-core" else "workers=1"]
    line = one_line_error(reorder(cfg, [src], out, method="input", sets=sets, ok=False))
    assert f"{src}: line 8" in line and "text_field 'text'" in line and why in line, line
    assert not out.exists()  # nothing left behind


def test_a_parquet_null_text_names_its_input_row(tmp_path, tok):
    rows = make_rows(20, seed=6)
    rows[4]["text"] = None
    src = write_parquet(tmp_path / "in" / "a.parquet", rows)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: parquet\n")
    out = tmp_path / "out"
    line = one_line_error(reorder(cfg, [src], out, method="input", sets=[f"tokenizer={tok}"], ok=False))
    assert f"{src}: row 4" in line and "is null" in line, line
    assert not out.exists()


def test_a_token_id_beyond_the_dtype_is_one_line(tmp_path, jsonl_corpus, tok):
    big = make_tokenizer(tmp_path / "big", first_id=70_000)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\n")
    out = tmp_path / "out"
    line = one_line_error(reorder(cfg, jsonl_corpus.files, out, method="input",
                                  sets=[f"tokenizer={big}", "token_dtype=uint16"], ok=False))
    assert "does not fit token_dtype uint16" in line and f"{jsonl_corpus.files[0]}: line 1" in line, line
    assert not out.exists()
    reorder(cfg, jsonl_corpus.files, out, method="input", sets=[f"tokenizer={big}"])  # auto: uint32
    assert read_manifest(out)["tokens"]["dtype"] == "uint32"


@pytest.mark.parametrize(("sets", "says"), [
    (["tokenizer=nowhere/tok"], "no such file"),
    (["tokenizer=s3://bucket/tok.json"], "local"),
    (["text_field=body"], "read only with a tokenizer"),
    (["add_bos=true"], "read only with a tokenizer"),
    (["export=megatrn"], "unknown export"),
    (["export=standin"], "set tokenizer"),
    (["format=standin"], "expected one of"),
    (["TOK", "add_bos=true", "bos_token=<nope>"], "not in the vocabulary"),
    (["TOK", "token_dtype=uint8"], "token_dtype"),
    (["TOK", "export=standin", "format=mds"], "disagree"),
])
def test_bad_token_settings_are_one_line(tmp_path, jsonl_corpus, tok, standin, sets, says):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\n")
    out = tmp_path / "out"
    sets = [f"tokenizer={tok}" if s == "TOK" else s for s in sets]
    line = one_line_error(reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets, ok=False))
    assert says in line, line
    assert not out.exists()


def test_add_bos_without_a_known_bos_token_names_the_key(tmp_path, jsonl_corpus):
    bare = make_tokenizer(tmp_path / "bare", config=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\n")
    line = one_line_error(reorder(cfg, jsonl_corpus.files, tmp_path / "out", method="str",
                                  sets=[f"tokenizer={bare}", "add_bos=true", "add_eos=false"], ok=False))
    assert "'bos_token'" in line, line
    line = one_line_error(reorder(cfg, jsonl_corpus.files, tmp_path / "out", method="str",
                                  sets=[f"tokenizer={bare}"], ok=False))  # add_eos is on by default
    assert "'eos_token'" in line, line
    reorder(cfg, jsonl_corpus.files, tmp_path / "out", method="str",
            sets=[f"tokenizer={bare}", "eos_token=</s>"])
    assert read_manifest(tmp_path / "out")["tokens"]["eos"] == 2


def test_a_tokenizer_path_in_a_config_file_is_relative_to_the_file(tmp_path, jsonl_corpus, tok):
    folder = tmp_path / "configs"
    folder.mkdir()
    cfg = folder / "c.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\ntokenizer: ../tok\n")
    reorder(cfg, jsonl_corpus.files, tmp_path / "out", method="str")
    assert read_manifest(tmp_path / "out")["tokens"]["tokenizer"]["file"] == "tokenizer.json"


def test_an_output_on_an_object_store_with_a_tokenizer_is_refused(tmp_path, jsonl_corpus, tok):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\n")
    line = one_line_error(reorder(cfg, jsonl_corpus.files, "s3://bucket/out", method="str",
                                  sets=[f"tokenizer={tok}"], ok=False))
    assert "object store" in line and "s3://bucket/out" in line, line


# ------------------------------------------------------------------ exports (a stand-in registered here)


@pytest.fixture
def standin(monkeypatch) -> list:
    """An exporter registered for the test only: it copies the token files into one file and records what
    it was given."""
    calls: list = []

    def assemble(src, dest: Path) -> dict:
        calls.append(src)
        data = b"".join(Path(p).read_bytes() for p in src.token_files)
        (dest / "all.bin").write_bytes(data)
        return {"format": "standin", "files": [{"file": "standin/all.bin", "bytes": len(data),
                                               "sha256": hashlib.sha256(data).hexdigest()}],
                "dtype": str(src.dtype), "shards": len(src.shards)}

    monkeypatch.setitem(EXPORTS, "standin", SimpleNamespace(NAME="standin", NEEDS_TOKENS=True, assemble=assemble))
    return calls


def test_an_export_is_assembled_into_its_folder_and_recorded_in_the_manifest(tmp_path, jsonl_corpus, tok, standin):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: parquet\nshard_rows: 400\n")
    out = tmp_path / "out"
    reorder(cfg, jsonl_corpus.files, out, method="str", sets=[f"tokenizer={tok}", "export=standin"])
    doc = read_manifest(out)
    ids, _ = stream(out)
    data = (out / "standin" / "all.bin").read_bytes()
    assert data == ids.tobytes()
    assert doc["export"] == {"format": "standin", "files": [{"file": "standin/all.bin", "bytes": len(data),
                                                            "sha256": hashlib.sha256(data).hexdigest()}],
                             "dtype": "uint16", "shards": 3}
    src = standin[0]
    assert src.row_format == "parquet" and len(src.token_files) == len(src.lengths) == 3
    assert sorted(p.name for p in out.iterdir()) == [".manifest.json", ".run_log.json", "00000.parquet",
                                                     "00001.parquet", "00002.parquet", "standin", "tokens"]
    assert not (out / ".reorder").exists()
    again = reorder(cfg, jsonl_corpus.files, out, method="str", sets=[f"tokenizer={tok}", "export=standin"])
    assert "nothing to do" in again.stderr
    # --overwrite without the export: its folder and the pieces go
    reorder(cfg, jsonl_corpus.files, out, method="str", extra=["--overwrite"])
    assert not (out / "standin").exists() and not (out / "tokens").exists()
    assert "tokens" not in read_manifest(out) and invoke("verify", out).exit_code == 0


def test_an_export_that_fails_leaves_nothing_behind(tmp_path, jsonl_corpus, tok, monkeypatch):
    def assemble(src, dest: Path) -> dict:
        (dest / "half.bin").write_bytes(b"x")
        raise pa.ArrowInvalid("boom")

    monkeypatch.setitem(EXPORTS, "broken", SimpleNamespace(NAME="broken", NEEDS_TOKENS=False, assemble=assemble))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\n")
    out = tmp_path / "out"
    result = reorder(cfg, jsonl_corpus.files, out, method="str", sets=["export=broken"], ok=False)
    assert result.exit_code != 0
    assert not (out / "broken").exists() and not (out / ".manifest.json").exists()


def test_an_output_without_tokens_still_reads(tmp_path, jsonl_corpus, config_file):
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="str")
    doc = read_manifest(out)
    assert "tokens" not in doc and "export" not in doc
    assert invoke("verify", out).exit_code == 0
    assert "nothing to do" in reorder(config_file, jsonl_corpus.files, out, method="str").stderr


def test_without_the_tokenizers_library_the_error_names_the_extra(tmp_path, jsonl_corpus, tok, monkeypatch):
    from reorder_cli.tokens import tokenizer

    tokenizer.load.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "tokenizers", None)  # import tokenizers: ImportError
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\n")
    line = one_line_error(reorder(cfg, jsonl_corpus.files, tmp_path / "out", method="str",
                                  sets=[f"tokenizer={tok}"], ok=False))
    assert "reorder[tokens]" in line, line
    assert not (tmp_path / "out").exists()
    tokenizer.load.cache_clear()


def test_a_finished_gather_whose_staged_piece_is_short_is_run_again(tmp_path, jsonl_corpus, tok):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\nshard_rows: 400\n")
    out = tmp_path / "out"
    sets = [f"tokenizer={tok}", "rewrite=out-of-core", "memory_limit=1"]
    reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets, extra=["--plan-only"])
    for i in range(3):
        assert invoke("task", out, "scatter", i).exit_code == 0
    assert invoke("task", out, "gather", 0).exit_code == 0
    staged = out / ".reorder" / "shards" / "00000.tokens"
    staged.write_bytes(staged.read_bytes()[:-2])  # a piece cut short (staged files are checked by size)
    reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets)
    ids, _ = stream(out)
    assert np.array_equal(ids.astype(np.int64), independent(_texts_jsonl(out), tok, None, 2))
    assert invoke("verify", out).exit_code == 0


def test_a_rerun_over_an_altered_piece_or_export_file_is_not_already_done(tmp_path, jsonl_corpus, tok, standin):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: parquet\n")
    out = tmp_path / "out"
    sets = [f"tokenizer={tok}", "export=standin"]
    reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets)
    for name in ("tokens/00000.lengths.npy", "standin/all.bin"):
        target = out / name
        kept = target.read_bytes()
        target.write_bytes(kept[:-1] + bytes([kept[-1] ^ 1]))
        line = one_line_error(reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets, ok=False))
        assert name in line and "changed since" in line, line
        target.write_bytes(kept)
    assert "nothing to do" in reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets).stderr


@pytest.mark.parametrize("path", ["in-memory", "out-of-core"])
def test_the_piece_is_encoded_as_the_shard_is_written_never_read_back(tmp_path, tok, monkeypatch, path):
    """Tokenizing costs no second read of the finished shard: the writer's batches are encoded as written."""
    rows = make_rows(90, seed=8)
    src = write_parquet(tmp_path / "in" / "a.parquet", rows)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: parquet\nshard_rows: 40\nrow_group_size: 1KB\n")
    opened: list[str] = []
    real = pq.ParquetFile.__init__

    def spy(self, source, *args, **kwargs):
        opened.append(Path(str(source)).name)
        real(self, source, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "__init__", spy)
    sets = [f"tokenizer={tok}", f"rewrite={path}", "workers=1"] + (["memory_limit=1"] if path == "out-of-core" else [])
    out = tmp_path / "out"
    reorder(cfg, [src], out, method="str", sets=sets)
    monkeypatch.undo()
    assert "a.parquet" in opened  # the spy sees the run's reads
    assert not [name for name in opened if name[:5].isdigit()], opened  # never an output shard
    ids, lengths = stream(out)
    texts = read_parquet_out(out).column("text").to_pylist()
    assert np.array_equal(ids.astype(np.int64), independent(texts, tok, None, 2)) and len(lengths) == 90


@pytest.mark.parametrize("path", ["in-memory", "out-of-core"])
def test_a_null_text_in_a_later_write_batch_names_its_input_row(tmp_path, tok, path):
    rows = make_rows(60, seed=9)
    rows[45]["text"] = None
    src = write_parquet(tmp_path / "in" / "a.parquet", rows)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: parquet\nrow_group_size: 1KB\n")
    out = tmp_path / "out"
    sets = [f"tokenizer={tok}", f"rewrite={path}", "memory_limit=1" if path == "out-of-core" else "workers=1"]
    line = one_line_error(reorder(cfg, [src], out, method="input", sets=sets, ok=False))
    assert f"{src}: row 45" in line and "(output shard 00000.parquet, row 45)" in line and "is null" in line, line
    assert not out.exists()


def _publish_killed_after_a_piece(tmp_path: Path, cfg: Path, files: list[Path], out: Path, sets: list[str]) -> None:
    """``reorder run`` in a process of its own, SIGKILLed once publish has moved the first token piece."""
    flag = tmp_path / "paused"
    args = [sys.executable, "-m", "reorder_cli.cli", "run", str(cfg), "--method", "str", "--output", str(out), "-q",
            *(a for f in files for a in ("--input", str(f))), *(a for s in sets for a in ("--set", s))]
    env = {**os.environ, "REORDER_PAUSE_AT": "publish-tokens", "REORDER_PAUSE_FLAG": str(flag)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None, f"finished before publishing a piece: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, "never reached publish-tokens"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def test_a_publish_killed_between_pieces_resumes_and_a_published_piece_is_checked_by_sha256(tmp_path, jsonl_corpus,
                                                                                          tok):
    """Publish moves a staged piece (checked by size, as a row shard is); a piece it finds already published by
    an interrupted publish is kept only when its sha256 is the recorded one: the same bytes resume to the clean
    output, and a published piece altered in place (same size) is made again, never published as found."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_field: score\nformat: jsonl\nshard_rows: 400\n")
    sets = [f"tokenizer={tok}", "workers=1"]
    reorder(cfg, jsonl_corpus.files, tmp_path / "clean", method="str", sets=sets)
    clean = {p.name: p.read_bytes() for p in (tmp_path / "clean" / "tokens").iterdir()}
    assert len(clean) >= 4  # two pieces or more: the kill falls between them
    for altered in (False, True):
        out = tmp_path / f"killed-{altered}"
        _publish_killed_after_a_piece(tmp_path, cfg, jsonl_corpus.files, out, sets)
        (tmp_path / "paused").unlink()
        published = out / "tokens" / "00000.tokens"
        assert published.read_bytes() == clean["00000.tokens"] and not (out / ".manifest.json").exists()
        if altered:
            data = bytearray(published.read_bytes())
            data[:2] = b"\xff\xff"  # same size, other bytes
            published.write_bytes(bytes(data))
        reorder(cfg, jsonl_corpus.files, out, method="str", sets=sets)
        assert {p.name: p.read_bytes() for p in (out / "tokens").iterdir()} == clean
        assert invoke("verify", out).exit_code == 0
