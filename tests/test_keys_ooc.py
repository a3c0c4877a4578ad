"""The out-of-core plan (keys_ooc) gives exactly what plan.build computes in memory."""

from __future__ import annotations

import tempfile
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli import methods
from reorder_cli.errors import ReorderError
from reorder_cli.methods import orderings
from reorder_cli.methods.rank_maps import RankMap, layered_ranks, window_shuffle
from reorder_cli.plan.external_sort import ExternalSort, choose_splitters, cut_between
from reorder_cli.plan.keys_ooc import ARRANGE_BYTES, OUTPUT_NAMES, PICK_BYTES, keys_fit, order_out_of_core
from reorder_cli.util.npy import ROW

from .conftest import params

METHODS = sorted(methods.METHODS)


def in_memory(scores, sizes, method, p, policy):
    """What plan.build computes: order, scores and sizes at each output position."""
    valid = ~np.isnan(scores)
    valid_rows = np.flatnonzero(valid)
    order = valid_rows[methods.order_rows(method, scores[valid_rows], p)]
    invalid = np.flatnonzero(~valid)
    if policy == "first":
        order = np.concatenate([invalid, order])
    elif policy == "last":
        order = np.concatenate([order, invalid])
    order = order.astype(np.int64)
    return order, scores[order], sizes[order]


def out_of_core(folder: Path, scores, sizes, method, p, policy, memory):
    np.save(folder / "scores.npy", np.asarray(scores, dtype=np.float64))
    np.save(folder / "sizes.npy", np.asarray(sizes, dtype=np.int64))
    *paths, stats = order_out_of_core(folder / "scores.npy", folder / "sizes.npy", method, p, policy, memory,
                                      folder / "work")
    return [np.load(path) for path in paths], stats


def assert_same(folder, scores, sizes, method, p, policy, memory):
    scores = np.asarray(scores, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = in_memory(scores, sizes, method, p, policy)
        (order, got_scores, got_sizes), stats = out_of_core(folder, scores, sizes, method, p, policy, memory)
    assert order.dtype == np.int64 and got_scores.dtype == np.float64 and got_sizes.dtype == np.int64
    assert np.array_equal(order, expected[0])
    assert np.array_equal(got_scores, expected[1], equal_nan=True)
    assert np.array_equal(got_sizes, expected[2])
    assert sorted(p.name for p in (folder / "work").iterdir()) == sorted(OUTPUT_NAMES)  # spills removed
    return stats


def random_params(method, data):
    draw = data.draw
    layers = draw(st.integers(1, 7))
    return params(
        method,
        ascending=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32)),
        window_size=draw(st.sampled_from([0, 1, 2, 3, 5, 8])),
        folding_layer=layers,
        zigzag_layer=layers,
        num_sections=draw(st.integers(1, 5)),
        folding_ratio=draw(st.sampled_from([0.0, 0.05, 0.075, 0.1, 0.225, 0.5, 1.0])),
        use_gumbel=draw(st.booleans()),
        temperature=draw(st.sampled_from([0.0, 0.5, 2.0, 50.0])),
        x_pct=draw(st.sampled_from([0, 1, 5, 30, 70])),
        y_pct=draw(st.sampled_from([0, 2, 30, 45.5])),
        front_is_high=draw(st.booleans()),
        back_is_high=draw(st.booleans()),
    )


score_lists = st.one_of(
    st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, np.nan]), max_size=600),  # heavy ties
    st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.just(np.nan) | st.just(-0.0), max_size=300),
    st.integers(0, 3000).map(lambda n: np.round(np.random.default_rng(n).random(n) * 3, 1)),
)


@settings(max_examples=150, deadline=None)
@given(
    scores=score_lists,
    method=st.sampled_from(METHODS),
    policy=st.sampled_from(["first", "last", "drop"]),
    memory=st.sampled_from([4096, 16384, 1 << 20]),
    data=st.data(),
)
def test_same_as_in_memory(scores, method, policy, memory, data):
    p = random_params(method, data)
    scores = np.asarray(scores, dtype=np.float64)
    sizes = np.random.default_rng(len(scores)).integers(0, 10**6, len(scores))
    n_valid = int(np.count_nonzero(~np.isnan(scores)))
    with tempfile.TemporaryDirectory() as tmp:
        if _expect_budget_error(method, p, n_valid, memory):
            with warnings.catch_warnings(), pytest.raises(ReorderError, match="memory budget"):
                warnings.simplefilter("ignore", UserWarning)
                out_of_core(Path(tmp), scores, sizes, method, p, policy, memory)
        else:
            assert_same(Path(tmp), scores, sizes, method, p, policy, memory)


def _expect_budget_error(method, p, n_valid, memory) -> bool:
    """The two documented refusals: a JIT window or a same-end segment draw over the budget."""
    if method == "segment":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            front, back = orderings.segment_sizes(n_valid, p["x_pct"], p["y_pct"])
        return p["front_is_high"] == p["back_is_high"] and (front + back) * PICK_BYTES > memory
    if method == "shuffle" or p["window_size"] <= 1 or n_valid == 0:
        return False
    layered = method in ("folding", "zigzag") or (method in ("str", "saw") and orderings.transition_spans(
        n_valid, p["num_sections"], p["folding_ratio"]))
    layers = p["zigzag_layer"] if method == "zigzag" else p["folding_layer"]
    spread = min(layers, 171) if layered and layers > 1 else 1
    return p["window_size"] > memory // (ARRANGE_BYTES + 24 * spread)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("policy", ["first", "last", "drop"])
@pytest.mark.parametrize("scores", [[], [np.nan], [np.nan, np.nan], [1.5], [np.nan, 2.0, np.nan]])
def test_tiny_inputs(tmp_path, method, policy, scores):
    assert_same(tmp_path, scores, range(len(scores)), method, params(method, window_size=3), policy, 4096)


@pytest.mark.parametrize("method", METHODS)
def test_many_rows_tiny_budget(tmp_path, method):
    """A few thousand rows in 4 KiB: dozens of partitions and chunks, JIT windows across chunks."""
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=4000), 2)
    scores[rng.random(4000) < 0.02] = np.nan
    p = params(method, window_size=4, use_gumbel=True, temperature=3.0, x_pct=0.5, y_pct=0.2)
    stats = assert_same(tmp_path, scores, rng.integers(0, 999, 4000), method, p, "last", 4096)
    if method == "input":  # nothing to sort: the valid rows are copied in input order
        assert stats["partitions"] == 0
        return
    assert stats["partitions"] >= 20
    assert stats["chunk_rows"] < 100


def test_heavy_ties_need_no_sort(tmp_path):
    """Int scores 0..5 on many rows: every value fills partitions of its own, copied in input order."""
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 6, 20000).astype(float)
    stats = assert_same(tmp_path, scores, np.ones(20000), "str", params("str", ascending=False), "drop", 8192)
    assert stats["single_key_partitions"] == 6
    assert stats["partitions"] == 6


def test_oversized_mixed_partitions_are_partitioned_again(tmp_path):
    """Far more rows than partitions x partition size: a second level of partitions."""
    rng = np.random.default_rng(3)
    scores = rng.normal(size=20000)
    stats = assert_same(tmp_path, scores, np.ones(20000), "sorting", params("sorting"), "drop", 512)
    assert stats["max_depth"] >= 1


def test_one_heavy_value_among_many(tmp_path):
    rng = np.random.default_rng(4)
    scores = np.where(rng.random(20000) < 0.7, 1.0, rng.normal(size=20000))
    stats = assert_same(tmp_path, scores, np.ones(20000), "saw", params("saw", window_size=5), "first", 8192)
    assert stats["single_key_partitions"] >= 1


def test_memory_stays_within_budget(tmp_path):
    """Traced (NumPy + Python) allocations of a 1M-row run stay under an 8 MiB budget."""
    rng = np.random.default_rng(5)
    scores = np.round(rng.random(1_000_000) * 5, 3)
    scores[::1000] = np.nan
    np.save(tmp_path / "scores.npy", scores)
    np.save(tmp_path / "sizes.npy", rng.integers(0, 10**4, 1_000_000))
    del scores
    budget = 8 << 20
    p = params("str", window_size=100)
    tracemalloc.start()
    try:
        *_, stats = order_out_of_core(tmp_path / "scores.npy", tmp_path / "sizes.npy", "str", p, "last", budget,
                                      tmp_path / "work")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats["written"] == 1_000_000
    assert peak < budget


def test_budget_refusals_are_one_line(tmp_path):
    scores = np.arange(1000, dtype=float)
    with pytest.raises(ReorderError, match="window_size 500 .* over the memory budget") as err:
        out_of_core(tmp_path, scores, scores, "sorting", params("sorting", window_size=500), "drop", 4096)
    assert "\n" not in str(err.value)
    p = params("segment", front_is_high=True, back_is_high=True, x_pct=30, y_pct=30)
    with pytest.raises(ReorderError, match="shuffled together in memory") as err:
        out_of_core(tmp_path, scores, scores, "segment", p, "drop", 4096)
    assert "\n" not in str(err.value)


def test_keys_fit():
    assert keys_fit(1000, 1 << 30)
    assert not keys_fit(10**9, 1 << 30)
    assert keys_fit(10**6, 1 << 30) and not keys_fit(10**7, 1 << 20)


# ---------------------------------------------------------------- building blocks


def test_generator_draws_are_chunk_consistent():
    """What the chunked passes rely on: drawing in pieces gives the draws of one call."""
    for seed in (0, 42, 2**40):
        pieces = (1, 0, 333, 666)
        whole = np.random.default_rng(seed).gumbel(size=1000)
        rng = np.random.default_rng(seed)
        assert np.array_equal(whole, np.concatenate([rng.gumbel(size=k) for k in pieces]))
        whole = np.random.default_rng(seed).random(1000)
        rng = np.random.default_rng(seed)
        assert np.array_equal(whole, np.concatenate([rng.random(k) for k in pieces]))


@given(m=st.integers(0, 300), window=st.integers(2, 40), chunks=st.integers(1, 9), seed=st.integers(0, 2**32))
def test_window_shuffle_by_chunks_is_jitter(m, window, chunks, seed):
    rng = np.random.default_rng(seed)
    step = max(window, (m // chunks) // window * window)
    got = np.concatenate([start + window_shuffle(rng, min(step, m - start), window) for start in range(0, m, step)]
                         + [np.empty(0, dtype=np.int64)])
    assert np.array_equal(got, orderings.jitter(m, window, seed))


@given(m=st.integers(0, 200), layers=st.integers(1, 250))
def test_layered_ranks_are_fold_and_zigzag(m, layers):
    q = np.arange(m)
    assert np.array_equal(layered_ranks(q, m, layers, zig=False), orderings.fold(m, layers))
    assert np.array_equal(layered_ranks(q, m, layers, zig=True), orderings.zigzag(m, layers))


@given(
    m=st.integers(0, 400), sections=st.integers(1, 6), ratio=st.sampled_from([0, 0.05, 0.1, 0.225, 0.3, 1.0]),
    layers=st.integers(1, 9), zig=st.booleans(), chunk=st.integers(1, 50),
)
def test_rank_map_is_transition_regions(m, sections, ratio, layers, zig, chunk):
    ranks = RankMap(orderings.transition_spans(m, sections, ratio), layers, zig)
    got = [ranks.ranks(start, min(m, start + chunk)) for start in range(0, m, chunk)]
    expected = orderings.transition_regions(m, sections, ratio, layers, zig)
    assert np.array_equal(np.concatenate(got) if got else np.empty(0, dtype=np.int64), expected)


def test_splitters_isolate_heavy_values():
    sample = np.array([1.0] * 50 + [2.0, 3.0, 4.0, 5.0] * 5 + [0.5] * 30)
    splitters = choose_splitters(sample, 4)
    part = np.searchsorted(splitters, sample, side="right")
    assert len(set(part[sample == 1.0])) == 1
    assert not np.any(np.isin(part[sample != 1.0], part[sample == 1.0]))
    assert len(set(part[sample == 0.5])) == 1
    assert not np.any(np.isin(part[sample != 0.5], part[sample == 0.5]))


def test_cut_between_always_splits_a_mixed_range():
    assert np.array_equal(cut_between(np.array([5.0]), 1.0, 5.0), [5.0])
    cut = cut_between(np.array([7.0]), 1.0, 5.0)
    keys = np.array([1.0, 1.0, 3.0, 5.0])
    assert len(set(np.searchsorted(cut, keys, side="right"))) == 2


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.sampled_from([0.0, -0.0, 1.0, -2.5, 3.0]) | st.floats(-10, 10), max_size=400),
       memory=st.sampled_from([256, 1024, 4096]))
def test_external_sort_is_a_stable_argsort(tmp_path_factory, keys, memory):
    keys = np.asarray(keys, dtype=np.float64)
    rows = np.zeros(len(keys), dtype=ROW)
    rows["row"] = np.arange(len(keys))
    sorter = ExternalSort(tmp_path_factory.mktemp("sort"), memory)
    got = []

    def chunks():
        for start in range(0, len(keys), 7):
            yield keys[start : start + 7], rows[start : start + 7]

    sorter.sort(chunks, len(keys), lambda piece: got.append(piece["row"].copy()))
    got = np.concatenate(got) if got else np.empty(0, dtype=np.int64)
    assert np.array_equal(got, np.argsort(keys, kind="stable"))
