"""Output shard writers. Each writes to a temporary name and renames to ``NAME`` on success,
so a shard file either exists complete or not at all."""

from __future__ import annotations

import hashlib
import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from reorder_cli.errors import ReorderError
from reorder_cli.formats import parquet_stitch
from reorder_cli.util import store
from reorder_cli.util.atomic import commit, temporary
from reorder_cli.util.hashing import file_sha256

EXTENSIONS = {"parquet": ".parquet", "jsonl.zst": ".jsonl.zst", "jsonl": ".jsonl"}
COMPRESSION = {"parquet": "zstd", "jsonl.zst": "zstd", "jsonl": None}


_SHARD_NAME = re.compile(r"^\d{5}\.(parquet|jsonl|jsonl\.zst)$")


def shard_name(index: int, fmt: str) -> str:
    return f"{index:05d}{EXTENSIONS[fmt]}"


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is the name of an output shard (``00012.parquet``)."""
    return _SHARD_NAME.match(name) is not None


class _HashingFile:
    """A binary file that hashes and counts what is written through it."""

    def __init__(self, path: Path):
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.digest.update(data)
        self._fh.write(data)
        n = memoryview(data).nbytes
        self.size += n
        return n

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:  # the Parquet writer closes its sink itself: closing twice is fine
        self._fh.close()


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard, as its task marker and the manifest record it."""

    index: int
    file: str
    rows: int
    bytes: int
    sha256: str
    first: int  # its first position in the order
    compression: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def parquet_properties(level: int) -> dict:
    """How a Parquet shard is encoded (``pq.ParquetWriter``'s keywords): zstd at ``level``, plain encoding as
    Polars writes (dictionary pages seldom make a zstd shard smaller and cost 15-35% of the encoding on short
    columns: docs/performance.md)."""
    return {"compression": "zstd", "compression_level": level, "use_dictionary": False}


def encoding_ahead(workers: int, shards: int) -> int:
    """Row groups a shard encodes at once when ``shards`` shards are written ``workers`` at a time: the
    cores the workers may use that the shards being written leave idle (one shard on two cores: 2).
    Never more than the workers the memory budget allowed, as each holds a write batch."""
    busy = max(1, min(workers, shards))
    return max(1, min(workers, os.cpu_count() or 1) // busy)


class ShardWriter:
    """Write one shard; ``finish()`` renames it into place and returns its :class:`ShardRecord` (as a dict).

    A Parquet shard's row groups (one a ``write_table``) are encoded on the encoding threads
    (:mod:`parquet_stitch`), up to ``ahead`` at once (each holds its table till written; see
    :func:`encoding_ahead`; a callable is asked again at each row group, so a shard left alone takes the
    cores the finished ones gave back), and written in order: the bytes are those of one ``pq.ParquetWriter``
    given the same tables, whatever ``ahead``. Should the stitch not apply to the first row group (a
    footer the codec does not give back), the shard is written serially instead. With ``ahead`` above 1
    a large row group is also cut into ``ahead`` runs of columns encoded at once (a shard of one or two
    row groups, as a 200k-row shard of 40 columns is, uses both cores too)."""

    SPLIT_BYTES = 4 << 20  # a row group of this many Arrow bytes or more is encoded in runs of columns at once

    def __init__(self, path: Path, fmt: str, level: int, schema: pa.Schema | None = None,
                 ahead: int | Callable[[], int] = 1):
        self.path, self.fmt = path, fmt
        self._ahead = ahead if callable(ahead) else (lambda n=ahead: n)  # asked again at each row group
        self.tmp = temporary(path)
        self._file = _HashingFile(self.tmp)  # hashed as written: no second read of the shard
        self._pq = None
        if fmt == "parquet":
            self._schema, self._properties = schema, parquet_properties(level)
            self._pending: deque = deque()  # (table, its encoding futures, their Part), in order
            self._head = None  # the future of the schema written with no rows (for joined column runs)
            self._stitch: parquet_stitch.Stitcher | None = parquet_stitch.Stitcher(self._file)
        else:
            self._zstd = zstandard.ZstdCompressor(level=level).stream_writer(self._file, closefd=False) \
                if fmt == "jsonl.zst" else None

    def write_lines(self, data) -> None:
        (self._zstd or self._file).write(data)

    def write_table(self, table: pa.Table) -> None:
        if self._stitch is None:
            self._serial(table)
            return
        pool, props, ahead = parquet_stitch.pool(), self._properties, max(1, self._ahead())
        groups = parquet_stitch.column_groups(table, ahead) \
            if ahead > 1 and table.num_rows and table.nbytes >= self.SPLIT_BYTES else []
        if len(groups) > 1:  # the row group's columns in runs, encoded at once, joined when written
            if self._head is None:
                self._head = pool.submit(parquet_stitch.encode_part, table.slice(0, 0), self._schema, **props)
            head = self._head
            futures = [pool.submit(parquet_stitch.encode_columns, table, self._schema, g, **props) for g in groups]

            def resolve() -> parquet_stitch.Part:
                return parquet_stitch.join_columns(head.result(), [f.result() for f in futures])
        else:
            futures = [pool.submit(parquet_stitch.encode_part, table, self._schema, **props)]
            resolve = futures[0].result
        self._pending.append((table, futures, resolve))
        while len(self._pending) >= ahead:
            self._write_oldest()

    def _write_oldest(self) -> None:
        table, _, resolve = self._pending.popleft()
        try:
            part = resolve()
        except parquet_stitch.StitchError:
            if self._stitch is None or self._stitch.first is not None:
                raise
            self._stitch = None  # nothing written yet: this and every later table serially
            self._serial(table)
            while self._pending:
                self._serial(self._pending.popleft()[0])
            return
        if self._stitch is None:  # an earlier part fell back: the rest are written serially too
            self._serial(table)
        else:
            self._stitch.add(part)

    def _serial(self, table: pa.Table) -> None:
        if self._pq is None:
            self._pq = pq.ParquetWriter(self._file, self._schema, **self._properties)
        self._pq.write_table(table, row_group_size=max(1, table.num_rows))

    def _close_parquet(self) -> None:
        while self._pending:
            self._write_oldest()
        if self._stitch is not None and self._stitch.first is not None:
            self._stitch.finish()
        else:  # no row group (an empty shard), or written serially
            if self._pq is None:
                self._pq = pq.ParquetWriter(self._file, self._schema, **self._properties)
            self._pq.close()

    def finish(self, index: int, first: int, rows: int) -> dict:
        """Close the shard ``index`` (positions [first, first + rows)) and move it into place."""
        if self.fmt == "parquet":
            self._close_parquet()
        elif self._zstd is not None:
            self._zstd.close()
        self._file.close()
        if self.fmt == "parquet" and self._stitch is not None:
            self._check_stitched(rows)
        size, sha = self._file.size, self._file.digest.hexdigest()
        commit(self.tmp, self.path)
        return ShardRecord(index, self.path.name, rows, size, sha, first, COMPRESSION[self.fmt]).to_dict()

    def _check_stitched(self, rows: int) -> None:
        """A stitched shard read back by pyarrow's own footer reader (a few KB): its rows and schema must be
        what was written, or the shard is refused before it is moved into place (never a file that reads
        otherwise than it was meant to)."""
        try:
            meta = pq.read_metadata(self.tmp)
            ok = meta.num_rows == rows and meta.schema.to_arrow_schema().equals(self._schema)
        except (OSError, pa.ArrowException) as exc:
            ok, why = False, str(exc).splitlines()[0]
        else:
            why = f"{meta.num_rows:,} rows read back, {rows:,} written, or another schema"
        if not ok:
            raise ReorderError(f"{self.path.name}: the shard's row groups, encoded in parallel, do not read back as "
                               f"written ({why}); nothing was published: please report it")

    def abort(self) -> None:
        try:
            if self.fmt == "parquet":
                futures = [f for _, fs, _ in self._pending for f in fs]
                for future in futures:  # no encoding thread holds a table after this
                    future.cancel()
                for future in futures:
                    if not future.cancelled():
                        future.exception()
                self._pending.clear()
                if self._pq is not None:
                    self._pq.close()
            self._file.close()
        except Exception:  # noqa: BLE001 - best effort before removing the partial file
            pass
        self.tmp.unlink(missing_ok=True)


def shard_differs(folder: Path | store.URL, file: str, size: int, sha256: str,
                  what: str = "the manifest") -> str | None:
    """How the shard ``file`` in ``folder`` differs from the ``size`` and ``sha256`` recorded (in a manifest's
    entry or a gather record); None when its bytes are the ones recorded."""
    path = folder / file
    found = store.size(path)
    if found != size:
        return f"{file} has {found:,} bytes, {what} says {size:,}"
    if file_sha256(path) != sha256:
        return f"{file} was altered (its sha256 differs from {what}'s)"
    return None
