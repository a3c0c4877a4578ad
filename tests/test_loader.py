"""The ordered reader: its index math (property-tested), reading real outputs, shard checks, and
the output folder read by pyarrow, pandas and Hugging Face datasets."""

from __future__ import annotations

import json
import shutil

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reorder_cli.errors import ReorderError
from reorder_cli.loader import Layout, OrderedReader
from reorder_cli.publish import manifest

from .conftest import invoke, one_line_error, read_manifest, reorder, shard_files
from .loader_helpers import accelerate_micro_batches, chunk, hf_trainer_steps, round_robin


def consumed_micro_batches(layout: Layout, workers: int) -> list[list[list[int]]]:
    """[rank][micro-step] -> positions, as a DataLoader(batch_size=b, num_workers=workers) delivers them."""
    nw = max(workers, 1)
    return [round_robin([chunk(layout.positions(r, w, nw).tolist(), layout.micro_batch) for w in range(nw)])
            for r in range(layout.world)]


def assert_window_contract(layout: Layout, workers: int) -> None:
    per_rank = consumed_micro_batches(layout, workers)
    micro = layout.micro_batches
    for r, batches in enumerate(per_rank):
        assert all(len(b) == layout.micro_batch for b in batches[:-1]), r
        assert len(batches) <= micro
    seen = []
    for t in range(micro):
        step = t // layout.grad_accum
        lo, hi = layout.window(step)
        got = [p for r in range(layout.world) if t < len(per_rank[r]) for p in per_rank[r][t]]
        assert all(lo <= p < hi for p in got), (t, got, lo, hi)
        seen += got
    assert sorted(seen) == list(range(layout.begin, layout.end))  # every position exactly once


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(0, 3), st.integers(0, 200),
       st.integers(0, 220), st.booleans())
def test_layout_every_position_once_in_its_window(world, b, k, workers, n, start, drop_last):
    layout = Layout(n, b, k, world, start, drop_last)
    if drop_last:
        assert (layout.end - layout.begin) % layout.global_batch == 0
    assert_window_contract(layout, workers)
    # owner() agrees with what each rank is handed
    for r in range(world):
        pos = layout.positions(r)
        assert (layout.owner(pos)[2] == r).all()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 150), st.data())
def test_layout_resume_continues_exactly(world, b, k, n, data):
    """Resuming from any sample count, with any new W, b, k, continues with exactly the next positions."""
    first = Layout(n, b, k, world)
    steps_done = data.draw(st.integers(0, first.steps))
    consumed = steps_done * first.global_batch
    w2, b2, k2 = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    second = Layout(n, b2, k2, w2, start=consumed)
    before = sorted(p for r in range(world) for p in first.positions(r) if p < consumed)
    after = sorted(p for r in range(w2) for p in second.positions(r).tolist())
    assert before == list(range(consumed))
    assert after == list(range(consumed, second.end))
    assert second.end - consumed == (n - consumed) // second.global_batch * second.global_batch


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 160), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))
def test_layout_tail_against_accelerate_and_the_hf_trainer(n, world, b, k):
    """The loader keeps the whole windows; the HF Trainer (accelerate's real sharding, the Trainer's step
    arithmetic) feeds the same micro-batches and, on its own, one more step over the M mod k micro-batches per
    rank left, a prefix of the last window; with max_steps = the loader's steps it stops with the loader."""
    pytest.importorskip("accelerate")
    layout = Layout(n, b, k, world)
    g, span = layout.global_batch, world * b
    assert layout.steps == n // g and layout.end == n // g * g
    per_rank = accelerate_micro_batches(n, world, b)
    for r in range(world):
        assert [list(layout.micro_batch_positions(r, t)) for t in range(layout.steps * k)] == \
            per_rank[r][: layout.steps * k]
        assert layout.rank_rows(r) == layout.steps * b * k  # equal on every rank (DDP needs equal step counts)
    windows = [list(range(*layout.window(s))) for s in range(layout.steps)]
    if layout.steps:  # (none: the recipe refuses, test_trainers)
        assert [sorted(s) for s in hf_trainer_steps(n, world, b, k, max_steps=layout.steps)] == windows
    own = [sorted(s) for s in hf_trainer_steps(n, world, b, k)]
    assert own[: layout.steps] == windows
    left = n // span % k  # micro-batches per rank past the last whole window
    assert own[layout.steps :] == ([list(range(layout.end, layout.end + left * span))] if left else [])
    assert n - (layout.end + left * span) < span  # what even the Trainer drops: less than one W·b


def test_layout_worked_example():
    """W=2, b=2, k=2: step 0 is positions 0..7; rank 0 gets [0,1] then [4,5]; rank 1 [2,3] then [6,7]."""
    layout = Layout(20, 2, 2, 2)
    assert layout.global_batch == 8 and layout.end == 16 and layout.steps == 2
    assert layout.positions(0).tolist() == [0, 1, 4, 5, 8, 9, 12, 13]
    assert layout.positions(1, worker=1, workers=2).tolist() == [6, 7, 14, 15]
    with pytest.raises(ReorderError):
        Layout(10, 0)


# ------------------------------------------------------------------ real outputs


def test_recipe_max_steps_are_the_whole_windows(tmp_path, config_file, parquet_corpus):
    pytest.importorskip("torch")
    from reorder_cli.loader import OrderedMapDataset

    out = tmp_path / "out"
    reorder(config_file, parquet_corpus.files, out, method="str")
    ds = OrderedMapDataset(out)  # 560 rows
    assert ds.optimizer_steps(5, 4, 3) == 560 // 60 == Layout(560, 5, 4, 3).steps
    with pytest.raises(ReorderError, match=r"fewer than one global batch W·b·k = 600") as err:
        ds.optimizer_steps(100, 2, 3)
    assert str(out) in str(err.value) and "\n" not in str(err.value)


def ids_in_order(out) -> list[str]:
    """The ids of an output in its order, read straight from the shards the manifest lists."""
    doc = read_manifest(out)
    ids = []
    for s in doc["shards"]:
        if s["format"] == "parquet":
            ids += pq.read_table(out / s["file"], columns=["id"])["id"].to_pylist()
        else:
            from .conftest import read_shard_lines
            ids += [json.loads(line)["id"] for line in read_shard_lines(out / s["file"])]
    return ids


@pytest.fixture(params=["parquet", "jsonl.zst", "jsonl"])
def output(request, tmp_path, config_file, parquet_corpus, jsonl_corpus):
    fmt = request.param
    corpus = parquet_corpus if fmt == "parquet" else jsonl_corpus
    out = tmp_path / f"out-{fmt}"
    reorder(config_file, corpus.files, out, method="str",
            sets=[f"format={fmt}", "shard_rows=170", "row_group_rows=40"])
    assert ids_in_order(out) == corpus.expected_ids("str")
    return out


def test_reader_yields_each_ranks_part_of_every_window(output):
    ids = ids_in_order(output)
    b, k, world = 3, 2, 3
    readers = [OrderedReader(output, micro_batch_size=b, grad_accum_steps=k, rank=r, world_size=world)
               for r in range(world)]
    batches = [list(rd.micro_batches()) for rd in readers]
    layout = readers[0].layout
    assert layout.end == len(ids) // 18 * 18
    for t in range(layout.micro_batches):
        got = sorted(row["id"] for r in range(world) for row in batches[r][t])
        lo = t * world * b
        assert got == sorted(ids[lo : lo + world * b])
    assert readers[1].state_dict() == {"samples_consumed": layout.end}


def test_reader_columns_and_resume(output):
    ids = ids_in_order(output)
    rd = OrderedReader(output, micro_batch_size=4, columns=["id", "score"], start_sample=101)
    rows = list(rd)
    assert set(rows[0]) == {"id", "score"}
    assert [r["id"] for r in rows] == ids[101 : 101 + (len(ids) - 101) // 4 * 4]
    rd.load_state_dict({"samples_consumed": 7})
    assert next(iter(rd))["id"] == ids[7]
    keep = OrderedReader(output, micro_batch_size=7, drop_last=False, start_step=3)
    assert [r["id"] for r in keep] == ids[21:]  # the partial last window kept, never wrapped


def test_reader_refuses_a_missing_or_changed_shard(tmp_path, config_file, parquet_corpus):
    out = tmp_path / "out"
    reorder(config_file, parquet_corpus.files, out, method="str", sets=["shard_rows=200"])
    files = shard_files(out)
    OrderedReader(out, micro_batch_size=2, check_sha256=True)  # the positive twin: intact output reads
    data = bytearray(files[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    files[1].write_bytes(bytes(data))
    OrderedReader(out, micro_batch_size=2)  # the size check alone cannot see it
    with pytest.raises(ReorderError, match=r"00001\.parquet: sha256 differs"):
        OrderedReader(out, micro_batch_size=2, check_sha256=True)
    files[2].write_bytes(files[2].read_bytes() + b"x")
    with pytest.raises(ReorderError, match=r"00002\.parquet: size .* the manifest says"):
        OrderedReader(out, micro_batch_size=2)
    files[0].unlink()
    with pytest.raises(ReorderError, match=r"00000\.parquet: missing") as exc:
        OrderedReader(out, micro_batch_size=2)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------ the output folder as a dataset


def test_bookkeeping_files_are_hidden_and_legacy_names_still_read(tmp_path, config_file, parquet_corpus):
    out = tmp_path / "out"
    reorder(config_file, parquet_corpus.files, out, method="str", sets=["shard_rows=200"])
    names = sorted(p.name for p in out.iterdir())
    assert names == [manifest.MANIFEST_NAME, manifest.RUN_LOG_NAME, "00000.parquet", "00001.parquet", "00002.parquet"]
    assert all(n.startswith(".") for n in manifest.BOOKKEEPING[:1] + manifest.RUN_LOG_NAMES[:1])
    ids = ids_in_order(out)
    # an output written before the rename: manifest.json and run_log.json beside the shards
    legacy = tmp_path / "legacy"
    shutil.copytree(out, legacy)
    (legacy / manifest.MANIFEST_NAME).rename(legacy / manifest.LEGACY_MANIFEST_NAME)
    (legacy / manifest.RUN_LOG_NAME).rename(legacy / manifest.LEGACY_RUN_LOG_NAME)
    assert invoke("stats", legacy).exit_code == 0
    assert invoke("verify", legacy, "-q").exit_code == 0
    assert [r["id"] for r in OrderedReader(legacy, micro_batch_size=1)] == ids
    # a re-run over it replaces the legacy files too
    reorder(config_file, parquet_corpus.files, legacy, method="str", sets=["shard_rows=200"], extra=["--overwrite"])
    assert sorted(p.name for p in legacy.iterdir()) == names
    # no manifest at all: one line
    assert ".manifest.json" in one_line_error(invoke("stats", tmp_path))


def test_pyarrow_and_pandas_read_exactly_the_shards_in_order(tmp_path, config_file, parquet_corpus):
    out = tmp_path / "out"
    reorder(config_file, parquet_corpus.files, out, method="str", sets=["shard_rows=120"])
    assert len(shard_files(out)) == 5
    want = ids_in_order(out)
    assert want == parquet_corpus.expected_ids("str")
    assert pads.dataset(out).to_table()["id"].to_pylist() == want
    assert pq.read_table(out)["id"].to_pylist() == want
    pd = pytest.importorskip("pandas")
    assert pd.read_parquet(out)["id"].tolist() == want
    # the negative control: with the old names beside the shards, pyarrow reads the manifest as Parquet
    (out / manifest.MANIFEST_NAME).rename(out / manifest.LEGACY_MANIFEST_NAME)
    with pytest.raises(Exception, match="manifest.json"):
        pads.dataset(out).to_table()


@pytest.mark.parametrize("fmt", ["parquet", "jsonl.zst", "jsonl"])
def test_hf_datasets_reads_exactly_the_shards_in_order(tmp_path, config_file, parquet_corpus, jsonl_corpus, fmt,
                                                       monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    corpus = parquet_corpus if fmt == "parquet" else jsonl_corpus
    out = tmp_path / "out"
    reorder(config_file, corpus.files, out, method="str", sets=[f"format={fmt}", "shard_rows=150"])
    want = ids_in_order(out)
    cache = str(tmp_path / "hf-cache")
    if fmt == "parquet":
        assert datasets.load_dataset("parquet", data_dir=str(out), split="train", cache_dir=cache)["id"] == want
    assert datasets.load_dataset(str(out), split="train", cache_dir=cache)["id"] == want
    stream = datasets.load_dataset(str(out), split="train", streaming=True)
    assert [r["id"] for r in stream] == want


MEMORY_PROBE = """
import sys, pyarrow as pa
from reorder_cli.loader import OrderedReader
n = sum(1 for _ in OrderedReader(sys.argv[1], micro_batch_size=8))
print(n, pa.default_memory_pool().max_memory())
"""


def test_reader_memory_is_bounded_by_a_row_group_not_a_shard(tmp_path, config_file):
    """One 40k-row shard (about 20 MB of text) in row groups of 1,000 rows: the reader's peak Arrow
    allocation stays near one row group, far below the shard."""
    import subprocess
    import sys

    from .conftest import write_parquet

    rows = [{"id": f"d{i}", "text": f"{i:08d}" * 64, "score": (i * 7919) % 1000 / 10} for i in range(40_000)]
    inp = write_parquet(tmp_path / "in" / "big.parquet", rows, row_group_size=5000)
    out = tmp_path / "out"
    reorder(config_file, [inp], out, method="sorting", sets=["row_group_rows=1000", "shard_size=0"])
    meta = pq.ParquetFile(shard_files(out)[0]).metadata
    assert meta.num_row_groups == 40
    shard_bytes = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(out)], capture_output=True, text=True, check=True)
    n, peak = map(int, done.stdout.split())
    assert n == 40_000
    assert peak < shard_bytes / 4, (peak, shard_bytes)
    # the control: reading the shard whole allocates about the shard
    whole = "import sys, pyarrow as pa, pyarrow.parquet as pq; pq.read_table(sys.argv[1]); " \
            "print(pa.default_memory_pool().max_memory())"
    done = subprocess.run([sys.executable, "-c", whole, str(shard_files(out)[0])], capture_output=True, text=True,
                          check=True)
    assert int(done.stdout) > shard_bytes / 2


def test_hf_datasets_pitfalls_the_readme_names(tmp_path, config_file, parquet_corpus, monkeypatch):
    """split_dataset_by_node and set_epoch on a real output, as the README's recipes say."""
    datasets = pytest.importorskip("datasets")
    from datasets.distributed import split_dataset_by_node

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    reorder(config_file, parquet_corpus.files, out, method="str", sets=["shard_rows=70"])  # 8 shards
    ids = ids_in_order(out)
    shards = [f.name for f in shard_files(out)]
    assert len(shards) == 8
    stream = datasets.load_dataset(str(out), split="train", streaming=True)
    # n_shards % W == 0: whole shards per rank (rank 1 starts mid-curriculum)
    rank1 = [r["id"] for r in split_dataset_by_node(stream, rank=1, world_size=4)]
    assert rank1 == ids[70:140] + ids[350:420]  # shards r and r + W
    # otherwise every rank reads all and keeps rows i % W == r: strided, the order holds
    rank1 = [r["id"] for r in split_dataset_by_node(stream, rank=1, world_size=3)]
    assert rank1 == ids[1::3]
    # map-style: one contiguous chunk per rank
    table = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert split_dataset_by_node(table, rank=1, world_size=2)["id"] == ids[280:]
    # set_epoch(1) permutes the shard order even without .shuffle()
    stream.set_epoch(1)
    again = [r["id"] for r in stream]
    assert sorted(again) == sorted(ids) and again != ids


def test_without_torch_the_torch_datasets_name_the_extra():
    import subprocess
    import sys

    probe = ("import sys; sys.modules['torch'] = None\n"
             "from reorder_cli.loader import OrderedReader, Layout  # the pure-Python part still imports\n"
             "try:\n    from reorder_cli.loader import OrderedDataset\nexcept ImportError as exc:\n    print(exc)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "the torch datasets need the optional extra: pip install 'reorder[torch]'"
