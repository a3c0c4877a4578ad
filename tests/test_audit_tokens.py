"""``reorder audit --tokens``: logs of fixed-length sequences of the exported token stream (sample indices, or
token offsets with ``--offsets``) against the order, window by window in tokens, with a tolerance of one
sequence. The output is a real run; its manifest gets the ``tokens`` section a run with ``tokenizer:`` writes
(``total``, per shard ``tokens``, ``offset`` and a ``lengths`` file), over random document lengths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reorder_cli.inspect.audit import audit
from reorder_cli.loader.audit_log import AuditLog
from reorder_cli.publish import manifest

from .conftest import invoke, one_line_error, reorder
from .test_cli_surface import envelope

L, G = 16, 8  # tokens a sequence, sequences a step


def add_token_section(out, lengths: np.ndarray) -> dict:
    """Write ``tokens/NNNNN.lengths.npy`` a shard and the manifest's ``tokens`` section (spec item 3) over
    ``lengths`` (tokens of each document, in the output's order)."""
    path = manifest.find(out)
    doc = json.loads(path.read_text())
    (out / "tokens").mkdir(exist_ok=True)
    shards, offset = [], 0
    for i, s in enumerate(doc["shards"]):
        a, b = s["positions"]
        part = np.asarray(lengths[a:b], dtype=np.int64)
        np.save(out / "tokens" / f"{i:05d}.lengths.npy", part)
        shards.append({"tokens": int(part.sum()), "offset": offset, "file": f"tokens/{i:05d}.tokens",
                       "lengths": f"tokens/{i:05d}.lengths.npy", "bytes": int(part.sum()) * 2, "sha256": "0" * 64})
        offset += int(part.sum())
    doc["tokens"] = {"tokenizer": {"file": "tokenizer.json", "sha256": "0" * 64, "vocab_size": 100},
                     "text_field": "text", "dtype": "uint16", "bos": None, "eos": 0, "total": offset, "shards": shards}
    path.write_text(manifest.dumps(doc))
    return doc


@pytest.fixture
def out(tmp_path, config_file, parquet_corpus):
    folder = tmp_path / "out"
    reorder(config_file, parquet_corpus.files, folder, method="str", sets=["shard_rows=150"])
    rows = json.loads(manifest.find(folder).read_text())["totals"]["rows"]
    add_token_section(folder, np.random.default_rng(3).integers(1, 40, rows))
    return folder


def total(out) -> int:
    return json.loads(manifest.find(out).read_text())["tokens"]["total"]


def write_log(path, steps: list) -> None:
    log = AuditLog(path)
    for s, ids in enumerate(steps):
        log.log(s, [int(i) for i in ids])
    log.close()


def run(out, log, *extra):
    result = invoke("audit", out, log, "--json", "--tokens", "--seq-length", L, *extra)
    return result.exit_code, (envelope(result, "audit")["data"] if result.exit_code in (0, 1) else None)


def in_order(out) -> list[list[int]]:
    """Every sequence of the stream, G a step (the last step the short tail)."""
    n = total(out) // L
    return [list(range(a, min(a + G, n))) for a in range(0, n, G)]


def test_an_in_order_log_holds_and_a_shuffled_one_does_not(out, tmp_path):
    steps = [list(reversed(s)) for s in in_order(out)]  # the order inside a window is free
    assert len(steps[-1]) < G  # the stream ends inside the last window: the tail
    write_log(tmp_path / "ok.jsonl", steps)
    code, rep = run(out, tmp_path / "ok.jsonl")
    assert code == 0 and rep["held"] and rep["global_batch"] == G and rep["tail_samples"] == len(steps[-1]), rep
    assert rep["tokens"] == {"seq_length": L, "total": total(out), "offsets": False, "tolerance_tokens": L}
    assert rep["never_seen"] == rep["seen_twice"] == rep["unknown"] == 0
    flat = np.concatenate([np.array(s) for s in steps])
    np.random.default_rng(0).shuffle(flat)
    write_log(tmp_path / "shuffled.jsonl", [flat[i : i + G] for i in range(0, len(flat), G)])
    code, rep = run(out, tmp_path / "shuffled.jsonl")
    assert code == 1 and not rep["held"] and rep["in_window"] < 0.5 and rep["first_bad_step"] == 0, rep
    text = invoke("audit", out, tmp_path / "ok.jsonl", "--tokens", "--seq-length", L)
    assert text.exit_code == 0 and "tolerance one sequence" in text.stdout and "the order held" in text.stdout


def test_one_sequence_across_a_window_is_tolerated_two_are_not(out, tmp_path):
    steps = in_order(out)[:20]
    one = [list(s) for s in steps]
    for s in range(0, 19, 2):  # the last sequence of step s and the first of step s + 1 change places
        one[s][-1], one[s + 1][0] = one[s + 1][0], one[s][-1]
    write_log(tmp_path / "one.jsonl", one)
    code, rep = run(out, tmp_path / "one.jsonl")
    assert code == 0 and rep["held"] and rep["max_displacement"] == 0, rep
    two = [list(s) for s in steps]
    two[4][-1], two[5][1] = two[5][1], two[4][-1]  # a sequence two sequences past its window
    write_log(tmp_path / "two.jsonl", two)
    code, rep = run(out, tmp_path / "two.jsonl")
    assert code == 1 and rep["first_bad_step"] == 4 and rep["max_displacement"] == 1, rep
    assert rep["examples"]["outside_window"] == [{"id": 5 * G + 1, "step": 4, "intended_step": 5}]
    # a whole sequence skipped, and one consumed twice
    skip = [list(s) for s in steps]
    skip[7][3] = skip[7][2]
    write_log(tmp_path / "skip.jsonl", skip)
    code, rep = run(out, tmp_path / "skip.jsonl")
    assert code == 1 and rep["seen_twice"] == 1 and rep["never_seen"] == 1, rep
    assert rep["examples"]["never_seen"] == [(7 * G + 3) * L] and rep["first_bad_step"] == 7


def test_offsets_of_packed_sequences_within_one_sequence_hold(out, tmp_path):
    """A packer's sequences start anywhere within a sequence of the L-grid (here a shift of up to L/2
    a sequence: gaps and overlaps of fewer than L tokens); shifted by more than a sequence, they do not."""
    n = total(out) // L - 1  # every packed sequence fits in the stream
    jitter = np.random.default_rng(5).integers(0, L // 2, n)
    offsets = np.arange(n) * L + jitter
    assert (offsets % L != 0).any()
    steps = [offsets[a : a + G] for a in range(0, n // G * G, G)]
    write_log(tmp_path / "packed.jsonl", steps)
    code, rep = run(out, tmp_path / "packed.jsonl", "--offsets")
    assert code == 0 and rep["held"] and rep["tokens"]["offsets"], rep
    write_log(tmp_path / "far.jsonl", [s + L + L // 2 for s in steps[:-2]])  # 1.5 to 2 sequences late
    code, rep = run(out, tmp_path / "far.jsonl", "--offsets")
    assert code == 1 and rep["in_window"] < 1 and rep["never_seen"] >= 1, rep


def test_sequences_beyond_the_stream_are_unknown(out, tmp_path):
    n = total(out) // L
    write_log(tmp_path / "past.jsonl", [list(range(G)), list(range(G, 2 * G - 1)) + [n]])
    code, rep = run(out, tmp_path / "past.jsonl")
    assert code == 1 and rep["unknown"] == 1 and rep["examples"]["unknown"] == [n], rep
    write_log(tmp_path / "off.jsonl", [[0, total(out) - L + 1]])  # its last token past the stream's end
    code, rep = run(out, tmp_path / "off.jsonl", "--offsets")
    assert code == 1 and rep["unknown"] == 1, rep


def test_a_token_audit_refuses_in_one_line(out, tmp_path, config_file, parquet_corpus):
    write_log(tmp_path / "log.jsonl", [[0, 1]])
    plain = tmp_path / "plain"
    reorder(config_file, parquet_corpus.files, plain, method="str")
    err = one_line_error(invoke("audit", plain, tmp_path / "log.jsonl", "--tokens", "--seq-length", 8))
    assert "no token counts" in err and "tokenizer:" in err and ".manifest.json" in err
    assert "--seq-length" in one_line_error(invoke("audit", out, tmp_path / "log.jsonl", "--tokens"))
    assert "goes with --tokens" in one_line_error(invoke("audit", out, tmp_path / "log.jsonl", "--offsets"))
    assert "--positions" in one_line_error(invoke("audit", out, tmp_path / "log.jsonl", "--tokens", "--seq-length",
                                                  8, "--positions"))
    err = one_line_error(invoke("audit", out, tmp_path / "log.jsonl", "--tokens", "--seq-length", total(out) + 1))
    assert "--seq-length" in err and f"{total(out):,} tokens" in err
    doc = json.loads(manifest.find(out).read_text())
    doc["tokens"]["shards"][2]["offset"] += 1  # the offsets are where each shard's tokens begin in the stream
    manifest.find(out).write_text(manifest.dumps(doc))
    assert "tokens.shards[2] has 'offset'" in one_line_error(invoke("audit", out, tmp_path / "log.jsonl", "--tokens",
                                                                     "--seq-length", 8))
    doc["tokens"]["shards"][2]["offset"] -= 1
    doc["tokens"]["shards"][2]["tokens"] += 1
    manifest.find(out).write_text(manifest.dumps(doc))
    assert "add up to 'tokens.total'" in one_line_error(invoke("audit", out, tmp_path / "log.jsonl", "--tokens",
                                                               "--seq-length", 8))
    doc["tokens"]["shards"][2]["tokens"] -= 1
    manifest.find(out).write_text(manifest.dumps(doc))
    (tmp_path / "words.jsonl").write_text('{"step": 0, "ids": ["a"]}\n')
    assert "sample indices" in one_line_error(invoke("audit", out, tmp_path / "words.jsonl", "--tokens",
                                                     "--seq-length", 8))


def test_the_picture_of_a_token_audit(out, tmp_path):
    pytest.importorskip("matplotlib")
    steps = in_order(out)
    steps[3][0], steps[9][0] = steps[9][0], steps[3][0]
    write_log(tmp_path / "log.jsonl", steps)
    png = tmp_path / "audit.png"
    result = invoke("audit", out, tmp_path / "log.jsonl", "--tokens", "--seq-length", L, "--plot", png)
    assert result.exit_code == 1 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 6), st.integers(2, 30), st.lists(st.tuples(st.integers(0, 400), st.integers(-3, 3)),
                                                         max_size=6))
def test_sample_indices_and_their_offsets_give_one_verdict(out, tmp_path, g, steps, moves):
    """A log of sample indices and the same log as token offsets (index·L) are one audit: the same verdict,
    counts and broken step, whatever sequences were moved (by up to three steps, or past the stream)."""
    n = total(out) // L
    log = [list(range(s * g, min((s + 1) * g, n))) for s in range(min(steps, -(-n // g)))]
    flat = [i for ids in log for i in ids]
    for at, by in moves:  # a sequence moved by `by` windows
        flat[at % len(flat)] += by * g
    cut = np.cumsum([0] + [len(ids) for ids in log])
    moved = [flat[a:b] for a, b in zip(cut[:-1], cut[1:], strict=True)]
    for name, ids in (("idx.jsonl", moved), ("off.jsonl", [[i * L for i in s] for s in moved])):
        (tmp_path / name).unlink(missing_ok=True)
        write_log(tmp_path / name, ids)
    by_index = audit(out, [tmp_path / "idx.jsonl"], tokens=True, seq_length=L, global_batch=g)
    by_offset = audit(out, [tmp_path / "off.jsonl"], tokens=True, seq_length=L, offsets=True, global_batch=g)
    keys = ("held", "in_window", "never_seen", "seen_twice", "max_displacement", "first_bad_step", "tail_samples",
            "short_steps")
    index_json, offset_json = by_index.to_json(), by_offset.to_json()
    assert {k: index_json[k] for k in keys} == {k: offset_json[k] for k in keys}
    negative = sum(i < 0 for i in flat)  # a negative offset is unknown; a negative index too
    assert index_json["unknown"] == offset_json["unknown"] >= negative
    assert by_index.held == (moved == log)
