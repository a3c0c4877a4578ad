"""The guidance metrics: known answers on hand-built sequences, and the paper's
qualitative claims on generated scores ordered by the real ordering functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reorder_cli.errors import ReorderError
from reorder_cli.methods import order_rows
from reorder_cli.metrics import guidance as metrics

from .conftest import params


def m(values, **kw):
    return metrics.compute(np.asarray(values, dtype=np.float64), metrics.Params(**kw))


# ------------------------------------------------------------------ known answers


def test_sorted_by_hand():
    # 0..7, windows of 2, first/last 25% (2 rows); mu = 3.5, sigma = sqrt(5.25)
    r = m(np.arange(8), window=2, boundary_pct=25)
    sigma = math.sqrt(5.25)
    assert r["rows"] == 8 and r["std"] == pytest.approx(sigma, abs=1e-6)
    assert r["boundary"]["start"] == pytest.approx((0.5 - 3.5) / sigma, abs=1e-6)
    assert r["boundary"]["end"] == pytest.approx((6.5 - 3.5) / sigma, abs=1e-6)
    # window means 0.5, 2.5, 4.5, 6.5: every jump is 2
    assert r["continuity"]["max_jump"] == pytest.approx(2 / sigma, abs=1e-6)
    assert r["continuity"]["mean_jump"] == pytest.approx(2 / sigma, abs=1e-6)
    # every window {2k, 2k+1} has std 0.5
    assert r["local_diversity"] == pytest.approx(0.5 / sigma, abs=1e-6)
    assert r["cycles"]["quarter_range"] == pytest.approx([1 / 7] * 4, abs=1e-6)
    # the profile climbs 6 / sigma = 2.6 sigma, below the noise floor of 2-row bins (5 / sqrt(2) = 3.5 sigma)
    assert (r["cycles"]["rises"], r["cycles"]["falls"]) == (0, 0)


def test_shuffled_by_hand():
    # 2 0 3 1: mu = 1.5, sigma = sqrt(1.25); windows [2, 0] and [3, 1] (means 1 and 2, std 1)
    r = m([2, 0, 3, 1], window=2, boundary_pct=25)
    sigma = math.sqrt(1.25)
    assert r["boundary"] == pytest.approx({"start": 0.5 / sigma, "end": -0.5 / sigma}, abs=1e-6)
    assert r["local_diversity"] == pytest.approx(1 / sigma, abs=1e-6)
    assert r["continuity"]["max_jump"] == pytest.approx(1 / sigma, abs=1e-6)
    assert r["cycles"]["quarter_range"] == [0.0, 0.0, 0.0, 0.0]  # one row a quarter
    assert (r["cycles"]["rises"], r["cycles"]["falls"]) == (0, 0)


def test_sawtooth_by_hand():
    # three teeth 0..999 in windows of 100: window means 49.5, 149.5, ..., 949.5, three times;
    # every window holds 100 consecutive integers (std sqrt((100**2 - 1) / 12))
    teeth = np.tile(np.arange(1000), 3)
    r = m(teeth, window=100, boundary_pct=10)
    sigma = math.sqrt((1000**2 - 1) / 12)
    assert r["std"] == pytest.approx(sigma, abs=1e-6)
    assert r["boundary"]["start"] == pytest.approx((149.5 - 499.5) / sigma, abs=1e-6)  # first 300 rows: 0..299
    assert r["boundary"]["end"] == pytest.approx((849.5 - 499.5) / sigma, abs=1e-6)  # last 300 rows: 700..999
    assert r["continuity"]["max_jump"] == pytest.approx(900 / sigma, abs=1e-6)  # 949.5 -> 49.5
    assert r["continuity"]["mean_jump"] == pytest.approx((27 * 100 + 2 * 900) / 29 / sigma, abs=1e-6)
    assert r["local_diversity"] == pytest.approx(math.sqrt((100**2 - 1) / 12) / sigma, abs=1e-6)
    # 30 bins of 100 rows: each tooth climbs 900 and falls 900 (3.1 sigma, above the 0.5 sigma noise floor)
    assert (r["cycles"]["rises"], r["cycles"]["falls"]) == (3, 2)
    # quarters [0,750) [750,1500) [1500,2250) [2250,3000): ranges 749, 999, 999, 749 of 999
    assert r["cycles"]["quarter_range"] == pytest.approx([749 / 999, 1, 1, 749 / 999], abs=1e-6)
    # a threshold above the tooth height sees no cycle
    assert m(teeth, window=100, cycle_threshold=3.2)["cycles"]["falls"] == 0
    assert m(teeth, window=100, cycle_threshold=3.0)["cycles"]["falls"] == 2


@pytest.mark.parametrize("values", [[3.5] * 50, [0.7]])
def test_constant_scores_and_a_single_row(values):
    r = m(values)
    assert r["rows"] == len(values) and r["std"] == 0.0
    assert r["boundary"] == {"start": None, "end": None}
    assert r["continuity"] == {"max_jump": None, "mean_jump": None}
    assert r["local_diversity"] is None
    assert r["cycles"] == {"rises": 0, "falls": 0, "quarter_range": [None] * 4}


def test_no_valid_score():
    r = m([np.nan, np.nan])
    assert r["rows"] == 0 and r["std"] is None and r["local_diversity"] is None


def test_invalid_rows_are_ignored():
    rng = np.random.default_rng(3)
    values = rng.normal(size=5000)
    plain = m(values, window=64)
    assert m(np.concatenate([[np.nan] * 300, values]), window=64) == plain  # kept first
    assert m(np.concatenate([values, [np.nan] * 7]), window=64) == plain  # kept last
    holes = np.insert(values, [10, 2000, 4999], np.nan)
    assert m(holes, window=64) == plain


def test_chunking_does_not_change_the_result():
    rng = np.random.default_rng(4)
    values = rng.normal(size=30_000)
    values[rng.integers(0, len(values), 500)] = np.nan
    p = metrics.Params(window=100)
    whole = metrics.compute(values, p)
    for chunk in (1, 99, 1000, 7777):
        assert metrics.compute(values, p, chunk_rows=chunk) == whole


def test_a_memory_map_works(tmp_path):
    values = np.random.default_rng(5).normal(size=10_000)
    path = tmp_path / "scores.f64"
    values.tofile(path)
    mapped = np.memmap(path, dtype=np.float64, mode="r")
    assert metrics.compute(mapped, chunk_rows=1000) == metrics.compute(values)


def test_records_its_parameters():
    r = m(np.arange(10.0), window=3, boundary_pct=10)
    assert r["params"] == {"window": 3, "boundary_pct": 10, "cycle_threshold": 0.25, "bins": 200}


@pytest.mark.parametrize(("kw", "text"), [({"window": 0}, "--window"), ({"boundary_pct": 0}, "--boundary-pct"),
                                          ({"boundary_pct": 60}, "--boundary-pct")])
def test_bad_parameters(kw, text):
    with pytest.raises(ReorderError, match=text):
        metrics.Params(**kw)


# ------------------------------------------------------------------ the paper's qualitative claims

N = 40_000


@pytest.fixture(scope="module")
def scores():
    """Skewed, FineWeb-Edu-like scores with 3 decimals (many ties)."""
    return np.round(np.random.default_rng(11).beta(2.5, 4.0, size=N) * 5, 3)


def ordered(scores, method, **over):
    return metrics.compute(scores[order_rows(method, scores, params(method, **over))])


def test_random_has_high_local_diversity_and_no_boundary_sharpening(scores):
    r = ordered(scores, "shuffle")
    assert r["local_diversity"] > 0.95
    assert abs(r["boundary"]["start"]) < 0.15 and abs(r["boundary"]["end"]) < 0.15
    assert r["cycles"]["falls"] == 0
    assert min(r["cycles"]["quarter_range"]) > 0.7  # every quarter sees most of the range


@pytest.mark.parametrize("seed", range(20))
def test_small_windows_do_not_turn_noise_into_cycles(seed):
    """2,000 random scores in 20 bins of 100 rows: the bin means wander by sigma/10, and the
    noise floor (5 standard errors, 0.5 sigma here) keeps that from counting as cycles."""
    values = np.random.default_rng(seed).normal(size=2000)
    cycles = m(values, window=100)["cycles"]
    assert (cycles["rises"], cycles["falls"]) == (0, 0)
    assert m(np.sort(values), window=100)["cycles"]["rises"] == 1


def test_sorting_has_maximal_boundary_sharpening_and_no_local_diversity(scores):
    r = ordered(scores, "sorting")
    assert r["local_diversity"] < 0.05
    # the most a boundary can be sharpened: the lowest 5% first, the highest 5% last
    s, h = np.sort(scores), N * 5 // 100
    mu, sigma = scores.mean(), scores.std()
    assert r["boundary"]["start"] == pytest.approx((s[:h].mean() - mu) / sigma, abs=1e-5)
    assert r["boundary"]["end"] == pytest.approx((s[-h:].mean() - mu) / sigma, abs=1e-5)
    gap = r["boundary"]["end"] - r["boundary"]["start"]
    for method in ("shuffle", "folding", "zigzag", "segment", "str", "saw"):
        other = ordered(scores, method)["boundary"]
        assert other["end"] - other["start"] <= gap + 1e-9, method
    desc = ordered(scores, "sorting", ascending=False)["boundary"]
    assert desc["start"] - desc["end"] == pytest.approx(gap, abs=1e-5)


def test_saw_keeps_continuity_better_than_folding(scores):
    saw, fo = ordered(scores, "saw")["continuity"], ordered(scores, "folding")["continuity"]
    assert saw["max_jump"] < fo["max_jump"] / 2
    assert saw["mean_jump"] < fo["mean_jump"] / 2


def test_jit_raises_local_diversity(scores):
    for method in ("sorting", "str", "saw"):
        plain = ordered(scores, method)["local_diversity"]
        jit = ordered(scores, method, window_size=4000)["local_diversity"]
        assert jit > 2 * plain, method


def test_str_and_saw_revisit_low_scores(scores):
    """STR (S=2, L=3) falls back twice, once a layer change; SAW (S=3, L=2) once a region;
    a curriculum never; random order has no trend to fall from."""
    assert ordered(scores, "str")["cycles"]["falls"] == 2
    assert ordered(scores, "saw")["cycles"]["falls"] == 2
    assert ordered(scores, "str", num_sections=3)["cycles"]["falls"] == 4
    assert ordered(scores, "folding", folding_layer=4)["cycles"]["falls"] == 3
    assert ordered(scores, "sorting")["cycles"]["falls"] == 0
