"""The shipped recipe configs (``configs/recipes/*.yaml``, issue 19): each validates with ``reorder config
validate`` once its tokenizer placeholder is given (``--set tokenizer=``), and runs on the repo's sample
(tests/data/sample) into the export it names, with a tokenizer trained here on the sample's own words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from .conftest import invoke, one_line_error, read_manifest, read_shard_lines, reorder

ROOT = Path(__file__).parent.parent
RECIPES = sorted((ROOT / "configs" / "recipes").glob("*.yaml"))
SAMPLE = ROOT / "tests" / "data" / "sample"
#: What each recipe config exports, and the files of OUT/<name>/.
EXPORTED = {"megatron": ["data.bin", "data.idx"], "olmo": ["tokens.csv.gz", "tokens.npy"]}


def test_every_recipe_config_is_tested():
    assert sorted(p.stem for p in RECIPES) == sorted(EXPORTED)


def sample_texts() -> list[str]:
    return [json.loads(line)["text"] for p in sorted(SAMPLE.glob("*.jsonl")) for line in p.read_text().splitlines()]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    """A WordLevel tokenizer trained on the sample's texts (milliseconds), EOS named by tokenizer_config.json."""
    folder = tmp_path_factory.mktemp("tok")
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(sample_texts(), trainers.WordLevelTrainer(special_tokens=["[UNK]", "[EOS]"]))
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "[EOS]", "unk_token": "[UNK]"}))
    return folder


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_the_recipe_config_validates_with_a_tokenizer_and_not_without(recipe, tokenizer):
    result = invoke("config", "validate", recipe, "--set", f"tokenizer={tokenizer}")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "tokenizer" in one_line_error(invoke("config", "validate", recipe))  # the placeholder must be replaced


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_the_recipe_config_runs_on_the_sample_into_its_export(recipe, tokenizer, tmp_path):
    out = tmp_path / "out"
    reorder(recipe, [SAMPLE], out, sets=[f"tokenizer={tokenizer}"])
    doc = read_manifest(out)
    name = recipe.stem
    assert doc["export"]["format"] == name
    assert sorted(p.name for p in (out / name).iterdir()) == EXPORTED[name]
    assert sorted(f["file"] for f in doc["export"]["files"]) == [f"{name}/{f}" for f in EXPORTED[name]]
    # the stream is the tokenizer's own encoding of the texts in the manifest's order, EOS after each
    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    texts = []
    for s in doc["shards"]:
        shard = out / s["file"]
        if shard.suffix == ".parquet":
            texts += pq.read_table(shard, columns=["text"]).column("text").to_pylist()
        else:
            texts += [json.loads(line)["text"] for line in read_shard_lines(shard)]
    assert len(texts) == 2000
    eos = tok.token_to_id("[EOS]")
    want = np.concatenate([np.array([*e.ids, eos], dtype=np.uint16) for e in tok.encode_batch(texts)])
    stream = np.concatenate([np.fromfile(out / p["file"], dtype="<u2") for p in doc["tokens"]["shards"]])
    assert doc["tokens"]["eos"] == eos and np.array_equal(stream, want)
    result = invoke("verify", out)
    assert result.exit_code == 0, result.output
