"""One shard's token piece: ``NNNNN.tokens`` (its documents' ids, in row order, raw little-endian in the
run's dtype, each document ``[BOS] + ids + [EOS]``) and ``NNNNN.lengths.npy`` (tokens a document, int64),
written beside the finished shard, atomically: both appear complete, or neither does."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.tokens import texts, tokenizer
from reorder_cli.util import atomic
from reorder_cli.util.hashing import file_sha256
from reorder_cli.util.npy import save_npy, write_array

TOKENS_SUFFIX = ".tokens"
LENGTHS_SUFFIX = ".lengths.npy"
#: documents encoded at once (the library's batch encoding, threads of its own)
BATCH_DOCS = 8192


def names(shard_file: str) -> tuple[str, str]:
    """(tokens, lengths) file names of the piece of shard ``00012.parquet``."""
    stem = shard_file.split(".")[0]
    return stem + TOKENS_SUFFIX, stem + LENGTHS_SUFFIX


def encode(tok, docs: list[str], bos: int | None, eos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(the documents' tokens, concatenated, each [BOS] + ids + [EOS]; the tokens of each document),
    as ``uint32`` (checked against ``dtype`` by the caller)."""
    encodings = tok.encode_batch_fast(docs, add_special_tokens=False)
    counts = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))  # len: no id list
    flat = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.uint32,
                       count=int(counts.sum()))
    extra = (bos is not None) + (eos is not None)
    if not extra:
        return flat, counts
    lengths = counts + extra
    ends = np.cumsum(lengths)
    out = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.uint32)
    body = np.ones(len(out), dtype=bool)
    if bos is not None:
        out[ends - lengths] = bos
        body[ends - lengths] = False
    if eos is not None:
        out[ends - 1] = eos
        body[ends - 1] = False
    out[body] = flat
    return out, lengths


def tokenize_shard(shard: Path, row_format: str, settings: dict[str, Any], where: texts.Locate) -> dict[str, Any]:
    """Write the token piece of the finished ``shard`` beside it; returns its record: ``file``, ``lengths``
    (names beside the shard), ``tokens``, ``bytes``, ``sha256`` (of the tokens file) and ``lengths_bytes``,
    ``lengths_sha256``. ``where(row)`` names a shard row's input (the error path)."""
    tok = tokenizer.load(settings["tokenizer"], settings["sha256"])
    dtype = np.dtype(settings["dtype"]).newbyteorder("<")
    top = np.iinfo(dtype).max
    tokens_name, lengths_name = names(shard.name)
    tokens_path, lengths_path = shard.with_name(tokens_name), shard.with_name(lengths_name)
    tmp = atomic.temporary(tokens_path)
    digest, size, counts, row = hashlib.sha256(), 0, [], 0
    try:
        with open(tmp, "wb") as fh:
            for column in texts.batches(shard, row_format, settings["text_field"], where, BATCH_DOCS):
                for lo in range(0, len(column), BATCH_DOCS):  # a loop over batches of documents
                    docs = column.slice(lo, BATCH_DOCS).to_pylist()
                    ids, lengths = encode(tok, docs, settings["bos"], settings["eos"])
                    if len(ids) and int(ids.max()) > top:
                        first = int(np.flatnonzero(ids > top)[0])
                        doc = int(np.searchsorted(np.cumsum(lengths), first, side="right"))
                        raise ReorderError(
                            f"{where(row + lo + doc)} (output shard {shard.name}, row {row + lo + doc}): token id "
                            f"{int(ids[first])} does not fit token_dtype {settings['dtype']}; set token_dtype: uint32")
                    data = ids.astype(dtype, copy=False)
                    digest.update(memoryview(np.ascontiguousarray(data)).cast("B"))
                    write_array(fh, data, tokens_path)
                    size += data.nbytes
                    counts.append(lengths)
                row += len(column)
        lengths = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        save_npy(lengths_path, lengths.astype(np.int64))
        atomic.commit(tmp, tokens_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        lengths_path.unlink(missing_ok=True)
        raise
    return {"file": tokens_name, "lengths": lengths_name, "tokens": int(lengths.sum()), "bytes": size,
            "sha256": digest.hexdigest(), "lengths_bytes": lengths_path.stat().st_size,
            "lengths_sha256": file_sha256(lengths_path)}


def beside(shard: Path, row_format: str, record: dict[str, Any], settings: dict[str, Any] | None,
           where: texts.Locate) -> dict[str, Any]:
    """``record`` (a finished shard's) with its token piece, made beside it when the run tokenizes
    (``settings``); a failure removes the shard too, so nothing of the task is left."""
    if settings is None:
        return record
    try:
        return {**record, "tokens": tokenize_shard(shard, row_format, settings, where)}
    except BaseException:
        shard.unlink(missing_ok=True)
        raise


def piece_differs(folder: Path, record: dict[str, Any]) -> str | None:
    """How the token piece ``record`` (a shard record's ``tokens``) in ``folder`` differs from it; None
    when both its files hold the bytes recorded."""
    for name, size, sha in ((record["file"], record["bytes"], record["sha256"]),
                            (record["lengths"], record.get("lengths_bytes"), record.get("lengths_sha256"))):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if size is not None and path.stat().st_size != size:
            return f"{name} has {path.stat().st_size:,} bytes, its record says {size:,}"
        if sha is not None and file_sha256(path) != sha:
            return f"{name} was altered (its sha256 differs from its record's)"
    return None

