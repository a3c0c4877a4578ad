"""reorder_cli.mix.interleave and .shares: the merge by scheduled time, held as properties over random mixtures.

(a) the share bound in every 1% window; (b) each source's rows come out exactly as its stream, in its own
order; (c) every (source, document, epoch) of the allotment comes out exactly once; (d) the same inputs give
the same arrays. Each checker has a negative control (a wrong interleave it rejects). The sequential
"largest deficit" rule (Megatron's BlendedDataset) is written out plainly as an oracle to compare with.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reorder_cli.errors import ReorderError
from reorder_cli.mix import interleave as il
from reorder_cli.mix import quota as qu
from reorder_cli.mix import schedule as sch
from reorder_cli.mix import shares as sh

from .test_mix_schedule import weights

# ------------------------------------------------------------------ random mixtures


@st.composite
def token_counts(draw, max_docs=60):
    """A source's documents: uniform 1-2000 tokens, skewed (mostly short, a few long), or rows (all 1)."""
    size = draw(st.integers(1, max_docs))
    kind = draw(st.sampled_from(["uniform", "skewed", "rows"]))
    if kind == "rows":
        return np.ones(size, np.int64)
    if kind == "uniform":
        return np.array(draw(st.lists(st.integers(1, 2000), min_size=size, max_size=size)), np.int64)
    t = np.array(draw(st.lists(st.integers(1, 20), min_size=size, max_size=size)), np.int64)
    for i in draw(st.lists(st.integers(0, size - 1), max_size=3)):
        t[i] = draw(st.integers(500, 2000))
    return t


@st.composite
def mixtures(draw, max_sources=6, max_docs=60):
    n = draw(st.integers(1, max_sources))
    ws = draw(st.lists(weights(), min_size=n, max_size=n))
    ws[draw(st.integers(0, n - 1))] = draw(st.floats(0.05, 3.0))
    tokens = [draw(token_counts(max_docs)) for _ in range(n)]
    available = int(sum(t.sum() for t in tokens))
    budget = max(1, int(draw(st.floats(0.2, 2.0)) * available))
    return (sch.build([f"s{i}" for i in range(n)], ws), tokens, budget, draw(st.integers(0, 2**31)),
            draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))


def run(mixture):
    """Allot and interleave; a mixture the sources cannot fill (even redistributed) is rejected."""
    schedule, tokens, budget, seed, max_epochs = mixture
    try:
        allotment = qu.allot(schedule, tokens, budget, seed, max_epochs, redistribute=True)
    except ReorderError:
        assume(False)
    order = il.interleave(allotment.schedule, [c.tokens for c in allotment.contributions])
    return allotment, order


# ------------------------------------------------------------------ the checkers


def in_its_own_order(allotment, source, index) -> bool:
    """(b): source j's rows in the output are its stream's rows 0, 1, 2, ... (its own order, its epochs)."""
    return all(np.array_equal(index[source == j], np.arange(len(c.tokens)))
               for j, c in enumerate(allotment.contributions))


def each_once(allotment, source, index) -> bool:
    """(c): the output's (source, document, epoch) triples are the allotment's, each exactly once."""
    want = {(j, int(d), int(e)) for j, c in enumerate(allotment.contributions)
            for d, e in zip(c.index, c.epoch, strict=True)}
    got = [(int(j), int(allotment.contributions[j].index[k]), int(allotment.contributions[j].epoch[k]))
           for j, k in zip(source, index, strict=True)]
    return len(got) == len(set(got)) and set(got) == want


def within_bound(schedule, source, tokens) -> bool:
    """(a): in every 1% window, every source's realised tokens are within the provable bound."""
    return sh.beyond_bound(sh.measure(schedule, source, tokens)).size == 0


def same_result(first, second) -> bool:
    """(d): two (allotment, order) results hold the same arrays."""
    (a1, o1), (a2, o2) = first, second
    return all(np.array_equal(getattr(o1, f), getattr(o2, f)) for f in ("source", "index", "due", "tokens")) \
        and all(np.array_equal(x.index, y.index) and np.array_equal(x.epoch, y.epoch)
                for x, y in zip(a1.contributions, a2.contributions, strict=True))


def concatenated(allotment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A wrong interleave: the sources back to back."""
    cs = allotment.contributions
    return (np.concatenate([np.full(len(c.tokens), j) for j, c in enumerate(cs)]),
            np.concatenate([np.arange(len(c.tokens)) for c in cs]), np.concatenate([c.tokens for c in cs]))


# ------------------------------------------------------------------ the properties


@settings(max_examples=300, deadline=None)
@given(mixtures())
def test_a_every_window_is_within_the_bound(mixture):
    allotment, order = run(mixture)
    shares = sh.measure(allotment.schedule, order.source, order.tokens)
    assert sh.beyond_bound(shares).size == 0
    assert np.array_equal(shares.realised.sum(axis=0), [c.total for c in allotment.contributions])
    assert np.allclose(shares.targeted.sum(axis=0), shares.realised.sum(axis=0), rtol=1e-9)
    assert np.allclose(shares.realised.sum(axis=1), shares.width)
    # what the sources give against the schedule over the whole run: the quotas' rounding (docs)
    tau = np.array([c.tokens.max() if c.tokens.size else 0 for c in allotment.contributions], np.float64)
    s1 = allotment.schedule.total / allotment.schedule.total.sum()
    mismatch = np.abs(shares.realised.sum(axis=0) - shares.scheduled.sum(axis=0))
    assert np.all(mismatch < 1 + np.maximum(tau, s1 * tau.sum()) + 1e-6 * shares.edges[-1])


@settings(max_examples=200, deadline=None)
@given(mixtures(max_sources=2))
def test_a_two_sources_hold_the_issues_bound_against_targeted(mixture):
    """With two sources the provable bound is one document (the larger source's largest)."""
    allotment, order = run(mixture)
    shares = sh.measure(allotment.schedule, order.source, order.tokens)
    assert sh.beyond_issue_bound(shares, "targeted").size == 0


@settings(max_examples=200, deadline=None)
@given(mixtures())
def test_b_each_source_comes_out_in_its_own_order(mixture):
    allotment, order = run(mixture)
    assert in_its_own_order(allotment, order.source, order.index)
    for c in allotment.contributions:  # within an epoch, documents in the source's own order
        for e in range(c.epochs):
            assert np.all(np.diff(c.index[c.epoch == e]) > 0)


@settings(max_examples=200, deadline=None)
@given(mixtures())
def test_c_every_source_document_epoch_comes_out_once(mixture):
    allotment, order = run(mixture)
    assert each_once(allotment, order.source, order.index)
    for c in allotment.contributions:  # each gives its quota, and less than one document more
        assert c.total >= c.quota and (c.quota == 0 or c.total - c.tokens.max() < c.quota)
    assert sum(c.quota for c in allotment.contributions) == allotment.budget


@settings(max_examples=100, deadline=None)
@given(mixtures())
def test_d_the_same_inputs_give_the_same_arrays(mixture):
    assert same_result(run(mixture), run(mixture))


# ------------------------------------------------------------------ negative controls


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 3), st.lists(st.floats(1.0, 2.0), min_size=3, max_size=3),
       st.lists(st.integers(1000, 2000), min_size=3, max_size=3))
def test_a_control_concatenated_sources_break_the_bound(n, ws, sizes):
    schedule = sch.build([f"s{i}" for i in range(n)], ws[:n])
    tokens = [np.ones(s, np.int64) for s in sizes[:n]]
    allotment = qu.allot(schedule, tokens, min(s for s in sizes[:n]), redistribute=True)
    source, index, toks = concatenated(allotment)
    assert not within_bound(allotment.schedule, source, toks)
    order = il.interleave(allotment.schedule, [c.tokens for c in allotment.contributions])
    assert within_bound(allotment.schedule, order.source, order.tokens)


@settings(max_examples=100, deadline=None)
@given(mixtures())
def test_b_control_a_swapped_pair_is_caught(mixture):
    allotment, order = run(mixture)
    counts = np.bincount(order.source, minlength=len(allotment.contributions))
    assume(counts.max() >= 2)
    j = int(np.argmax(counts))
    first, second = np.flatnonzero(order.source == j)[:2]
    index = order.index.copy()
    index[[first, second]] = index[[second, first]]
    assert not in_its_own_order(allotment, order.source, index)
    assert each_once(allotment, order.source, index)  # the same multiset: only (b) can see it


@settings(max_examples=100, deadline=None)
@given(mixtures())
def test_c_control_a_duplicated_row_is_caught(mixture):
    allotment, order = run(mixture)
    assume(len(order.index) >= 2)
    source, index = order.source.copy(), order.index.copy()
    source[-1], index[-1] = source[0], index[0]
    assert not each_once(allotment, source, index)
    assert not each_once(allotment, order.source[:-1], order.index[:-1])  # and a dropped one


def test_d_control_an_unseeded_surplus_is_caught(monkeypatch):
    mixture = (sch.build(["a", "b"], [1, 1]), [np.ones(200, np.int64), np.ones(200, np.int64)], 200, 0, [1, 1])
    assert same_result(run(mixture), run(mixture))
    real = np.random.default_rng
    monkeypatch.setattr(qu.np.random, "default_rng", lambda seed=None: real())  # the seed ignored
    assert not same_result(run(mixture), run(mixture))


# ------------------------------------------------------------------ the oracle: largest deficit


def largest_deficit(schedule, streams) -> tuple[np.ndarray, np.ndarray]:
    """Megatron's BlendedDataset rule, in tokens: next, the source whose targeted tokens at the current
    output position minus its emitted tokens is largest (ties to the earlier source). Plain and slow."""
    totals = np.array([int(s.sum()) for s in streams])
    nxt, emitted, out_src, out_idx, p = [0] * len(streams), np.zeros(len(streams)), [], [], 0
    while len(out_src) < sum(len(s) for s in streams):
        target = sh.targeted_at(schedule, totals, np.array([p]))[0]
        best = None
        for j, s in enumerate(streams):
            if nxt[j] < len(s) and (best is None or target[j] - emitted[j] > target[best] - emitted[best]):
                best = j
        out_src.append(best)
        out_idx.append(nxt[best])
        emitted[best] += streams[best][nxt[best]]
        p += int(streams[best][nxt[best]])
        nxt[best] += 1
    return np.array(out_src), np.array(out_idx)


def worst_gap(schedule, source, tokens) -> float:
    s = sh.measure(schedule, source, tokens)
    return float(np.abs(s.realised - s.targeted).max())


def deficit_order(schedule, streams) -> il.Order:
    src, idx = largest_deficit(schedule, streams)
    toks = np.concatenate(streams)[np.cumsum([0] + [len(s) for s in streams])[src] + idx]
    return il.Order(src, idx, np.zeros(len(src)), toks)


@settings(max_examples=60, deadline=None)
@given(mixtures(max_sources=4, max_docs=25))
def test_the_oracle_is_an_order_of_the_same_rows(mixture):
    allotment, _ = run(mixture)
    o = deficit_order(allotment.schedule, [c.tokens for c in allotment.contributions])
    assert in_its_own_order(allotment, o.source, o.index) and each_once(allotment, o.source, o.index)


@settings(max_examples=60, deadline=None)
@given(mixtures(max_sources=2, max_docs=25))
def test_with_two_sources_the_merge_is_within_a_document_of_the_largest_deficit_rule(mixture):
    """Two sources: the merge's worst window is at most the deficit rule's plus one document (the merge
    is within one document of targeted; hypothesis has found it worse than the deficit rule by a
    fraction of a token, e.g. documents of 1, 1, 11 / 2 / 1 tokens, 3 sources, budget 4: 0.88 against 0.86)."""
    allotment, order = run(mixture)
    streams = [c.tokens for c in allotment.contributions]
    o = deficit_order(allotment.schedule, streams)
    largest = max(int(s.max()) for s in streams if len(s))
    assert worst_gap(allotment.schedule, order.source, order.tokens) <= \
        worst_gap(allotment.schedule, o.source, o.tokens) + largest + 1e-6


def cluster():
    """Five small sources with the same schedule (2 documents of 2,000 tokens each, weight 1) beside a
    big one (950 documents of 400 tokens, weight 95): 400,000 tokens, windows of 4,000."""
    s = sch.build(["big"] + [f"small{i}" for i in range(5)], [95, 1, 1, 1, 1, 1])
    return s, [np.full(950, 400, np.int64)] + [np.full(2, 2000, np.int64)] * 5


def test_where_the_deficit_rule_is_closer_documents_falling_due_together():
    """The merge's limit: documents of several sources due at the same time come out back to back (10,000
    tokens, more than a 4,000-token window); the sequential deficit rule spaces them out. The merge is
    within its provable bound, not within the issue's; the deficit rule is within the issue's here."""
    s, streams = cluster()
    merge, deficit = il.interleave(s, streams), deficit_order(s, streams)
    m, d = sh.measure(s, merge.source, merge.tokens), sh.measure(s, deficit.source, deficit.tokens)
    assert np.flatnonzero(merge.source > 0)[:6].tolist() == [238, 239, 240, 241, 242, 718]  # back to back
    assert np.flatnonzero(deficit.source > 0)[:6].tolist() == [1, 80, 159, 239, 318, 481]  # spaced out
    assert sh.beyond_bound(m).size == 0 and sh.beyond_issue_bound(m, "targeted").size > 0
    assert sh.beyond_issue_bound(d, "targeted").size == 0
    assert np.abs(m.realised - m.targeted)[:, 0].max() == pytest.approx(3800)
    assert np.abs(d.realised - d.targeted)[:, 0].max() == pytest.approx(1800)


@pytest.mark.parametrize("weights", [[1, 1], [3, 1], [1, 2, 3], [5, 1, 1, 1]])
def test_with_rows_and_constant_weights_the_merge_is_as_close_as_the_largest_deficit_rule(weights):
    """Rows (1 token each), constant weights: the orders differ (the deficit rule is not a merge of
    independent keys) but their worst window is the same."""
    n = len(weights)
    schedule = sch.build([f"s{i}" for i in range(n)], weights)
    allotment = qu.allot(schedule, [np.ones(300, np.int64)] * n, 300, redistribute=True)
    streams = [c.tokens for c in allotment.contributions]
    order = il.interleave(allotment.schedule, streams)
    src, idx = largest_deficit(allotment.schedule, streams)
    assert not np.array_equal(order.source, src) or weights == [1, 1]
    ones = np.ones(len(src), np.int64)
    assert abs(worst_gap(allotment.schedule, order.source, order.tokens)
               - worst_gap(allotment.schedule, src, ones)) < 1e-9
