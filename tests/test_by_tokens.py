"""``--by tokens`` in ``preview`` and ``stats``: the score profile by training token, each slice of the token
stream weighted by the tokens each document has in it. Checked against a direct computation that expands every
document into its tokens (np.repeat), on data with long and short documents, where it differs from the profile
by rows."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli.metrics.guidance import Params
from reorder_cli.metrics.partial import of_array
from reorder_cli.metrics.summary import token_profile

from .conftest import expected_order, invoke, make_rows, one_line_error, read_manifest, reorder, to_lines, write_jsonl
from .test_audit_tokens import add_token_section
from .test_cli_surface import envelope


def expanded_profile(scores: np.ndarray, lengths: np.ndarray, bins: int = 200) -> dict:
    """The profile of the token stream itself: every token carries its document's score."""
    per_token = np.repeat(np.asarray(scores, dtype=np.float64), lengths)
    total = len(per_token)
    bins = min(bins, total)
    edges = np.arange(bins + 1) * total // bins
    parts = [per_token[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
    with warnings.catch_warnings():  # a slice of invalid scores only: NaN, as the manifest's None
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"bins": bins, "edges": edges.tolist(), "mean": [np.nanmean(p) for p in parts],
                "min": [np.nanmin(p) for p in parts], "max": [np.nanmax(p) for p in parts]}


def same(got: dict, want: dict) -> None:
    assert got["bins"] == want["bins"] and got["edges"] == want["edges"]
    for key in ("mean", "min", "max"):
        expected = [None if np.isnan(v) else pytest.approx(v, abs=2e-6) for v in want[key]]
        assert got[key] == expected, key


def long_and_short(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores, and token counts: mostly short documents, one in twenty long."""
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(n) < 0.05, rng.integers(300, 900, n), rng.integers(1, 20, n))
    return rng.random(n).round(3), lengths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_profile_is_the_profile_of_the_token_stream(seed):
    scores, lengths = long_and_short(700, seed)
    scores[5::37] = np.nan  # invalid rows kept: left out
    lengths[3::41] = 0  # documents without a token weigh nothing
    got = token_profile(scores, lengths)
    same(got, expanded_profile(scores, lengths))
    assert got["mean"] != of_array(scores, Params()).profile["mean"]  # long documents stretch the curve
    few = token_profile(scores[:4], np.array([1, 2, 1, 3]))  # fewer tokens than bins: a slice a token
    assert few["bins"] == 7 and few["mean"][1:3] == [pytest.approx(scores[1], abs=1e-6)] * 2


@pytest.fixture
def out(tmp_path, config_file, parquet_corpus):
    folder = tmp_path / "out"
    reorder(config_file, parquet_corpus.files, folder, method="str", sets=["shard_rows=150"])
    return folder


def test_stats_by_tokens_from_the_runs_token_counts(out, tmp_path):
    doc = read_manifest(out)
    _, lengths = long_and_short(doc["totals"]["rows"], 7)
    add_token_section(out, lengths)
    result = invoke("stats", out, "--by", "tokens", "--json")
    assert result.exit_code == 0, result.output
    data = envelope(result, "stats")["data"]  # valid against the envelope's schema
    rows = envelope(invoke("stats", out, "--json"), "stats")["data"]
    assert data["by"] == "tokens" and rows["by"] == "rows"
    scores = np.concatenate([pq.read_table(out / s["file"], columns=["score"])["score"].to_numpy()
                             for s in doc["shards"]])
    same(data["profile"], expanded_profile(scores, lengths))
    assert data["profile"]["mean"] != rows["profile"]["mean"] == doc["profile"]["mean"]
    text = invoke("stats", out, "--by", "tokens")
    assert text.exit_code == 0 and "mean score by training token" in text.stdout
    pytest.importorskip("matplotlib")
    png = tmp_path / "stats.png"
    assert invoke("stats", out, "--by", "tokens", "--plot", png, "-q").exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stats_by_tokens_refuses_without_token_counts(out):
    err = one_line_error(invoke("stats", out, "--by", "tokens"))
    assert "no token counts" in err and "tokenizer:" in err and ".manifest.json" in err
    assert "expected rows or tokens" in one_line_error(invoke("stats", out, "--by", "words"))
    add_token_section(out, np.ones(read_manifest(out)["totals"]["rows"], dtype=np.int64))
    (out / "tokens" / "00001.lengths.npy").unlink()
    assert "00001.lengths.npy: missing" in one_line_error(invoke("stats", out, "--by", "tokens"))
    np.save(out / "tokens" / "00001.lengths.npy", np.ones(3, dtype=np.int64))
    assert "00001.lengths.npy: expected" in one_line_error(invoke("stats", out, "--by", "tokens"))


def test_preview_by_tokens_from_a_token_field(tmp_path, config_file):
    rows = make_rows(600, seed=4)
    scores, lengths = long_and_short(len(rows), 9)
    for r, s, n in zip(rows, scores, lengths, strict=True):
        r["score"], r["token_count"] = float(s), int(n)
    data = write_jsonl(tmp_path / "in" / "part.jsonl", to_lines(rows))
    args = ["preview", config_file, "--input", data, "--method", "str", "--json"]
    result = invoke(*args, "--by", "tokens", "--token-field", "token_count")
    assert result.exit_code == 0, result.output
    got = envelope(result, "preview")["data"]
    order = np.array(expected_order("str", list(scores)))
    assert got["by"] == "tokens" and got["orders"][0]["rows"] == len(rows)
    same(got["orders"][0]["profile"], expanded_profile(scores[order], lengths[order]))
    by_rows = envelope(invoke(*args), "preview")["data"]
    assert by_rows["by"] == "rows" and by_rows["orders"][0]["profile"]["mean"] != got["orders"][0]["profile"]["mean"]
    # the field a token budget reads is the token counts too
    budget = json.loads(invoke(*args, "--by", "tokens", "--select", "tokens:1000000", "--token-field",
                               "token_count").stdout)["data"]
    assert budget["orders"][0]["profile"] == got["orders"][0]["profile"]
    # with another selection, --token-field only names the token counts
    top = envelope(invoke(*args, "--by", "tokens", "--select", "top-r:0.5", "--token-field", "token_count"),
                   "preview")["data"]
    kept = np.sort(np.argsort(scores, kind="stable")[300:])  # top-r: the upper half, in input order
    chosen = kept[np.array(expected_order("str", list(scores[kept])))]
    assert top["orders"][0]["rows"] == 300
    same(top["orders"][0]["profile"], expanded_profile(scores[chosen], lengths[chosen]))
    err = one_line_error(invoke(*args, "--by", "tokens"))
    assert "--by tokens needs each row's token count" in err and "--token-field" in err
    pytest.importorskip("matplotlib")
    png = tmp_path / "preview.png"
    assert invoke(*args[:-1], "--by", "tokens", "--token-field", "token_count", "--plot", png, "-q").exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.floats(-5, 5), st.just(float("nan"))), st.integers(0, 60)), min_size=1,
                max_size=60).filter(lambda docs: sum(n for _, n in docs) > 0), st.integers(1, 30))
def test_token_profile_matches_the_expanded_stream_for_any_documents(docs, bins):
    scores = np.array([s for s, _ in docs])
    lengths = np.array([n for _, n in docs], dtype=np.int64)
    same(token_profile(scores, lengths, bins), expanded_profile(scores, lengths, bins))
