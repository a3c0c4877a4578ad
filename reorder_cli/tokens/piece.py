"""One shard's token piece: ``NNNNN.tokens`` (its documents' ids, in row order, raw little-endian in the
run's dtype, each document ``[BOS] + ids + [EOS]``) and ``NNNNN.lengths.npy`` (tokens a document, int64),
written beside the shard as it is written (:class:`PieceWriter`), atomically: both appear complete, or
neither does."""

from __future__ import annotations

import hashlib
import itertools
from concurrent.futures import Future, ThreadPoolExecutor
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


class PieceWriter:
    """The token piece of a shard being written: each write batch's documents are encoded as the batch is
    written (:meth:`add`), in a thread of the piece's own, so encoding (the library releases the GIL)
    overlaps the shard's gathering and compression; the shard is never read back. ``finish`` moves both
    files into place; ``abort`` removes them and the shard."""

    def __init__(self, shard: Path, row_format: str, settings: dict[str, Any], where: texts.Locate):
        self.shard, self.fmt, self.settings, self.where = shard, row_format, settings, where
        self.tok = tokenizer.load(settings["tokenizer"], settings["sha256"])
        self.dtype = np.dtype(settings["dtype"]).newbyteorder("<")
        self.tokens_name, self.lengths_name = names(shard.name)
        self.tokens_path, self.lengths_path = shard.with_name(self.tokens_name), shard.with_name(self.lengths_name)
        self.tmp = atomic.temporary(self.tokens_path)
        self._fh = open(self.tmp, "wb")  # noqa: SIM115 - open across add() calls, closed by finish/abort
        self._digest, self._size, self._counts, self._rows = hashlib.sha256(), 0, [], 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"tokens-{self.tokens_name}")
        self._pending: Future | None = None

    def add(self, batch) -> None:
        """Encode the next rows of the shard: ``batch`` is a Parquet table or the bytes of whole JSONL lines,
        as written. At most one batch is encoding while the caller writes the next."""
        self._wait()
        top = self.settings["text_field"].split(".")[0]
        if self.fmt == "parquet" and top in batch.schema.names:
            batch = batch.select([top])  # the other columns are not held while encoding
        self._pending = self._thread.submit(self._encode, batch)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # an encoding error surfaces here, in the writing thread

    def _encode(self, batch) -> None:
        field, first, top = self.settings["text_field"], self._rows, np.iinfo(self.dtype).max
        column = texts.table_column(batch, field, first, self.shard, self.where) if self.fmt == "parquet" \
            else texts.lines_column(batch, field, first, self.shard, self.where)
        for lo in range(0, len(column), BATCH_DOCS):  # a loop over batches of documents
            ids, lengths = encode(self.tok, column.slice(lo, BATCH_DOCS).to_pylist(), self.settings["bos"],
                                  self.settings["eos"])
            if len(ids) and int(ids.max()) > top:
                at = int(np.flatnonzero(ids > top)[0])
                row = first + lo + int(np.searchsorted(np.cumsum(lengths), at, side="right"))
                raise ReorderError(
                    f"{self.where(row)} (output shard {self.shard.name}, row {row}): token id {int(ids[at])} does "
                    f"not fit token_dtype {self.settings['dtype']}; set token_dtype: uint32")
            data = np.ascontiguousarray(ids.astype(self.dtype, copy=False))
            self._digest.update(memoryview(data).cast("B"))
            write_array(self._fh, data, self.tokens_path)
            self._size += data.nbytes
            self._counts.append(lengths)
        self._rows += len(column)

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` (the finished shard's) with its piece's: ``file``, ``lengths`` (names beside the shard),
        ``tokens``, ``bytes``, ``sha256`` (of the tokens file), ``lengths_bytes``, ``lengths_sha256``."""
        self._wait()
        self._thread.shutdown()
        self._fh.close()
        lengths = np.concatenate(self._counts) if self._counts else np.zeros(0, dtype=np.int64)
        save_npy(self.lengths_path, lengths.astype(np.int64))
        atomic.commit(self.tmp, self.tokens_path)
        return {**record, "tokens": {
            "file": self.tokens_name, "lengths": self.lengths_name, "tokens": int(lengths.sum()),
            "bytes": self._size, "sha256": self._digest.hexdigest(),
            "lengths_bytes": self.lengths_path.stat().st_size, "lengths_sha256": file_sha256(self.lengths_path)}}

    def abort(self) -> None:
        """Remove the piece and the shard (finished or not): nothing of the task is left."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        self._thread.shutdown(wait=True)  # the encoding under way ends before its file is removed
        self._fh.close()
        for path in (self.tmp, self.tokens_path, self.lengths_path, self.shard):
            path.unlink(missing_ok=True)


class NoPiece:
    """The piece writer of a run without a tokenizer: nothing is made."""

    def add(self, batch) -> None:
        pass

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        return record

    def abort(self) -> None:
        pass


def writer(shard: Path, row_format: str, settings: dict[str, Any] | None, where: texts.Locate) -> PieceWriter | NoPiece:
    """The writer of ``shard``'s token piece, fed every batch the shard is written with (``settings``: the
    run's token settings, None when it does not tokenize)."""
    return NoPiece() if settings is None else PieceWriter(shard, row_format, settings, where)


def piece_differs(folder: Path, record: dict[str, Any], digest: bool = True) -> str | None:
    """How the token piece ``record`` (a shard record's ``tokens``) in ``folder`` differs from it; None
    when both its files hold the bytes recorded (``digest=False``: their sizes only, as the work folder's
    markers check a task's files)."""
    for name, size, sha in ((record["file"], record["bytes"], record["sha256"]),
                            (record["lengths"], record.get("lengths_bytes"), record.get("lengths_sha256"))):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if size is not None and path.stat().st_size != size:
            return f"{name} has {path.stat().st_size:,} bytes, its record says {size:,}"
        if digest and sha is not None and file_sha256(path) != sha:
            return f"{name} was altered (its sha256 differs from its record's)"
    return None

