"""Shared fixtures and helpers for the end-to-end tests of ``reorder run`` / ``stats``.

Corpora are small (hundreds of rows), deterministic, and written in every input format
the tool reads. Scores are multiples of 0.05 in [0, 3], so ties are common. JSON lines
are written in several textual styles (spacing, ASCII escapes or raw UTF-8), so an
implementation that re-serialises records instead of copying their bytes is caught.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import Phase, settings
from typer.testing import CliRunner

from reorder_cli.cli import app
from reorder_cli.config import ORDERING_KEYS, default_for

from . import oracle

pytest_plugins = ["tests.ci_skips"]

#: ``--hypothesis-profile=mutation`` (scripts/mutation_check.py): the first failing example fails the test
#: (no shrinking), and no example is stored or replayed.
settings.register_profile("mutation", phases=(Phase.explicit, Phase.generate), database=None)


@pytest.fixture(autouse=True)
def _small_pieces_below_the_memory_floor(monkeypatch):
    """Tests of the out-of-core mechanics use ``memory_limit=1`` for the smallest pieces (many buckets
    from tiny data); a real run refuses a budget below its floor (tests/hostile/test_budget.py)."""
    monkeypatch.setenv("REORDER_TEST_BELOW_FLOOR", "1")

SHARD_RE = re.compile(r"^\d{5}\.(parquet|jsonl|jsonl\.zst)$")
WORDS = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "η", "θήτα", "中文", "😀", 'quo"te', "back\\slash",
         "tab\tchar", "line\u2028sep", "data", "model", "token", "order", "stair", "saw"]
STYLES = ("default", "compact", "utf8", "spaced")


# ------------------------------------------------------------------ rows and lines


def make_rows(n: int, seed: int = 0, prefix: str = "d") -> list[dict]:
    """``n`` FineWeb-like rows: id, text, url, token_count, score (3 decimals, many ties), int_score."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 25))]
        score = rng.randint(0, 60) / 20  # 0.0, 0.05, ..., 3.0: ~61 distinct values
        rows.append({
            "id": f"{prefix}-{i:05d}",
            "text": " ".join(words),
            "url": f"https://example.org/{prefix}/{rng.randint(0, 10**6)}",
            "token_count": len(words),
            "score": score,
            "int_score": int(round(score)),
        })
    return rows


def dump_line(row: dict, style: str) -> bytes:
    """One JSON record (no newline) in a given textual style."""
    if style == "compact":
        return json.dumps(row, separators=(",", ":")).encode()
    if style == "utf8":
        return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if style == "spaced":
        return json.dumps(row, ensure_ascii=False, indent=None, separators=(" , ", " : ")).encode("utf-8")
    return json.dumps(row).encode()


def to_lines(rows: list[dict], newline: bytes = b"\n", seed: int = 0) -> list[bytes]:
    """Records as raw lines, newline included, styles mixed deterministically."""
    rng = random.Random(seed)
    return [dump_line(r, rng.choice(STYLES)) + newline for r in rows]


def compress(data: bytes, compression: str | None) -> bytes:
    if compression is None:
        return data
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    raise ValueError(compression)


def write_bytes(path: Path, data: bytes, compression: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compress(data, compression))
    return path


def write_jsonl(path: Path, lines: list[bytes], compression: str | None = None) -> Path:
    return write_bytes(path, b"".join(lines), compression)


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None, row_group_size: int | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


# ------------------------------------------------------------------ a rich Parquet schema

RICH_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("url", pa.string()),
    ("token_count", pa.int32()),
    ("score", pa.float64()),
    ("int_score", pa.int64()),
    ("meta", pa.struct([("lang", pa.string()), ("quality", pa.float64())])),
    ("tags", pa.list_(pa.string())),
])


def wide_parquet(folder: Path, files: int, seed: int, row_group_size: int, n: int = 1200) -> list[Path]:
    """``files`` Parquet files of ``n`` rows of about 1 kB each (id, text of 120 numbers, score), in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(files):
        text = [" ".join(w) for w in rng.integers(0, 10**6, size=(n, 120)).astype(str)]
        table = pa.table({"id": [f"f{k}-{i}" for i in range(n)], "text": text, "score": np.round(rng.random(n) * 5, 3)})
        pq.write_table(table, folder / f"part-{k}.parquet", row_group_size=row_group_size)
        paths.append(folder / f"part-{k}.parquet")
    return paths


def rich_rows(n: int, seed: int = 0, prefix: str = "p") -> list[dict]:
    """Rows for RICH_SCHEMA, with some nulls, empty lists and a null struct."""
    rng = random.Random(seed + 1000)
    rows = make_rows(n, seed, prefix)
    for i, r in enumerate(rows):
        r["url"] = None if i % 17 == 3 else r["url"]
        r["meta"] = None if i % 23 == 5 else {"lang": rng.choice(["en", "fr", None]), "quality": rng.randint(0, 9) / 4}
        r["tags"] = [rng.choice(WORDS) for _ in range(rng.randint(0, 3))] if i % 11 != 7 else None
    return rows


# ------------------------------------------------------------------ expected orders


def params(method: str, **over) -> dict:
    """Every ordering key with the method's defaults, overridden by ``over``."""
    p = {k.name: default_for(method, k) for k in ORDERING_KEYS}
    p.update(over)
    return p


def expected_order(method: str, scores: list[float], **over) -> list[int]:
    """Global input indices at each output position, from the list-based oracle."""
    return oracle.order(method, list(scores), params(method, **over))


# ------------------------------------------------------------------ running the CLI


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def reorder(config: Path, inputs, output: Path, method: str | None = None, sets=(), extra=(), ok: bool = True):
    """``reorder run CONFIG --input ... --output OUT -q [--method M] [--set k=v ...]``."""
    args: list = ["run", config]
    if method:
        args += ["--method", method]
    for i in [inputs] if isinstance(inputs, str | Path) else inputs:
        args += ["--input", i]
    args += ["--output", output, "-q"]
    for s in sets:
        args += ["--set", s]
    args += list(extra)
    result = invoke(*args)
    if ok:
        assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def one_line_error(result) -> str:
    """Assert ``result`` is a user error (exit 2, one ``error:`` line on stderr, no traceback); return the line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = result.stderr.strip()
    assert err.startswith("error:"), err
    assert "\n" not in err, err
    assert "Traceback" not in result.output
    return err


# ------------------------------------------------------------------ reading outputs back


def shard_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if SHARD_RE.match(p.name))


def read_jsonl_out(folder: Path) -> list[bytes]:
    """All output records in order (shards sorted by name), each with its line ending."""
    lines: list[bytes] = []
    for p in shard_files(folder):
        lines += read_shard_lines(p)
    return lines


def read_shard_lines(path: Path) -> list[bytes]:
    """The records of one JSONL / JSONL.zst shard."""
    data = Path(path).read_bytes()
    if path.name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    return split_records(data)


def split_records(data: bytes) -> list[bytes]:
    """Split on b"\\n" only (a lone b"\\r" stays inside its record), keeping the newline."""
    parts = data.split(b"\n")
    out = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def read_parquet_out(folder: Path) -> pa.Table:
    tables = [pq.read_table(p) for p in shard_files(folder)]
    return pa.concat_tables(tables)


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / ".manifest.json").read_text(encoding="utf-8"))


def ids_of_lines(lines: list[bytes]) -> list[str]:
    return [json.loads(line)["id"] for line in lines]


# ------------------------------------------------------------------ fixtures


@dataclass
class Corpus:
    """Input files plus what they hold, in input order."""

    files: list[Path]
    rows: list[dict]  # every record, input order
    lines: list[bytes] = field(default_factory=list)  # raw record lines (JSONL corpora)

    @property
    def scores(self) -> list[float]:
        return [r["score"] for r in self.rows]

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]

    def expected_ids(self, method: str, **over) -> list[str]:
        return [self.ids[i] for i in expected_order(method, self.scores, **over)]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A minimal config: the method and paths come from the command line. It names the output format
    (the tests were written for Parquet output; ``format: auto`` has its own tests in test_first_hour.py)."""
    path = tmp_path / "cfg.yaml"
    path.write_text("score_field: score\nseed: 42\nformat: parquet\n")
    return path


@pytest.fixture
def jsonl_corpus(tmp_path: Path) -> Corpus:
    """Three plain JSONL files (400 + 350 + 450 rows) in tmp_path/in."""
    files, rows, lines = [], [], []
    for k, n in enumerate((400, 350, 450)):
        part = make_rows(n, seed=k, prefix=f"f{k}")
        part_lines = to_lines(part, seed=k)
        files.append(write_jsonl(tmp_path / "in" / f"part-{k}.jsonl", part_lines))
        rows += part
        lines += part_lines
    return Corpus(files, rows, lines)


@pytest.fixture
def parquet_corpus(tmp_path: Path) -> Corpus:
    """Two Parquet files (RICH_SCHEMA, 300 + 260 rows, several row groups) in tmp_path/pq."""
    files, rows = [], []
    for k, n in enumerate((300, 260)):
        part = rich_rows(n, seed=10 + k, prefix=f"p{k}")
        files.append(write_parquet(tmp_path / "pq" / f"part-{k}.parquet", part, RICH_SCHEMA, row_group_size=128))
        rows += part
    return Corpus(files, rows)


def output_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file of an output folder (shards and manifest), the run log left out."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != ".run_log.json")
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


@pytest.fixture
def local(request, tmp_path, config_file, jsonl_corpus) -> dict[str, str]:
    """The output hashes of a local SAW run of ``jsonl_corpus`` with the test module's ``OOC`` settings."""
    out = tmp_path / "local"
    reorder(config_file, jsonl_corpus.files, out, method="saw", sets=request.module.OOC)
    return output_hashes(out)


@pytest.fixture(scope="session")
def s3_server():
    """One moto S3 server for the whole session (tests/s3_server.py): a real S3 API on a free local port.
    Shared by every module (its start-up costs seconds): each test works in a bucket of its own name."""
    pytest.importorskip("s3fs", reason="needs the extra 's3' (pip install -e '.[s3]')")
    pytest.importorskip("moto.server", reason="needs moto[server] (the extra 'test')")
    from .s3_server import S3Server

    server = S3Server()
    yield server
    server.stop()
