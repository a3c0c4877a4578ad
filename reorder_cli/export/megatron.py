"""``export: megatron``: the token stream as ONE megatron-core indexed dataset, ``megatron/data.bin`` + ``.idx``.

One sequence per document, in the stream's order; one prefix (``megatron/data``), because several
prefixes are blended by weight and lose the order. The format is megatron-core's
(``megatron/core/datasets/indexed_dataset.py``, ``_IndexWriter``): the ``.bin`` is the tokens back to
back; the ``.idx`` is the header ``MMIDIDX\\x00\\x00``, version 1 (``<Q``), the dtype code (``<B``),
the sequence count and the document count (``<Q`` each), then the sequence lengths (int32), the
sequence pointers (int64, byte offsets into the ``.bin``) and the document indices (int64,
``0..n``: document d is sequence d).

Megatron has no uint32 dtype: a run's uint32 tokens are written as int32 (code 4), its uint16 as
uint16 (code 8), the dtypes a ``GPTDatasetConfig`` expects for those vocabularies. The pieces are
streamed, a chunk at a time; nothing is loaded whole. ``reorder_cli.loader.megatron`` keeps
Megatron's ``GPTDataset`` from shuffling this stream.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.formats.writers import _HashingFile
from reorder_cli.util.npy import CHUNK_ROWS, NpyColumn

NAME = "megatron"
NEEDS_TOKENS = True
PREFIX = "data"  # megatron/data.bin + .idx: the prefix to give Megatron is OUT/megatron/data

HEADER = b"MMIDIDX\x00\x00"
VERSION = 1
#: the run's token dtype -> (the dtype written, megatron-core's DType code for it)
DTYPES = {np.dtype("uint16"): (np.dtype("<u2"), 8), np.dtype("uint32"): (np.dtype("<i4"), 4)}
_INT32_MAX = np.iinfo(np.int32).max


def assemble(src, dest: Path) -> dict:
    """Write ``dest/data.bin`` and ``dest/data.idx`` from the token pieces; return the manifest's ``export`` entry."""
    if not src.token_files or src.lengths is None or src.dtype is None:
        raise ReorderError("export: megatron writes tokens, and this run has none: set tokenizer: PATH in the config")
    if np.dtype(src.dtype) not in DTYPES:
        raise ReorderError(f"export: megatron: token dtype {src.dtype} is not uint16 or uint32; "
                           "the token pieces are not this version's: re-run with --restart")
    out_dtype, code = DTYPES[np.dtype(src.dtype)]
    pieces = zip(src.token_files, src.lengths, strict=True)
    columns = [_lengths(tokens, lengths, np.dtype(src.dtype)) for tokens, lengths in pieces]
    count = sum(len(c) for c in columns)
    bin_path, idx_path = dest / f"{PREFIX}.bin", dest / f"{PREFIX}.idx"
    try:
        bin_file = _write_bin(bin_path, src.token_files, np.dtype(src.dtype), out_dtype)
        idx_file = _write_idx(idx_path, columns, count, out_dtype.itemsize, code)
    except BaseException:
        bin_path.unlink(missing_ok=True)
        idx_path.unlink(missing_ok=True)
        raise
    files = [{"file": f"{NAME}/{path.name}", "bytes": f.size, "sha256": f.digest.hexdigest()}
             for path, f in ((bin_path, bin_file), (idx_path, idx_file))]
    return {"format": NAME, "files": files, "prefix": f"{NAME}/{PREFIX}", "dtype": out_dtype.name, "dtype_code": code,
            "sequences": count, "documents": count, "tokens": bin_file.size // out_dtype.itemsize}


def _lengths(tokens: Path, lengths: Path, dtype: np.dtype) -> NpyColumn:
    """The piece's lengths, checked against its token file (sizes agree, each fits Megatron's int32)."""
    try:
        column = NpyColumn(lengths, np.int64)
    except (OSError, ValueError) as exc:
        raise ReorderError(f"{lengths}: not a 1-D int64 .npy of tokens per document ({exc}); "
                           "the token piece is damaged: re-run with --restart") from None
    total = 0
    for start in range(0, len(column), CHUNK_ROWS):
        chunk = column.read(start, min(CHUNK_ROWS, len(column) - start))
        bad = np.flatnonzero((chunk < 0) | (chunk > _INT32_MAX))
        if len(bad):
            raise ReorderError(f"{lengths}: document {start + int(bad[0])} has {int(chunk[bad[0]]):,} tokens, "
                               f"outside 0..{_INT32_MAX:,} (Megatron's int32 sequence length); "
                               "split long documents, or re-run with --restart if the piece is damaged")
        total += int(chunk.sum())
    size = tokens.stat().st_size
    if size != total * dtype.itemsize:
        raise ReorderError(f"{tokens}: holds {size // dtype.itemsize:,} {dtype.name} tokens ({size:,} bytes) but "
                           f"{lengths.name} counts {total:,}; the token piece is damaged: re-run with --restart")
    return column


def _write_bin(path: Path, token_files: list[Path], dtype: np.dtype, out_dtype: np.dtype) -> _HashingFile:
    out = _HashingFile(path)
    try:
        for tokens in token_files:
            with open(tokens, "rb") as fh:
                done = 0
                while len(chunk := np.fromfile(fh, dtype=dtype.newbyteorder("<"), count=CHUNK_ROWS)):
                    if out_dtype != chunk.dtype:
                        if int(chunk.max()) > _INT32_MAX:
                            at = done + int(np.argmax(chunk > _INT32_MAX))
                            raise ReorderError(f"{tokens}: token {at:,} is {int(chunk.max()):,}, beyond Megatron's "
                                               "int32 token ids; use a tokenizer whose vocabulary fits int32")
                        chunk = chunk.astype(out_dtype)
                    out.write(memoryview(np.ascontiguousarray(chunk)).cast("B"))
                    done += len(chunk)
    finally:
        out.close()
    return out


def _write_idx(path: Path, columns: list[NpyColumn], count: int, itemsize: int, code: int) -> _HashingFile:
    """The index: header, counts, then the three per-sequence sections, each streamed over the pieces."""
    out = _HashingFile(path)
    try:
        out.write(HEADER + struct.pack("<Q", VERSION) + struct.pack("<B", code)
                  + struct.pack("<Q", count) + struct.pack("<Q", count + 1))
        for chunk in _chunks(columns):
            out.write(chunk.astype("<i4").tobytes())
        pointer = 0
        for chunk in _chunks(columns):
            ends = np.cumsum(chunk * itemsize, dtype=np.int64) + pointer
            out.write((ends - chunk * itemsize).astype("<i8").tobytes())
            pointer = int(ends[-1])
        for start in range(0, count + 1, CHUNK_ROWS):  # document d is sequence d: 0, 1, ..., count
            out.write(np.arange(start, min(start + CHUNK_ROWS, count + 1), dtype="<i8").tobytes())
    finally:
        out.close()
    return out


def _chunks(columns: list[NpyColumn]):
    for column in columns:
        for start in range(0, len(column), CHUNK_ROWS):
            yield column.read(start, min(CHUNK_ROWS, len(column) - start))
