"""Row groups encoded in parallel, stitched into the bytes one ``pq.ParquetWriter`` writes.

A Parquet file is ``PAR1``, its row groups' column chunks one after another, the footer (a Thrift
compact ``FileMetaData``), the footer's length and ``PAR1``. A column chunk's pages hold no file
offsets, so a row group encoded alone (as a one-row-group file in memory) has the very bytes it
has in the whole file; only the footer records where each chunk starts, and a row group's ordinal.
So each batch is encoded on its own thread (pyarrow releases the GIL), its chunk bytes are copied
to the shard in order, and the footer is the first part's ``FileMetaData`` with every part's row
groups, their offsets shifted to where they landed and their ordinals renumbered, and the rows
added up: the bytes of a serial ``ParquetWriter`` given the same tables, whatever the threads.

Only the footer is decoded and encoded again (a small, generic Thrift compact codec): a footer
that does not come back byte for byte from decode-then-encode, or parts whose metadata beyond the
row groups differ, or offsets this module does not know how to move (page indexes, bloom filters),
raise :class:`StitchError`, and the caller writes serially instead.
"""

from __future__ import annotations

import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

MAGIC = b"PAR1"

# Thrift compact types
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

# Field ids (parquet.thrift)
_FMD_NUM_ROWS, _FMD_ROW_GROUPS = 3, 4
_RG_COLUMNS, _RG_FILE_OFFSET, _RG_ORDINAL = 1, 5, 7
_CC_FILE_OFFSET, _CC_META, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX = 2, 3, 4, 6
_CMD_DATA_PAGE, _CMD_INDEX_PAGE, _CMD_DICT_PAGE, _CMD_BLOOM = 9, 10, 11, 14


class StitchError(Exception):
    """The parts cannot be stitched into a serial writer's bytes (the caller writes serially)."""


# ------------------------------------------------------------------ a generic Thrift compact codec
# A struct is a list of [field id, compact type, value]; a list or set is (element type, [values]);
# a map is (key type, value type, [(key, value)]); a double stays its 8 raw bytes.


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _read_value(buf, pos: int, t: int):
    if t in (_TRUE, _FALSE):  # a bool inside a container: one byte
        return buf[pos], pos + 1
    if t == _BYTE:
        return buf[pos], pos + 1
    if t in (_I16, _I32, _I64):
        v, pos = _varint(buf, pos)
        return _unzigzag(v), pos
    if t == _DOUBLE:
        return bytes(buf[pos : pos + 8]), pos + 8
    if t == _BINARY:
        n, pos = _varint(buf, pos)
        return bytes(buf[pos : pos + n]), pos + n
    if t in (_LIST, _SET):
        head = buf[pos]
        pos += 1
        size, et = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(buf, pos)
        items = []
        for _ in range(size):
            v, pos = _read_value(buf, pos, et)
            items.append(v)
        return (et, items), pos
    if t == _MAP:
        size, pos = _varint(buf, pos)
        if not size:
            return (0, 0, []), pos
        kt, vt = buf[pos] >> 4, buf[pos] & 0x0F
        pos += 1
        pairs = []
        for _ in range(size):
            k, pos = _read_value(buf, pos, kt)
            v, pos = _read_value(buf, pos, vt)
            pairs.append((k, v))
        return (kt, vt, pairs), pos
    if t == _STRUCT:
        return _read_struct(buf, pos)
    raise StitchError(f"unknown Thrift compact type {t}")


def _read_struct(buf, pos: int) -> tuple[list, int]:
    fields, last = [], 0
    while True:
        b = buf[pos]
        pos += 1
        if b == 0:
            return fields, pos
        t, delta = b & 0x0F, b >> 4
        if delta:
            fid = last + delta
        else:
            v, pos = _varint(buf, pos)
            fid = _unzigzag(v)
        if t in (_TRUE, _FALSE):
            value = t == _TRUE
        else:
            value, pos = _read_value(buf, pos, t)
        fields.append([fid, t, value])
        last = fid


def _put_varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int) -> int:
    return n << 1 if n >= 0 else ((-n) << 1) - 1


def _write_value(out: bytearray, t: int, v) -> None:
    if t in (_TRUE, _FALSE, _BYTE):
        out.append(v & 0xFF)
    elif t in (_I16, _I32, _I64):
        _put_varint(out, _zigzag(v))
    elif t == _DOUBLE:
        out += v
    elif t == _BINARY:
        _put_varint(out, len(v))
        out += v
    elif t in (_LIST, _SET):
        et, items = v
        if len(items) < 15:
            out.append((len(items) << 4) | et)
        else:
            out.append(0xF0 | et)
            _put_varint(out, len(items))
        for item in items:
            _write_value(out, et, item)
    elif t == _MAP:
        kt, vt, pairs = v
        _put_varint(out, len(pairs))
        if pairs:
            out.append((kt << 4) | vt)
            for k, val in pairs:
                _write_value(out, kt, k)
                _write_value(out, vt, val)
    elif t == _STRUCT:
        _write_struct(out, v)
    else:
        raise StitchError(f"unknown Thrift compact type {t}")


def _write_struct(out: bytearray, fields: list) -> None:
    last = 0
    for fid, t, v in fields:
        if t in (_TRUE, _FALSE):
            t = _TRUE if v else _FALSE
        if 0 < fid - last <= 15:
            out.append(((fid - last) << 4) | t)
        else:
            out.append(t)
            _put_varint(out, _zigzag(fid))
        if t not in (_TRUE, _FALSE):
            _write_value(out, t, v)
        last = fid
    out.append(0)


def decode(footer) -> list:
    fields, end = _read_struct(footer, 0)
    if end != len(footer):
        raise StitchError("the footer has bytes after its FileMetaData")
    return fields


def encode(fields: list) -> bytes:
    out = bytearray()
    _write_struct(out, fields)
    return bytes(out)


def _field(fields: list, fid: int):
    return next((f for f in fields if f[0] == fid), None)


# ------------------------------------------------------------------ parts and the stitch


class Part:
    """One batch encoded alone: its row groups' bytes (as in its own file, from offset 4) and metadata."""

    def __init__(self, data: pa.Buffer):
        view = memoryview(data).cast("B")  # a pa.Buffer shows signed bytes
        if len(view) < 12 or view[:4] != MAGIC or view[-4:] != MAGIC:
            raise StitchError("not a Parquet file")
        size = int.from_bytes(view[-8:-4], "little")
        footer = view[len(view) - 8 - size : len(view) - 8]
        self.meta = decode(footer)
        if encode(self.meta) != footer:  # the codec must give back the writer's very bytes
            raise StitchError("the footer does not round-trip through the Thrift codec")
        self.bodies = [view[4 : len(view) - 8 - size]]
        self.size = len(self.bodies[0])
        self._data = data  # keeps the buffer alive for ``bodies``
        groups = _field(self.meta, _FMD_ROW_GROUPS)
        self.row_groups = groups[2][1] if groups else []
        self.common = encode([f for f in self.meta if f[0] not in (_FMD_NUM_ROWS, _FMD_ROW_GROUPS)])


def encode_part(table: pa.Table, schema: pa.Schema, **properties) -> Part:
    """``table`` as one row group (what ``ParquetWriter.write_table(table, row_group_size=rows)`` writes)."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, **properties) as writer:
        writer.write_table(table, row_group_size=max(1, table.num_rows))
    return Part(sink.getvalue())


# A row group's column chunks follow one another and hold no offsets either: a row group can be encoded
# as several parts of contiguous columns at once, and joined (:func:`join_columns`).


def column_groups(table: pa.Table, n: int) -> list[list[int]]:
    """The columns of ``table`` cut into at most ``n`` runs of contiguous columns of about equal bytes."""
    sizes = [max(1, c.nbytes) for c in table.columns]
    total, groups, current, done = sum(sizes), [], [], 0
    for i, size in enumerate(sizes):
        current.append(i)
        done += size
        if len(groups) < n - 1 and done >= total * (len(groups) + 1) / n and i < len(sizes) - 1:
            groups.append(current)
            current = []
    return [*groups, current] if current else groups


def encode_columns(table: pa.Table, schema: pa.Schema, columns: list[int], **properties) -> Part:
    """The ``columns`` of ``table`` alone as one row group (a part of it for :func:`join_columns`)."""
    return encode_part(table.select(columns), pa.schema([schema.field(i) for i in columns]), **properties)


def join_columns(head: Part, parts: list[Part]) -> Part:
    """One row group's parts (runs of its columns, in order) as the part encoding it whole would give:
    ``head`` (the schema written with no rows) gives the file's metadata beyond the row groups."""
    groups = [p.row_groups for p in parts]
    if any(len(g) != 1 for g in groups):
        raise StitchError("a column part holds other than one row group")
    first = groups[0][0]
    rows = _field(first, 3)
    chunks, shift, sums = [], 0, {2: 0, 6: 0}
    for part, (group,) in zip(parts, groups, strict=True):
        if _field(group, 3) != rows or [f[0] for f in group] != [f[0] for f in first]:
            raise StitchError("the column parts' row groups differ")
        chunks += [_shift_chunk(c, shift) for c in _field(group, _RG_COLUMNS)[2][1]]
        for fid in sums:
            sums[fid] += _field(group, fid)[2]
        shift += part.size
    joined = []
    for fid, t, v in first:
        if fid == _RG_COLUMNS:
            v = (v[0], chunks)
        elif fid in sums:
            v = sums[fid]
        elif fid not in (3, _RG_FILE_OFFSET) and any(_field(g[0], fid) != [fid, t, v] for g in groups[1:]):
            raise StitchError(f"the column parts' row groups differ in field {fid}")
        joined.append([fid, t, v])
    out = Part.__new__(Part)
    out.bodies = [b for p in parts for b in p.bodies]
    out.size = shift
    out._data = [p._data for p in parts]
    out.row_groups = [joined]
    out.meta = [[fid, t, rows[2] if fid == _FMD_NUM_ROWS else (v[0], [joined]) if fid == _FMD_ROW_GROUPS else v]
                for fid, t, v in head.meta]
    out.common = head.common
    return out


def _shift_row_group(group: list, shift: int, ordinal: int) -> list:
    out = []
    for fid, t, v in group:
        if fid == _RG_FILE_OFFSET and v:  # 0: no offset (an empty row group), kept as the writer has it
            v = v + shift
        elif fid == _RG_ORDINAL:
            if ordinal > 0x7FFF:
                raise StitchError("more row groups than a Parquet ordinal holds")
            v = ordinal
        elif fid == _RG_COLUMNS:
            v = (v[0], [_shift_chunk(c, shift) for c in v[1]])
        out.append([fid, t, v])
    return out


def _shift_chunk(chunk: list, shift: int) -> list:
    out = []
    for fid, t, v in chunk:
        if fid in (_CC_OFFSET_INDEX, _CC_COLUMN_INDEX) or fid > _CC_COLUMN_INDEX:
            raise StitchError("page indexes or encrypted columns are not stitched")
        if fid == _CC_FILE_OFFSET and v:  # Arrow writes 0 (the field is deprecated): kept
            v = v + shift
        elif fid == _CC_META:
            meta = []
            for mfid, mt, mv in v:
                if mfid == _CMD_BLOOM:
                    raise StitchError("bloom filters are not stitched")
                if mfid in (_CMD_DATA_PAGE, _CMD_INDEX_PAGE, _CMD_DICT_PAGE) and mv:  # 0: no page (no rows)
                    mv = mv + shift
                meta.append([mfid, mt, mv])
            v = meta
        out.append([fid, t, v])
    return out


class Stitcher:
    """Writes parts to ``sink`` in order (``add``), then the footer that covers them all (``finish``)."""

    def __init__(self, sink):
        self.sink = sink
        self.pos = 0
        self.first: Part | None = None
        self.groups: list = []
        self.rows = 0

    def add(self, part: Part) -> None:
        if self.first is None:
            self.first = part
            self.sink.write(MAGIC)
            self.pos = len(MAGIC)
        elif part.common != self.first.common:
            raise StitchError("the parts' file metadata differ")
        shift = self.pos - len(MAGIC)
        for group in part.row_groups:
            self.groups.append(_shift_row_group(group, shift, len(self.groups)))
        self.rows += _field(part.meta, _FMD_NUM_ROWS)[2]
        for body in part.bodies:
            self.sink.write(body)
        self.pos += part.size

    def finish(self) -> None:
        meta = []
        for fid, t, v in self.first.meta:
            if fid == _FMD_NUM_ROWS:
                v = self.rows
            elif fid == _FMD_ROW_GROUPS:
                v = (v[0], self.groups)
            meta.append([fid, t, v])
        footer = encode(meta)
        self.sink.write(footer)
        self.sink.write(struct.pack("<I", len(footer)) + MAGIC)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """The process's encoding threads, one a core (shared by every shard written at once)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="parquet-encode")
        return _pool
