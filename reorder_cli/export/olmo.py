"""``export: olmo``: the token stream as the one token file OLMo-core's numpy datasets read.

OLMo-core (``olmo_core.data.numpy_dataset.NumpyFSLDataset``) reads raw memmaps of the token dtype
(named ``.npy`` by convention, no header) and cuts each FILE into instances of ``sequence_length``
tokens, dropping each file's remainder: instances never cross files. One file a shard would shift
every instance after the first shard's remainder, so the export is ONE file, ``olmo/tokens.npy``,
the pieces concatenated in shard order (streamed, never loaded whole): instance i is tokens
``[i*L, (i+1)*L)`` of the run's stream.

Beside it, ``olmo/tokens.csv.gz``: the document boundaries as the Dolma toolkit writes them (one
``start,end`` line a document, token offsets into ``tokens.npy``), which OLMo-core's
``iter_document_indices`` reads for a URL or with ``use_array_if_local=False``. It is built from
the pieces' lengths, so it holds whether or not the documents end with EOS.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.export import ExportInput
from reorder_cli.util import atomic
from reorder_cli.util.npy import writing

NAME = "olmo"
NEEDS_TOKENS = True

TOKENS_FILE = "tokens.npy"
METADATA_FILE = "tokens.csv.gz"  # OLMo-core finds it by replacing ".npy" with ".csv.gz"
_READ = 16 << 20  # bytes copied at once
_DOCS = 1 << 20  # documents formatted at once


class _Hashing:
    """A write-only file that also hashes and counts what goes through it."""

    def __init__(self, fh):
        self.fh, self.digest, self.bytes = fh, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.bytes += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def _lengths(path: Path, token_file: Path, itemsize: int) -> np.ndarray:
    """The shard's document lengths, checked against its token file's size."""
    try:
        lengths = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ReorderError(f"{path}: not a readable lengths file ({str(exc)[:120]}); re-run the run") from None
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths.size and int(lengths.min()) < 0):
        raise ReorderError(f"{path}: expected a 1-D array of non-negative integers (tokens per document), "
                           f"got {lengths.dtype} of shape {lengths.shape}; re-run the run")
    size = token_file.stat().st_size if token_file.is_file() else None
    want = int(lengths.sum(dtype=np.int64)) * itemsize
    if size != want:
        found = "is missing" if size is None else f"holds {size} bytes"
        raise ReorderError(f"{token_file}: {found}, but its lengths ({path.name}) add up to {want} bytes; "
                           "the token pieces are incomplete or changed: re-run the run")
    return lengths.astype(np.int64, copy=False)


def _boundaries(lengths: np.ndarray, first: int) -> bytes:
    """``start,end`` lines of the documents (vectorised), their first token at ``first``."""
    ends = first + np.cumsum(lengths, dtype=np.int64)
    starts = ends - lengths
    lines = np.char.add(np.char.add(starts.astype(str), ","), ends.astype(str))
    return ("\n".join(lines.tolist()) + "\n").encode() if lines.size else b""


def _entry(name: str, out: _Hashing) -> dict:
    return {"file": f"{NAME}/{name}", "bytes": out.bytes, "sha256": out.digest.hexdigest()}


def assemble(src: ExportInput, dest: Path) -> dict:
    """Write ``tokens.npy`` and ``tokens.csv.gz`` into ``dest``; return the manifest's ``export`` entry."""
    if src.token_files is None or src.lengths is None or src.dtype is None:
        raise ReorderError("export: olmo writes token files: set tokenizer: PATH (a local tokenizer.json) "
                           "in the run config")
    if not len(src.token_files) == len(src.lengths) == len(src.shards):
        raise ReorderError(f"export: olmo: {len(src.shards)} shards but {len(src.token_files)} token files and "
                           f"{len(src.lengths)} lengths files; re-run the run")
    dtype = np.dtype(src.dtype)
    if dtype.kind != "u":
        raise ReorderError(f"export: olmo: token dtype {dtype} is not an unsigned integer type OLMo-core reads")
    lengths = [_lengths(Path(p), Path(t), dtype.itemsize) for p, t in zip(src.lengths, src.token_files, strict=True)]

    dest = Path(dest)
    with writing(dest / TOKENS_FILE), atomic.open_atomic(dest / TOKENS_FILE) as fh:
        tokens = _Hashing(fh)
        for piece in src.token_files:
            with open(piece, "rb") as part:
                while chunk := part.read(_READ):
                    tokens.write(chunk)
    try:
        with writing(dest / METADATA_FILE), atomic.open_atomic(dest / METADATA_FILE) as fh:
            meta = _Hashing(fh)
            # no name and no time in the gzip header: the same boundaries give the same bytes
            with gzip.GzipFile(filename="", mode="wb", fileobj=meta, compresslevel=6, mtime=0) as gz:
                first = 0
                for shard in lengths:
                    for lo in range(0, shard.size, _DOCS):
                        block = shard[lo:lo + _DOCS]
                        gz.write(_boundaries(block, first))
                        first += int(block.sum(dtype=np.int64))
    except BaseException:
        (dest / TOKENS_FILE).unlink(missing_ok=True)  # nothing half-written: both files or none
        raise
    total = tokens.bytes // dtype.itemsize
    return {"format": NAME, "files": [_entry(TOKENS_FILE, tokens), _entry(METADATA_FILE, meta)],
            "dtype": dtype.name, "tokens": total, "documents": int(sum(x.size for x in lengths)),
            "token_file": f"{NAME}/{TOKENS_FILE}", "metadata_file": f"{NAME}/{METADATA_FILE}"}
