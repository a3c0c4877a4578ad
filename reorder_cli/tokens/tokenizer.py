"""The run's tokenizer: loaded from a local ``tokenizer.json`` (the ``tokenizers`` library, the extra
``tokens``), its identity the sha256 of the file's bytes, and the settings every token piece is made
with (:func:`resolve`): BOS/EOS ids, the token dtype."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.util.hashing import file_sha256

#: The largest vocabulary (its top id + 1) whose ids all fit uint16.
UINT16_VOCAB = 1 << 16


def _library():
    try:
        import tokenizers
    except ImportError:
        raise ReorderError("tokenizer: the tokenizers library is not installed; install the extra: "
                           "pip install 'reorder[tokens]'") from None
    return tokenizers


@lru_cache(maxsize=4)
def load(path: str, sha256: str):
    """The ``tokenizers.Tokenizer`` of ``path``, refused when its bytes are not the ones the run was
    planned with (``sha256``)."""
    found = file_sha256(Path(path))
    if found != sha256:
        raise ReorderError(f"{path}: the tokenizer changed since the run was planned (its sha256 differs); put it "
                           "back, or re-run with --restart")
    try:
        return _library().Tokenizer.from_file(path)
    except Exception as exc:  # noqa: BLE001 - the library raises its own exception types
        raise ReorderError(f"{path}: not a tokenizer the tokenizers library reads: "
                           f"{str(exc).splitlines()[0][:200]}") from None


def _configured(path: Path, which: str) -> str | None:
    """``bos_token``/``eos_token`` of the ``tokenizer_config.json`` beside the tokenizer, if any."""
    config = path.parent / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get(which)
    except (OSError, ValueError, AttributeError) as exc:
        raise ReorderError(f"{config}: not readable JSON ({str(exc)[:120]}); fix it, or set {which}") from None
    if isinstance(value, dict):  # {"content": "<s>", ...}, as older configs write it
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _special(tok, tokens: dict[str, Any], which: str) -> int | None:
    """The id of the BOS or EOS token (``which``: bos or eos) when ``add_<which>`` is on; else None."""
    if not tokens[f"add_{which}"]:
        return None
    key = f"{which}_token"
    text = tokens.get(key) or _configured(Path(tokens["tokenizer"]), key)
    if text is None:
        raise ReorderError(f"config key '{key}': add_{which} is true but no {which.upper()} token is known (none "
                           f"set, no {key} in a tokenizer_config.json beside the tokenizer); set {key}, or "
                           f"add_{which}: false")
    ident = tok.token_to_id(text)
    if ident is None:
        raise ReorderError(f"config key '{key}': {text!r} is not in the vocabulary of {tokens['tokenizer']}; give a "
                           "token it has")
    return int(ident)


def resolve(tokens: dict[str, Any]) -> dict[str, Any]:
    """What each token piece is made with, from the run's token keys (``RunConfig.tokens``): the
    tokenizer's path and sha256, ``text_field``, the BOS/EOS ids (None: not added), the dtype and the
    vocabulary's size."""
    tok = load(tokens["tokenizer"], tokens["sha256"])
    ids = tok.get_vocab(with_added_tokens=True).values()  # a WordLevel vocabulary may have gaps: its top id counts
    vocab = max(int(tok.get_vocab_size(with_added_tokens=True)), max(ids, default=-1) + 1)
    dtype = tokens["token_dtype"] if tokens["token_dtype"] != "auto" else \
        ("uint16" if vocab <= UINT16_VOCAB else "uint32")
    out = {"tokenizer": tokens["tokenizer"], "sha256": tokens["sha256"], "text_field": tokens["text_field"],
           "bos": _special(tok, tokens, "bos"), "eos": _special(tok, tokens, "eos"), "dtype": dtype,
           "vocab_size": vocab}
    top = np.iinfo(dtype).max
    for which in ("bos", "eos"):
        if out[which] is not None and out[which] > top:
            raise ReorderError(f"config key '{which}_token': its id {out[which]} does not fit token_dtype {dtype}; "
                               "set token_dtype: uint32")
    return out
