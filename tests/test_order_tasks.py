"""The order as tasks (plan/order_tasks): split, range sorts and place chunks, run in any order, give
exactly what plan.build computes in memory, for every method, parameter, policy and selection."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli import methods
from reorder_cli.errors import ReorderError
from reorder_cli.plan import order_tasks as ot
from reorder_cli.plan import select as selection
from reorder_cli.util.npy import save_npy

from .conftest import params
from .test_keys_ooc import _expect_budget_error, random_params, score_lists

METHODS = sorted(methods.METHODS)


def in_memory(scores, sizes, method, p, policy, select=None):
    """plan.build's order, scores and sizes at each output position."""
    valid = ~np.isnan(scores)
    if select:
        chosen = selection.select(select, len(scores), selection.in_memory(scores, None), len(scores) or 1)
        rows = np.flatnonzero(chosen.cut.keep(0, scores))
    else:
        rows = np.flatnonzero(valid)
    order = rows[methods.order_rows(method, scores[rows], p)]
    invalid = np.flatnonzero(~valid)
    if policy == "first":
        order = np.concatenate([invalid, order])
    elif policy == "last":
        order = np.concatenate([order, invalid])
    order = order.astype(np.int64)
    return order, scores[order], sizes[order]


def as_tasks(folder: Path, scores, sizes, method, p, policy, memory, files=3, select=None, seed=0):
    """Cut the rows into ``files`` inputs, run every keys, split, sort and place task (sorts and places
    in a shuffled order), and return the plan's arrays and the positions the scatter tasks would read."""
    keys, order, plan = folder / "keys", folder / "order", folder / "plan"
    keys.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(scores) + 1, files - 1)) if files > 1 else np.empty(0, int)
    bounds = np.concatenate([[0], cuts, [len(scores)]]).astype(int)
    rows, valid = [], []
    for f in range(files):
        a, b = bounds[f], bounds[f + 1]
        save_npy(keys / ot.key_name("scores", f), scores[a:b])
        save_npy(keys / ot.key_name("sizes", f), sizes[a:b])
        valid.append(ot.write_order_keys(keys, f, scores[a:b], sizes[a:b], ot.run_direction(method, p)))
        rows.append(int(b - a))
    meta = ot.split(keys, order, plan, rows, valid, method, p, policy, select, memory)
    for k in rng.permutation(ot.sort_tasks(meta)):
        ot.sort_task(keys, order, meta, int(k), memory)
    for a in rng.permutation(ot.place_tasks(meta)):
        ot.place_task(keys, order, plan, meta, int(a))
    got = [np.load(plan / f"{name}.npy") for name, _ in ot.PLAN_ARRAYS]
    return got, ot.positions(plan, 0, len(scores)), meta


def assert_same(folder, scores, sizes, method, p, policy, memory, files=3, select=None, seed=0):
    scores, sizes = np.asarray(scores, dtype=np.float64), np.asarray(sizes, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = in_memory(scores, sizes, method, p, policy, select)
        (order, got_scores, got_sizes), pos, meta = as_tasks(folder, scores, sizes, method, p, policy, memory,
                                                             files, select, seed)
    assert np.array_equal(order, expected[0])
    assert np.array_equal(got_scores, expected[1], equal_nan=True)
    assert np.array_equal(got_sizes, expected[2])
    inverse = np.full(len(scores), -1, dtype=np.int64)
    inverse[expected[0]] = np.arange(len(expected[0]))
    assert np.array_equal(pos, inverse)
    return meta


@settings(max_examples=150, deadline=None)
@given(scores=score_lists, method=st.sampled_from(METHODS), policy=st.sampled_from(["first", "last", "drop"]),
       memory=st.sampled_from([4096, 16384, 1 << 20]), files=st.integers(1, 6), data=st.data())
def test_same_as_in_memory(scores, method, policy, memory, files, data):
    p = random_params(method, data)
    scores = np.asarray(scores, dtype=np.float64)
    sizes = np.random.default_rng(len(scores)).integers(0, 10**6, len(scores))
    n_valid = int(np.count_nonzero(~np.isnan(scores)))
    written = n_valid + (len(scores) - n_valid if policy != "drop" else 0)
    with tempfile.TemporaryDirectory() as tmp:
        if _expect_budget_error(method, p, n_valid, memory) or written == 0:
            with warnings.catch_warnings(), pytest.raises(ReorderError):
                warnings.simplefilter("ignore", UserWarning)
                as_tasks(Path(tmp), scores, sizes, method, p, policy, memory, files)
        else:
            assert_same(Path(tmp), scores, sizes, method, p, policy, memory, files, seed=len(scores))


@pytest.mark.parametrize("method", METHODS)
def test_many_ranges_and_chunks(tmp_path, method):
    """3000 rows in 5 inputs with a budget that cuts every sort into many ranges and the positions into
    many place chunks; heavy ties, invalid rows first."""
    rng = np.random.default_rng(7)
    scores = np.round(rng.random(3000) * 4, 1)
    scores[rng.integers(0, 3000, 200)] = np.nan
    p = params(method, window_size=4 if method != "shuffle" else 0, use_gumbel=True, temperature=3.0,
               x_pct=5, y_pct=5, front_is_high=True, back_is_high=method == "segment")
    meta = assert_same(tmp_path, scores, rng.integers(1, 999, 3000), method, p, "first", 40_000, files=5)
    assert ot.place_tasks(meta) > 5
    if method not in ("input",):
        assert ot.sort_tasks(meta) > 3


@pytest.mark.parametrize("select", [{"method": "top-r", "r": 0.4}, {"method": "threshold", "threshold": 2.0}])
@pytest.mark.parametrize("method", ["saw", "shuffle", "input", "segment"])
def test_with_a_selection(tmp_path, method, select):
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(2000) * 4, 1)
    scores[::17] = np.nan
    p = params(method, window_size=3)
    assert_same(tmp_path, scores, rng.integers(1, 999, 2000), method, p, "last", 30_000, files=4, select=select)


def test_a_range_sorted_in_the_wrong_place_is_caught(tmp_path):
    """Negative control: swapping two sort tasks' outputs changes the order, and the comparison fails."""
    rng = np.random.default_rng(1)
    scores, sizes = rng.random(3000), rng.integers(1, 99, 3000)
    p = params("saw")
    meta = assert_same(tmp_path / "a", scores, sizes, "saw", p, "drop", 40_000)
    assert ot.sort_tasks(meta) > 1
    order_dir = tmp_path / "a" / "order"
    first, second = ot.sort_path(order_dir, 0), ot.sort_path(order_dir, 1)
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    for t in range(ot.place_tasks(meta)):
        ot.place_task(tmp_path / "a" / "keys", order_dir, tmp_path / "a" / "plan", meta, t)
    expected = in_memory(scores, sizes, "saw", p, "drop")[0]
    assert not np.array_equal(np.load(tmp_path / "a" / "plan" / "order.npy"), expected)
