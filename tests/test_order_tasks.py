"""The order as tasks (plan/order_tasks): split, range sorts and place chunks, run in any order, give
exactly what plan.build computes in memory, for every method, parameter, policy and selection."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reorder_cli import methods
from reorder_cli.errors import ReorderError
from reorder_cli.methods import orderings
from reorder_cli.plan import order_tasks as ot
from reorder_cli.plan import select as selection
from reorder_cli.util.chunked import plan_arrays
from reorder_cli.util.npy import save_npy

from .conftest import params

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


def as_tasks(folder: Path, scores, sizes, method, p, policy, memory, files=3, select=None, seed=0,
             after_sort=None, after_place=None):
    """Cut the rows into ``files`` inputs, run every keys, split, sort and place task (sorts and places
    in a shuffled order), and return the plan's arrays and the positions the scatter tasks would read.
    ``after_sort`` / ``after_place`` (negative controls): called with ``(folder, meta)`` once the sort
    tasks / place tasks are done, to damage their files."""
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
    if after_sort:
        after_sort(folder, meta)
    records = {int(a): ot.place_task(keys, order, plan, meta, int(a)) for a in rng.permutation(ot.place_tasks(meta))}
    if after_place:
        after_place(folder, meta)
    arrays = plan_arrays([ot.piece(plan, t, records[t]) for t in ot.by_position(meta)])
    got = [np.asarray(arrays.order), np.asarray(arrays.scores), np.asarray(arrays.sizes)]
    assert np.array_equal(np.asarray(arrays.ends), np.cumsum(got[2], dtype=np.int64)), "running total"
    return got, ot.positions(plan, 0, len(scores)), meta


def assert_same(folder, scores, sizes, method, p, policy, memory, files=3, select=None, seed=0, **damage):
    """The tasks' plan arrays and positions are plan.build's; ``damage``: :func:`as_tasks`'s hooks."""
    scores, sizes = np.asarray(scores, dtype=np.float64), np.asarray(sizes, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = in_memory(scores, sizes, method, p, policy, select)
        (order, got_scores, got_sizes), pos, meta = as_tasks(folder, scores, sizes, method, p, policy, memory,
                                                             files, select, seed, **damage)
    assert np.array_equal(order, expected[0]), "order"
    assert np.array_equal(got_scores, expected[1], equal_nan=True), "scores"
    assert np.array_equal(got_sizes, expected[2]), "sizes"
    inverse = np.full(len(scores), -1, dtype=np.int64)
    inverse[expected[0]] = np.arange(len(expected[0]))
    assert np.array_equal(pos, inverse), "positions"
    return meta


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


def _expect_budget_error(method, p, n_valid, memory) -> bool:
    """The two documented refusals: a JIT window or a same-end segment draw over the budget."""
    if method == "segment":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            front, back = orderings.segment_sizes(n_valid, p["x_pct"], p["y_pct"])
        return p["front_is_high"] == p["back_is_high"] and (front + back) * ot.PICK_BYTES > memory
    if method == "shuffle" or p["window_size"] <= 1 or n_valid == 0:
        return False
    layered = method in ("folding", "zigzag") or (method in ("str", "saw") and orderings.transition_spans(
        n_valid, p["num_sections"], p["folding_ratio"]))
    layers = p["zigzag_layer"] if method == "zigzag" else p["folding_layer"]
    spread = min(layers, 171) if layered and layers > 1 else 1
    return min(p["window_size"], n_valid) > memory // (ot.PLACE_BYTES + 24 * spread)


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


def _corpus(n, seed, levels, invalid):
    """``n`` scores in ``levels`` tied values (a quarter apart), ``invalid`` of them NaN at random rows."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, n) / 4
    scores[rng.permutation(n)[:invalid]] = np.nan
    return scores


def _segment_three_parts(front_is_high, back_is_high):
    """segment with a non-empty front, middle and back, from the given ends."""
    return st.builds(lambda x, y: ("segment", {"x_pct": x, "y_pct": y, "front_is_high": front_is_high,
                                               "back_is_high": back_is_high}),
                     st.integers(3, 45), st.integers(3, 45))


@st.composite
def _segment_scaled(draw):
    """x_pct + y_pct > 100: both resized, no middle; any ends."""
    return "segment", {"x_pct": draw(st.integers(50, 100)), "y_pct": draw(st.integers(51, 100)),
                       "front_is_high": draw(st.booleans()), "back_is_high": draw(st.booleans())}


@st.composite
def _cross_clipped(draw):
    """STR / SAW whose regions are clipped by the cursor (radius over half a section) or by the ends."""
    sections = draw(st.integers(2, 6))
    ratio = draw(st.sampled_from([0.6, 1.0]) if sections == 2 else st.sampled_from([0.2, 0.25, 0.4, 1.0]))
    return draw(st.sampled_from(["str", "saw"])), {"num_sections": sections, "folding_ratio": ratio,
                                                   "folding_layer": draw(st.integers(2, 7))}


@st.composite
def _layered(draw):
    """FO-L / ZIG-L, most lengths not a multiple of L (layers of two lengths)."""
    layers = draw(st.integers(2, 7))
    return draw(st.sampled_from(["folding", "zigzag"])), {"folding_layer": layers, "zigzag_layer": layers}


@st.composite
def _jit(draw):
    """JIT windows shorter than a place chunk (not dividing it), about one chunk, and longer than n."""
    method = draw(st.sampled_from(["sorting", "folding", "zigzag", "str", "saw"]))
    return method, {"window_size": draw(st.sampled_from([2, 3, 5, 7, 13, 17, 40, 1000])), "folding_layer": 2,
                    "zigzag_layer": 3, "num_sections": 3, "folding_ratio": 0.2}


@st.composite
def _gumbel(draw):
    """sorting with Gumbel keys over many key ranges, with and without JIT."""
    return "sorting", {"use_gumbel": True, "temperature": draw(st.sampled_from([0.5, 3.0, 50.0, 1e3])),
                       "window_size": draw(st.sampled_from([0, 3]))}


@st.composite
def _selected(draw):
    """Any method after a selection whose cut falls inside a run of tied scores."""
    method = draw(st.sampled_from(METHODS))
    select = draw(st.one_of(st.builds(lambda k: {"method": "top-k", "k": k}, st.integers(1, 150)),
                            st.builds(lambda r: {"method": "top-r", "r": r}, st.sampled_from([0.1, 0.35, 0.5, 0.9])),
                            st.builds(lambda t: {"method": "threshold", "threshold": t},
                                      st.sampled_from([0.0, 0.25]))))
    return method, {"window_size": draw(st.sampled_from([0, 3])), "x_pct": 20, "y_pct": 30, "select": select}


#: The shapes where an offset of the order tasks could be off by one; each gets its own examples.
SHAPES = {
    "segment-low-low": _segment_three_parts(False, False),
    "segment-low-high": _segment_three_parts(False, True),
    "segment-high-low": _segment_three_parts(True, False),
    "segment-high-high": _segment_three_parts(True, True),
    "segment-scaled": _segment_scaled(),
    "str-saw-clipped": _cross_clipped(),
    "folding-zigzag": _layered(),
    "jit": _jit(),
    "gumbel": _gumbel(),
    "selection": _selected(),
}


@pytest.mark.parametrize("shape", SHAPES)
@settings(max_examples=20, deadline=None)
@given(n=st.integers(60, 300), corpus=st.integers(0, 2**16), levels=st.integers(3, 9), invalid=st.floats(0, 0.25),
       policy=st.sampled_from(["first", "last", "drop"]), memory=st.sampled_from([4096, 16384]),
       files=st.integers(1, 6), data=st.data())
def test_shapes_same_as_in_memory(shape, n, corpus, levels, invalid, policy, memory, files, data):
    """Each shape (above) against plan.build, every invalid-row policy, under budgets that cut many
    key ranges and place chunks."""
    method, over = data.draw(SHAPES[shape])
    select = over.pop("select", None)
    p = params(method, seed=data.draw(st.integers(0, 2**32)), ascending=data.draw(st.booleans()), **over)
    scores = _corpus(n, corpus, levels, int(n * invalid))
    m = int(np.count_nonzero(~np.isnan(scores)))
    if method == "segment":  # the same-end picks fit in the budget
        memory = max(memory, m * ot.PICK_BYTES)
        if shape != "segment-scaled":  # the shape's three parts are all there
            front, back = orderings.segment_sizes(m, p["x_pct"], p["y_pct"])
            assert front and back and m - front - back
    assume(not _expect_budget_error(method, p, m, memory))
    with tempfile.TemporaryDirectory() as tmp:
        assert_same(Path(tmp), scores, np.arange(n) * 7 % 1000, method, p, policy, memory, files, select, seed=corpus)


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


def _swap_two_sorts(folder, meta):
    assert ot.sort_tasks(meta) > 1
    first, second = ot.sort_path(folder / "order", 0), ot.sort_path(folder / "order", 1)
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)


def _damage_piece(name, dtype):
    """One value of place task 0's ``name`` file off by one (``ends``: the size of its first row)."""
    def damage(folder, meta):
        path = ot.piece_path(folder / "plan", name, 0)
        values = np.fromfile(path, dtype=dtype)
        values[0] += 1
        values.tofile(path)
    return damage


def _swap_two_positions(folder, meta):
    path = ot.pairs_path(folder / "plan", 0)
    pairs = np.fromfile(path, dtype=ot.PAIR)
    pairs["pos"][[0, 1]] = pairs["pos"][[1, 0]]
    pairs.tofile(path)


@pytest.mark.parametrize(("damage", "caught"), [
    ({"after_sort": _swap_two_sorts}, "order"),  # two ranges in each other's place: every array differs
    ({"after_place": _damage_piece("scores", "<f8")}, "scores"),  # one score off: only the scores differ
    ({"after_place": _damage_piece("ends", "<i8")}, "sizes"),
    ({"after_place": _swap_two_positions}, "positions"),  # the scatter tasks' pairs alone
])
def test_damaged_task_outputs_are_caught(tmp_path, damage, caught):
    """Negative controls of :func:`assert_same`: the same run with one task output damaged fails the
    comparison that owns it (assert_same comparing the outputs with themselves would pass them all)."""
    rng = np.random.default_rng(1)
    scores, sizes = rng.random(3000), rng.integers(1, 99, 3000)
    assert_same(tmp_path / "intact", scores, sizes, "saw", params("saw"), "drop", 40_000)
    with pytest.raises(AssertionError, match=f"^{caught}"):
        assert_same(tmp_path / "damaged", scores, sizes, "saw", params("saw"), "drop", 40_000, **damage)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("policy", ["first", "last", "drop"])
@pytest.mark.parametrize("scores", [[np.nan], [np.nan, np.nan], [1.5], [np.nan, 2.0, np.nan]])
def test_tiny_inputs(tmp_path, method, policy, scores):
    p = params(method, window_size=3)
    if policy == "drop" and np.isnan(scores).all():
        with pytest.raises(ReorderError, match="no row has a valid score"):
            as_tasks(tmp_path, np.asarray(scores), np.arange(len(scores)), method, p, policy, 4096)
        return
    assert_same(tmp_path, scores, range(len(scores)), method, p, policy, 4096)


def test_heavy_ties_get_ranges_of_their_own(tmp_path):
    """Int scores 0..5 on many rows: each value fills a key range of its own, copied in input order."""
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 6, 20000).astype(float)
    meta = assert_same(tmp_path, scores, np.ones(20000), "str", params("str", ascending=False), "drop", 65536,
                       files=4)
    splitters = meta["sorts"][0]["splitters"]
    assert {-float(v) for v in range(6)} <= set(splitters)  # every value starts a range (keys are -score)


def test_budget_refusals_are_one_line(tmp_path):
    scores = np.arange(1000, dtype=float)
    with pytest.raises(ReorderError, match="window_size 500 .* over the memory budget") as err:
        as_tasks(tmp_path / "a", scores, scores.astype(int), "sorting", params("sorting", window_size=500), "drop",
                 4096)
    assert "\n" not in str(err.value)
    p = params("segment", front_is_high=True, back_is_high=True, x_pct=30, y_pct=30)
    with pytest.raises(ReorderError, match="shuffled together in memory") as err:
        as_tasks(tmp_path / "b", scores, scores.astype(int), "segment", p, "drop", 4096)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("method", "over"), [("str", {"window_size": 100}), ("shuffle", {}),
                                              ("sorting", {"use_gumbel": True, "temperature": 5.0})])
def test_a_task_stays_within_its_budget(tmp_path, method, over):
    """Traced (NumPy + Python) allocations of each sort and place task of a 1M-row run stay under an 8 MiB
    budget, for score ranges and for draw sorts (the split task holds one chunk of keys and the samples)."""
    import tracemalloc

    rng = np.random.default_rng(5)
    n, budget = 1_000_000, 8 << 20
    scores = np.round(rng.random(n) * 5, 3)
    scores[::1000] = np.nan
    sizes = rng.integers(0, 10**4, n)
    keys, order, plan = tmp_path / "keys", tmp_path / "order", tmp_path / "plan"
    keys.mkdir()
    p = params(method, **over)
    bounds = np.linspace(0, n, 5).astype(int)
    rows, valid = [], []
    for f in range(4):
        a, b = bounds[f], bounds[f + 1]
        save_npy(keys / ot.key_name("scores", f), scores[a:b])
        save_npy(keys / ot.key_name("sizes", f), sizes[a:b])
        valid.append(ot.write_order_keys(keys, f, scores[a:b], sizes[a:b], ot.run_direction(method, p)))
        rows.append(int(b - a))
    del scores, sizes
    meta = ot.split(keys, order, plan, rows, valid, method, p, "last", None, budget)
    assert ot.sort_tasks(meta) >= 8 and ot.place_tasks(meta) >= 8
    peaks, records = [], {}
    for stage, run in (("sort", lambda k: ot.sort_task(keys, order, meta, k, budget)),
                       ("place", lambda k: records.setdefault(k, ot.place_task(keys, order, plan, meta, k)))):
        for k in range({"sort": ot.sort_tasks(meta), "place": ot.place_tasks(meta)}[stage]):
            tracemalloc.start()
            try:
                run(k)
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
    assert max(peaks) < budget
    assert len(plan_arrays([ot.piece(plan, t, records[t]) for t in ot.by_position(meta)]).order) == n


@pytest.mark.parametrize("descending", [False, True])
def test_a_keys_task_sorts_a_big_input_out_of_core_with_the_same_run(tmp_path, descending):
    """Past its budget a keys task sorts its input's run out of core (ExternalSort): the run and the
    sample are the bytes of the in-memory sort; heavy ties keep input order in both directions."""
    rng = np.random.default_rng(11)
    scores = np.round(rng.random(50_000) * 3, 1)
    scores[rng.integers(0, 50_000, 500)] = np.nan
    sizes = rng.integers(1, 999, 50_000)
    small, big = tmp_path / "small", tmp_path / "big"
    assert ot.write_order_keys(big, 0, scores, sizes, descending) == ot.write_order_keys(
        small, 0, scores, sizes, descending, memory=64 << 10)
    for name in ("run", "sample", "invalid"):
        a, b = (folder / ot.key_name(name, 0) for folder in (small, big))
        assert a.read_bytes() == b.read_bytes(), name
    assert 50_000 * ot.RUN_BYTES > 64 << 10  # the small budget did take the out-of-core branch
    assert sorted(p.name for p in small.iterdir()) == sorted(p.name for p in big.iterdir())  # spills removed
