"""Benchmark ``reorder`` against plain rewrites (the floor), DuckDB ORDER BY and, optionally, the reference code.

Every case runs as its own subprocess, ``--repeat`` times; the table shows the median wall time, the ratio to
the matching floor (parquet cases vs ``polars sink parquet``, jsonl cases vs ``copy jsonl (bytes)``) and the
median peak RSS of the whole process tree (sampled every 20 ms, children included). With ``--reference`` the
reorder jsonl cases also get a ratio to the reference run of the same method.

    python scripts/bench.py --docs 200000 --repeat 3
    python scripts/bench.py --docs 20000 --repeat 1 --cases "reorder,rewrite parquet,copy" --json bench-out/small.json
    python scripts/bench.py --reference ../data_ordering --workers 2
    python scripts/bench.py --docs 2000000 --shards 32 --formats parquet --memory-limit 1500MB --repeat 3
    python scripts/bench.py --docs 200000 --formats parquet --loaders --repeat 3
    python scripts/bench.py --docs 20000 --formats parquet --executors local,ray,slurm --repeat 3
    python scripts/bench.py --docs 200000 --formats parquet --tokens --repeat 3 --workers 1
    python scripts/bench.py --docs 200000 --formats parquet --shape nested --repeat 3 --cases "reorder str parquet,sink"
    python scripts/bench.py --docs 200000 --formats parquet --mixture --repeat 3

With ``--shape`` the corpus is another of ``scripts/corpus.py``'s shapes: ``fineweb`` (the default: 6 columns,
median 2,500 characters), ``long`` (median 20,000 characters, 5 columns), ``wide`` (40 columns of ints, floats,
short strings and bools beside a short text) or ``nested`` (a ``metadata`` struct of structs, a list of structs,
a list of strings). The reorder, DuckDB and reference cases read the shape's score field (``metadata.score`` for
``nested``, ``score`` otherwise); ``--tokens`` tokenizes the ``text`` column every shape has. The shape is in the
table's corpus line and in ``--json`` (``corpus.shape``, ``corpus.score_field``).

With ``--mixture`` the cases are a 3-source mixture of the Parquet corpus (its shards dealt into three sources:
STR, SAW and sorting; a ramp, a constant and a rising weight; a budget of all its rows) against the single-source
STR run over the same rows, the mixture's floor (issue 20 asks for at most 1.15x).

With ``--loaders`` the cases instead read the STR output of the Parquet corpus row by row (rows as dicts, all
columns): reorder's ``OrderedReader`` (one process) and ``OrderedDataset`` in a DataLoader with 2 workers, HF
``datasets`` streaming and map-style (its Arrow cache build included), and plain pyarrow; the table adds the rows
per second of the iteration alone.

With ``--out-of-core`` the reorder cases also run forced out of core (``--set rewrite=out-of-core``, no memory
limit): for JSONL, the sequential scatter/gather over line blocks instead of the gather through memory maps. The
table shows the median and the spread (fastest-slowest run) of every case, and beside the ratio of medians the
paired ratio: the median over rounds of the ratio within a round (steadier on a machine whose load varies).

With ``--executors local,ray,slurm`` the cases are instead ``reorder run --executor E`` of the STR ordering of the
first format, forced out of core (the task path every executor runs: scatter then gather tasks), on the same data,
and the table adds each engine's overhead as a ratio to the local executor (``x local``, and paired). ``slurm``
runs with ``--wait`` (the command returns once published; the wait polls every second) and needs a running
cluster (``bash scripts/slurm-local.sh start``); ``ray`` attaches to ``RAY_ADDRESS`` when it is set, else every
run starts (and stops) its own local Ray, which is counted. A missing engine is skipped with a note. The peak
RSS of a slurm case is the submitting process's only (the tasks run under slurmd).

With ``--memory-limit`` the reorder cases also run under that budget (out of core when the data does not fit),
once per worker count of ``--budget-workers``; the table then shows which path ran and the temporary disk
space the run used (``.run_log.json``).

The corpus (``--shards`` JSONL and/or Parquet shards, made by ``scripts/corpus.py``) is cached in ``--data``
(default ``bench-out/data-SHAPE-DOCS``; its ``corpus.json`` records docs, shards, seed and shape, and a corpus
that differs is written again); outputs go to ``--out`` and are removed before every repeat. DuckDB is optional
(``pip install duckdb``); its cases are skipped when it is missing, and the reference cases are skipped without
``--reference DIR`` (the authors' ``data_ordering`` folder with ``entry.py``). Logs of every run are kept in
``--out``/_logs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SHAPES, make_frame, write_corpus  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SHARDS, DEFAULT_SHAPE = 8, "fineweb"
SHARDS = DEFAULT_SHARDS  # --shards
SHAPE = DEFAULT_SHAPE  # --shape: the kind of corpus (scripts/corpus.py)
SEED = 0
SAMPLE_SECONDS = 0.02
STR_SETTINGS = {"num_sections": 2, "folding_layer": 3, "folding_ratio": 0.225}
SAW_SETTINGS = {"num_sections": 3, "folding_layer": 2, "folding_ratio": 0.075}
SELECT_CASES = ({"method": "top-r", "r": 0.999},
                {"method": "tokens", "budget": "10T", "token_field": "token_count"})
PARQUET_FLOOR = "polars sink parquet"  # the streaming read-and-rewrite: Polars' default engine
JSONL_FLOOR = "copy jsonl (bytes)"
STARTUP_FLOOR = "python -c pass"  # the interpreter alone: the floor of the start-up cases

# Snippets run as ``python -c SNIPPET OUT FILE...``.
POLARS_PARQUET = """
import sys, polars as pl
pl.read_parquet(sys.argv[2:]).write_parquet(sys.argv[1], compression="zstd")
"""
POLARS_SINK = """
import sys, polars as pl
pl.scan_parquet(sys.argv[2:]).sink_parquet(sys.argv[1], compression="zstd")
"""
POLARS_JSONL = """
import sys, polars as pl
pl.read_ndjson(sys.argv[2:]).write_ndjson(sys.argv[1])
"""
COPY_JSONL = """
import shutil, sys
with open(sys.argv[1], "wb") as out:
    for path in sys.argv[2:]:
        with open(path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
"""
DUCKDB_PARQUET = """
import sys, duckdb
files = ", ".join(repr(f) for f in sys.argv[2:])
duckdb.sql(f"COPY (SELECT * FROM read_parquet([{files}]) ORDER BY __SCORE__) TO {sys.argv[1]!r} "
           "(FORMAT parquet, COMPRESSION zstd)")
"""
DUCKDB_JSONL = """
import sys, duckdb
files = ", ".join(repr(f) for f in sys.argv[2:])
duckdb.sql(f"COPY (SELECT * FROM read_json_auto([{files}]) ORDER BY __SCORE__) TO {sys.argv[1]!r} (FORMAT json)")
"""

# Loader cases: read the reorder output (sys.argv[1]) row by row as dicts, the way a DataLoader worker does;
# each prints "LOADER {rows, seconds}" timed around the iteration alone (start-up excluded).
LOADER_PRELUDE = """
import glob, json, sys, time
out = sys.argv[1]
shards = sorted(glob.glob(out + "/*.parquet"))
def report(rows, t0):
    print("LOADER " + json.dumps({"rows": rows, "seconds": time.perf_counter() - t0}))
"""
LOADER_SNIPPETS = {
    "loader: reorder OrderedReader": """
from reorder_cli.loader import OrderedReader
t0 = time.perf_counter(); n = 0
for row in OrderedReader(out, micro_batch_size=32):
    n += 1
report(n, t0)
""",
    "loader: reorder OrderedDataset, DataLoader 2 workers": """
from torch.utils.data import DataLoader
from reorder_cli.loader import OrderedDataset
t0 = time.perf_counter(); n = 0
for batch in DataLoader(OrderedDataset(out, micro_batch_size=32), batch_size=32, num_workers=2,
                        collate_fn=lambda rows: rows):
    n += len(batch)
report(n, t0)
""",
    "loader: datasets streaming": """
from datasets import load_dataset
t0 = time.perf_counter(); n = 0
for row in load_dataset("parquet", data_files=shards, split="train", streaming=True):
    n += 1
report(n, t0)
""",
    "loader: datasets streaming, DataLoader 2 workers": """
from torch.utils.data import DataLoader
from datasets import load_dataset
t0 = time.perf_counter(); n = 0
stream = load_dataset("parquet", data_files=shards, split="train", streaming=True)
for batch in DataLoader(stream, batch_size=32, num_workers=2, collate_fn=lambda rows: rows):
    n += len(batch)
report(n, t0)
""",
    "loader: datasets map-style (incl. Arrow cache build)": """
import tempfile
from datasets import load_dataset
t0 = time.perf_counter(); n = 0
with tempfile.TemporaryDirectory(dir=out + "/..") as cache:
    for row in load_dataset("parquet", data_files=shards, split="train", cache_dir=cache):
        n += 1
report(n, t0)
""",
    "loader: pyarrow iter_batches + to_pylist": """
import pyarrow.parquet as pq
t0 = time.perf_counter(); n = 0
for path in shards:
    for batch in pq.ParquetFile(path).iter_batches():
        for row in batch.to_pylist():
            n += 1
report(n, t0)
""",
}

TOKENS_FLOOR = "tokenize in input order (floor)"
TOKENIZER_CHARS = 100_000_000  # of text to train the tokenizer on, at most (long documents would take minutes)
#: The floor of the token export: the same documents, encoded in batches with the same tokenizer and written
#: as the same token bytes (uint16, EOS after each document), in input order. Run as
#: ``python -c TOKENIZE OUT TOKENIZER FILE...``.
TOKENIZE = """
import sys, itertools, numpy as np, pyarrow.parquet as pq
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[2]); eos = tok.token_to_id("</s>"); total = 0
with open(sys.argv[1], "wb") as out:
    for path in sys.argv[3:]:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192, columns=["text"]):
            enc = tok.encode_batch_fast(batch.column(0).to_pylist(), add_special_tokens=False)
            n = np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(enc))
            ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in enc), dtype=np.uint32, count=int(n.sum()))
            ends = np.cumsum(n + 1)
            tokens = np.full(int(ends[-1]), eos, dtype="<u2")
            tokens[np.delete(np.arange(len(tokens)), ends - 1)] = ids
            tokens.tofile(out)
            total += len(tokens)
print("tokens", total)
"""


def ensure_tokenizer(data: Path) -> Path:
    """A BPE tokenizer (8000 ids, <s> and </s>) trained once on the texts of the corpus's first Parquet shard,
    at most its first ``TOKENIZER_CHARS`` characters (the whole shard at 200,000 fineweb documents); never a
    download."""
    folder = data / "tokenizer"
    if not (folder / "tokenizer.json").exists():
        import pyarrow.parquet as pq
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        import pyarrow.compute as pc

        column = pq.read_table(shard_paths(data, "parquet")[0], columns=["text"]).column(0)
        chars = np.cumsum(pc.utf8_length(column).to_numpy(zero_copy_only=False))
        texts = column.slice(0, max(1, int(np.searchsorted(chars, TOKENIZER_CHARS, side="right")))).to_pylist()
        tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=8000, special_tokens=["[UNK]", "<s>", "</s>"]))
        folder.mkdir(parents=True, exist_ok=True)
        tok.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return folder


def token_cases(args: argparse.Namespace) -> list[Case]:
    """The STR order of the Parquet corpus exported for Megatron (token pieces made by the shard-writing
    tasks, checked and assembled into one .bin/.idx at publish) against the floor: the same documents
    tokenized and written in input order."""
    folder = ensure_tokenizer(args.data)
    case = reorder_case("str", "parquet", args.data, args.out, args.workers)
    case.name, case.floor = "reorder str parquet + megatron export", TOKENS_FLOOR
    case.argv = [a.replace(slug("reorder str parquet->parquet"), slug(case.name)) for a in case.argv]
    case.argv += ["--set", f"tokenizer={folder}", "--set", "export=megatron"]
    floor = Case(TOKENS_FLOOR, [sys.executable, "-c", TOKENIZE, str(args.out / slug(TOKENS_FLOOR) / "all.tokens"),
                                str(folder / "tokenizer.json"), *map(str, shard_paths(args.data, "parquet"))],
                 TOKENS_FLOOR)
    plain = reorder_case("str", "parquet", args.data, args.out, args.workers)
    return [plain, case, floor]


def mixture_cases(args: argparse.Namespace) -> list[Case]:
    """A 3-source mixture of the Parquet corpus (its shards split in three: STR, SAW and sorting, weights a
    ramp, a constant and a rise, a budget of all its rows) against the single-source STR run over the same
    rows, its floor (issue 20: at most 1.15x)."""
    import yaml

    single = reorder_case("str", "parquet", args.data, args.out, args.workers)
    files = shard_paths(args.data, "parquet")
    groups = [files[0::3], files[1::3], files[2::3]]
    rows = sum(pq_rows(f) for f in files)
    methods = [("web", "str", [[0.0, 0.5], [1.0, 0.3]]), ("books", "saw", 0.3),
               ("code", "sorting", [[0.0, 0.2], [1.0, 0.4]])]
    cfg = {"format": "parquet", "seed": 42, "budget": rows, "score_field": score_field(),
           "sources": [{"name": n, "input": [str(f) for f in g], "method": m, "weight": w, "max_epochs": 2,
                        **(SAW_SETTINGS if m == "saw" else {})} for (n, m, w), g in zip(methods, groups, strict=True)]}
    path = args.out.parent / "bench-mixture.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    name = "reorder mixture 3 sources parquet"
    argv = [*reorder_exe(), "run", str(path), "--output", str(args.out / slug(name)), "--overwrite", "-q",
            *sets({"workers": args.workers} if args.workers is not None else {})]
    return [single, Case(name, argv, single.name)]


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


@dataclass
class Case:
    name: str
    argv: list[str]
    floor: str | None = None
    reference: str | None = None  # the reference case this one is compared with, when it ran


@dataclass
class Result:
    case: str
    command: list[str]
    seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    work_gb: list[float] = field(default_factory=list)  # reorder's temporary space (.run_log.json)
    rows_per_s: list[float] = field(default_factory=list)  # loader cases: rows / iteration seconds
    path: str | None = None  # the rewrite path reorder took
    error: str | None = None

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def median_peak_mb(self) -> float | None:
        return statistics.median(self.peak_mb) if self.peak_mb else None


# --------------------------------------------------------------------------- corpus


def shard_paths(data: Path, ext: str) -> list[Path]:
    return [data / f"part-{i:04d}.{ext}" for i in range(SHARDS)]


def score_field() -> str:
    """Where the corpus's score is (the reorder cases' ``score_field``): the shape's."""
    return SHAPES[SHAPE].score_field


#: What the bench makes from a corpus in its folder: the single JSONL of the reference, the STR output the loader
#: cases read, the tokenizer of --tokens. Removed with the shards when the corpus changes.
DERIVED = ("all.jsonl", "reordered-str", "tokenizer")


def ensure_corpus(data: Path, docs: int, formats: list[str]) -> None:
    """Write the corpus once; a marker file records that a previous run finished writing it (and its shape)."""
    marker = data / "corpus.json"
    wanted = {"docs": docs, "shards": SHARDS, "seed": SEED, "shape": SHAPE}
    same = marker.exists() and json.loads(marker.read_text()) == wanted
    missing = [f for f in formats if not same or not all(p.exists() for p in shard_paths(data, f))]
    if not missing:
        return
    print(f"writing {SHAPE} corpus of {docs:,} docs ({', '.join(missing)}) to {data} ...", flush=True)
    marker.unlink(missing_ok=True)
    if not same:  # another corpus: none of its shards (there may be more of them) nor what was made from it
        for path in [*data.glob("part-*.jsonl"), *data.glob("part-*.parquet"), *(data / d for d in DERIVED)]:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    write_corpus(make_frame(docs, SEED, shape=SHAPE), data, SHARDS, missing, SHAPES[SHAPE].row_group_size)
    marker.write_text(json.dumps(wanted))


def ensure_single_jsonl(data: Path) -> Path:
    """All JSONL shards concatenated into one file (the reference reads a single file)."""
    single = data / "all.jsonl"
    if not single.exists():
        tmp = single.with_suffix(".jsonl.tmp")
        with tmp.open("wb") as out:
            for path in shard_paths(data, "jsonl"):
                with path.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        tmp.rename(single)
    return single


def corpus_gb(data: Path, ext: str) -> float:
    return sum(p.stat().st_size for p in shard_paths(data, ext)) / 1e9


# --------------------------------------------------------------------------- cases


def reorder_exe() -> list[str]:
    sibling = Path(sys.executable).with_name("reorder")
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("reorder")
    if found is None:
        raise SystemExit("reorder is not installed (pip install -e .)")
    return [found]


def sets(settings: dict[str, object]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def reorder_case(method: str, fmt: str, data: Path, out: Path, workers: int | None,
                 memory_limit: str | None = None, rewrite: str | None = None, select: dict | None = None,
                 executor: str | None = None) -> Case:
    name = f"reorder {method} {fmt}->{fmt}" + (f" limit {memory_limit} w{workers}" if memory_limit else "")
    name += f" {rewrite}" if rewrite else ""
    name += f" executor {executor}" if executor else ""
    name += " select " + " ".join(str(v) for v in select.values()) if select else ""
    extra = {"format": fmt, **(SAW_SETTINGS if method == "saw" else {})}
    if score_field() != "score":  # configs/str.yaml's
        extra["score_field"] = score_field()
    extra.update({f"select.{k}": v for k, v in (select or {}).items()})
    if rewrite:
        extra["rewrite"] = rewrite
    if workers is not None:
        extra["workers"] = workers
    if memory_limit:
        extra["memory_limit"] = memory_limit
    argv = [
        *reorder_exe(),
        "run",
        str(REPO / "configs" / "str.yaml"),
        "--method",
        method,
        "--input",
        str(data / f"part-*.{fmt}"),
        "--output",
        str(out / slug(name)),
        *sets(extra),
        "--overwrite",
        "-q",
        *(["--executor", executor] if executor else []),
        *(["--wait"] if executor == "slurm" else []),
    ]
    floor = PARQUET_FLOOR if fmt == "parquet" else JSONL_FLOOR
    reference = f"reference {method} jsonl" if fmt == "jsonl" and not memory_limit else None
    return Case(name, argv, floor, reference)


def snippet_case(name: str, snippet: str, files: list[Path], out: Path, suffix: str, floor: str) -> Case:
    target = out / slug(name) / f"out.{suffix}"
    snippet = snippet.replace("__SCORE__", score_field())
    return Case(name, [sys.executable, "-c", snippet, str(target), *map(str, files)], floor)


def reference_case(method: str, ref_dir: Path, single: Path, out: Path) -> Case:
    name = f"reference {method} jsonl"
    settings = STR_SETTINGS if method == "str" else SAW_SETTINGS
    config = out / f"_reference-{method}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    lines = {"score_field": score_field(), "ascending": "true", **settings, "window_size": 0, "seed": 42}
    config.write_text("".join(f"{key}: {value}\n" for key, value in lines.items()))
    argv = [
        sys.executable,
        str(ref_dir / "entry.py"),
        "--input_data_path",
        str(single),
        "--output_data_path",
        str(out / slug(name) / "out.jsonl"),
        "--method",
        "stair" if method == "str" else "saw",
        "--config_path",
        str(config),
    ]
    return Case(name, argv, JSONL_FLOOR)


def ensure_loader_output(data: Path) -> Path:
    """The STR output (Parquet, default shards and row groups) of the Parquet corpus, written once."""
    target = data / "reordered-str"
    from reorder_cli.publish import manifest

    if not (target / manifest.MANIFEST_NAME).exists():
        print(f"writing the STR output the loader cases read to {target} ...", flush=True)
        subprocess.run([*reorder_exe(), "run", str(REPO / "configs" / "str.yaml"), "--input",
                        str(data / "part-*.parquet"), "--output", str(target), "--set", f"score_field={score_field()}",
                        "--overwrite", "-q"], check=True)
    return target


def loader_cases(data: Path, notes: list[str]) -> list[Case]:
    target = ensure_loader_output(data)
    cases = []
    for name, body in LOADER_SNIPPETS.items():
        needs = [m for m in ("torch", "datasets") if m in name or m == "torch" and "DataLoader" in name]
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if missing:
            notes.append(f"{missing[0]} is not installed: {name!r} skipped (pip install -e '.[trainer]')")
            continue
        cases.append(Case(name, [sys.executable, "-c", LOADER_PRELUDE + body, str(target)]))
    return cases


EXECUTORS = ("local", "ray", "slurm")


def executor_missing(name: str) -> str | None:
    """Why engine ``name`` cannot run here (None when it can)."""
    if name == "ray" and importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install -e '.[ray]')"
    if name == "slurm":
        if shutil.which("sbatch") is None:
            return "no sbatch on PATH (apt-get install -y slurm-wlm munge)"
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
        if ping.returncode != 0 or "UP" not in ping.stdout:
            return "no Slurm controller answers (sudo bash scripts/slurm-local.sh start)"
    return None


def executor_cases(args: argparse.Namespace, notes: list[str]) -> list[Case]:
    """``reorder run --executor E`` for each engine of ``--executors`` that runs here, out of core; the
    local executor is the one the others are compared with (its name goes in ``Case.reference``)."""
    fmt = args.formats[0]
    cases = []
    for name in args.executors:
        if name not in EXECUTORS:
            raise SystemExit(f"--executors: unknown engine {name!r} (expected {', '.join(EXECUTORS)})")
        why = executor_missing(name)
        if why:
            notes.append(f"{why}: executor {name} skipped")
            continue
        case = reorder_case("str", fmt, args.data, args.out, args.workers, rewrite="out-of-core", executor=name)
        cases.append(case)
    local = next((c.name for c in cases if c.name.endswith("executor local")), None)
    if local is None:
        notes.append("executor local not selected: the x local ratios show as -")
    for case in cases:
        case.reference = local
    if "ray" in args.executors and not os.environ.get("RAY_ADDRESS"):
        notes.append("RAY_ADDRESS is not set: every ray run starts and stops its own local Ray (counted)")
    return cases


def startup_cases() -> list[Case]:
    """`reorder --version` and `--help` against the bare interpreter (target: under 0.25 s)."""
    return [Case(STARTUP_FLOOR, [sys.executable, "-c", "pass"], STARTUP_FLOOR),
            Case("startup reorder --version", [*reorder_exe(), "--version"], STARTUP_FLOOR),
            Case("startup reorder --help", [*reorder_exe(), "--help"], STARTUP_FLOOR)]


def build_cases(args: argparse.Namespace, notes: list[str]) -> list[Case]:
    data, out = args.data, args.out
    if args.loaders:
        return select(loader_cases(data, notes), args.cases)
    if args.executors:
        return select(executor_cases(args, notes), args.cases)
    if args.tokens:
        return select(token_cases(args), args.cases)
    if args.mixture:
        return select(mixture_cases(args), args.cases)
    pq_files, js_files = shard_paths(data, "parquet"), shard_paths(data, "jsonl")
    formats = [f for f in ("parquet", "jsonl") if f in args.formats]
    cases = startup_cases()
    cases += [reorder_case(m, f, data, out, args.workers) for f in formats for m in ("str", "saw")]
    # selection's own cost: it keeps (almost) every row, so the rewrite is the same as without it
    cases += [reorder_case("str", f, data, out, args.workers, select=s) for f in formats for s in SELECT_CASES]
    if args.in_memory:
        cases += [reorder_case(m, f, data, out, args.workers, rewrite="in-memory")
                  for f in formats for m in ("str", "saw")]
    if args.out_of_core:
        cases += [reorder_case(m, f, data, out, args.workers, rewrite="out-of-core")
                  for f in formats for m in ("str", "saw")]
    if args.memory_limit:
        cases += [reorder_case(m, f, data, out, w, args.memory_limit)
                  for f in formats for m in ("str", "saw") for w in args.budget_workers]
    if "parquet" in formats:
        cases += [snippet_case(PARQUET_FLOOR, POLARS_SINK, pq_files, out, "parquet", PARQUET_FLOOR),
                  snippet_case("polars rewrite parquet", POLARS_PARQUET, pq_files, out, "parquet", PARQUET_FLOOR)]
    if "jsonl" in formats:
        cases += [
            snippet_case(JSONL_FLOOR, COPY_JSONL, js_files, out, "jsonl", JSONL_FLOOR),
            snippet_case("polars rewrite jsonl", POLARS_JSONL, js_files, out, "jsonl", JSONL_FLOOR),
        ]
    if importlib.util.find_spec("duckdb") is not None:
        cases += [snippet_case(f"duckdb ORDER BY {f}", DUCKDB_PARQUET if f == "parquet" else DUCKDB_JSONL,
                               shard_paths(data, f), out, f, PARQUET_FLOOR if f == "parquet" else JSONL_FLOOR)
                  for f in formats]
    else:
        notes.append("duckdb is not installed: duckdb cases skipped (pip install duckdb)")
    if args.reference is None or "jsonl" not in formats:
        notes.append("no --reference DIR: reference cases skipped")
    elif not (args.reference / "entry.py").exists():
        notes.append(f"{args.reference}/entry.py not found: reference cases skipped")
    else:
        single = ensure_single_jsonl(data)
        cases += [reference_case(m, args.reference, single, out) for m in ("str", "saw")]
    return select(cases, args.cases)


def select(cases: list[Case], wanted: str | None) -> list[Case]:
    if not wanted:
        return cases
    parts = [p.strip().lower() for p in wanted.split(",") if p.strip()]
    return [c for c in cases if any(c.name.lower() == p[1:] if p.startswith("=") else p in c.name.lower()
                                    for p in parts)]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# --------------------------------------------------------------------------- measuring


def tree_rss(proc: psutil.Process) -> int:
    """RSS of ``proc`` plus all its descendants; processes that vanish meanwhile count as zero."""
    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


def sample_peak(proc: psutil.Process, done: threading.Event, peak: list[int]) -> None:
    """Until ``done`` is set, keep the largest tree RSS seen in ``peak[0]``."""
    while not done.is_set():
        peak[0] = max(peak[0], tree_rss(proc))
        done.wait(SAMPLE_SECONDS)


def measure(argv: list[str], log: Path) -> tuple[float, float, int]:
    """Run ``argv``; return (wall seconds, peak tree RSS in MB, exit code). Output goes to ``log``."""
    done, peak = threading.Event(), [0]
    with log.open("wb") as sink:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
        sampler = threading.Thread(target=sample_peak, args=(psutil.Process(child.pid), done, peak))
        sampler.start()
        code = child.wait()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return seconds, peak[0] / 2**20, code


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def run_cases(cases: list[Case], out: Path, repeat: int) -> dict[str, Result]:
    """Every case ``repeat`` times, round-robin (case A, B, C, A, B, C, ...), so that a slow spell of
    the machine hits every case alike rather than one of them."""
    results = {case.name: Result(case.name, case.argv) for case in cases}
    for i in range(repeat):
        for case in cases:
            if results[case.name].error is None:
                run_once(case, results[case.name], out, i, repeat)
    for case in cases:
        shutil.rmtree(out / slug(case.name), ignore_errors=True)
    return results


def run_once(case: Case, result: Result, out: Path, i: int, repeat: int) -> None:
    logs = out / "_logs"
    logs.mkdir(parents=True, exist_ok=True)
    clean(out / slug(case.name))
    log = logs / f"{slug(case.name)}-{i}.log"
    seconds, peak_mb, code = measure(case.argv, log)
    run_log = out / slug(case.name) / ".run_log.json"  # reorder's own timings, kept beside the log
    if run_log.exists():
        shutil.copy(run_log, log.with_suffix(".run_log.json"))
        facts = json.loads(run_log.read_text())
        result.path = facts.get("path")
        result.work_gb.append(facts.get("work_bytes", 0) / 1e9)
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        result.error = f"exit {code}: " + "\n".join(tail)
        print(f"  {case.name}: FAILED (exit {code}), see {log}", flush=True)
        return
    result.seconds.append(seconds)
    result.peak_mb.append(peak_mb)
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("LOADER "):
            facts = json.loads(line[len("LOADER "):])
            result.rows_per_s.append(facts["rows"] / facts["seconds"])
    print(f"  {case.name} [{i + 1}/{repeat}]: {seconds:.2f} s, {peak_mb:,.0f} MB", flush=True)


# --------------------------------------------------------------------------- report


def ratio(result: Result, other: Result | None) -> float | None:
    if other is None or result.median_seconds is None or not other.median_seconds:
        return None
    return result.median_seconds / other.median_seconds


def paired_ratio(result: Result, other: Result | None) -> float | None:
    """The median over rounds of this case's time over ``other``'s in the same round: steadier than the
    ratio of medians when the machine's load changes between rounds."""
    if other is None or not result.seconds or len(result.seconds) != len(other.seconds):
        return None
    return statistics.median(a / b for a, b in zip(result.seconds, other.seconds, strict=True) if b)


def rows(cases: list[Case], results: dict[str, Result]) -> list[dict[str, object]]:
    table = []
    for case in cases:
        res = results[case.name]
        table.append(
            {
                "case": case.name,
                "median_seconds": res.median_seconds,
                "min_seconds": min(res.seconds) if res.seconds else None,
                "max_seconds": max(res.seconds) if res.seconds else None,
                "floor": case.floor,
                "vs_floor": ratio(res, results.get(case.floor or "")),
                "vs_reference": ratio(res, results.get(case.reference or "")),
                "vs_floor_paired": paired_ratio(res, results.get(case.floor or "")),
                "vs_reference_paired": paired_ratio(res, results.get(case.reference or "")),
                "median_peak_mb": res.median_peak_mb,
                "path": res.path,
                "work_gb": max(res.work_gb) if res.work_gb else None,
                "rows_per_s": statistics.median(res.rows_per_s) if res.rows_per_s else None,
                "repeats": len(res.seconds),
                "seconds": res.seconds,
                "peak_mb": res.peak_mb,
                "command": res.command,
                "error": res.error,
            }
        )
    return table


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(table: list[dict[str, object]], corpus_line: str, notes: list[str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    with_ref = any(r["vs_reference"] is not None for r in table)
    versus = "x local" if any(" executor " in str(r["case"]) for r in table) else "x reference"
    with_rows = any(r["rows_per_s"] is not None for r in table)
    grid = Table(title="reorder benchmark")
    grid.add_column("case")
    grid.add_column("median s", justify="right")
    grid.add_column("min-max s", justify="right")
    grid.add_column("x floor", justify="right")
    grid.add_column("x floor paired", justify="right")
    if with_ref:
        grid.add_column(versus, justify="right")
        grid.add_column(f"{versus} paired", justify="right")
    if with_rows:
        grid.add_column("rows/s", justify="right")
    grid.add_column("peak RSS MB", justify="right")
    grid.add_column("path")
    grid.add_column("temp GB", justify="right")
    grid.add_column("repeats", justify="right")
    for r in table:
        cells = [
            str(r["case"]) + (" (FAILED)" if r["error"] else ""),
            fmt(r["median_seconds"], ".2f"),
            "-" if r["min_seconds"] is None else f"{r['min_seconds']:.2f}-{r['max_seconds']:.2f}",
            fmt(r["vs_floor"], ".2f"),
            fmt(r["vs_floor_paired"], ".2f"),
        ]
        if with_ref:
            cells += [fmt(r["vs_reference"], ".2f"), fmt(r["vs_reference_paired"], ".2f")]
        if with_rows:
            cells.append(fmt(r["rows_per_s"], ",.0f"))
        cells += [fmt(r["median_peak_mb"], ",.0f"), str(r["path"] or ""), fmt(r["work_gb"], ".2f"), str(r["repeats"])]
        grid.add_row(*cells)
    console = Console(width=max(180, shutil.get_terminal_size().columns))
    console.print(grid)
    console.print(corpus_line, highlight=False)
    for note in notes:
        console.print(f"note: {note}")
    for r in table:
        if r["error"]:
            console.print(f"[red]{escape(str(r['case']))} failed:[/red] {escape(str(r['error']))}", highlight=False)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    global SHARDS, SHAPE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents in the corpus")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (the median is reported)")
    parser.add_argument("--shape", default=DEFAULT_SHAPE, choices=list(SHAPES),
                        help="kind of corpus (scripts/corpus.py): fineweb, long (long texts), wide (40 columns), "
                             "nested (structs and lists; the reorder cases read metadata.score)")
    parser.add_argument("--data", type=Path, help="corpus folder (default bench-out/data-SHAPE-DOCS)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/run"), help="output folder, cleaned per run")
    parser.add_argument("--cases", help="comma-separated substrings selecting cases (=NAME: that case only)")
    parser.add_argument("--workers", type=int, help="passed to reorder as --set workers=N")
    parser.add_argument("--reference", type=Path, help="the authors' data_ordering folder (with entry.py)")
    parser.add_argument("--json", type=Path, help="also save the results here")
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS, help="shards a format in the corpus")
    parser.add_argument("--formats", default="jsonl,parquet", help="corpus formats to write and benchmark")
    parser.add_argument("--memory-limit", help="also run the reorder cases under this budget, e.g. 1500MB")
    parser.add_argument("--budget-workers", default="1,2", help="worker counts for the budget cases")
    parser.add_argument("--in-memory", action="store_true", help="also run the reorder cases forced in memory")
    parser.add_argument("--out-of-core", action="store_true",
                        help="also run the reorder cases forced out of core (the scatter/gather over line blocks "
                             "for JSONL), with no memory limit")
    parser.add_argument("--executors",
                        help="instead: reorder run --executor E for each of these (local,ray,slurm), out of core, "
                             "with each engine's overhead as a ratio to the local executor")
    parser.add_argument("--loaders", action="store_true",
                        help="instead: read the STR output with reorder's loader, HF datasets and pyarrow (rows/s)")
    parser.add_argument("--tokens", action="store_true",
                        help="instead: the STR order of the Parquet corpus exported for Megatron (a BPE tokenizer "
                             "trained on the corpus) against tokenizing the same documents in input order")
    parser.add_argument("--mixture", action="store_true",
                        help="instead: a 3-source mixture of the Parquet corpus against the single-source STR run "
                             "over the same rows")
    args = parser.parse_args(argv)
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    args.budget_workers = [int(w) for w in args.budget_workers.split(",")]
    args.executors = [e.strip() for e in (args.executors or "").split(",") if e.strip()]
    SHARDS, SHAPE = args.shards, args.shape
    args.data = (args.data or Path(f"bench-out/data-{args.shape}-{args.docs}")).resolve()
    args.out = args.out.resolve()
    args.reference = args.reference.resolve() if args.reference else None
    return args


def compile_bytecode() -> None:
    """Compile the package's bytecode first, as ``pip install`` does: with ``PYTHONDONTWRITEBYTECODE`` set
    (as on some machines and CI images), an editable install would otherwise compile every module of
    ``reorder_cli`` from source on every run, a cost no installed tool pays (0.2-0.3 s a run here)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "reorder_cli")], check=True, env=env)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    compile_bytecode()
    ensure_corpus(args.data, args.docs, args.formats)
    notes: list[str] = []
    cases = build_cases(args, notes)
    if not cases:
        raise SystemExit(f"no case matches --cases {args.cases!r}")
    missing = sorted({c.floor for c in cases if c.floor} - {c.name for c in cases})
    notes += [f"floor {name!r} not selected: its ratios show as -" for name in missing]
    results = run_cases(cases, args.out, args.repeat)
    table = rows(cases, results)
    corpus = {
        "shape": SHAPE,
        "score_field": score_field(),
        "docs": args.docs,
        **{f"{f}_gb": corpus_gb(args.data, f) for f in args.formats},
        "cpus": os.cpu_count(),
    }
    sizes = ", ".join(f"{f} {corpus[f + '_gb']:.2f} GB" for f in args.formats)
    corpus_line = (f"corpus: {SHAPE} shape (score_field {score_field()}), {corpus['docs']:,} docs, {sizes}, "
                   f"{SHARDS} shards each; {corpus['cpus']} CPUs")
    print_table(table, corpus_line, notes)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"corpus": corpus, "notes": notes, "results": table}, indent=2))


if __name__ == "__main__":
    main()
