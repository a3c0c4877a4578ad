"""Helpers of the MDS export tests: the real ``streaming`` package without torchvision, a tiny tokenizer,
and token pieces written beside an output's shards as the token contract lays them out."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np


def import_streaming():
    """``import streaming``, the real package. Its ``__init__`` imports ``streaming.vision`` (image datasets),
    which imports torchvision; torchvision's wheel does not load with the CPU torch installed here. Only when
    torchvision is missing, that one subpackage is replaced by an empty module before the import: nothing the
    MDS reader runs (``streaming.base``) is touched."""
    if "streaming.vision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except Exception:  # missing, or a wheel that fails to load
            sys.modules["streaming.vision"] = types.ModuleType("streaming.vision")
    import streaming

    return streaming


def tiny_tokenizer(path: Path) -> Path:
    """A WordLevel ``tokenizer.json`` over a tiny vocabulary (whitespace words, ``[UNK]`` else), built here:
    most of the test rows' words (the last few of ``conftest.WORDS`` become ``[UNK]``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from .conftest import WORDS

    words = ["[UNK]", "[EOS]", *WORDS[:-3]]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(path))
    return path


def tokenize(tokenizer: Path, texts: list[str]) -> list[np.ndarray]:
    """Each text as ``ids + [EOS]`` (uint16), the token contract's document."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    eos = tok.token_to_id("[EOS]")
    return [np.array(e.ids + [eos], dtype=np.uint16) for e in tok.encode_batch(texts)]


def write_token_pieces(shards: list[Path], texts: list[list[str]], tokenizer: Path) -> tuple[list[Path], list[Path]]:
    """``NNNNN.tokens`` and ``NNNNN.lengths.npy`` beside each row shard, from its texts in row order."""
    files, lengths = [], []
    for shard, shard_texts in zip(shards, texts, strict=True):
        docs = tokenize(tokenizer, shard_texts)
        stem = shard.name.split(".")[0]
        files.append(shard.with_name(f"{stem}.tokens"))
        lengths.append(shard.with_name(f"{stem}.lengths.npy"))
        np.concatenate(docs).astype("<u2").tofile(files[-1])
        np.save(lengths[-1], np.array([len(d) for d in docs], dtype=np.int64))
    return files, lengths
