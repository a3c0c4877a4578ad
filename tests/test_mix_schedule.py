"""reorder_cli.mix.schedule: weights, normalised shares, their exact integral and its inverse; bad weights."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli.errors import ReorderError
from reorder_cli.mix import schedule as sch


@st.composite
def weights(draw):
    """A constant or 1-4 piecewise-linear points (u strictly increasing in [0, 1], w in [0, 3])."""
    if draw(st.booleans()):
        return draw(st.sampled_from([0.0, 0.5, 1.0, 2.5]) | st.floats(0.01, 3.0))
    us = sorted(draw(st.sets(st.integers(0, 20), min_size=1, max_size=4)))
    return [[u / 20, draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 3.0))] for u in us]


@st.composite
def schedules(draw, max_sources=6):
    n = draw(st.integers(1, max_sources))
    ws = draw(st.lists(weights(), min_size=n, max_size=n))
    ws[draw(st.integers(0, n - 1))] = draw(st.floats(0.05, 3.0))  # never all 0
    return sch.build([f"s{i}" for i in range(n)], ws)


def _numeric_cumulative(s: sch.Schedule, u: float, f=None) -> np.ndarray:
    """The integral of the shares from 0 to u by the trapezoid rule on a fine grid (the test's oracle)."""
    grid = np.unique(np.concatenate([np.linspace(0.0, u, 20001), s.grid[s.grid <= u]]))
    vals = (f or s.shares)(grid)
    return ((vals[1:] + vals[:-1]) / 2 * np.diff(grid)[:, None]).sum(axis=0)


def test_constant_weights_give_constant_shares():
    s = sch.build(["web", "code"], [3, 1])
    assert np.allclose(s.shares([0.0, 0.3, 1.0]), [[0.75, 0.25]] * 3)
    assert np.allclose(s.cumulative([0.0, 0.4, 1.0]), [[0.0, 0.0], [0.3, 0.1], [0.75, 0.25]])
    assert np.allclose(s.invert(1, [0.0, 0.1, 0.25]), [0.0, 0.4, 1.0])


def test_a_constant_total_gives_a_quadratic():
    """w0 = 1 - u, w1 = u: the total is 1, so S_1(u) = u^2 / 2 exactly (the log term vanishes)."""
    s = sch.build(["a", "b"], [[[0, 1], [1, 0]], [[0, 0], [1, 1]]])
    u = np.linspace(0, 1, 11)
    assert np.allclose(s.cumulative(u)[:, 1], u**2 / 2, rtol=0, atol=1e-15)
    assert np.allclose(s.invert(1, u**2 / 2), u, atol=1e-12)


def test_a_changing_total_has_the_log_term():
    """w0 = 1, w1 = u: s_1 = u / (1 + u), S_1(u) = u - ln(1 + u)."""
    s = sch.build(["a", "b"], [1, [[0, 0], [1, 1]]])
    u = np.linspace(0, 1, 11)
    assert np.allclose(s.cumulative(u)[:, 1], u - np.log1p(u), rtol=1e-12, atol=1e-16)


def test_ends_are_held_flat():
    s = sch.build(["a", "b"], [[[0.5, 1.0]], [[0.2, 0.0], [0.8, 1.0]]])
    assert np.allclose(s.weights([0.0, 0.1, 0.2, 0.5, 0.8, 1.0]),
                       [[1, 0], [1, 0], [1, 0], [1, 0.5], [1, 1], [1, 1]])


@settings(max_examples=150, deadline=None)
@given(schedules(), st.floats(0.0, 1.0))
def test_cumulative_is_the_integral_of_the_shares(s, u):
    got = s.cumulative([u])[0]
    assert abs(got.sum() - u) < 1e-12
    assert np.allclose(got, _numeric_cumulative(s, u), rtol=0, atol=1e-7)
    assert np.all(s.shares(np.linspace(0, 1, 7)) >= 0)


def test_the_integral_check_catches_a_wrong_integral():
    """Negative control: integrating the raw weights (not the normalised shares) fails the comparison."""
    s = sch.build(["a", "b"], [1, [[0, 0], [1, 3]]])
    assert not np.allclose(s.cumulative([1.0])[0], _numeric_cumulative(s, 1.0, s.weights), atol=1e-7)


@settings(max_examples=150, deadline=None)
@given(schedules(), st.floats(0.0, 1.0), st.data())
def test_invert_is_the_least_u_reaching_the_target(s, fraction, data):
    j = data.draw(st.integers(0, s.n - 1))
    target = fraction * s.total[j]
    u = s.invert(j, [target])[0]
    assert 0.0 <= u <= 1.0
    assert s.cumulative([u])[0, j] >= target - 1e-12
    if u > 1e-9:  # least: a little earlier is short of the target
        assert s.cumulative([u - 1e-9])[0, j] < target + 1e-12


def test_stopped_moves_the_weight_to_the_others():
    s = sch.build(["a", "b", "c"], [1, 1, 2]).stopped(0, 0.4)
    assert np.allclose(s.shares([0.2, 0.4, 0.9]), [[0.25, 0.25, 0.5], [0, 1 / 3, 2 / 3], [0, 1 / 3, 2 / 3]])
    assert np.isclose(s.total[0], 0.1) and np.isclose(s.total.sum(), 1.0)


@pytest.mark.parametrize(("names", "ws", "key", "words"), [
    (["a", "b"], [1, -0.5], "sources[1].weight", "must be >= 0"),
    (["a"], [[[0, 1], [0.5, -1]]], "sources[0].weight[1]", "must be >= 0"),
    (["a"], [[[0, 1], [0.5, 1], [0.5, 2]]], "sources[0].weight[2]", "increase strictly"),
    (["a"], [[[0.6, 1], [0.3, 2]]], "sources[0].weight[1]", "increase strictly"),
    (["a"], [[[0, 1], [1.5, 2]]], "sources[0].weight[1]", "in [0, 1]"),
    (["a"], [[[-0.1, 1]]], "sources[0].weight[0]", "in [0, 1]"),
    (["a"], [[]], "sources[0].weight", "empty list"),
    (["a"], [[[0, 1, 2]]], "sources[0].weight[0]", "a point [u, w]"),
    (["a"], ["1"], "sources[0].weight", "finite number"),
    (["a"], [True], "sources[0].weight", "finite number"),
    (["a"], [float("nan")], "sources[0].weight", "finite number"),
    (["a", "b", "a"], [1, 1, 1], "sources[2].name", "used twice"),
    (["a", ""], [1, 1], "sources[1].name", "non-empty"),
    (["a", "b"], [0, 0], "sources", "0 at u=0"),
    (["a", "b"], [[[0, 1], [0.5, 0], [1, 1]], 0], "sources", "0 at u=0.5"),
    (["a", "b"], [[[0, 1], [0.3, 0]], [[0.7, 0], [1, 1]]], "sources", "0 at u=0.3"),
    ([], [], "sources", "at least one"),
])
def test_bad_weights_are_one_line_errors_naming_the_key(names, ws, key, words):
    with pytest.raises(ReorderError) as err:
        sch.build(names, ws)
    msg = str(err.value)
    assert f"'{key}'" in msg and words in msg and "\n" not in msg


@pytest.mark.parametrize("ws", [[4e-295, 1.0], [[[0, 1.0], [1, 4e-295]], 1e-300], [[[0, 1e-300], [1, 1.0]], 0.0],
                                [[[0, 2.0], [0.5, 1e-200], [1, 3.0]], [[0, 1e-290], [1, 1e-290]]]])
def test_tiny_weights_neither_overflow_nor_lose_the_total(ws):
    s = sch.build(["a", "b"], ws)
    u = np.linspace(0, 1, 9)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        cum = s.cumulative(u)
        back = s.invert(0, cum[:, 0])
    assert np.all(np.isfinite(cum)) and np.allclose(cum.sum(axis=1), u, atol=1e-12)
    assert np.allclose(s.cumulative(back)[:, 0], cum[:, 0], atol=1e-12)
