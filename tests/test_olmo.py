"""``export: olmo`` and its recipe, under OLMo-core's own dataset and data loader (ai2-olmo-core, CPU).

The output is a real run with ``--set tokenizer=`` (a tiny tokenizer built in the test) and ``--set
export=olmo``: the token pieces, ``OUT/olmo/`` and the manifest's sections are the tool's, and the stream
equals the ``tokenizers`` library's own tokenization of the manifest's order. The exporter's refusals use
pieces made with numpy (``make_pieces``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import olmo_core.data as od
import pyarrow.parquet as pq
import pytest
from olmo_core.data.numpy_dataset import NumpyFSLDataset

from reorder_cli.errors import ReorderError
from reorder_cli.export import EXPORTS, ExportInput
from reorder_cli.export import olmo as olmo_export
from reorder_cli.loader import olmo as recipe
from reorder_cli.loader.audit_log import AuditLog
from reorder_cli.publish import manifest

from .conftest import invoke, make_rows, read_manifest, reorder, write_parquet
from .mds_helpers import tiny_tokenizer, tokenize
from .test_trainers import SIGNALLED

pytestmark = pytest.mark.trainer

VOCAB, EOS = 500, 1  # make_pieces' random pieces; the run's tokenizer (tiny_tokenizer) has EOS = 1 too
L, B = 16, 4  # sequence length, instances per global batch


def make_pieces(folder: Path, rows: list[int], seed: int = 0, dtype=np.uint16) -> tuple[list[Path], list[Path]]:
    """A token piece a shard (random documents of 1..30 ids, then EOS), as the tokens spec writes them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokens, lengths = [], []
    for i, n in enumerate(rows):
        lens = rng.integers(1, 31, size=n) + 1  # ids + EOS
        ids = rng.integers(2, VOCAB, size=int(lens.sum())).astype(dtype)
        ids[np.cumsum(lens) - 1] = EOS
        tokens.append(folder / f"{i:05d}.tokens")
        lengths.append(folder / f"{i:05d}.lengths.npy")
        tokens[-1].write_bytes(ids.astype(np.dtype(dtype).newbyteorder("<")).tobytes())
        np.save(lengths[-1], lens.astype(np.int64))
    return tokens, lengths


def stream_of(tokens: list[Path], dtype=np.uint16) -> np.ndarray:
    return np.concatenate([np.fromfile(p, dtype=dtype) for p in tokens])


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """A real STR run (4 shards) with ``--set tokenizer=`` (a tiny WordLevel tokenizer built here, EOS = 1)
    and ``--set export=olmo``: the token pieces, ``OUT/olmo/`` and the manifest's sections are the tool's."""
    base = tmp_path_factory.mktemp("olmo")
    inp = write_parquet(base / "in" / "a.parquet", make_rows(305, seed=3))
    (base / "cfg.yaml").write_text("score_field: score\nseed: 42\n")
    folder = base / "out"
    tok = tiny_tokenizer(base / "tokenizer.json")
    sets = ["shard_rows=100", "row_group_rows=30", f"tokenizer={tok}", 'eos_token="[EOS]"', "export=olmo"]
    reorder(base / "cfg.yaml", [inp], folder, method="str", sets=sets)
    doc = read_manifest(folder)
    assert doc["export"]["format"] == "olmo" and (doc["tokens"]["eos"], doc["tokens"]["bos"]) == (EOS, None)
    np.save(base / "independent.npy", np.concatenate(tokenize(tok, texts_in_order(folder))))
    return folder


def texts_in_order(out: Path) -> list[str]:
    """The texts of the manifest's order (its row shards, read with pyarrow)."""
    return [t for s in read_manifest(out)["shards"] for t in pq.read_table(out / s["file"]).column("text").to_pylist()]


def independent(out: Path) -> np.ndarray:
    """The ``tokenizers`` library's tokenization of the manifest's order (ids + EOS a document), made in the fixture."""
    return np.load(out.parent / "independent.npy")


def vocab(out: Path) -> int:
    return read_manifest(out)["tokens"]["tokenizer"]["vocab_size"]


def pieces_of(out: Path) -> tuple[list[Path], list[Path]]:
    return sorted((out / "tokens").glob("*.tokens")), sorted((out / "tokens").glob("*.lengths.npy"))


# ------------------------------------------------------------------ the exporter


def test_the_export_is_the_stream_in_one_file_with_its_document_boundaries(out, tmp_path):
    tokens, lengths = pieces_of(out)
    stream = stream_of(tokens)
    assert np.array_equal(np.fromfile(out / "olmo" / "tokens.npy", dtype=np.uint16), stream)
    assert sum(p.stat().st_size for p in tokens) % (2 * L) != 0 and tokens[0].stat().st_size % (2 * L) != 0
    ends = np.cumsum(np.concatenate([np.load(p) for p in lengths]))
    gz = (out / "olmo" / "tokens.csv.gz").read_bytes()
    assert gz[3:8] == b"\0" * 5  # gzip header: no file name (FLG), no modification time: same boundaries, same bytes
    lines = gzip.decompress(gz).decode().splitlines()
    assert lines == [f"{s},{e}" for s, e in zip(np.r_[0, ends[:-1]], ends, strict=True)]
    assert np.all(stream[ends - 1] == EOS)
    export = read_manifest(out)["export"]
    assert export["format"] == "olmo" and export["dtype"] == "uint16" and export["tokens"] == stream.size
    assert EXPORTS["olmo"] is olmo_export
    assert export["documents"] == 305 == len(lines)
    for f in export["files"]:
        data = (out / f["file"]).read_bytes()
        assert (f["bytes"], f["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    # deterministic: the same pieces give the same bytes and the same entry (gzip header without name or time)
    (tmp_path / "again").mkdir()
    again = olmo_export.assemble(ExportInput(shards=[Path("x")] * len(tokens), row_format="parquet",
                                             token_files=tokens, lengths=lengths, dtype=np.dtype("uint16")),
                                 tmp_path / "again")
    assert again == export
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["tokens.csv.gz", "tokens.npy"]


@pytest.mark.parametrize(("lengths", "first"), [([0, 5, 0, 123456789], 0), ([7], 0), ([3, 0, 10], 10**15), ([], 4)])
def test_the_boundary_lines_are_decimal_start_end(lengths, first):
    lengths = np.array(lengths, dtype=np.int64)
    ends = first + np.cumsum(lengths, dtype=np.int64)
    want = "".join(f"{s},{e}\n" for s, e in zip(ends - lengths, ends, strict=True))
    assert olmo_export._boundaries(lengths, first).decode() == want


def _input(tokens, lengths, **over) -> ExportInput:
    kw = {"shards": [Path(f"{i:05d}.parquet") for i in range(len(tokens))], "row_format": "parquet",
          "token_files": tokens, "lengths": lengths, "dtype": np.dtype("uint16"), **over}
    return ExportInput(**kw)


def test_export_refusals_name_the_file_and_leave_nothing(tmp_path):
    tokens, lengths = make_pieces(tmp_path / "p", [5, 7], seed=1)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ReorderError, match="set tokenizer: PATH"):
        olmo_export.assemble(_input(tokens, lengths, token_files=None), dest)
    with pytest.raises(ReorderError, match="token dtype int16 is not an unsigned"):
        olmo_export.assemble(_input(tokens, lengths, dtype=np.dtype("int16")), dest)
    with pytest.raises(ReorderError, match="2 shards but 1 token files"):
        olmo_export.assemble(_input(tokens[:1], lengths[:1], shards=[Path("a"), Path("b")]), dest)
    # a token piece shorter than its lengths say (a truncated or changed piece)
    tokens[1].write_bytes(tokens[1].read_bytes()[:-2])
    with pytest.raises(ReorderError, match=r"00001\.tokens: holds \d+ bytes, but its lengths"):
        olmo_export.assemble(_input(tokens, lengths), dest)
    tokens[1].unlink()
    with pytest.raises(ReorderError, match=r"00001\.tokens: is missing"):
        olmo_export.assemble(_input(tokens, lengths), dest)
    lengths[0].write_bytes(b"not an npy file")
    with pytest.raises(ReorderError, match=r"00000\.lengths\.npy: not a readable lengths file"):
        olmo_export.assemble(_input(tokens, lengths), dest)
    np.save(lengths[0], np.array([[1, 2]]))
    with pytest.raises(ReorderError, match=r"00000\.lengths\.npy: expected a 1-D array"):
        olmo_export.assemble(_input(tokens, lengths), dest)
    assert list(dest.iterdir()) == []


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    tokens, lengths = make_pieces(tmp_path / "p", [5, 7], seed=2)
    dest = tmp_path / "dest"
    dest.mkdir()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(olmo_export, "_boundaries", boom)
    with pytest.raises(OSError, match="tokens.csv.gz"):
        olmo_export.assemble(_input(tokens, lengths), dest)
    assert list(dest.iterdir()) == []


# ------------------------------------------------------------------ OLMo-core's dataset and loader


def test_the_runs_token_stream_is_an_independent_tokenization_of_the_manifest_order(out):
    tokens, lengths = pieces_of(out)
    stream = independent(out)
    assert np.array_equal(stream_of(tokens), stream)
    assert np.array_equal(np.fromfile(out / "olmo" / "tokens.npy", dtype=np.uint16), stream)
    docs = tokenize(out.parent / "tokenizer.json", texts_in_order(out))
    assert np.array_equal(np.concatenate([np.load(p) for p in lengths]), [len(d) for d in docs])


def test_instance_i_is_tokens_i_L_of_the_stream(out, tmp_path):
    stream = independent(out)
    ds = recipe.olmo_dataset(out, sequence_length=L, work_dir=tmp_path / "w")
    assert isinstance(ds, NumpyFSLDataset) and len(ds) == stream.size // L
    got = np.stack([ds[i]["input_ids"].numpy() for i in range(len(ds))])
    assert np.array_equal(got, stream[: len(ds) * L].reshape(-1, L))


def test_one_file_a_shard_would_not_keep_the_mapping(out):
    """Why the export is one file: OLMo-core drops each file's remainder, so per-shard files shift instances."""
    tokens = pieces_of(out)[0]
    stream = stream_of(tokens)
    ds = NumpyFSLDataset(*tokens, sequence_length=L, pad_token_id=EOS, eos_token_id=EOS, vocab_size=vocab(out),
                         dtype=np.uint16)
    got = np.stack([ds[i]["input_ids"].numpy() for i in range(len(ds))])
    assert len(ds) < stream.size // L
    assert not np.array_equal(got, stream[: len(ds) * L].reshape(-1, L))


def rank_batches(out: Path, work: Path, world: int, rank: int, workers: int = 0, offsets: bool = False,
                 log: Path | None = None) -> list[np.ndarray]:
    """The recipe's loader on one data-parallel rank (no process group: rank and world given), one epoch;
    its instance indices per batch (and the audit log written as a trainer would)."""
    loader = recipe.olmo_loader(out, sequence_length=L, global_batch_size=B * L, work_dir=work, dp_world_size=world,
                                dp_rank=rank, fs_local_rank=rank, num_workers=workers, num_threads=0)
    return run_epoch(loader, rank if world > 1 else None, offsets, log)


def run_epoch(loader, rank, offsets=False, log=None) -> list[np.ndarray]:
    audit = AuditLog(log, rank) if log else None
    loader.reshuffle(epoch=1)
    stream = np.fromfile(loader.dataset.paths[0], dtype=np.uint16)  # the export (== the pieces: tested above)
    seen = []
    for step, batch in enumerate(loader):
        ids = batch["index"].numpy()
        rows = batch["input_ids"].numpy()
        assert np.array_equal(rows, stream[(ids[:, None] * L + np.arange(L))])  # instance i = tokens [iL, (i+1)L)
        seen.append(ids)
        if audit:
            recipe.log_batch(audit, step, batch, L, offsets)
    loader.reset()
    if audit:
        audit.close()
    return seen


@pytest.mark.parametrize(("world", "workers"), [(1, 0), (2, 0), (2, 2)])
def test_the_recipe_yields_global_batch_b_as_instances_bB_to_b1B(out, tmp_path, world, workers):
    n = (stream_of(pieces_of(out)[0]).size // L) // B * B  # whole global batches
    ranks = [rank_batches(out, tmp_path / "w", world, r, workers) for r in range(world)]
    assert all(len(r) == n // B for r in ranks)
    for b in range(n // B):
        for r in range(world):
            assert ranks[r][b].tolist() == list(range(b * B + r, (b + 1) * B, world))
        assert sorted(np.concatenate([rk[b] for rk in ranks]).tolist()) == list(range(b * B, (b + 1) * B))


def test_a_resume_continues_at_the_next_global_batch_even_with_another_world_size(out, tmp_path):
    """OLMo-core's loader state is the tokens processed: a restart (here 2 ranks -> 1) goes on at batch 3."""
    first = recipe.olmo_loader(out, sequence_length=L, global_batch_size=B * L, work_dir=tmp_path / "w",
                               dp_world_size=2, dp_rank=0, fs_local_rank=0, num_threads=0)
    first.reshuffle(epoch=1)
    it = iter(first)
    assert [next(it)["index"].tolist() for _ in range(3)] == [[0, 2], [4, 6], [8, 10]]
    state = first.state_dict()
    again = recipe.olmo_loader(out, sequence_length=L, global_batch_size=B * L, work_dir=tmp_path / "w",
                               dp_world_size=1, dp_rank=0, fs_local_rank=0, num_threads=0)
    again.load_state_dict(state)
    again.reshuffle(epoch=state["epoch"])
    assert next(iter(again))["index"].tolist() == list(range(3 * B, 4 * B))


def test_the_loaders_default_configuration_does_not(out, tmp_path):
    """Negative control: ``NumpyDataLoaderConfig`` (no shuffle field) builds a loader that shuffles by seed."""
    ds = recipe.olmo_dataset(out, sequence_length=L, work_dir=tmp_path / "w")
    loader = od.NumpyDataLoaderConfig(global_batch_size=B * L, seed=42, work_dir=str(tmp_path / "w"),
                                      num_threads=0).build(ds)
    seen = run_epoch(loader, None)
    assert [b.tolist() for b in seen] != [list(range(b * B, (b + 1) * B)) for b in range(len(seen))]
    ids = np.concatenate(seen)
    assert np.unique(ids).size == ids.size == len(seen) * B and ids.max() < len(ds)  # instances, shuffled


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def window_ok(logs: list[Path], per_step: int, unit: int) -> bool:
    """The audit's contract in tokens: step s consumes tokens [s*G*L, (s+1)*G*L) (ids are first tokens)."""
    steps: dict[int, list[int]] = {}
    for p in logs:
        for e in read_log(p):
            steps.setdefault(e["step"], []).extend(i * unit for i in e["ids"])
    return all(sorted(v) == list(range(s * per_step * L, (s + 1) * per_step * L, L)) for s, v in steps.items())


@pytest.mark.parametrize("offsets", [False, True])
def test_the_audit_logs_in_order_and_shuffled(out, tmp_path, offsets):
    for r in range(2):
        rank_batches(out, tmp_path / "w", 2, r, log=tmp_path / "inorder.jsonl", offsets=offsets)
    logs = sorted(tmp_path.glob("inorder.rank*.jsonl"))
    assert [p.name for p in logs] == ["inorder.rank0.jsonl", "inorder.rank1.jsonl"]
    first = read_log(logs[1])[0]
    assert first == {"step": 0, "ids": [L, 3 * L] if offsets else [1, 3]}
    assert window_ok(logs, B, 1 if offsets else L)
    options = ["--offsets"] if offsets else []
    code, report = audit(out, logs, *options)
    assert code == 0 and report["held"] and report["global_batch"] == B, report

    ds = recipe.olmo_dataset(out, sequence_length=L, work_dir=tmp_path / "w2")
    loader = od.NumpyDataLoaderConfig(global_batch_size=B * L, seed=42, work_dir=str(tmp_path / "w2"),
                                      num_threads=0).build(ds)
    run_epoch(loader, None, offsets, tmp_path / "shuffled.jsonl")
    assert not window_ok([tmp_path / "shuffled.jsonl"], B, 1 if offsets else L)
    code, report = audit(out, [tmp_path / "shuffled.jsonl"], *options)
    assert code == 1 and not report["held"], report


def audit(out: Path, logs: list[Path], *options) -> tuple[int, dict]:
    """``reorder audit OUT LOGS --tokens --seq-length L [options] --json``: its exit code and report."""
    result = invoke("audit", out, *logs, "--tokens", "--seq-length", L, *options, "--json")
    assert result.exit_code in (0, 1), (result.exit_code, result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)["data"]


def test_the_trainer_callback_logs_step_s_as_batch_s_minus_1(tmp_path):
    """OLMo-core's trainer increments global_step before pre_step: the first batch is step 0 of the audit."""
    cb = recipe.audit_callback(tmp_path / "cb.jsonl", sequence_length=L)
    cb.trainer = SimpleNamespace(global_step=0)
    cb.pre_train()
    for step in range(2):
        cb.trainer.global_step += 1
        cb.pre_step({"index": np.array([2 * step, 2 * step + 1])})
    cb.close()
    assert read_log(tmp_path / "cb.jsonl") == [{"step": 0, "ids": [0, 1]}, {"step": 1, "ids": [2, 3]}]


def test_without_a_process_group_the_loader_is_one_rank(out, tmp_path):
    loader = recipe.olmo_loader(out, sequence_length=L, global_batch_size=B * L, work_dir=tmp_path / "w")
    assert (loader.dp_world_size, loader.dp_rank, loader.fs_local_rank, loader.shuffle) == (1, 0, 0, False)


def test_recipe_refusals(out, tmp_path):
    with pytest.raises(ReorderError, match=r"multiple of sequence_length x dp_world_size = 16 x 2"):
        recipe.olmo_loader(out, sequence_length=L, global_batch_size=3 * L, work_dir=tmp_path, dp_world_size=2,
                           dp_rank=0, fs_local_rank=0)
    plain = tmp_path / "plain"
    shutil.copytree(out, plain)
    doc = read_manifest(plain)
    doc["tokens"]["eos"] = None
    manifest.find(plain).write_text(manifest.dumps(doc))
    with pytest.raises(ReorderError, match=r"\.manifest\.json: the documents have no EOS token"):
        recipe.olmo_dataset(plain, sequence_length=L, work_dir=tmp_path / "w")
    del doc["export"]
    manifest.find(plain).write_text(manifest.dumps(doc))
    with pytest.raises(ReorderError, match=r"\.manifest\.json: not an 'export: olmo' output"):
        recipe.olmo_dataset(plain, sequence_length=L, work_dir=tmp_path / "w")


# ------------------------------------------------------------------ OLMo-core's own Trainer, 2 ranks (gloo)


def olmo_torchrun(out: Path, tmp: Path, mode: str) -> tuple[list[dict], list[Path]]:
    """tests/olmo_trainer_script.py under torchrun, 2 CPU ranks (a rank killed by a signal runs again, as in
    tests/test_trainers.py); each rank's batches and the audit logs."""
    script = Path(__file__).with_name("olmo_trainer_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(script.parent.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(out), str(tmp / "audit.jsonl"), str(tmp / "work"), mode]
    for _attempt in range(3):
        for stale in tmp.glob("audit.rank*.jsonl"):
            stale.unlink()
        shutil.rmtree(tmp / "work", ignore_errors=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        if done.returncode == 0 or not SIGNALLED.search(done.stderr):
            break
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = sorted((json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")),
                   key=lambda r: r["rank"])
    return ranks, sorted(tmp.glob("audit.rank*.jsonl"))


@pytest.mark.parametrize("mode", ["recipe", "default"])
def test_olmo_cores_trainer_on_two_ranks(out, tmp_path, mode):
    """The real ``Trainer.fit`` (a train module that trains nothing) with the recipe's loader: step s trains
    global batch s = instances [sB, (s+1)B), rank r the instances sB + r, sB + r + 2, ...; the recipe's
    callback logs exactly that. With the loader's default config (negative control) the steps are shuffled."""
    ranks, logs = olmo_torchrun(out, tmp_path, mode)
    assert [r["rank"] for r in ranks] == [0, 1] and [p.name for p in logs] == ["audit.rank0.jsonl",
                                                                               "audit.rank1.jsonl"]
    n = stream_of(pieces_of(out)[0]).size // L // B  # whole global batches
    for r, p in zip(ranks, logs, strict=True):
        assert [e["ids"] for e in read_log(p)] == r["batches"] and len(r["batches"]) == n
        assert [e["step"] for e in read_log(p)] == list(range(n))
    in_order = all(ranks[r]["batches"][s] == list(range(s * B + r, (s + 1) * B, 2)) for s in range(n) for r in (0, 1))
    assert in_order == (mode == "recipe")
    assert window_ok(logs, B, L) == (mode == "recipe")
    code, report = audit(out, logs)  # the recipe's callback logs sample indices
    assert (code, report["held"]) == ((0, True) if mode == "recipe" else (1, False)), report
