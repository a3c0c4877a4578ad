"""The manifest's score summaries, profile and guidance metrics, merged from one partial a shard
(reorder_cli/metrics/partial.py, issue 22): equal to a plain computation over the whole array, whatever the
cuts (shards smaller than a window too), the NaNs (at the ends, anywhere) and the blocks the scores arrive in;
refused when the pieces do not follow each other; computed where the rows are, so a run with its work folder
on a store publishes its manifest without reading the plan's arrays."""

from __future__ import annotations

import fnmatch
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli import work_store
from reorder_cli.errors import ReorderError
from reorder_cli.inspect import deep
from reorder_cli.inspect.digest import output_shard
from reorder_cli.metrics import partial
from reorder_cli.metrics.guidance import Params
from reorder_cli.metrics.partial import NOISE_FLOOR, Piece, ScorePartial
from reorder_cli.metrics.summary import PROFILE_BINS, ChunkedStats, ScoreStats
from reorder_cli.plan.layout import counted_prefix, valid_prefix
from reorder_cli.publish.manifest import Manifest
from reorder_cli.util import store
from reorder_cli.workdir import SCRATCH_ENV

from .conftest import invoke, make_rows, output_hashes, read_manifest, reorder, to_lines, write_jsonl
from .mixture_data import SOURCES, output_rows, source_keys, write_config
from .test_s3_output import SETS, assert_same_as_local, objects
from .test_s3_single_node import is_state, sizes, tasks_on_nodes

OOC_MIX = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150"]

# ------------------------------------------------------------------ the reference: numpy over the whole array


def turns(profile: np.ndarray, threshold: float) -> tuple[int, int]:
    """Rises and falls with hysteresis, written out again."""
    rises = falls = direction = 0
    lo = hi = profile[0]
    for x in profile[1:]:
        if direction != 1 and x - lo > threshold:
            rises, direction, hi = rises + 1, 1, x
        elif direction != -1 and hi - x > threshold:
            falls, direction, lo = falls + 1, -1, x
        hi, lo = max(hi, x), min(lo, x)
    return rises, falls


def reference(x: np.ndarray, cuts: list[tuple[int, int]], p: Params) -> dict:
    """Everything the merge gives, from the whole array at once (raw values, None where undefined)."""
    def summary(a: np.ndarray) -> dict:
        a = a[~np.isnan(a)]
        return {"min": a.min(), "mean": a.mean(), "max": a.max()} if len(a) else dict.fromkeys(("min", "mean", "max"))

    rows = len(x)
    pb = max(1, min(PROFILE_BINS, rows))
    edges = (np.arange(pb + 1) * rows) // pb
    parts = [summary(x[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    profile = {"bins": pb, "edges": edges.tolist(), **{k: [s[k] for s in parts] for k in ("mean", "min", "max")}}
    out = {"shards": [summary(x[a:b]) for a, b in cuts], "score": summary(x), "profile": profile}
    v = x[~np.isnan(x)]
    n = len(v)
    metrics = {"params": {"window": p.window, "boundary_pct": p.boundary_pct, "cycle_threshold": p.cycle_threshold,
                          "bins": p.bins}, "rows": n}
    if n == 0 or v.min() == v.max():
        return out | {"metrics": metrics | {"std": 0.0 if n else None, "boundary": {"start": None, "end": None},
                                            "cycles": {"rises": 0, "falls": 0, "quarter_range": [None] * 4},
                                            "continuity": {"max_jump": None, "mean_jump": None},
                                            "local_diversity": None}}
    mu, sigma = v.mean(), v.std()
    windows = [v[i : i + p.window] for i in range(0, n, p.window)]
    means = np.array([w.mean() for w in windows])
    jumps = np.abs(np.diff(means)) / sigma
    head = max(1, int(n * p.boundary_pct / 100))
    q = (np.arange(5) * n) // 4
    quarters = [(v[a:b].max() - v[a:b].min()) / (v.max() - v.min()) if b > a else None
                for a, b in zip(q[:-1], q[1:], strict=True)]
    nbins = max(1, min(p.bins, len(windows)))
    group = (np.arange(nbins + 1) * len(windows)) // nbins * p.window
    profile = np.array([v[a:b].mean() for a, b in zip(group[:-1], group[1:], strict=True)])
    threshold = max(p.cycle_threshold, NOISE_FLOOR / math.sqrt(n / nbins)) * sigma
    rises, falls = turns(profile, threshold)
    return out | {"metrics": metrics | {
        "std": sigma,
        "boundary": {"start": (v[:head].mean() - mu) / sigma, "end": (v[n - head:].mean() - mu) / sigma},
        "cycles": {"rises": rises, "falls": falls, "quarter_range": quarters},
        "continuity": {"max_jump": jumps.max() if len(jumps) else None,
                       "mean_jump": jumps.mean() if len(jumps) else None},
        "local_diversity": sum(len(w) * w.std() for w in windows) / (n * sigma)}}


def differences(a, b, path: str = "") -> list[str]:
    """Where two results differ: numbers beyond 1e-9 relative, anything else at all."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path} (length)"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, int | float | np.number) and isinstance(b, int | float | np.number):
        return [] if math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12) else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def merged(x: np.ndarray, cuts: list[tuple[int, int]], p: Params, chunk_rows: int) -> dict:
    m = partial.of_array(x, p, cuts, digits=None, chunk_rows=chunk_rows)
    return {"shards": m.shards, "score": m.score, "profile": m.profile, "metrics": m.metrics}


@st.composite
def orders(draw):
    """Scores (continuous: no tie sits on a threshold) with NaNs first, last or anywhere; shards cut anywhere
    (many smaller than a window); the metric parameters; the chunk the pieces are read in."""
    rows = draw(st.integers(1, 3000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(draw(st.floats(-3, 3)), draw(st.floats(0.1, 10)), size=rows)
    if draw(st.booleans()):  # a trend, so that the profile has turns to count
        x += np.sin(np.linspace(0, draw(st.floats(0, 20)), rows)) * draw(st.floats(0, 5))
    where = draw(st.sampled_from(["none", "first", "last", "anywhere"]))
    k = draw(st.integers(0, rows))
    if where == "first":
        x[:k] = np.nan
    elif where == "last":
        x[rows - k:] = np.nan
    elif where == "anywhere":
        x[rng.random(rows) < draw(st.floats(0, 0.9))] = np.nan
    bounds = sorted({0, rows, *draw(st.lists(st.integers(1, max(1, rows - 1)), max_size=40))})
    p = Params(window=draw(st.integers(1, 400)), boundary_pct=draw(st.floats(0.5, 50)),
               bins=draw(st.integers(1, 250)))
    return x, list(zip(bounds[:-1], bounds[1:], strict=True)), p, draw(st.integers(1, 700))


@settings(max_examples=150, deadline=None)
@given(orders())
def test_the_merge_of_the_shards_partials_is_the_whole_arrays_computation(case):
    x, cuts, p, chunk_rows = case
    got = merged(x, cuts, p, chunk_rows)
    assert differences(got, reference(x, cuts, p)) == []


def test_the_reference_comparison_can_fail():
    """Negative control of the property: the merge of an order with two shards' contents swapped (positions
    still consistent) differs from the reference of the order itself."""
    x = np.sort(np.random.default_rng(1).normal(size=2000))
    x[[5, 900, 1500]] = np.nan
    cuts = [(0, 700), (700, 1400), (1400, 2000)]
    p = Params(window=64)
    assert differences(merged(x, cuts, p, 500), reference(x, cuts, p)) == []
    swapped = np.concatenate([x[1400:], x[600:1400], x[:600]])
    assert differences(merged(swapped, cuts, p, 500), reference(x, cuts, p)) != []


# ------------------------------------------------------------------ one decomposition: the same bits every way


def pieces_of(x: np.ndarray, cuts: list[tuple[int, int]], p: Params) -> list[ScorePartial]:
    found = partial.pieces(len(x), cuts, partial.valid_counts(x, cuts))
    return [partial.partial(x, piece, p, piece.first) for piece in found]


@pytest.fixture
def scattered() -> tuple[np.ndarray, list[tuple[int, int]], Params]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=5000) + np.linspace(0, 4, 5000)
    x[rng.random(5000) < 0.1] = np.nan
    return x, [(0, 37), (37, 40), (40, 2100), (2100, 2101), (2101, 5000)], Params(window=100)


def test_blocks_of_any_size_and_a_json_round_trip_give_the_same_bits(scattered):
    """A gather feeds its shard's scores in reads of its own, a marker holds the partial as JSON: the merge is
    the same to the last bit (==, not approximately)."""
    x, cuts, p = scattered
    direct = pieces_of(x, cuts, p)
    rng = np.random.default_rng(0)
    for _ in range(3):
        again = []
        for piece in partial.pieces(len(x), cuts, partial.valid_counts(x, cuts)):
            builder = partial.PartialBuilder(piece, p)
            at = piece.first
            while at < piece.first + piece.rows:  # blocks of random sizes
                step = int(rng.integers(1, 300))
                builder.add(x[at : min(at + step, piece.first + piece.rows)])
                at += step
            again.append(ScorePartial.from_json(json.loads(json.dumps(builder.finish().to_json()))))
        assert again == direct
        assert partial.merge(again, p) == partial.merge(direct, p)


def test_verify_adds_a_shards_scores_in_the_manifests_chunks(scattered):
    """``verify`` reads a shard back in record batches of its own: its ChunkedStats adds them in the chunks a
    partial adds them in, so the sums are the same bits (==). Negative control: added as they come, they
    are not."""
    x = scattered[0]
    piece = partial.pieces(len(x), [(0, len(x))], partial.valid_counts(x, [(0, len(x))]))[0]
    want = partial.partial(x, piece, scattered[2], chunk_rows=64).stats
    chunked, as_they_come, at = ChunkedStats(chunk_rows=64), ScoreStats(), 0
    rng = np.random.default_rng(3)
    while at < len(x):
        block = x[at : at + int(rng.integers(1, 200))]
        chunked.add(block)
        as_they_come.add(block)
        at += len(block)
    assert chunked.finish() == want
    assert as_they_come.count == want.count and as_they_come.total != want.total


def test_pieces_out_of_order_or_shifted_are_refused(scattered):
    """Negative controls: a partial whose valid offset is shifted by one, or partials merged out of order, are
    refused (the pieces must follow each other), never merged into other numbers."""
    x, cuts, p = scattered
    parts = pieces_of(x, cuts, p)
    partial.merge(parts, p)
    shifted = parts[2].piece
    moved = Piece(shifted.first, shifted.rows, shifted.valid_before + 1, shifted.total_rows, shifted.total_valid)
    rebuilt = partial.partial(x, moved, p, moved.first)
    with pytest.raises(ReorderError, match="shard 2 does not follow"):
        partial.merge([*parts[:2], rebuilt, *parts[3:]], p)
    with pytest.raises(ReorderError, match="does not follow"):
        partial.merge([parts[1], parts[0], *parts[2:]], p)
    with pytest.raises(ReorderError, match="cut with"):
        partial.merge(parts, Params(window=101))


def test_the_cuts_change_only_the_last_bits(scattered):
    """Other shard cuts (another run's layout) give the same metrics up to rounding noise: the decomposition
    is exact, its floating-point grouping is what differs."""
    x, cuts, p = scattered
    one, cut = partial.of_array(x, p, digits=None), partial.of_array(x, p, cuts, digits=None)
    assert differences({"m": one.metrics, "s": one.score, "p": one.profile},
                       {"m": cut.metrics, "s": cut.score, "p": cut.profile}) == []


# ------------------------------------------------------------------ where the invalid scores are


@pytest.mark.parametrize("first", [True, False])
def test_the_valid_offsets_of_one_source_are_arithmetic(first):
    """One source keeps its invalid rows together at one end: the valid scores before each shard follow from
    their count; counted from the scores, the same. Negative control: the other end gives other counts."""
    rng = np.random.default_rng(2)
    rows, kept = 1000, 137
    x = rng.normal(size=rows)
    if first:
        x[:kept] = np.nan
    else:
        x[rows - kept:] = np.nan
    bounds = sorted({0, rows, *rng.integers(1, rows, 12).tolist(), 137, 863})
    shards = list(zip(bounds[:-1], bounds[1:], strict=True))
    assert valid_prefix(shards, rows, kept, first) == counted_prefix(x, shards)
    assert valid_prefix(shards, rows, kept, not first) != counted_prefix(x, shards)


def test_a_mixtures_invalid_scores_anywhere_are_counted_where_its_order_is_made(tmp_path):
    """A mixture whose sources keep their invalid rows first or last: interleaved, the NaNs lie anywhere (the
    valid counts before its shards are neither end's arithmetic), so its plan counts them; the manifest is the
    same in memory and out of core, and is the merge of the output's own scores cut at its shards."""
    inputs = {}
    for k, (name, n) in enumerate(SOURCES.items()):
        rows = make_rows(n, seed=k + 10, prefix=name)
        for row in rows[k::7]:
            row["score"] = None
        inputs[name] = write_jsonl(tmp_path / "in" / name / "part-0.jsonl", to_lines(rows, seed=k))
    keys = source_keys()
    keys["web"]["invalid_scores"] = "first"
    keys["code"]["invalid_scores"] = keys["math"]["invalid_scores"] = "last"
    cfg = write_config(tmp_path, inputs, sources=keys)
    for out, sets in ((tmp_path / "mem", ["shard_rows=150"]), (tmp_path / "ooc", OOC_MIX)):
        done = invoke("run", cfg, "--output", out, "-q", *[a for s in sets for a in ("--set", s)])
        assert done.exit_code == 0, done.output
    assert output_hashes(tmp_path / "mem") == output_hashes(tmp_path / "ooc")
    manifest = read_manifest(tmp_path / "mem")
    scores = np.array([np.nan if r["score"] is None else r["score"] for r in output_rows(tmp_path / "mem")])
    cuts = [tuple(s["positions"]) for s in manifest["shards"]]
    counted, kept = counted_prefix(scores, cuts), int(np.isnan(scores).sum())
    assert kept and all(counted != valid_prefix(cuts, len(scores), kept, first) for first in (True, False))
    again = partial.of_array(scores, Params(), cuts)
    assert (manifest["metrics"], manifest["profile"], manifest["totals"]["score"]) == \
        (again.metrics, again.profile, again.score)
    assert [s["score"] for s in manifest["shards"]] == again.shards


# ------------------------------------------------------------------ the outputs: the manifest, deep, verify


def test_deep_and_verify_compute_the_manifests_numbers_to_the_last_bit(tmp_path, config_file, jsonl_corpus):
    """A run of several shards: ``stats --deep`` recomputes the manifest's summaries, profile and metrics
    exactly (==), and ``verify``'s reading of each shard gives its summary exactly; negative control: a
    shard's scores changed, both see it."""
    out = tmp_path / "out"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=["shard_rows=37", "window_size=50"])
    doc = Manifest.from_json(read_manifest(out))
    assert len(doc.shards) > 3
    per_shard = deep.shard_scores(doc, out)
    again = deep.recompute(doc, per_shard)
    assert {k: again[k] for k in deep.recorded(doc)} == deep.recorded(doc)
    total = ScoreStats()
    for entry in doc.shards:
        digest = output_shard(out / entry.file, doc.format, doc.scoring(tokens=False), False)
        assert digest.scores.recorded() == entry.score
        total.merge(digest.scores)
    assert total.recorded() == doc.totals["score"]
    changed = [s.copy() for s in per_shard]
    changed[2][0] += 1.0
    assert deep.recompute(doc, changed)["shards"][2] != deep.recorded(doc)["shards"][2]
    assert deep.differences(deep.recorded(doc), {k: deep.recompute(doc, changed)[k] for k in deep.recorded(doc)})


# ------------------------------------------------------------------ the manifest on a store reads no plan array

#: The plan's arrays: the place tasks' pieces of the order, the scores and the running total of the sizes.
PLAN_ARRAYS = ("plan/order-*.bin", "plan/scores-*.bin", "plan/ends-*.bin")
#: NEEDS["manifest"] before: the plan's arrays (and the JSONL records' byte ranges) for the manifest.
OLD_MANIFEST_NEEDS = ("plan/plan.json", "plan/batches.npy", "plan/schema.arrow", "keys/records-*", *PLAN_ARRAYS)


def is_array(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, "*/" + p) for p in PLAN_ARRAYS)


@pytest.mark.parametrize("needs", ["now", "control-old-needs"])
def test_the_manifest_of_a_run_on_a_store_downloads_no_plan_array(tmp_path, s3_server, parquet_corpus, config_file,
                                                                  monkeypatch, needs):
    """Every task on a node of its own, the output and the work folder on one store, then the publishing
    process: it downloads none of the plan's arrays (order, scores, sizes' running total; the gathers' records hold the
    partials), reads at most the bytes of the other state (markers, plan.json, ...: no shard, no array), and
    writes the manifest a local run writes. Negative control: with the old NEEDS entry it downloads all three
    and reads at least their bytes."""
    import uuid

    bucket = s3_server.bucket(f"mp-{uuid.uuid4().hex[:12]}")
    if needs != "now":
        monkeypatch.setitem(work_store.NEEDS, "manifest", OLD_MANIFEST_NEEDS)
    cfg, out, sets = tasks_on_nodes(tmp_path, s3_server, bucket, parquet_corpus, monkeypatch)
    work = {k.partition("/")[2]: n for k, n in sizes(s3_server, bucket, "w").items()}  # relative to the run's folder
    arrays = {k: n for k, n in work.items() if is_array(k)}
    state = sum(n for k, n in work.items() if is_state(k) and not is_array(k))  # markers, plan.json ...
    assert all(any(fnmatch.fnmatchcase(k, p) for k in arrays) for p in PLAN_ARRAYS), work
    downloaded = []
    real = store.download
    monkeypatch.setattr(store, "download", lambda src, dst, *a, **k: downloaded.append(str(src)) or real(src, dst,
                                                                                                       *a, **k))
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    reorder(cfg, parquet_corpus.files, out, method="str", sets=sets)  # publishes
    fetched = [p for p in PLAN_ARRAYS if any(fnmatch.fnmatchcase(d, "*/" + p) for d in downloaded)]
    read = json.loads(s3_server.s3.get_object(Bucket=bucket, Key="out/.run_log.json")["Body"].read())[
        "store_bytes_read"]["publish"]
    if needs == "now":
        assert fetched == [] and read <= state, (fetched, read, state, arrays)
    else:
        assert fetched == list(PLAN_ARRAYS) and read >= sum(arrays.values()), (fetched, read, arrays)
    reorder(config_file, parquet_corpus.files, tmp_path / "local", method="str", sets=SETS)
    assert_same_as_local(objects(s3_server, bucket, "out"), tmp_path / "local")
