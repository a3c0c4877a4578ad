"""The layout without the plan's arrays on one node (issue 22): the place tasks' pieces are the plan
(reorder_cli/util/chunked.py), and the layout reads their records and the windows its cuts fall in.

- a property: for random pieces, the views slice, search and sum as NumPy does on the whole arrays,
  and cut the same shards and batches; an off-by-one total of one piece is caught;
- the layout task on a local work folder writes O(shards + batches + pieces) bytes and reads well
  under a byte a row of the pieces; the old assembly of the arrays (24 B a row read, 32 written),
  redone here, breaks both bounds;
- on a store (a moto server), reading the windows by range requests, the layout's node copies the
  schemas, split.json and the pieces' samples only and reads well under a byte a row; copying the
  pieces' running totals where that costs less than the requests, at most 8 B a row; with the old
  table of what it pulls, more than 24 B a row. Every other task then on a node of its own: the bytes
  and manifest of a run in memory.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli import work_store
from reorder_cli.plan import order_tasks as ot
from reorder_cli.plan.layout import layout
from reorder_cli.stages import STAGES
from reorder_cli.stages import order as order_stages
from reorder_cli.util import chunked
from reorder_cli.util.chunked import plan_arrays
from reorder_cli.util.npy import save_npy
from reorder_cli.workdir import SCRATCH_ENV, WorkDir, locate

from .conftest import invoke, output_hashes, read_manifest, reorder
from .test_integrity_state import run_through
from .test_s3 import without_inputs
from .test_s3_output import from_the_environment
from .test_s3_work import prepare

# ------------------------------------------------------------------ the views, against NumPy


def write_pieces(folder: Path, sizes: np.ndarray, cuts: list[int], seed: int) -> tuple[list, dict]:
    """``sizes`` cut at ``cuts`` into pieces written as place tasks write them (task numbers shuffled, as
    the invalid rows' tasks come first or last); returns the pieces in position order and the arrays."""
    rng = np.random.default_rng(seed)
    n = len(sizes)
    order, scores = rng.permutation(n).astype(np.int64), rng.random(n)
    scores[rng.random(n) < 0.1] = np.nan
    bounds = [0, *sorted(cuts), n]
    tasks = rng.permutation(len(bounds) - 1)
    records = [ot.write_piece(folder, int(t), order[a:b], scores[a:b], sizes[a:b])
               for t, a, b in zip(tasks, bounds[:-1], bounds[1:], strict=True)]
    pieces = [ot.piece(folder, int(t), r) for t, r in zip(tasks, records, strict=True)]
    return pieces, {"order": order, "scores": scores, "sizes": sizes, "ends": np.cumsum(sizes, dtype=np.int64)}


def mismatches(pieces: list, whole: dict, probes: list[int], limits: list[tuple[int, int]]) -> list[str]:
    """Where the views over ``pieces`` differ from NumPy on ``whole``: slices from and to every probe,
    single values, searches of every probe value (and of each end, each side), the sum and largest
    size, chunks, and the shards and batches cut at ``limits`` (bytes, rows)."""
    arrays, n, found = plan_arrays(pieces), len(whole["sizes"]), []
    cuts = sorted({0, n, *(min(max(p, 0), n) for p in probes)})
    for name in ("order", "scores", "sizes", "ends"):
        view = getattr(arrays, name)
        for a in cuts:  # a loop over a few probes
            for b in cuts:
                if not np.array_equal(view[a:b], whole[name][a:b], equal_nan=True):
                    found.append(f"{name}[{a}:{b}]")
        if not np.array_equal(np.concatenate(list(view.chunks(7)) or [np.empty(0)]), whole[name], equal_nan=True):
            found.append(f"{name} chunks")
        if n and not np.array_equal(np.asarray([view[i] for i in (0, n // 2, n - 1, -1)]),
                                    whole[name][[0, n // 2, n - 1, -1]], equal_nan=True):
            found.append(f"{name} values")
    ends = whole["ends"]
    values = [*probes, *(int(v) for v in ends), *(int(v) + d for v in ends[:: max(1, n // 20)] for d in (-1, 1))]
    for v in values:  # a loop over probes
        for side in ("left", "right"):
            if arrays.ends.searchsorted(v, side=side) != int(np.searchsorted(ends, v, side=side)):
                found.append(f"searchsorted({v}, {side})")
    if np.sum(arrays.sizes, dtype=np.int64) != int(ends[-1] if n else 0) or \
            np.max(arrays.sizes, initial=0) != int(np.max(whole["sizes"], initial=0)):
        found.append("sum or largest")
    for max_bytes, max_rows in limits:
        if layout(arrays.sizes, max_bytes, max_rows, arrays.ends) != layout(whole["sizes"], max_bytes, max_rows):
            found.append(f"layout({max_bytes}, {max_rows})")
    return found


pieces_of = st.integers(1, 400).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 5_000), min_size=n, max_size=n),  # sizes (zeros too: a run of equal ends)
    st.lists(st.integers(0, n), max_size=12),  # cuts: empty pieces where two coincide
    st.lists(st.integers(-5, 5_000 * n + 5), max_size=12),  # probes: positions and values
    st.integers(0, 2**31)))


@settings(max_examples=60, deadline=None)
@given(pieces_of, st.lists(st.tuples(st.integers(0, 60_000), st.integers(0, 50)), min_size=1, max_size=4))
def test_the_views_read_search_and_cut_as_numpy_on_the_whole_arrays(case, limits):
    sizes, cuts, probes, seed = case
    with tempfile.TemporaryDirectory() as folder:
        pieces, whole = write_pieces(Path(folder), np.asarray(sizes, dtype=np.int64), cuts, seed)
        assert mismatches(pieces, whole, probes, limits) == []


@settings(max_examples=30, deadline=None)
@given(pieces_of, st.data())
def test_an_off_by_one_total_of_a_piece_is_caught(case, data):
    """Negative control: one piece's recorded total one more or less than its sizes' sum (the prefix of
    every piece after it is off, or the sum of all is) fails the comparison."""
    sizes, cuts, probes, seed = case
    with tempfile.TemporaryDirectory() as folder:
        pieces, whole = write_pieces(Path(folder), np.asarray(sizes, dtype=np.int64), cuts, seed)
        k = data.draw(st.integers(0, len(pieces) - 1))
        bad = chunked.Piece(pieces[k].paths, pieces[k].rows, pieces[k].total + data.draw(st.sampled_from([-1, 1])),
                            pieces[k].largest)
        assert mismatches([*pieces[:k], bad, *pieces[k + 1:]], whole, probes, [(1000, 0)]) != []


# ------------------------------------------------------------------ what the layout task reads and writes

#: Rows of the corpus below: enough that a byte a row is far above what the layout reads.
ROWS = (30_000, 20_000)
#: A task's budget just above the runtime's: a few sort and place tasks (not hundreds), ten shards.
SETS = ["rewrite=out-of-core", "memory_limit=270MB", "shard_rows=5000", "invalid_scores=last"]


@pytest.fixture
def many_rows(tmp_path) -> list[Path]:
    """Two JSONL inputs of short records (50,000 in all), every 23rd score null."""
    rng, files = np.random.default_rng(3), []
    for k, n in enumerate(ROWS):
        path = tmp_path / "in" / f"part-{k}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        scores = rng.integers(0, 60, n) / 20
        path.write_text("".join(json.dumps({"id": f"{k}-{i}", "score": None if i % 23 == 0 else float(s)}) + "\n"
                                for i, s in enumerate(scores)))
        files.append(path)
    return files


def files_under(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def check_layout_io(work: WorkDir, before: dict[str, int], read: int) -> None:
    """The layout's files hold O(shards + batches + pieces) bytes, none of them 8 B a row, and it read
    under a byte a row of the pieces (their samples and the windows its cuts fall in)."""
    plan = json.loads(work.plan_file("plan.json").read_text())
    rows, batches = sum(p[1] for p in plan["pieces"]), len(np.load(work.plan_file("batches.npy")))
    made = {name: n for name, n in files_under(work.root).items() if before.get(name) != n}
    small = 64 * (len(plan["shards"]) + batches + len(plan["buckets"]) + len(plan["pieces"]) + len(plan["slices"]))
    small += 16 << 10  # the marker, plan.json's settings
    assert sum(made.values()) <= small and max(made.values()) < 8 * rows, made
    assert read < rows, (read, rows)


def assemble_as_before(work: WorkDir, read: list[int]) -> None:
    """What the layout did before (order_tasks.assemble, build._running_total): every piece read (24 B a
    row: order, scores and sizes) and the plan's arrays and running total written (32 B a row)."""
    plan = json.loads(work.plan_file("plan.json").read_text())
    arrays = plan_arrays([ot.piece(work.plan, t, {"rows": r, "total": s, "largest": m})
                          for t, r, s, m in plan["pieces"]])
    for name in ("order", "scores", "sizes", "ends"):
        save_npy(work.plan_file(f"{name}.npy"), np.asarray(getattr(arrays, name)))
    read[0] += 24 * len(arrays.order)


def test_the_layout_writes_and_reads_o_of_the_shards_and_pieces(tmp_path, config_file, many_rows, monkeypatch):
    """Every task up to the place tasks, then the layout, counting what it reads of the pieces; the old
    assembly, redone on the same folder, fails the same check."""
    out = tmp_path / "out"
    reorder(config_file, many_rows, out, method="saw", sets=SETS, extra=["--executor", "slurm", "--dry-run"])
    work = WorkDir(out.absolute())
    run_through(work, "place")
    assert work.count_finished("place") >= 4
    before, read = files_under(work.root), [0]
    real = chunked.read_records_at

    def counted(fh, dtype, start, count, name=""):
        read[0] += max(0, count) * np.dtype(dtype).itemsize
        return real(fh, dtype, start, count, name)

    monkeypatch.setattr(chunked, "read_records_at", counted)
    run_through(work, "layout")
    check_layout_io(work, before, read[0])
    assemble_as_before(work, read)
    with pytest.raises(AssertionError):
        check_layout_io(work, before, read[0])


# ------------------------------------------------------------------ on a store: what the layout's node reads

#: NEEDS["layout"] before issue 22's change, the place tasks' records now their pieces: every keys column
#: and every piece copied whole.
OLD_LAYOUT_NEEDS = ("keys/sample-*", "keys/scores-*", "keys/sizes-*", "keys/tokens-*", "keys/invalid-*",
                    "keys/records-*", "keys/schema-*", "order/split.json", "plan/order-*", "plan/scores-*",
                    "plan/ends-*", "plan/sample-*")


def mirrored(node: Path) -> list[str]:
    """The work folder's files in a node's mirror (keys/, order/, plan/), relative to the work folder."""
    found = []
    for path in (p for p in node.rglob("*") if p.is_file()):  # a loop over the mirror's few files
        parts = path.relative_to(node).parts
        at = [i for i, part in enumerate(parts) if part in ("keys", "order", "plan")]
        if at:
            found.append("/".join(parts[at[0]:]))
    return sorted(found)


@pytest.mark.parametrize("how", ["range-requests", "copies-when-cheaper", "control-old-table"])
def test_the_layouts_node_reads_the_cuts_windows_from_a_store(tmp_path, s3_server, config_file, many_rows,
                                                              monkeypatch, how):
    """Every task up to the place tasks on a node of its own, then the layout on a fresh one. Reading the
    windows by range requests (pieces whose cuts cost more requests than their bytes are copied instead:
    forced off here), it copies the schemas, split.json and the samples only and reads under a byte a row
    from the store; as it runs (these pieces are small: copied), the pieces' running totals too, at most 8 B
    a row and no other piece; with the old table, more than 24 B a row. Then every other task on a node of
    its own: a run in memory's bytes and manifest."""
    if how == "range-requests":
        monkeypatch.setattr(order_stages, "GET_BYTES", 0)
    if how == "control-old-table":
        monkeypatch.setitem(work_store.NEEDS, "layout", OLD_LAYOUT_NEEDS)
    bucket = s3_server.bucket(f"lay-{uuid.uuid4().hex[:12]}")
    work_dir, out = f"s3://{bucket}/w", tmp_path / "out"
    from_the_environment(monkeypatch, s3_server)
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    prepare(config_file, many_rows, out, "saw", [*SETS, f"work_dir={work_dir}"])
    ran = 0
    for stage in STAGES:  # a loop over stages, then tasks: each on a node of its own
        report = json.loads(invoke("status", out, "--json", "--work-dir", work_dir).stdout)["data"]["stages"].get(stage)
        for i in range(report["tasks"] if report else 0):
            node = tmp_path / f"node-{ran}"
            monkeypatch.setenv(SCRATCH_ENV, str(node))
            result = invoke("task", out, stage, i, "--work-dir", work_dir)
            assert result.exit_code == 0, (stage, i, result.output, result.exception)
            ran += 1
            if stage == "layout":
                layout_node = node
    work = locate(out, work_dir)
    read, rows, pulled = work.finished("layout", 0)["store_bytes_read"], sum(ROWS), mirrored(layout_node)
    if how == "control-old-table":
        assert read > 24 * rows, read
        return
    allowed = ("keys/schema-", "order/split.json", "plan/sample-", "plan/plan.json", "plan/batches", "plan/schema")
    if how == "range-requests":
        assert read < rows, (read, rows)
    else:
        allowed += ("plan/ends-",)
        assert any(n.startswith("plan/ends-") for n in pulled) and read < 8 * rows + (64 << 10), (read, rows)
    assert all(n.startswith(allowed) for n in pulled), pulled
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "driver"))
    reorder(config_file, many_rows, out, method="saw", sets=[*SETS, f"work_dir={work_dir}"])
    reorder(config_file, many_rows, tmp_path / "mem", method="saw", sets=["shard_rows=5000", "invalid_scores=last"])
    assert output_hashes(out) == output_hashes(tmp_path / "mem")
    assert without_inputs(read_manifest(out)) == without_inputs(read_manifest(tmp_path / "mem"))
