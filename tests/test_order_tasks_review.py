"""Review of plan/order_tasks: edge cases where the order tasks must still give plan.build's order
(each test names the input that once broke it, or the edge it covers)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from reorder_cli import methods
from reorder_cli.errors import ReorderError
from reorder_cli.plan import order_tasks as ot

from .conftest import params
from .test_order_tasks import as_tasks, assert_same

METHODS = sorted(methods.METHODS)


@pytest.mark.parametrize("method", ["sorting", "folding", "zigzag", "str", "saw"])
@pytest.mark.parametrize("rows", [5, 12])
def test_a_jit_window_longer_than_the_rows_is_one_short_window(tmp_path, method, rows):
    """window_size 1000 on 4 (or 11) valid rows: the whole sequence is one short window, which one place
    task holds (a task holds 15 to 18 positions at 4096 bytes); it used to be refused as over the budget."""
    scores = np.random.default_rng(rows).random(rows)
    scores[1] = np.nan
    assert_same(tmp_path, scores, np.arange(rows), method, params(method, window_size=1000), "last", 4096)


def test_a_jit_window_longer_than_the_rows_still_refused_when_the_rows_outgrow_a_task(tmp_path):
    scores = np.arange(100, dtype=float)
    with pytest.raises(ReorderError, match="window_size 1000"):
        as_tasks(tmp_path, scores, np.arange(100), "sorting", params("sorting", window_size=1000), "drop", 4096)


@pytest.mark.parametrize("memory", [4096, 1 << 20])
@pytest.mark.parametrize("temperature", [1e308, 1.7e308])
def test_gumbel_keys_that_overflow_to_infinity_are_kept(tmp_path, memory, temperature):
    """temperature 1e308 (valid: finite, >= 0): rank + temperature * Gumbel overflows to +-inf for some
    rows; the last key range must hold +inf keys too (they were lost: IndexError in the place tasks)."""
    with np.errstate(over="ignore"):
        assert_same(tmp_path, np.arange(300, dtype=float), np.arange(300), "sorting",
                    params("sorting", use_gumbel=True, temperature=temperature, window_size=3), "drop", memory)


def test_gumbel_keys_all_infinite_in_a_draw_chunk(tmp_path, monkeypatch):
    """Draw chunks of 2 draws: some chunks hold only +inf keys (their least key is inf)."""
    monkeypatch.setattr(ot, "DRAW_CHUNK", 2)
    with np.errstate(over="ignore"):
        assert_same(tmp_path, np.arange(200, dtype=float), np.arange(200), "sorting",
                    params("sorting", use_gumbel=True, temperature=1.7e308), "first", 4096)


# ------------------------------------------------------------------ edge cases that pass (coverage)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("policy", ["first", "last", "drop"])
def test_draw_chunks_of_seven(tmp_path, monkeypatch, method, policy):
    """DRAW_CHUNK = 7: gumbel states, shuffle / segment draw offsets cross many chunk boundaries."""
    monkeypatch.setattr(ot, "DRAW_CHUNK", 7)
    rng = np.random.default_rng(5)
    scores = np.round(rng.random(500) * 3, 1)
    scores[::9] = np.nan
    p = params(method, window_size=5, use_gumbel=True, temperature=20.0, x_pct=20, y_pct=30, front_is_high=True,
               back_is_high=False)
    assert_same(tmp_path, scores, rng.integers(1, 99, 500), method, p, policy, 8192, files=10)


@pytest.mark.parametrize("method", METHODS)
def test_more_inputs_than_rows(tmp_path, method):
    """40 inputs over 30 rows (most inputs empty), the first 10 rows invalid."""
    scores = np.round(np.random.default_rng(1).random(30), 1)
    scores[:10] = np.nan
    assert_same(tmp_path, scores, np.arange(30), method, params(method, window_size=3), "first", 4096, files=40)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("select", [None, {"method": "top-k", "k": 5}, {"method": "top-r", "r": 0.5},
                                    {"method": "threshold", "threshold": 0.5}])
def test_an_input_of_invalid_rows_only_with_a_selection(tmp_path, method, select):
    rng = np.random.default_rng(3)
    scores = np.concatenate([np.full(10, np.nan), np.round(rng.random(20), 1)])
    assert_same(tmp_path, scores, np.arange(30), method, params(method, window_size=3, x_pct=30, y_pct=40), "last",
                4096, files=5, select=select, seed=3)


@pytest.mark.parametrize("front_is_high", [False, True])
@pytest.mark.parametrize("back_is_high", [False, True])
@pytest.mark.parametrize(("x_pct", "y_pct", "n"), [(70, 45, 300), (100, 100, 7), (100, 0, 9), (0, 100, 9)])
def test_segment_resized(tmp_path, front_is_high, back_is_high, x_pct, y_pct, n):
    p = params("segment", x_pct=x_pct, y_pct=y_pct, front_is_high=front_is_high, back_is_high=back_is_high)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert_same(tmp_path, np.random.default_rng(n).random(n), np.arange(n), "segment", p, "drop", 1 << 20)


@pytest.mark.parametrize("method", ["sorting", "str", "segment", "zigzag"])
@pytest.mark.parametrize("ascending", [True, False])
def test_minus_zero_and_zero_are_one_key(tmp_path, method, ascending):
    """0.0 and -0.0 alternating over 4000 rows: one key value (a range of its own), ties in input order."""
    assert_same(tmp_path, np.array([0.0, -0.0] * 2000), np.arange(4000), method,
                params(method, ascending=ascending), "drop", 16384, files=4)


@pytest.mark.parametrize("method", METHODS)
def test_all_tied(tmp_path, method):
    p = params(method, window_size=3, use_gumbel=True, ascending=False, x_pct=10, y_pct=10)
    assert_same(tmp_path, np.ones(3000), np.arange(3000), method, p, "drop", 16384)


@pytest.mark.parametrize("method", ["sorting", "str", "folding"])
def test_window_equal_to_a_place_chunk(tmp_path, method):
    window = 4096 // (ot.PLACE_BYTES + 24)  # a place task's positions at this budget (spread 1)
    p = params(method, window_size=window, folding_layer=1)
    meta = assert_same(tmp_path, np.random.default_rng(0).random(200), np.arange(200), method, p, "last", 4096)
    assert meta["place"]["chunk"] == window


@pytest.mark.parametrize("method", METHODS)
def test_a_single_row(tmp_path, method):
    assert_same(tmp_path, [3.0], [7], method, params(method, window_size=3, use_gumbel=True), "drop", 4096, files=1)


def test_gumbel_temperature_zero(tmp_path):
    assert_same(tmp_path, np.round(np.random.default_rng(2).random(400), 1), np.arange(400), "sorting",
                params("sorting", use_gumbel=True, temperature=0.0, window_size=4), "drop", 4096)


def test_gumbel_ranges_follow_the_keys_for_a_large_temperature(tmp_path):
    """temperature 1e5 on 100k rows: the keys rank + temperature * Gumbel spread well past [0, m), so
    key ranges cut evenly over [0, m) put ~10x a range's share of the draws in the first and last
    ranges (each sorted in memory: a draw sort has no out-of-core fallback). Ranges follow the keys."""
    n, memory = 100_000, 256 << 10
    p = params("sorting", use_gumbel=True, temperature=1e5)
    _, _, meta = as_tasks(tmp_path, np.random.default_rng(0).random(n), np.ones(n, dtype=np.int64), "sorting", p,
                          "drop", memory, files=2)
    first = meta["sorts"][0]["ranges"]
    counts = [ot.sort_path(tmp_path / "order", k).stat().st_size // 8 for k in range(first, ot.sort_tasks(meta))]
    assert sum(counts) == n
    assert max(counts) <= 2 * memory // ot.DRAW_BYTES
