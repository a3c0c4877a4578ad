"""The ordering engine against docs/orderings.md: worked examples, an oracle, and properties."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli import methods
from reorder_cli.methods import orderings

from . import oracle
from .conftest import params


def run(method, scores, **over):
    return methods.order_rows(method, np.asarray(scores, dtype=float), params(method, **over)).tolist()


# ---------------------------------------------------------------- worked examples


def test_fold_and_zigzag_examples():
    assert orderings.fold(10, 2).tolist() == [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]
    assert orderings.fold(10, 3).tolist() == [0, 3, 6, 9, 1, 4, 7, 2, 5, 8]
    assert orderings.zigzag(10, 3).tolist() == [0, 3, 6, 9, 7, 4, 1, 2, 5, 8]


def test_jitter_example():
    assert orderings.jitter(10, 4, 42).tolist() == [3, 2, 1, 0, 7, 6, 4, 5, 8, 9]


@pytest.mark.parametrize("w", [0, 1, None])
def test_jitter_disabled(w):
    assert orderings.jitter(7, w, 1).tolist() == list(range(7))


def test_gumbel_example():
    got = run("sorting", range(10), use_gumbel=True, temperature=1.0, seed=42)
    assert got == [0, 2, 1, 3, 5, 6, 4, 7, 9, 8]


R20 = list(range(20))


@pytest.mark.parametrize(
    ("method", "over", "expected"),
    [
        ("str", dict(num_sections=2, folding_ratio=0.1, folding_layer=2), [*range(9), 10, 9, *range(11, 20)]),
        ("saw", dict(num_sections=2, folding_ratio=0.1, folding_layer=2), [*range(9), 10, 11, 9, *range(12, 20)]),
        (
            "str",
            dict(num_sections=3, folding_ratio=0.1, folding_layer=3),
            [*range(6), 8, 6, 7, 9, 10, 11, 14, 12, 13, *range(15, 20)],
        ),
        (
            "str",
            dict(num_sections=2, folding_ratio=0.1, folding_layer=2, window_size=5, seed=7),
            [2, 0, 4, 1, 3, 5, 6, 10, 8, 7, 14, 12, 13, 9, 11, 18, 17, 15, 19, 16],
        ),
    ],
)
def test_cross_examples(method, over, expected):
    assert run(method, R20, **over) == expected


def test_str_clipped_regions():
    assert run("str", range(10), num_sections=4, folding_ratio=0.3, folding_layer=2) == [0, 2, 4, 1, 3, 5, 7, 6, 8, 9]


def test_saw_descending():
    got = run("saw", range(10), ascending=False, num_sections=2, folding_ratio=0.2, folding_layer=2)
    assert got == [9, 8, 7, 6, 4, 3, 5, 2, 1, 0]


def test_descending_ties_keep_input_order():
    assert run("sorting", [1, 2, 1, 2, 1], ascending=False) == [1, 3, 0, 2, 4]
    assert run("sorting", [1, 2, 1, 2, 1], ascending=True) == [0, 2, 4, 1, 3]


def test_split_points_round_half_to_even():
    # n=5, S=2: split round(2.5) == 2 (not 3); R = round(5*0.1) = round(0.5) = 0 -> no region
    assert run("str", range(5), num_sections=2, folding_ratio=0.1, folding_layer=2) == [0, 1, 2, 3, 4]
    # n=30, r=0.05: R = round(1.5) = 2 ; split 15 -> region [13, 17)
    got = run("str", range(30), num_sections=2, folding_ratio=0.05, folding_layer=2)
    assert got == [*range(13), 13, 15, 14, 16, *range(17, 30)]


def test_segment_warns_and_scales_when_over_100():
    with pytest.warns(UserWarning, match="exceeds 100"):
        assert orderings.segment_sizes(10, 70, 50) == (5, 5)


# ---------------------------------------------------------------- the oracle, row for row

scores_strategy = st.lists(st.integers(0, 6).map(lambda v: v / 2), min_size=0, max_size=120)


@settings(max_examples=150, deadline=None)
@given(
    scores=scores_strategy,
    method=st.sampled_from(["sorting", "folding", "zigzag", "str", "saw"]),
    ascending=st.booleans(),
    layers=st.integers(1, 7),
    sections=st.integers(1, 6),
    ratio=st.sampled_from([0.0, 0.05, 0.075, 0.1, 0.225, 0.25, 0.5, 1.0]),
    window=st.sampled_from([0, 1, 2, 3, 5, 16, 200]),
    seed=st.integers(0, 2**32),
    gumbel=st.booleans(),
)
def test_matches_oracle(scores, method, ascending, layers, sections, ratio, window, seed, gumbel):
    p = params(
        method, ascending=ascending, folding_layer=layers, zigzag_layer=layers, num_sections=sections,
        folding_ratio=ratio, window_size=window, seed=seed, use_gumbel=gumbel, temperature=2.0,
    )
    got = methods.order_rows(method, np.asarray(scores, dtype=float), p).tolist()
    assert got == oracle.order(method, scores, p)


@settings(max_examples=150, deadline=None)
@given(
    scores=scores_strategy,
    x=st.sampled_from([0, 10, 30, 33.3, 50, 70, 100]),
    y=st.sampled_from([0, 10, 30, 45.5, 50, 100]),
    front_high=st.booleans(),
    back_high=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_segment_membership_matches_oracle(scores, x, y, front_high, back_high, seed):
    p = params("segment", x_pct=x, y_pct=y, front_is_high=front_high, back_is_high=back_high, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = methods.order_rows("segment", np.asarray(scores, dtype=float), p).tolist()
        front, middle, back = oracle.segment_members(scores, p)
    assert sorted(got) == list(range(len(scores)))
    assert set(got[: len(front)]) == front
    assert set(got[len(front) : len(front) + len(middle)]) == middle
    assert set(got[len(front) + len(middle) :]) == back


# ---------------------------------------------------------------- every method is a permutation


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=300) | scores_strategy,
    method=st.sampled_from(sorted(methods.METHODS)),
    layers=st.integers(1, 400),
    sections=st.integers(1, 400),
    ratio=st.floats(0, 3),
    window=st.integers(0, 500),
    seed=st.integers(0, 2**63),
)
def test_every_method_is_a_permutation(scores, method, layers, sections, ratio, window, seed):
    p = params(
        method, folding_layer=layers, zigzag_layer=layers, num_sections=sections, folding_ratio=ratio,
        window_size=window, seed=seed, x_pct=min(100, layers / 4), y_pct=min(100, sections / 4),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = methods.order_rows(method, np.asarray(scores, dtype=float), p)
    assert got.dtype == np.int64
    assert np.array_equal(np.sort(got), np.arange(len(scores)))


@settings(max_examples=100, deadline=None)
@given(
    scores=scores_strategy,
    x=st.sampled_from([0, 10, 30, 50, 100]),
    y=st.sampled_from([0, 10, 45.5, 100]),
    front_high=st.booleans(),
    back_high=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_shuffle_and_segment_order_match_oracle(scores, x, y, front_high, back_high, seed):
    """The tool's own definition of the free orders: sort by one ``random()`` key an item."""
    p = params("segment", x_pct=x, y_pct=y, front_is_high=front_high, back_is_high=back_high, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert run("segment", scores, **p) == oracle.order("segment", scores, p)
    assert run("shuffle", scores, seed=seed) == oracle.order("shuffle", scores, params("shuffle", seed=seed))


def test_random_order_draws_chunk_by_chunk():
    rng = np.random.default_rng(5)
    keys = np.concatenate([rng.random(k) for k in (3, 0, 700, 297)])
    assert np.array_equal(orderings.random_order(1000, np.random.default_rng(5)), np.argsort(keys, kind="stable"))


def test_shuffle_is_seeded():
    a = run("shuffle", range(100), seed=1)
    assert a == run("shuffle", range(100), seed=1)
    assert a != run("shuffle", range(100), seed=2)
    assert sorted(a) == list(range(100))
