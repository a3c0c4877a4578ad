"""The building blocks of the order's tasks: generator draws by chunk, JIT windows by chunk, the
arithmetic rank maps, the splitters and the external sort."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli.methods import orderings
from reorder_cli.methods.rank_maps import RankMap, layered_ranks, window_shuffle
from reorder_cli.plan.build import keys_fit
from reorder_cli.plan.external_sort import ExternalSort, choose_splitters, cut_between
from reorder_cli.util.npy import ROW


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
