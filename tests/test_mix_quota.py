"""reorder_cli.mix.quota: the budget's tokens per source, the surplus subset, epochs, redistribution, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli.errors import ReorderError
from reorder_cli.mix import quota as qu
from reorder_cli.mix import schedule as sch


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**12), st.lists(st.floats(0.0, 5.0), min_size=1, max_size=6))
def test_largest_remainder_sums_to_the_budget(budget, shares):
    shares[0] = max(shares[0], 0.1)
    q = qu.largest_remainder(budget, np.array(shares))
    exact = budget * np.array(shares) / sum(shares)
    assert q.sum() == budget and np.all(q >= 0) and np.all(np.abs(q - exact) < 1 + 1e-6 * budget / 10**6)


def test_largest_remainder_ties_go_to_the_earlier_source():
    assert qu.largest_remainder(10, np.array([1.0, 1.0, 1.0])).tolist() == [4, 3, 3]


def _plain_surplus(name, tokens, quota, seed):
    """The surplus rule written out plainly (the test's oracle)."""
    perm = np.random.default_rng([seed, qu._name_key(name)]).permutation(len(tokens))
    kept, total = [], 0
    for i in perm:
        if total >= quota:
            break
        kept.append(int(i))
        total += int(tokens[i])
    return sorted(kept)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 2000), min_size=1, max_size=80), st.floats(0.0, 0.999), st.integers(0, 2**32))
def test_a_surplus_is_a_seeded_subset_in_the_sources_own_order(tokens, fraction, seed):
    tokens = np.array(tokens)
    quota = int(fraction * tokens.sum())
    c = qu.contribute("web", tokens, quota, seed, 1)
    assert c.index.tolist() == _plain_surplus("web", tokens, quota, seed)
    assert np.all(np.diff(c.index) > 0) and np.all(c.epoch == 0)  # its own order, once
    assert c.total >= quota and (quota == 0 or c.total - c.tokens.max() < quota)  # reaches, within a document
    assert c.cut == (quota > 0)


def test_the_surplus_subset_depends_on_the_seed_and_the_name():
    tokens = np.ones(100, np.int64)
    a = qu.contribute("web", tokens, 50, 1, 1).index
    assert np.array_equal(a, qu.contribute("web", tokens, 50, 1, 1).index)
    assert not np.array_equal(a, qu.contribute("web", tokens, 50, 2, 1).index)
    assert not np.array_equal(a, qu.contribute("code", tokens, 50, 1, 1).index)


@pytest.mark.parametrize(("quota", "epochs", "index", "epoch"), [
    (10, 1, [0, 1, 2, 3], [0, 0, 0, 0]),  # exactly one epoch
    (13, 2, [0, 1, 2, 3, 0, 1], [0, 0, 0, 0, 1, 1]),  # 10 + a prefix reaching 3 (1 + 2)
    (20, 2, [0, 1, 2, 3] * 2, [0] * 4 + [1] * 4),
    (21, 3, [0, 1, 2, 3] * 2 + [0], [0] * 4 + [1] * 4 + [2]),
])
def test_a_shortfall_repeats_in_its_own_order(quota, epochs, index, epoch):
    c = qu.contribute("math", np.array([1, 2, 3, 4]), quota, 0, 3)
    assert (c.epochs, c.index.tolist(), c.epoch.tolist(), c.cut) == (epochs, index, epoch, False)
    assert c.total >= quota


def test_allot_gives_each_source_its_quota():
    s = sch.build(["web", "code"], [3, 1])
    a = qu.allot(s, [np.full(100, 10), np.full(10, 5)], budget=400, seed=0, max_epochs=[1, 2])
    web, code = a.contributions
    assert (web.quota, code.quota) == (300, 100)
    assert (web.total, web.cut, web.epochs) == (300, True, 1)
    assert (code.total, code.cut, code.epochs) == (100, False, 2)


def test_beyond_max_epochs_is_an_error_naming_the_source_and_the_tokens_missing():
    s = sch.build(["web", "code"], [3, 1])
    with pytest.raises(ReorderError) as err:
        qu.allot(s, [np.full(100, 10), np.full(10, 5)], budget=400, max_epochs=1)
    msg = str(err.value)
    assert "source 'code' (sources[1])" in msg and "50 missing" in msg and "\n" not in msg


def test_redistribute_stops_a_source_that_runs_out_and_the_others_take_its_share():
    """'a' holds 20 tokens; at 50% of 100 it runs out at u=0.4; then 'b' has all the weight."""
    s = sch.build(["a", "b"], [1, 1])
    a = qu.allot(s, [np.full(20, 1), np.full(500, 1)], budget=100, redistribute=True)
    assert [c.quota for c in a.contributions] == [20, 80]
    assert [c.total for c in a.contributions] == [20, 80]
    assert a.stopped[0][0] == "a" and abs(a.stopped[0][1] - 0.4) < 1e-12
    assert np.allclose(a.schedule.shares([0.3, 0.5]), [[0.5, 0.5], [0.0, 1.0]])


def test_redistribute_in_the_order_sources_run_out():
    """Three sources, two short: the one that runs out first stops first, and the other's quota grows."""
    s = sch.build(["a", "b", "c"], [1, 1, 1])
    a = qu.allot(s, [np.full(10, 1), np.full(30, 1), np.full(1000, 1)], budget=120, redistribute=True)
    assert [c.quota for c in a.contributions] == [10, 30, 80]
    assert [name for name, _ in a.stopped] == ["a", "b"]
    assert a.stopped[0][1] < a.stopped[1][1]


@pytest.mark.parametrize(("weights", "tokens", "budget", "key", "words"), [
    ([1, 1], [[5] * 4, [5] * 4], 100, "budget", "cannot be met"),
    ([1, [[0, 0], [0.5, 0], [0.6, 1]]], [[1] * 30, [1] * 1000], 100, "budget", "0 at u=0.3"),
    ([1, 1], [[1] * 4, []], 4, "sources[1]", "no rows"),
    ([1, 1], [[1] * 4, [3, 0, 2]], 4, "sources[1]", "row 1 has 0 tokens"),
    ([1, 1], [[1] * 4, [1] * 4], 0, "budget", ">= 1"),
])
def test_bad_budgets_and_sources_are_one_line_errors_naming_the_key(weights, tokens, budget, key, words):
    s = sch.build(["a", "b"], weights)
    with pytest.raises(ReorderError) as err:
        qu.allot(s, [np.array(t, np.int64) for t in tokens], budget=budget, redistribute=True)
    msg = str(err.value)
    assert f"'{key}'" in msg and words in msg and "\n" not in msg


def test_max_epochs_and_seed_are_checked():
    s = sch.build(["a", "b"], [1, 1])
    with pytest.raises(ReorderError, match=r"'sources\[1\].max_epochs'"):
        qu.allot(s, [np.ones(4, np.int64)] * 2, budget=4, max_epochs=[1, 0])
    with pytest.raises(ReorderError, match=r"'seed'"):
        qu.allot(s, [np.ones(4, np.int64)] * 2, budget=4, seed=-1)
