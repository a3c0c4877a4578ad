"""Measure the peak memory of `reorder run` against its memory budget.

Generates a FineWeb-like corpus with ``scripts/corpus.py`` (once; reused when present),
runs ``reorder run`` at each budget as a separate process under ``/usr/bin/time``, and
samples the resident memory of the whole process tree (the process and any children,
all threads) every few milliseconds with psutil; the kernel's own peak of the process
(``/usr/bin/time``'s maximum resident set size, which sees spikes between samples) is
taken too and the larger of the two is reported. Prints one table a
run: budget, what the run chose (path, workers) or its refusal, the peak, the margin
over the budget, and whether the shards and manifest are byte-identical to the first
run that wrote them.

    python scripts/calibrate_budget.py --dir /tmp/calib --docs 150000 --shards 12 \\
        --budgets 300MB,400MB,600MB,1GB,1.5GB --formats parquet,jsonl.zst --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
REORDER = [sys.executable, "-m", "reorder_cli.cli"]
TIME = "/usr/bin/time"


def make_corpus(folder: Path, docs: int, shards: int, fmt: str) -> Path:
    data = folder / f"corpus-{docs}-{shards}-{fmt}"
    if not (data / "done").exists():  # in another process: this one stays small
        shutil.rmtree(data, ignore_errors=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "corpus.py"), str(data), "--docs", str(docs),
                        "--shards", str(shards), "--formats", fmt], check=True)
        (data / "done").touch()
    return data


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of every descendant of ``proc`` (``/usr/bin/time``'s children, not itself)."""
    try:
        procs = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def measure(cmd: list[str], interval: float = 0.005) -> tuple[int, int, str, float]:
    """(exit code, peak tree RSS in bytes, stderr, seconds) of ``cmd``."""
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("r") as kb:
        child = subprocess.Popen([TIME, "-f", "%M", "-o", kb.name, *cmd], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, cwd=ROOT)
        proc = psutil.Process(child.pid)
        peak = 0
        while child.poll() is None:
            peak = max(peak, tree_rss(proc))
            time.sleep(interval)
        err = child.stderr.read().decode(errors="replace")
        child.stderr.close()
        text = kb.read().strip().splitlines()
    kernel = int(text[-1]) * 1024 if text and text[-1].isdigit() else 0
    return child.returncode, max(peak, kernel), err, time.perf_counter() - started


def digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.iterdir()):
        if p.is_file() and p.name != ".run_log.json":
            h.update(p.name.encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def parse_size(text: str) -> int:
    from reorder_cli.config import parse_size as parse

    return parse(text, "budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("bench-out/calibrate"))
    parser.add_argument("--docs", type=int, default=150_000)
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--input-format", default="parquet", choices=["parquet", "jsonl"])
    parser.add_argument("--budgets", default="300MB,400MB,600MB,1GB,1.5GB")
    parser.add_argument("--formats", default="parquet,jsonl.zst", help="output formats")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--method", default="saw")
    parser.add_argument("--set", action="append", default=[], help="extra key=value for every run")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()

    args.dir.mkdir(parents=True, exist_ok=True)
    data = make_corpus(args.dir, args.docs, args.shards, args.input_format)
    config = ROOT / "configs" / f"{args.method}.yaml"
    rows = []
    print("| output | budget | result | path | workers | peak MB | peak − budget MB | bytes |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | --- |")
    for fmt in args.formats.split(","):
        first = None
        for budget in args.budgets.split(","):
            out = args.dir / f"out-{fmt}-{budget}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [*REORDER, "run", str(config), "--method", args.method, "-i", str(data), "-o", str(out),
                   "--memory-limit", budget, "--workers", str(args.workers), "--quiet", "--set", f"format={fmt}"]
            for extra in args.set:
                cmd += ["--set", extra]
            code, peak, err, seconds = measure(cmd)
            limit = parse_size(budget)
            if code == 0:
                log = json.loads((out / ".run_log.json").read_text())
                same = digest(out)
                first = first or same
                result, path, workers = "ok", log["path"], log["workers"]
                ident = "identical" if same == first else f"DIFFERENT {same}"
            else:
                result, path, workers, ident = f"refused (exit {code}): {err.strip()}", "", "", ""
            row = {"format": fmt, "budget": budget, "limit": limit, "exit": code, "peak": peak,
                   "path": path, "workers": workers, "seconds": round(seconds, 2), "stderr": err.strip(),
                   "identical": ident}
            rows.append(row)
            print(f"| {fmt} | {budget} | {result if code else 'ok'} | {path} | {workers} | {peak / 1e6:,.0f} | "
                  f"{(peak - limit) / 1e6:+,.0f} | {ident} |", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
