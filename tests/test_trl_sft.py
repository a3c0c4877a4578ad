"""TRL's SFTTrainer over a reordered chat output, under torchrun on 2 CPU ranks (gloo), b = 2, k = 2,
with reorder's recipe (``reorder_cli.loader.trl_sft``) and its audit log.

- Without packing a sample is a conversation: ``reorder audit`` holds, for each of 2 epochs, and the
  second epoch consumes the same order as the first; random sampling (the Trainer's default) fails it.
- With wrapped packing a sample is max_length tokens of the conversations tokenized and concatenated in
  order: TRL's packed stream is that concatenation token for token, step s consumes exactly packed
  samples [s·G, (s+1)·G), so the conversations of consecutive steps follow each other (a conversation
  cut by a sample boundary is in both). Best-fit packing (TRL's default) fails both checks.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from reorder_cli.errors import ReorderError
from reorder_cli.loader import trl_sft

from .conftest import invoke, read_jsonl_out, read_parquet_out, reorder, write_parquet
from .test_trainers import logged_steps, torchrun

pytestmark = pytest.mark.trainer
SCRIPT = Path(__file__).with_name("trl_sft_script.py")
W, B, K, L = 2, 2, 2, 16
G = W * B * K
WORDS = ["hello", "world", "tell", "me", "about", "the", "order", "of", "data", "curriculum", "yes", "no", "why"]
TEMPLATE = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}{{ eos_token }}"


def conversation(rng: random.Random) -> list[dict]:
    turns = []
    for j in range(rng.randint(1, 3)):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))
        turns.append({"role": "user" if j % 2 == 0 else "assistant", "content": words})
        if rng.random() < 0.3:
            turns[-1]["name"] = "bot"
    return turns


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    """(output folder, tokenizer folder): 70 conversations reordered by STR into Parquet; a WordLevel tokenizer."""
    base = tmp_path_factory.mktemp("sft")
    rng = random.Random(5)
    rows = [{"id": f"s{i}", "score": rng.randint(0, 40) / 8, "messages": conversation(rng)} for i in range(70)]
    inp = write_parquet(base / "in" / "chat.parquet", rows)
    (base / "cfg.yaml").write_text("score_field: score\nseed: 42\nformat: parquet\n")
    reorder(base / "cfg.yaml", [inp], base / "out", method="str", sets=["shard_rows=25", "row_group_rows=10"])
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "</s>", "user", "assistant", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="[PAD]", unk_token="[UNK]")
    tok.chat_template = TEMPLATE
    tok.save_pretrained(base / "tok")
    return base / "out", base / "tok"


MODES = ("epochs", "random", "wrapped", "bfd")


@pytest.fixture(scope="module")
def runs(sft, tmp_path_factory) -> Path:
    """One torchrun trains every mode in turn (one start-up of torch, transformers and trl for all);
    mode m leaves its logs (and packed.json) in runs / m."""
    out, tok = sft
    tmp = tmp_path_factory.mktemp("runs")
    torchrun(out, tmp, ",".join(MODES), str(tok), script=SCRIPT)
    return tmp


def logs_of(runs: Path, mode: str) -> list[Path]:
    logs = sorted((runs / mode).glob("audit.rank*.jsonl"))
    assert len(logs) == W, logs
    return logs


def audit_json(out: Path, logs: list[Path]) -> tuple[int, dict]:
    result = invoke("audit", out, *logs, "--json")
    return result.exit_code, json.loads(result.stdout)["data"]


def conversations_in_order(out: Path, tok_dir: Path) -> list[list[int]]:
    """Each conversation of the output, in the manifest's order, tokenized on its own with the chat template."""
    tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    return [tok.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"]
            for m in read_parquet_out(out).column("messages").to_pylist()]


def split_log(logs: list[Path], tmp: Path, steps_per_epoch: int) -> list[list[Path]]:
    """The logs cut into one set of files per epoch (by step number)."""
    epochs: list[list[Path]] = [[], []]
    for log in logs:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        for e in (0, 1):
            part = tmp / f"epoch{e}.{log.name}"
            part.write_text("".join(json.dumps(r) + "\n" for r in lines
                                    if e * steps_per_epoch <= r["step"] < (e + 1) * steps_per_epoch))
            epochs[e].append(part)
    return epochs


def test_sft_without_packing_holds_each_epoch_and_repeats_the_order(sft, runs, tmp_path):
    out, _ = sft
    logs = logs_of(runs, "epochs")
    steps = logged_steps(logs)
    per_epoch = -(-(70 // (W * B)) // K)  # the Trainer's ceil(M / k) steps of M micro-batches per rank
    assert len(steps) == 2 * per_epoch == 18
    assert [sorted(s) for s in steps[:per_epoch]] == [sorted(s) for s in steps[per_epoch:]]  # the same order again
    code, report = audit_json(out, logs)
    assert code == 1 and report["seen_twice"] > 0, report  # both epochs as one log: the order is replayed
    for epoch_logs in split_log(logs, tmp_path, per_epoch):
        code, report = audit_json(out, epoch_logs)
        assert code == 0 and report["held"], report
        assert report["global_batch"] == G and report["steps"] == per_epoch and report["tail_samples"] == 4, report


def test_sft_random_sampling_fails_the_audit(sft, runs):
    out, _ = sft
    code, report = audit_json(out, logs_of(runs, "random"))
    assert code == 1 and report["in_window"] < 0.5 and report["first_bad_step"] == 0, report


def packed_stream(sft, runs: Path, mode: str) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """(TRL's packed samples, the conversations of the output tokenized on their own in its order, the packed
    samples each optimizer step consumed, the ranks pooled)."""
    out, tok = sft
    packed = json.loads((runs / mode / "packed.json").read_text())
    return packed, conversations_in_order(out, tok), logged_steps(logs_of(runs, mode))


def test_sft_wrapped_packing_keeps_the_order(sft, runs):
    packed, docs, steps = packed_stream(sft, runs, "wrapped")
    # the packed samples are the conversations concatenated in the output's order, cut every L tokens
    stream = [t for d in docs for t in d]
    assert [t for s in packed for t in s] == stream and all(len(s) == L for s in packed[:-1])
    # step s consumes exactly packed samples [s·G, (s+1)·G) (the last step: the first of its window)
    assert len(steps) == -(-(len(packed) // (W * B)) // K)
    assert [sorted(s) for s in steps] == [list(range(i * G, i * G + len(s))) for i, s in enumerate(steps)]
    assert all(len(s) == G for s in steps[:-1])
    # so the conversations of consecutive steps follow each other: the next step starts with the conversation
    # the last one ended with (cut by the sample boundary) or the one after it
    spans = trl_sft.packed_documents([len(d) for d in docs], L)
    first, last = [int(spans[min(s), 0]) for s in steps], [int(spans[max(s), 1]) for s in steps]
    assert first[0] == 0 and all(nxt in (prev, prev + 1) for prev, nxt in zip(last, first[1:], strict=False))


def test_sft_best_fit_packing_breaks_it(sft, runs):
    """TRL's default packing: the sampler still takes samples [s·G, (s+1)·G), but the samples are not the
    conversations in order (best-fit decreasing sorts them by length inside each map batch)."""
    packed, docs, steps = packed_stream(sft, runs, "bfd")
    assert [sorted(s) for s in steps] == [list(range(i * G, i * G + len(s))) for i, s in enumerate(steps)]
    assert [t for s in packed for t in s] != [t for d in docs for t in d[:L]]  # not even with each truncated to L
    assert sorted(t for s in packed for t in s) == sorted(t for d in docs for t in d[:L])  # the same tokens


# ------------------------------------------------------------------ the recipe's own parts (no torchrun)


def test_packed_documents():
    # documents of 3, 0, 5, 2 tokens (tokens 0-2, none, 3-7, 8-9); samples of 4: tokens 0-3 (docs 0..2),
    # 4-7 (doc 2), 8-9 (doc 3); of 3: 0-2 (doc 0), 3-5 (doc 2), 6-8 (docs 2..3), 9 (doc 3)
    assert trl_sft.packed_documents([3, 0, 5, 2], 4).tolist() == [[0, 2], [2, 2], [3, 3]]
    assert trl_sft.packed_documents([3, 0, 5, 2], 3).tolist() == [[0, 0], [2, 2], [2, 3], [3, 3]]
    assert trl_sft.packed_documents([], 4).shape == (0, 2)


@pytest.mark.parametrize(("setting", "value"), [("packing_strategy", "bfd"), ("shuffle_dataset", True),
                                                 ("train_sampling_strategy", "random"),
                                                 ("dataloader_drop_last", False)])
def test_sft_config_refuses_what_breaks_the_order(tmp_path, setting, value):
    with pytest.raises(ReorderError, match=f"{setting}=.* breaks the order"):
        trl_sft.sft_config(packing=True, output_dir=str(tmp_path), use_cpu=True, **{setting: value})
    args = trl_sft.sft_config(packing=True, output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=3)
    assert (args.packing_strategy, args.train_sampling_strategy, args.per_device_train_batch_size) == ("wrapped",
                                                                                                       "sequential", 3)


def test_sft_dataset_is_the_manifest_order(sft, tmp_path):
    out, _ = sft
    ds = trl_sft.sft_dataset(out, cache_dir=tmp_path)
    assert ds["id"] == read_parquet_out(out).column("id").to_pylist()
    assert ds["id"] != [f"s{i}" for i in range(70)]  # not the input order: the reorder is what is read
    assert ds["messages"] == read_parquet_out(out).column("messages").to_pylist()


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.zst"])
def test_sft_dataset_of_a_jsonl_output(sft, tmp_path, fmt):
    """A JSONL output is read in order too (the ``json`` builder over the list of shards)."""
    out, _ = sft
    jsonl = tmp_path / "jsonl"
    (tmp_path / "cfg.yaml").write_text("score_field: score\nseed: 42\n")
    reorder(tmp_path / "cfg.yaml", [out], jsonl, method="saw", sets=[f"format={fmt}", "shard_rows=20"])
    ds = trl_sft.sft_dataset(jsonl, cache_dir=tmp_path / "cache")
    rows = [json.loads(line) for line in read_jsonl_out(jsonl)]
    assert len(rows) == 70 and ds["id"] == [r["id"] for r in rows] and ds["messages"] == [r["messages"] for r in rows]


def test_audit_refuses_a_trainer_that_breaks_the_order(tmp_path):
    from types import SimpleNamespace

    args = SimpleNamespace(**{**trl_sft.order_settings(packing=True), "packing_strategy": "bfd"})
    with pytest.raises(ReorderError, match="packing_strategy='bfd' breaks the order"):
        trl_sft.audit(SimpleNamespace(args=args), tmp_path / "audit.jsonl")
    args = SimpleNamespace(**{**trl_sft.order_settings(), "train_sampling_strategy": "random"})
    with pytest.raises(ReorderError, match="train_sampling_strategy='random' breaks the order"):
        trl_sft.audit(SimpleNamespace(args=args), tmp_path / "audit.jsonl")


def test_an_order_per_epoch_is_a_run_per_epoch_with_its_seed(sft, tmp_path):
    """docs/guides/sft.md: STR with window_size 0 ignores the seed (one order); with window_size w > 1 the seed
    shuffles each window of w (JIT), so one run per epoch with seed = e gives each epoch its own order, every
    order the same rows, each read back in its own order by sft_dataset."""
    out, _ = sft
    (tmp_path / "cfg.yaml").write_text("score_field: score\nformat: parquet\n")
    ids = {}
    for window, seed in [(0, 0), (0, 1), (8, 0), (8, 1), (8, 0)]:
        folder = tmp_path / f"w{window}-s{seed}"
        if not folder.exists():
            reorder(tmp_path / "cfg.yaml", [out], folder, method="str", sets=[f"seed={seed}", f"window_size={window}"])
        ids[window, seed] = trl_sft.sft_dataset(folder, cache_dir=tmp_path / "cache")["id"]
    assert ids[0, 0] == ids[0, 1]
    assert ids[8, 0] != ids[8, 1] and sorted(ids[8, 0]) == sorted(ids[8, 1]) == sorted(ids[0, 0])
    # the windows of 8 keep the curriculum: each holds the same rows whatever the seed
    assert all(sorted(ids[8, 0][i:i + 8]) == sorted(ids[8, 1][i:i + 8]) == sorted(ids[0, 0][i:i + 8])
               for i in range(0, 70, 8))
