"""``export: megatron`` read by megatron-core itself: its ``IndexedDataset`` reads the index back, and its
``GPTDataset`` over the one exported prefix, pinned by ``reorder_cli.loader.megatron.pin_order``, yields
sample i = tokens [i*L, (i+1)*L + 1) of the exported stream for every i (a torch ``DataLoader`` with a
sequential sampler is the loader: megatron-core has no sampler of its own; ``MegatronPretrainingSampler``
is in Megatron-LM's ``megatron/training``). Megatron's default (no pinned cache) does not.

The export is a real run (``format: megatron``, ``--set tokenizer=`` a tiny WordLevel tokenizer built here):
its token pieces and ``OUT/megatron/`` are the tool's; the ``tokenizers`` library called here on the texts of
the manifest's order is the independent tokenization they must equal. ``reorder audit --tokens`` passes the
recipe's ``StepLog`` of the pinned dataset and fails Megatron's default shuffle. ``token_pieces`` makes
pieces by hand for the exporter's own cases (uint32).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder
from tokenizers import Tokenizer, models, pre_tokenizers
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from reorder_cli.errors import ReorderError
from reorder_cli.export import EXPORTS, ExportInput
from reorder_cli.export import megatron as export_megatron
from reorder_cli.loader import megatron as recipe

from . import megatron_script
from .conftest import WORDS, invoke, make_rows, read_manifest, reorder, write_parquet
from .loader_helpers import run_torchrun

pytestmark = pytest.mark.trainer

L = 16  # sequence length
G = 4  # global batch (samples a step)
EOS, UNK, PAD = 0, 1, 2


@dataclass
class Export:
    base: Path
    tokenizer: Path  # a folder: tokenizer.json + tokenizer_config.json
    src: ExportInput
    entry: dict
    prefix: Path
    docs: list[np.ndarray]  # each document's tokens, in the output's order
    stream: np.ndarray  # the whole exported token stream


def make_tokenizer(folder: Path) -> Path:
    vocab = {"<eos>": EOS, "[UNK]": UNK, "<pad>": PAD}  # Megatron pads with it (never in the stream)
    for word in sorted({w for text in WORDS for w in text.split()}):
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    special = {"eos_token": "<eos>", "unk_token": "[UNK]", "pad_token": "<pad>"}
    (folder / "tokenizer_config.json").write_text(json.dumps({**special, "tokenizer_class": "PreTrainedTokenizerFast"}))
    return folder


def token_pieces(shards: list[Path], tokenizer: Path, dtype: np.dtype, folder: Path) -> tuple[list, list, list]:
    """The spec's pieces of each shard, in ``folder``: NNNNN.tokens ([ids] + [EOS] a document), NNNNN.lengths.npy."""
    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    tokens, lengths, docs = [], [], []
    for shard in shards:
        texts = pq.read_table(shard, columns=["text"]).column("text").to_pylist()
        ids = [np.array([*e.ids, EOS], dtype=dtype) for e in tok.encode_batch(texts)]
        stem = shard.name.split(".")[0]
        tokens.append(folder / f"{stem}.tokens")
        np.concatenate(ids).astype(dtype.newbyteorder("<")).tofile(tokens[-1])
        lengths.append(folder / f"{stem}.lengths.npy")
        np.save(lengths[-1], np.array([len(d) for d in ids], dtype=np.int64))
        docs += ids
    return tokens, lengths, docs


def assemble(src: ExportInput, dest: Path) -> dict:
    dest.mkdir(parents=True)
    return EXPORTS["megatron"].assemble(src, dest)


def independent_docs(out: Path, tokenizer: Path, dtype: np.dtype) -> list[np.ndarray]:
    """Each output row's ``ids + [EOS]``, the ``tokenizers`` library called here on the texts of the
    manifest's order (its row shards read with pyarrow): the independent tokenization of the order."""
    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    texts = [t for s in read_manifest(out)["shards"] for t in pq.read_table(out / s["file"]).column("text").to_pylist()]
    return [np.array([*e.ids, EOS], dtype=dtype) for e in tok.encode_batch(texts)]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Export:
    """A real run: ``format: megatron`` (issue 19's spelling of ``export: megatron`` with Parquet rows) and
    ``--set tokenizer=``: the token pieces (``OUT/tokens/``) and ``OUT/megatron/`` are the tool's."""
    base = tmp_path_factory.mktemp("megatron")
    inp = write_parquet(base / "in" / "a.parquet", make_rows(305, seed=3))
    (base / "cfg.yaml").write_text("score_field: score\nseed: 42\nformat: megatron\n")
    out = base / "out"
    tokenizer = make_tokenizer(base / "tokenizer")
    reorder(base / "cfg.yaml", [inp], out, method="str",
            sets=["shard_rows=100", "row_group_rows=30", f"tokenizer={tokenizer}"])
    doc = read_manifest(out)
    assert doc["export"]["format"] == "megatron" and doc["tokens"]["dtype"] == "uint16"
    assert (doc["tokens"]["eos"], doc["tokens"]["bos"]) == (EOS, None)
    shards = [out / s["file"] for s in doc["shards"]]
    tokens = [out / s["file"] for s in doc["tokens"]["shards"]]
    lengths = [out / s["lengths"] for s in doc["tokens"]["shards"]]
    src = ExportInput(shards, "parquet", tokens, lengths, np.dtype("uint16"))
    docs = independent_docs(out, tokenizer, np.dtype("uint16"))
    return Export(out, tokenizer, src, doc["export"], out / "megatron" / "data", docs, np.concatenate(docs))


def gpt_config(ex: Export, cache: Path, **over) -> GPTDatasetConfig:
    """The settings the recipe gives (docs/guides/megatron.md)."""
    length = over.pop("sequence_length", L)
    return megatron_script.gpt_config(str(ex.prefix), str(ex.tokenizer), str(cache), length, **over)


build = megatron_script.build


def samples(dataset: GPTDataset, extra: bool = True) -> np.ndarray:
    """Every sample's tokens (L + 1 with the extra token), read through a DataLoader with a sequential sampler."""
    rows = []
    for batch in DataLoader(dataset, batch_size=G, sampler=SequentialSampler(dataset)):
        text = torch.cat([batch["tokens"], batch["labels"][:, -1:]], dim=1) if extra else batch["tokens"]
        rows.append(text.numpy())
    return np.concatenate(rows)


def expected(stream: np.ndarray, count: int, extra: bool = True) -> np.ndarray:
    return np.stack([stream[i * L : (i + 1) * L + extra] for i in range(count)])


# ------------------------------------------------------------------ the export itself


def test_the_index_reads_back_with_megatrons_indexed_dataset(export):
    index = IndexedDataset(str(export.prefix))
    lengths = np.concatenate([np.load(p) for p in export.src.lengths])
    assert index.index.dtype == np.uint16
    assert np.array_equal(index.sequence_lengths, lengths)
    assert np.array_equal(index.document_indices, np.arange(len(lengths) + 1))
    assert len(index) == len(export.docs) == 305
    for i, doc in enumerate(export.docs):
        assert np.array_equal(index.get(i), doc), i
    assert export.entry["sequences"] == 305 and export.entry["tokens"] == len(export.stream)
    assert export.entry["prefix"] == "megatron/data" and export.entry["dtype_code"] == 8


def test_the_files_are_byte_for_byte_what_megatrons_own_builder_writes(export, tmp_path):
    builder = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.uint16)
    for doc in export.docs:
        builder.add_document(torch.from_numpy(doc.astype(np.int64)), [len(doc)])
    builder.finalize(str(tmp_path / "ref.idx"))
    for suffix in ("bin", "idx"):
        assert (export.prefix.parent / f"data.{suffix}").read_bytes() == (tmp_path / f"ref.{suffix}").read_bytes()


def test_the_entry_names_every_file_and_the_bytes_are_deterministic(export, tmp_path):
    import hashlib

    folder = export.prefix.parent
    assert sorted(p.name for p in folder.iterdir()) == ["data.bin", "data.idx"]
    for f in export.entry["files"]:
        data = (folder.parent / f["file"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["bytes"], f["sha256"])
    assert assemble(export.src, tmp_path / "again") == export.entry
    assert (folder / "data.bin").read_bytes() == export.stream.astype("<u2").tobytes()


def test_the_runs_token_stream_is_an_independent_tokenization_of_the_manifest_order(export):
    """Token for token: the run's pieces (in shard order), its lengths, and megatron-core's reading of the export."""
    pieces = np.concatenate([np.fromfile(p, dtype="<u2") for p in export.src.token_files])
    assert np.array_equal(pieces, export.stream)
    assert np.array_equal(np.concatenate([np.load(p) for p in export.src.lengths]), [len(d) for d in export.docs])
    index = IndexedDataset(str(export.prefix))
    assert np.array_equal(np.concatenate([index.get(i) for i in range(len(index))]), export.stream)


def test_uint32_tokens_are_written_as_megatrons_int32(export, tmp_path):
    shards = list(export.src.shards)
    tokens, lengths, docs = token_pieces(shards, export.tokenizer, np.dtype("uint32"), tmp_path)
    wide = ExportInput(shards, "parquet", tokens, lengths, np.dtype("uint32"))
    entry = assemble(wide, tmp_path / "megatron")
    assert (entry["dtype"], entry["dtype_code"]) == ("int32", 4)
    index = IndexedDataset(str(tmp_path / "megatron" / "data"))
    assert index.index.dtype == np.int32
    assert np.array_equal(index.get(7), docs[7]) and np.array_equal(index.get(304), docs[304])


def test_a_token_beyond_int32_is_refused_naming_the_file(export, tmp_path):
    shard = export.src.shards[0]
    tokens, lengths = tmp_path / "00000.tokens", tmp_path / "00000.lengths.npy"
    np.array([5, 2**31, EOS], dtype="<u4").tofile(tokens)
    np.save(lengths, np.array([3], dtype=np.int64))
    with pytest.raises(ReorderError, match=r"00000\.tokens: token 1 is 2,147,483,648"):
        assemble(ExportInput([shard], "parquet", [tokens], [lengths], np.dtype("uint32")), tmp_path / "megatron")
    assert list((tmp_path / "megatron").iterdir()) == []


def test_a_piece_whose_lengths_disagree_with_its_tokens_is_refused(export, tmp_path):
    lengths = tmp_path / "00001.lengths.npy"
    counts = np.load(export.src.lengths[1])
    counts[3] += 1
    np.save(lengths, counts)
    src = ExportInput(export.src.shards, "parquet", export.src.token_files,
                      [export.src.lengths[0], lengths, *export.src.lengths[2:]], np.dtype("uint16"))
    with pytest.raises(ReorderError, match=r"00001\.tokens: holds .* but 00001\.lengths\.npy counts"):
        assemble(src, tmp_path / "megatron")
    assert list((tmp_path / "megatron").iterdir()) == []


def test_a_negative_length_is_refused(export, tmp_path):
    lengths = tmp_path / "00000.lengths.npy"
    np.save(lengths, np.array([-1], dtype=np.int64))
    src = ExportInput(export.src.shards[:1], "parquet", export.src.token_files[:1], [lengths], np.dtype("uint16"))
    with pytest.raises(ReorderError, match=r"00000\.lengths\.npy: document 0 has -1 tokens"):
        assemble(src, tmp_path / "megatron")


def test_an_export_without_tokens_is_refused(export, tmp_path):
    assert export_megatron.NEEDS_TOKENS
    with pytest.raises(ReorderError, match="set tokenizer"):
        assemble(ExportInput(export.src.shards, "parquet"), tmp_path / "megatron")


# ------------------------------------------------------------------ GPTDataset keeps the order


PER_SPLIT = "per-split"


@pytest.mark.parametrize("over", [{}, {"add_extra_token_to_sequence": False}, {"mmap_bin_files": False},
                                  {"blend": None, "split": None, "blend_per_split": PER_SPLIT}],
                         ids=["default", "no-extra-token", "no-mmap", "blend-per-split"])
def test_gpt_dataset_pinned_yields_the_stream_in_order(export, tmp_path, over):
    if over.get("blend_per_split") == PER_SPLIT:
        over = {**over, "blend_per_split": [([str(export.prefix)], None), None, None]}
    extra = over.get("add_extra_token_to_sequence", True)
    written = recipe.pin_order(gpt_config(export, tmp_path / "cache", **over))
    assert [p.parent for p in written] == [tmp_path / "cache"] * 3
    dataset = build(gpt_config(export, tmp_path / "cache", **over), None)
    recipe.require_pinned(dataset)
    count = (len(export.stream) - extra) // L
    assert len(dataset) == count
    assert np.array_equal(samples(dataset, extra), expected(export.stream, count, extra))


def test_gpt_dataset_pinned_over_two_epochs_repeats_the_stream_in_order(export, tmp_path):
    one = (len(export.stream) - 1) // L
    num_samples = one + one // 2  # a short final epoch: megatron would shuffle it apart (separate_final_epoch)
    recipe.pin_order(gpt_config(export, tmp_path / "cache"), num_samples)
    dataset = build(gpt_config(export, tmp_path / "cache"), num_samples)
    got = samples(dataset)
    assert len(got) >= num_samples
    assert np.array_equal(got, expected(np.concatenate([export.stream, export.stream]), len(got)))


def test_megatrons_default_shuffle_does_not_keep_the_order(export, tmp_path):
    """The negative control: the same build without the pinned cache."""
    dataset = build(gpt_config(export, tmp_path / "cache"), None)
    with pytest.raises(ReorderError, match="training split is shuffled"):
        recipe.require_pinned(dataset)
    got = samples(dataset)
    want = expected(export.stream, len(got))
    assert len(got) == len(want)
    assert (got != want).any(axis=1).mean() > 0.9


def test_a_changed_sequence_length_is_not_pinned(export, tmp_path):
    """The cache is per config: pinned for L, a run with another sequence length shuffles again."""
    recipe.pin_order(gpt_config(export, tmp_path / "cache"))
    assert recipe.is_pinned(build(gpt_config(export, tmp_path / "cache"), None))
    assert not recipe.is_pinned(build(gpt_config(export, tmp_path / "cache", sequence_length=2 * L), None))


@pytest.mark.parametrize("over, message", [
    ({"blend": (["a/data", "b/data"], None)}, "one prefix"),
    ({"blend": (["a/data"], [1.0])}, "one prefix with no weight"),
    ({"split": "99,1,0"}, "split='1,0,0'"),
    ({"path_to_cache": None}, "path_to_cache is not set"),
])
def test_pin_order_refuses_what_cannot_keep_the_order(export, tmp_path, over, message):
    with pytest.raises(ReorderError, match=message):
        recipe.pin_order(gpt_config(export, tmp_path / "cache", **over))


# ------------------------------------------------------------------ the audit log


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def log_steps(dataset: GPTDataset, path: Path, stream: np.ndarray, samples: bool = False) -> list[dict]:
    """Train-loop shape: micro-batches of 2 samples, 2 a step (G = 4); every sample's tokens checked
    against the stream at the offset logged (up to the end of the document it starts in). ``samples``:
    the log holds sample indices (``StepLog(samples=True)``), not offsets."""
    log = recipe.StepLog(path, rank=0, micro_batches=2, samples=samples)
    sampler = BatchSampler(SequentialSampler(dataset), batch_size=2, drop_last=True)
    doc_ends = np.cumsum(dataset.dataset.sequence_lengths)
    for indices, batch in zip(sampler, DataLoader(dataset, batch_sampler=sampler), strict=True):
        log.read(dataset, indices)
        for offset, text in zip(recipe.stream_offsets(dataset, indices), batch["tokens"].numpy(), strict=True):
            end = doc_ends[np.searchsorted(doc_ends, offset, side="right")]
            k = min(L, end - offset)
            assert np.array_equal(text[:k], stream[offset : offset + k])
    log.close()
    return read_log(path.with_name(f"{path.stem}.rank0{path.suffix}"))


def audit(ex: Export, logs: list[Path], *options) -> tuple[int, dict]:
    """``reorder audit OUT LOGS --tokens --seq-length L [options] --json``: its exit code and report."""
    result = invoke("audit", ex.base, *logs, "--tokens", "--seq-length", L, *options, "--json")
    assert result.exit_code in (0, 1), (result.exit_code, result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)["data"]


def test_the_step_log_of_the_recipe_is_in_order_and_the_default_shuffles(export, tmp_path):
    recipe.pin_order(gpt_config(export, tmp_path / "pinned"))
    in_order = build(gpt_config(export, tmp_path / "pinned"), None)
    default = build(gpt_config(export, tmp_path / "default"), None)
    pinned = log_steps(in_order, tmp_path / "in-order.jsonl", export.stream)
    shuffled = log_steps(default, tmp_path / "shuffled.jsonl", export.stream)
    # reorder audit --tokens on the recipe's logs: offsets (--offsets) and sample indices (StepLog(samples=True))
    log_steps(in_order, tmp_path / "in-order-samples.jsonl", export.stream, samples=True)
    log_steps(default, tmp_path / "shuffled-samples.jsonl", export.stream, samples=True)
    for name, options in (("in-order", ["--offsets"]), ("in-order-samples", [])):
        code, report = audit(export, [tmp_path / f"{name}.rank0.jsonl"], *options)
        assert code == 0 and report["held"] and report["steps"] == len(pinned) and report["global_batch"] == G, report
    for name, options in (("shuffled", ["--offsets"]), ("shuffled-samples", [])):
        code, report = audit(export, [tmp_path / f"{name}.rank0.jsonl"], *options)
        assert code == 1 and not report["held"], report
    steps = (len(export.stream) - 1) // L // G
    assert [line["step"] for line in pinned] == list(range(steps))
    assert all(line["ids"] == [(line["step"] * G + j) * L for j in range(G)] for line in pinned)
    assert [line["step"] for line in shuffled] == list(range(steps))
    assert sum(line["ids"] != [(line["step"] * G + j) * L for j in range(G)] for line in shuffled) > steps * 0.9


def test_the_recipe_under_torchrun_keeps_the_order_per_step(export, tmp_path):
    """2 ranks (gloo), micro-batch 2, 2 micro-batches a step (G = 8): pin_order on every rank, Megatron-LM's
    data-parallel cut; the ranks' logged offsets of step s are the samples [s*G, (s+1)*G) of the stream.
    (The negative control, Megatron's default shuffle: test_the_step_log_..._and_the_default_shuffles.)"""
    logs = torchrun_recipe(export, tmp_path)
    steps = pooled_steps(logs)
    assert len(steps) == (len(export.stream) - 1) // L // 8
    assert all(ids == [(s * 8 + j) * L for j in range(8)] for s, ids in enumerate(steps))
    code, report = audit(export, logs, "--offsets")
    assert code == 0 and report["held"] and report["steps"] == len(steps) and report["global_batch"] == 8, report


SCRIPT = Path(__file__).with_name("megatron_script.py")


def torchrun_recipe(ex: Export, tmp: Path) -> list[Path]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(SCRIPT.parent.parent)}

    def reset():
        for stale in tmp.glob("steps.rank*.jsonl"):
            stale.unlink()
        shutil.rmtree(tmp / "cache", ignore_errors=True)

    run_torchrun(SCRIPT, [ex.prefix, ex.tokenizer, tmp / "cache", tmp / "steps.jsonl", L, 2, 2], env, reset)
    return sorted(tmp.glob("steps.rank*.jsonl"))


def pooled_steps(logs: list[Path]) -> list[list[int]]:
    """Each step's ids, the ranks' pooled and sorted."""
    assert len(logs) == 2
    per_rank = [read_log(p) for p in logs]
    assert [line["step"] for line in per_rank[0]] == [line["step"] for line in per_rank[1]]
    return [sorted(a["ids"] + b["ids"]) for a, b in zip(*per_rank, strict=True)]
