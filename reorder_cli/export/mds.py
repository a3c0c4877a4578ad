"""``export: mds``: MosaicML streaming's MDS shards (``StreamingDataset`` reads them), written here without the library.

One MDS shard a row shard (``shard.NNNNN.mds``, uncompressed, no per-file hashes: the manifest has each
file's sha256), in order, plus ``index.json``: sample i of the dataset is row i of the output's order.
A sample holds the row's columns and, when the run has a tokenizer, a ``tokens`` column (the document's
token ids, ``ndarray:<dtype>``). A column's MDS encoding follows its Arrow type (``COLUMN_ENCODINGS``):
strings ``str``, binary ``bytes``, integers ``int64`` (``uint64`` for uint64), floats ``float64``; booleans,
lists, structs, maps and any column holding a null are ``json`` (so a null reads back as ``None``).

The bytes are MDS's own (``streaming/base/format/mds/writer.py`` ``MDSWriter.encode_sample`` and
``encode_joint_shard``): a shard is ``[uint32 samples][uint32 offsets, samples + 1][config JSON][samples]``;
a sample is ``[uint32 size of each variable-size column][each column's bytes]``, columns sorted by name.
Each column is built as one Arrow binary array a shard and the samples are joined column-wise by Arrow
(``binary_join_element_wise``), so no Python loop runs per row except to write ``json`` columns.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from reorder_cli.errors import ReorderError
from reorder_cli.export import ExportInput
from reorder_cli.formats import json_rows

NAME = "mds"
NEEDS_TOKENS = False
TOKENS_COLUMN = "tokens"
_MAX_SHARD = 1 << 32  # MDS's sample offsets are uint32
_FIXED = {"int64": 8, "uint64": 8, "float64": 8}  # encodings of a fixed size (no size in the sample head)
_SCALAR = ("str", "bytes", "int64", "uint64", "float64")


def column_encoding(t: pa.DataType) -> str | None:
    """The MDS encoding of an Arrow type when the column has no null (None: none fits)."""
    if pa.types.is_dictionary(t):
        return column_encoding(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "str"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or \
            pa.types.is_fixed_size_binary(t):
        return "bytes"
    if pa.types.is_uint64(t):
        return "uint64"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_floating(t):
        return "float64"
    if pa.types.is_boolean(t) or pa.types.is_null(t) or pa.types.is_nested(t):
        return "json"
    return None


# ------------------------------------------------------------------ reading the row shards


def _jsonl_bytes(path: Path, row_format: str) -> bytes:
    data = path.read_bytes()
    if row_format == "jsonl.zst":
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def _jsonl_table(path: Path, row_format: str, schema: pa.Schema | None) -> pa.Table:
    data = _jsonl_bytes(path, row_format)
    if data and not data.endswith(b"\n"):
        data += b"\n"

    def where(i: int) -> str:
        return f"{path}: line {i + 1}"

    inferred = schema is None
    if inferred:
        schema = json_rows.infer_schema(data, where)
        if schema is None:
            return pa.table({})
    return json_rows.to_table(data, schema, where, inferred)


def _schema_and_nulls(src: ExportInput) -> tuple[pa.Schema, set[str]]:
    """Pass 1: the rows' schema (JSONL: unified over the shards) and the columns holding a null anywhere."""
    schemas, nulls = [], set()
    for path in src.shards:
        if src.row_format == "parquet":
            meta = pq.ParquetFile(path).metadata
            schema = meta.schema.to_arrow_schema()
            nulls |= _parquet_nulls(path, meta, schema)
        else:
            table = _jsonl_table(path, src.row_format, None)
            schema = table.schema
            nulls |= {f.name for f, c in zip(schema, table.columns, strict=True) if c.null_count}
        schemas.append(schema)
    if src.row_format == "parquet":
        for path, schema in zip(src.shards, schemas, strict=True):
            if not schema.equals(schemas[0]):
                raise ReorderError(f"{path}: its columns differ from {src.shards[0]}'s; the shards of an "
                                   "output share one schema (re-run the output)")
        return schemas[0], nulls
    try:
        unified = pa.unify_schemas([s for s in schemas if len(s)] or [pa.schema([])], promote_options="permissive")
    except pa.ArrowException as exc:
        raise ReorderError(f"{src.shards[0].parent}: the JSONL shards' fields have conflicting types "
                           f"({str(exc).splitlines()[0]}); give each field one type in every row") from None
    return unified, nulls


def _parquet_nulls(path: Path, meta: pq.FileMetaData, schema: pa.Schema) -> set[str]:
    """Top-level columns with a null: from the footer's statistics, else by reading the column."""
    found = set()
    leaf = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    for f in schema:
        if column_encoding(f.type) not in _SCALAR:
            continue  # json already holds a null
        i = leaf.get(f.name)
        stats = [] if i is None else [meta.row_group(g).column(i).statistics for g in range(meta.num_row_groups)]
        if i is not None and all(s is not None and s.has_null_count for s in stats):
            if any(s.null_count for s in stats):
                found.add(f.name)
        elif pq.read_table(path, columns=[f.name]).column(0).null_count:
            found.add(f.name)
    return found


def _read(path: Path, src: ExportInput, schema: pa.Schema) -> pa.Table:
    if src.row_format == "parquet":
        return pq.read_table(path, schema=schema)
    table = _jsonl_table(path, src.row_format, schema)
    return table if table.num_columns else schema.empty_table()


# ------------------------------------------------------------------ columns -> binary arrays


def _fixed(values: np.ndarray) -> pa.Array:
    """A fixed-width numpy array, each row's bytes one binary value."""
    values = np.ascontiguousarray(values)
    width = values.dtype.itemsize * (values.shape[1] if values.ndim == 2 else 1)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values),
                                                [None, pa.py_buffer(values.tobytes())]).cast(pa.large_binary())


def _variable(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(offsets) - 1,
                                            [None, pa.py_buffer(offsets.astype(np.int64)),
                                             pa.py_buffer(np.ascontiguousarray(data))])


def _sizes(arr: pa.Array) -> np.ndarray:
    return np.diff(np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1])


def _encode(column: pa.ChunkedArray, encoding: str, name: str, where: Path) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if encoding in ("str", "bytes"):
        return column.cast(pa.large_binary()).combine_chunks()
    if encoding in _FIXED:
        return _fixed(column.cast(pa.from_numpy_dtype(np.dtype(encoding))).to_numpy())
    # json, the one loop per row (the encoding streaming's JSON column decodes with json.loads)
    try:
        return pa.array([json.dumps(v).encode() for v in column.to_pylist()], type=pa.large_binary())
    except (TypeError, ValueError) as exc:
        raise ReorderError(f"{where}: column {name!r} holds a value JSON cannot hold ({exc}); MDS writes "
                           "this column as json: make its values strings, numbers, lists or objects") from None


def _tokens(tokens: Path, lengths: Path, dtype: np.dtype, rows: int) -> pa.Array:
    """The ``ndarray:<dtype>`` values (dtype fixed, shape given a sample): ``[ndim << 2 | k][shape as
    uint8/16/32/64 (k = 0..3)][ids]``, as ``NDArray.encode`` writes them."""
    lens = np.load(lengths, allow_pickle=False)
    if lens.ndim != 1 or len(lens) != rows:
        raise ReorderError(f"{lengths}: {len(lens)} lengths for {rows} rows; the token pieces do not match the "
                           "row shard (re-run the output)")
    ids = np.fromfile(tokens, dtype=np.dtype(dtype).newbyteorder("<"))
    if len(ids) != int(lens.sum()):
        raise ReorderError(f"{tokens}: {len(ids)} tokens, its lengths file says {int(lens.sum())} (re-run the output)")
    if rows and lens.min() <= 0:
        row = int(np.argmin(lens))
        raise ReorderError(f"{tokens}: row {row} has no token; MDS cannot hold an empty array "
                           "(keep the EOS token, the default, or drop empty documents)")
    k = np.searchsorted(np.array([1 << 8, 1 << 16, 1 << 32], dtype=np.uint64), lens.astype(np.uint64), side="right")
    head = np.zeros((rows, 9), dtype=np.uint8)
    head[:, 0] = (1 << 2) | k
    head[:, 1:] = lens.astype("<u8").view(np.uint8).reshape(rows, 8)
    head_len = 1 + (1 << k)
    keep = np.arange(9)[None, :] < head_len[:, None]
    head_arr = _variable(head[keep], np.concatenate([[0], np.cumsum(head_len)]))
    body = _variable(ids.view(np.uint8), np.concatenate([[0], np.cumsum(lens)]) * ids.dtype.itemsize)
    return pc.binary_join_element_wise(head_arr, body, pa.scalar(b"", pa.large_binary()))


# ------------------------------------------------------------------ a shard


def _config(names: list[str], encodings: list[str]) -> bytes:
    obj = {"version": 2, "format": "mds", "compression": None, "hashes": [], "size_limit": None,
           "column_names": names, "column_encodings": encodings,
           "column_sizes": [_FIXED.get(e) for e in encodings]}
    return json.dumps(obj, sort_keys=True).encode()


def _write_shard(path: Path, parts: list[pa.Array], variable: list[pa.Array], rows: int, config: bytes,
                 where: Path) -> tuple[int, str]:
    """Write one MDS shard from its columns' binary arrays (sorted by name); returns (bytes, sha256)."""
    if variable:
        parts = [_fixed(np.stack([_sizes(a) for a in variable], axis=1).astype("<u4")), *parts]
    samples = pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary())) if len(parts) > 1 else parts[0]
    bounds = np.frombuffer(samples.buffers()[1], dtype=np.int64)[samples.offset: samples.offset + rows + 1]
    head_len = 4 + 4 * (rows + 1) + len(config)
    total = head_len + int(bounds[-1] - bounds[0])
    if total >= _MAX_SHARD:
        raise ReorderError(f"{where}: its MDS shard would be {total:,} bytes, beyond MDS's 4 GiB; "
                           "write smaller shards (shard_rows)")
    offsets = (bounds - bounds[0] + head_len).astype("<u4")
    buf = samples.buffers()[2]
    data = memoryview(buf)[int(bounds[0]): int(bounds[-1])] if buf is not None else b""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for piece in (np.uint32(rows).astype("<u4").tobytes(), offsets.tobytes(), config, data):
            digest.update(piece)
            fh.write(piece)
    return total, digest.hexdigest()


def assemble(src: ExportInput, dest: Path) -> dict:
    """Write the MDS dataset of ``src`` into the empty folder ``dest``; returns the manifest's ``export`` entry."""
    written: list[Path] = []
    try:
        return _assemble(src, dest, written)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise


def _assemble(src: ExportInput, dest: Path, written: list[Path]) -> dict:
    tokens = src.token_files is not None
    if tokens and not len(src.token_files) == len(src.lengths or []) == len(src.shards):
        raise ReorderError(f"{src.shards[0].parent if src.shards else '.'}: {len(src.token_files)} token files and "
                           f"{len(src.lengths or [])} lengths files for {len(src.shards)} row shards; the token "
                           "pieces do not match the output (re-run it)")
    schema, nulls = _schema_and_nulls(src)
    encodings: dict[str, str] = {}
    for f in schema:
        enc = column_encoding(f.type)
        if enc is None:
            raise ReorderError(f"{src.shards[0]}: column {f.name!r} is {f.type}, which the MDS export does not "
                               "encode; make it a string or a number in the input")
        if f.name in nulls and enc in _SCALAR:
            if enc == "bytes":
                raise ReorderError(f"{src.shards[0]}: binary column {f.name!r} holds a null, which MDS cannot "
                                   "encode; fill or drop it in the input")
            enc = "json"
        encodings[f.name] = enc
    if tokens:
        if TOKENS_COLUMN in encodings:
            raise ReorderError(f"{src.shards[0]}: the rows already have a column {TOKENS_COLUMN!r}, the name of "
                               "the MDS export's token column; rename it in the input")
        encodings[TOKENS_COLUMN] = f"ndarray:{np.dtype(src.dtype).name}"
    names = sorted(encodings)
    config = _config(names, [encodings[n] for n in names])
    index, files, samples = [], [], 0
    for i, path in enumerate(src.shards):
        table = _read(path, src, schema)
        rows = table.num_rows
        cols = {n: _encode(table.column(n), encodings[n], n, path) for n in table.column_names}
        if tokens:
            cols[TOKENS_COLUMN] = _tokens(src.token_files[i], src.lengths[i], src.dtype, rows)
        del table
        if rows == 0:
            continue  # no sample, no shard
        name = f"shard.{len(index):05d}.mds"
        written.append(dest / name)
        size, sha = _write_shard(dest / name, [cols[n] for n in names],
                                 [cols[n] for n in names if encodings[n] not in _FIXED], rows, config, path)
        index.append({"samples": rows, "raw_data": {"basename": name, "bytes": size, "hashes": {}},
                      "zip_data": None, **json.loads(config)})
        files.append({"file": f"{NAME}/{name}", "bytes": size, "sha256": sha})
        samples += rows
    text = json.dumps({"version": 2, "shards": index}, sort_keys=True).encode()
    written.append(dest / "index.json")
    (dest / "index.json").write_bytes(text)
    files.append({"file": f"{NAME}/index.json", "bytes": len(text), "sha256": hashlib.sha256(text).hexdigest()})
    return {"format": NAME, "files": files, "samples": samples, "shards": len(index), "compression": None,
            "columns": {n: encodings[n] for n in names}}
