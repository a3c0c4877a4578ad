"""Key files on disk, read and written in ranges: never a whole array at once.

Two kinds of file:

- ``.npy`` columns (the plan's inputs and outputs): :class:`NpyColumn` reads ranges of one
  with explicit reads (no memory map, so no mapped pages pile up in resident memory);
  :class:`NpyWriter` writes one of known length front to back under a temporary name and
  renames it on :meth:`NpyWriter.close`.
- raw record files (the out-of-core plan's spills): :data:`ROW` records back to back, no
  header, appended with :func:`append` and read with :func:`read_records` / :func:`gather`.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from reorder_cli.util import atomic
from reorder_cli.util.atomic import temporary

#: One row of the plan: its global input index, its score and its estimated size in bytes.
#: Rows read at once from an array on disk (scores, sizes, orders), wherever arrays are streamed.
CHUNK_ROWS = 1 << 20

ROW = np.dtype([("row", "<i8"), ("score", "<f8"), ("size", "<i8")])


@contextmanager
def writing(path: str | os.PathLike):
    """Name ``path`` in an ``OSError`` raised while writing it (a full disk says so, with the file)."""
    try:
        yield
    except OSError as exc:
        code = exc.errno or errno.EIO
        raise OSError(code, exc.strerror or os.strerror(code), str(path)) from None


def write_array(fh, values: np.ndarray, path: str | os.PathLike) -> None:
    """Write ``values``' bytes to the open file ``fh``. Unlike ``ndarray.tofile`` (whose short
    write says only "N requested and M written"), a full disk raises ``OSError(ENOSPC)`` naming ``path``."""
    data = np.ascontiguousarray(values)
    with writing(path):
        fh.write(memoryview(data.reshape(-1).view(np.uint8)))


def save_npy(path: Path, array: np.ndarray) -> None:
    """A ``.npy`` file, written atomically (:mod:`reorder_cli.util.atomic`)."""
    array = np.ascontiguousarray(array)
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape}
    with writing(path), atomic.open_atomic(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        write_array(fh, array, path)


class NpyColumn:
    """A 1-D ``.npy`` file whose ranges are read on demand."""

    def __init__(self, path: str | os.PathLike, dtype: np.dtype | str) -> None:
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r")  # maps nothing until touched; read the header only
        self.dtype = np.dtype(dtype)
        if header.dtype != self.dtype or header.ndim != 1:
            raise ValueError(f"{self.path}: expected a 1-D {self.dtype} array, got {header.dtype} {header.shape}")
        self.length = int(header.shape[0])
        self.offset = int(header.offset)
        del header

    def __len__(self) -> int:
        return self.length

    def read(self, start: int, count: int) -> np.ndarray:
        return read_records(self.path, self.dtype, start, count, self.offset)


class NpyWriter:
    """Writes a 1-D ``.npy`` of known length front to back; ``path`` appears only when complete."""

    def __init__(self, path: str | os.PathLike, dtype: np.dtype | str, length: int) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.length = length
        self.written = 0
        self.tmp = temporary(self.path)
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed in close/abort)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (length,)}
        with writing(self.tmp):
            np.lib.format.write_array_header_1_0(self.file, header)

    def write(self, values: np.ndarray) -> None:
        write_array(self.file, np.asarray(values, dtype=self.dtype), self.tmp)
        self.written += len(values)

    def close(self) -> Path:
        with writing(self.tmp):
            self.file.close()
        if self.written != self.length:
            raise AssertionError(f"{self.path}: wrote {self.written} values, expected {self.length}")
        atomic.commit(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def take(records: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``records[index]`` for a contiguous structured array, copying whole records at once
    (NumPy's fancy indexing of a structured dtype copies field by field, several times slower)."""
    whole = np.dtype((np.void, records.dtype.itemsize))
    return records.view(whole)[index].view(records.dtype)


def read_records(path: Path, dtype: np.dtype, start: int, count: int, header: int = 0) -> np.ndarray:
    """``count`` records from record ``start`` of a file of ``dtype`` records after ``header`` bytes."""
    if count <= 0:
        return np.empty(0, dtype=dtype)
    out = np.fromfile(path, dtype=dtype, count=count, offset=header + start * dtype.itemsize)
    if len(out) != count:
        raise OSError(f"{path}: short read ({len(out)} of {count} records from {start})")
    return out


def read_records_at(fh: IO[bytes], dtype: np.dtype, start: int, count: int, name: object = "") -> np.ndarray:
    """``count`` records from record ``start`` of an open file of ``dtype`` records (a local file, or an
    object read by range requests: one request)."""
    if count <= 0:
        return np.empty(0, dtype=dtype)
    out = np.empty(count, dtype=dtype)
    fh.seek(start * dtype.itemsize)
    view, done = memoryview(out.view(np.uint8)), 0
    while done < len(view):  # a loop over partial reads
        n = fh.readinto(view[done:])
        if not n:
            raise OSError(f"{name}: short read ({done // dtype.itemsize} of {count} records from {start})")
        done += n
    return out


def append(path: Path, records: np.ndarray) -> int:
    """Append ``records`` to a raw record file; returns the bytes written."""
    with writing(path), open(path, "ab") as f:
        write_array(f, records, path)
    return records.nbytes


def gather(path: Path, ranks: np.ndarray) -> np.ndarray:
    """The :data:`ROW` records at ``ranks`` of a raw ROW file, in the order of ``ranks``.

    Dense requests (the records span at most 4x their count) read the span with one
    explicit read; sparse ones map only the span, take the records and unmap it at once,
    so at most the touched pages are resident and only during the call.
    """
    if len(ranks) == 0:
        return np.empty(0, dtype=ROW)
    lo, hi = int(ranks.min()), int(ranks.max())
    span = hi - lo + 1
    if span <= 4 * len(ranks):
        return take(read_records(path, ROW, lo, span), ranks - lo)
    mapped = np.memmap(path, dtype=ROW, mode="r", offset=lo * ROW.itemsize, shape=(span,))
    out = np.asarray(take(mapped, ranks - lo))  # a copy; the mapping is released with its last reference, here
    del mapped
    return out
