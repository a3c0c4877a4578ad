"""JSONL shards: the keys pass (scores only) and byte-exact line access for the rewrite.

A record is one line. Its bytes are carried unchanged to the output; only the score is
parsed out of it. Blank (whitespace-only) lines are not records, as in the reference
(``if line.strip()``). Compressed inputs (.gz, .zst) are decompressed once, during the
keys pass, to a spill file in the run's work folder, so the rewrite can read any line
directly through a memory map.
"""

from __future__ import annotations

import json
import mmap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from reorder_cli.errors import ReorderError
from reorder_cli.formats import score_expr
from reorder_cli.formats.discover import InputFile
from reorder_cli.formats.score_expr import Scoring
from reorder_cli.formats.scores import field_hint, lookup, numeric_paths, python_score, strings_to_float, token_problem
from reorder_cli.formats.source import Scanned
from reorder_cli.util import store

BLOCK = 8 << 20
_WS = np.frombuffer(b" \t\r\n\x0b\x0c", dtype=np.uint8)
BOM = b"\xef\xbb\xbf"


def skip_bom(data, local: np.ndarray) -> bool:
    """A UTF-8 byte-order mark that starts the file is not part of the first record: make the
    first line start after it (``local``: the block's line offsets, its first block). True if
    there was one."""
    if bytes(data[:3]) == BOM:
        local[0] = 3
        return True
    return False


@dataclass
class JsonlKeys:
    """What the keys pass keeps of a JSONL file: about 24 bytes a row."""

    data_path: Path  # uncompressed bytes (the input itself, or its spill file)
    line_offsets: np.ndarray  # int64, n_lines + 1; line i is [off[i], off[i+1]) with its '\n'
    row_lines: np.ndarray  # int64 line index of each record (blank lines are skipped)
    scores: np.ndarray  # float64, NaN where invalid
    invalid: list[tuple[str, str]]  # ("line N", what is wrong) of the first invalid rows
    missing_final_newline: bool  # the last line has no '\n'
    tokens: np.ndarray | None = None  # int64 token counts (a token-budget selection's token_field)

    @property
    def rows(self) -> int:
        return len(self.row_lines)

    def records(self) -> np.ndarray:
        """(rows, 2) int64: the [start, end) bytes of every record, newline included."""
        return np.stack([self.line_offsets[self.row_lines], self.line_offsets[self.row_lines + 1]], axis=1)

    def row_sizes(self) -> np.ndarray:
        """Uncompressed bytes of each record, newline included."""
        return (self.line_offsets[self.row_lines + 1] - self.line_offsets[self.row_lines]).astype(np.int64)


def json_path(dotted: str) -> str:
    return "$" + "".join(f"['{part}']" for part in dotted.split("."))


def _line_blocks(inp: InputFile, spill_path: Path | None, advance: Callable[[int], None]):
    """Yield (block, at_end): consecutive pieces of the uncompressed stream that end on a
    line boundary (or at the end of the file).

    Plain files are read with seeks so no bytes are copied twice; compressed streams
    carry the partial last line over to the next block and are spilled as they go; so are objects
    in a store, streamed (compressed or not).
    """
    if inp.compression is None and not store.is_url(inp.path):
        with open(inp.path, "rb") as fh:
            pos, size = 0, BLOCK
            while True:
                fh.seek(pos)
                data = fh.read(size)
                if len(data) < size:
                    advance(len(data))
                    if data:
                        yield memoryview(data), True
                    return
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # a line longer than the block: read more at once
                    size *= 2
                    continue
                advance(cut)
                yield memoryview(data)[:cut], False
                pos, size = pos + cut, BLOCK
    stream = store.input_stream(inp.path, compression=inp.compression)
    spill = open(spill_path, "wb") if spill_path else None  # noqa: SIM115

    def read(n: int) -> bytes:
        try:
            block = stream.read(n)
        except (OSError, pa.ArrowException) as exc:
            if inp.compression is None:
                raise store.error(inp.path, exc) from None
            raise ReorderError(f"{inp.path}: cannot decompress ({inp.compression}): {exc}") from None
        if spill is not None:
            spill.write(block)
        return block

    try:
        yield from stream_blocks(read)
        advance(inp.size)
    finally:
        stream.close()
        if spill is not None:
            spill.close()


def stream_blocks(read: Callable[[int], bytes]) -> Iterator[tuple[memoryview, bool]]:
    """(block, at_end): consecutive pieces of a stream (``read(n)`` gives its next bytes) that end
    on a line boundary, the last one at the end of the stream."""
    carry = b""
    while True:
        block = read(BLOCK)
        data = carry + block if carry else block
        if not block:
            if data:
                yield memoryview(data), True
            return
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            yield memoryview(data)[:cut], False


def scan(
    inp: InputFile,
    score_field: str | Scoring,
    fail_on_invalid: bool,
    spill_path: Path | None,
    advance: Callable[[int], None] = lambda n: None,
    keep_invalid: int = 20,
) -> JsonlKeys:
    """Read every line once: record offsets and scores; raise on malformed input.

    With ``fail_on_invalid`` the first invalid score raises; otherwise invalid rows get a
    NaN score and the first ``keep_invalid`` are described. ``score_field`` is a field's dotted
    path or a :class:`Scoring` (an expression, and the token field a token budget reads).
    """
    scoring = score_expr.of(score_field)
    offsets: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    row_lines: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    invalid: list[tuple[str, str]] = []
    base = 0  # byte offset of the current block in the uncompressed stream
    lines_before = 0
    last = b"\n"
    for data, at_end in _line_blocks(inp, spill_path, advance):
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
        if at_end and (len(ends) == 0 or ends[-1] != len(data)):
            ends = np.append(ends, len(data))  # a final line without '\n'
        local = np.concatenate([[0], ends]).astype(np.int64)
        if base == 0 and skip_bom(data, local):
            offsets[0] = local[:1].copy()
        keep, found, bad, counts = block_scores(data, local, scoring, inp, lines_before)
        rows = np.flatnonzero(keep)
        if counts is not None:
            tokens.append(counts)
        for i in np.flatnonzero(np.isnan(found)):  # only invalid rows reach Python
            line_no = lines_before + int(rows[i]) + 1
            if fail_on_invalid:
                where = "" if scoring.is_expression else f" in field '{scoring.text}'"
                hint = _missing_hint(data, local, int(rows[i]), scoring) if bad[int(i)] == "missing" else ""
                raise ReorderError(f"{inp.path}: line {line_no}: invalid score{where}: {bad[int(i)]}{hint}")
            if len(invalid) < keep_invalid:
                invalid.append((f"line {line_no}", bad[int(i)]))
        offsets.append(base + local[1:])
        row_lines.append(lines_before + rows)
        scores.append(found)
        lines_before += len(ends)
        base += len(data)
        last = bytes(data[-1:])
    return JsonlKeys(
        data_path=spill_path or inp.path,
        line_offsets=np.concatenate(offsets),
        row_lines=np.concatenate(row_lines) if row_lines else np.zeros(0, dtype=np.int64),
        scores=np.concatenate(scores) if scores else np.zeros(0, dtype=np.float64),
        invalid=invalid,
        missing_final_newline=base > 0 and last != b"\n",
        tokens=(np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int64))
        if scoring.token_field else None,
    )


def _missing_hint(data: bytes, local: np.ndarray, line: int, scoring: Scoring) -> str:
    """The field the user may have meant when a record has no score field (the error path only)."""
    try:
        record = json.loads(bytes(data[local[line]:local[line + 1]]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    return field_hint(scoring.text, numeric_paths(record))


def lines_array(data: bytes, local: np.ndarray) -> pa.LargeBinaryArray:
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(local) - 1, [None, pa.py_buffer(local), pa.py_buffer(data)]
    )


def block_scores(
    data: bytes, local: np.ndarray, scoring: Scoring, inp: InputFile, lines_before: int
) -> tuple[np.ndarray, np.ndarray, dict[int, str], np.ndarray | None]:
    """(is-record mask over lines, scores of the records, descriptions of invalid ones, the records'
    token counts when ``scoring`` has a token field). Each field the score reads is extracted for
    the whole block at once; only rows where one is not a plain number reach Python."""
    arr = np.frombuffer(data, dtype=np.uint8)
    starts, lengths = local[:-1], np.diff(local)
    _refuse_bom(arr, starts, inp, lines_before)
    keep = np.ones(len(starts), dtype=bool)
    maybe_blank = np.flatnonzero((lengths <= 1) | np.isin(arr[np.minimum(starts, len(arr) - 1)], _WS))
    for i in maybe_blank:  # rare: lines that are empty or start with whitespace
        keep[i] = bool(bytes(data[starts[i] : starts[i] + lengths[i]]).strip())
    lines = pl.Series(lines_array(data, local)).filter(pl.Series(keep))
    try:
        text = lines.cast(pl.String)
    except pl.exceptions.PolarsError:
        _raise_bad_utf8(data, local, keep, inp, lines_before)
    columns = {f: strings_to_float(text.str.json_path_match(json_path(f))) for f in scoring.fields}
    bad: dict[int, str] = {}
    line_index = np.flatnonzero(keep)

    def record(i: int) -> dict:
        li = int(line_index[i])
        raw = bytes(data[starts[li] : starts[li] + lengths[li]])
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReorderError(
                f"{inp.path}: line {lines_before + li + 1}: malformed JSON: {exc.args[0].split(':')[0]}"
            ) from None
        if not isinstance(rec, dict):
            raise ReorderError(f"{inp.path}: line {lines_before + li + 1}: not a JSON object (a record is one "
                               "object a line)")
        return rec

    unusual = np.zeros(len(line_index), dtype=bool)
    for column in columns.values():
        unusual |= np.isnan(column)
    for i in np.flatnonzero(unusual):  # the slow path: exact Python semantics
        rec = record(int(i))
        for f, column in columns.items():  # a loop over the expression's fields
            if np.isnan(column[i]):
                column[i], why = python_score(lookup(rec, f))
                if why is not None and int(i) not in bad:
                    bad[int(i)] = f"field '{f}': {why}" if scoring.is_expression else why
    scores = scoring.evaluate(columns)
    for i in np.flatnonzero(np.isnan(scores)):  # rows whose fields are numbers but the expression is not finite
        if int(i) not in bad:
            values = ", ".join(f"{f}={float(columns[f][i])!r}" for f in scoring.fields)
            bad[int(i)] = f"the expression gives no finite number ({values})"
    tokens = None
    if scoring.token_field:
        counts = text.str.json_path_match(json_path(scoring.token_field)).cast(pl.Int64, strict=False)
        odd = np.flatnonzero((counts.is_null() | (counts < 0)).fill_null(True).to_numpy())
        if len(odd):  # the error path
            i = int(odd[0])
            raise ReorderError(f"{inp.path}: line {lines_before + int(line_index[i]) + 1}: token field "
                               f"'{scoring.token_field}': {token_problem(lookup(record(i), scoring.token_field))}")
        tokens = counts.to_numpy().astype(np.int64)
    return keep, scores, bad, tokens


def _refuse_bom(arr: np.ndarray, starts: np.ndarray, inp: InputFile, lines_before: int) -> None:
    """A byte-order mark anywhere but at the very start of the file is an error."""
    s = starts[starts + 3 <= len(arr)]
    hit = np.flatnonzero((arr[s] == 0xEF) & (arr[s + 1] == 0xBB) & (arr[s + 2] == 0xBF))
    if len(hit):
        line = lines_before + int(np.searchsorted(starts, s[hit[0]])) + 1
        raise ReorderError(f"{inp.path}: line {line}: starts with a UTF-8 byte-order mark; only the first line of a "
                           "file may (remove it: it is not part of the record)")


def _raise_bad_utf8(data: bytes, local: np.ndarray, keep: np.ndarray, inp: InputFile, lines_before: int) -> None:
    for li in np.flatnonzero(keep):
        try:
            bytes(data[local[li] : local[li + 1]]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReorderError(f"{inp.path}: line {lines_before + li + 1}: not valid UTF-8 ({exc.reason})") from None
    raise ReorderError(f"{inp.path}: not valid UTF-8")


class JsonlSource(Scanned):
    """The records of one JSONL file, for the rewrite, read through a memory map.

    ``take_lines`` copies just the requested records. ``release()`` drops the mapped
    pages from the process (they stay in the OS page cache), so resident memory stays
    at about one batch whatever the size of the file.
    """

    def __init__(self, inp: InputFile, keys: JsonlKeys):
        super().__init__(inp, keys)
        self._map: mmap.mmap | None = None
        self._array: pa.LargeBinaryArray | None = None
        self._lock = threading.Lock()

    @property
    def schema(self) -> None:
        return None

    def row_sizes(self) -> np.ndarray:
        return self.keys.row_sizes()

    def _lines(self) -> pa.LargeBinaryArray:
        with self._lock:
            if self._array is None:
                k = self.keys
                with open(k.data_path, "rb") as fh:
                    self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                self._array = pa.LargeBinaryArray.from_buffers(
                    pa.large_binary(), len(k.line_offsets) - 1,
                    [None, pa.py_buffer(k.line_offsets), pa.py_buffer(self._map)],
                )
            return self._array

    def take_lines(self, rows: np.ndarray) -> pa.LargeBinaryArray:
        """Records ``rows`` in that order; a file's unterminated last line stays so.

        The mapped pages are dropped right after the copy: the kernel maps 64 KiB around
        every faulting page, so a random read would otherwise keep ~16x its size resident.
        """
        taken = self._lines().take(pa.array(self.keys.row_lines[rows]))
        self.release()
        return taken

    def release(self) -> None:
        if self._map is not None:
            self._map.madvise(mmap.MADV_DONTNEED)

    def unterminated_row(self) -> int | None:
        """Index of the record stored without a final '\\n', if any."""
        k = self.keys
        if k.missing_final_newline and self.rows and k.row_lines[-1] == len(k.line_offsets) - 2:
            return self.rows - 1
        return None


def lines_to_bytes(lines: pa.LargeBinaryArray) -> bytes | pa.Buffer:
    """The concatenated bytes of binary values (what a JSONL shard holds)."""
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return lines.buffers()[2][int(offsets[0]) : int(offsets[-1])]


def split_lines(data: bytes) -> pa.LargeBinaryArray:
    """Bytes of newline-terminated records -> one binary value a record."""
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10) + 1
    return lines_array(data, np.concatenate([[0], ends]).astype(np.int64))
