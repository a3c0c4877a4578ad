"""The keys pass and a full run with inputs on an S3 API (a local moto server) beside the same files on
local disk: seconds and the bytes each stage read from the store (``.run_log.json``).

    python scripts/corpus.py /tmp/s3bench/corpus --docs 100000 --shards 8 --median-chars 1500
    python scripts/bench_s3.py /tmp/s3bench/corpus /tmp/s3bench/out
    python scripts/bench_s3.py /tmp/s3bench/corpus /tmp/s3bench/out --output-on-s3

With ``--output-on-s3``: the same local inputs written to a local folder and to ``s3://bench/...``
(the work folder on local disk: ``work_dir``), a full run each.

With ``--work-on-s3``: inputs and output on S3, rewritten out of core (every stage as tasks), the work
folder on local disk against ``s3://bench/work`` (tasks upload their files before their markers), in
alternating pairs (``--repeat``); the medians, their ratio, and the bytes each stage read.

    python scripts/bench_s3.py /tmp/s3bench/corpus /tmp/s3bench/out --work-on-s3 --repeat 3

moto keeps objects in memory and serves them over HTTP on localhost: the ratio shows the cost of the
S3 protocol path (requests, signing, copies), not of a network.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.s3_server import S3Server  # noqa: E402


def run(config: Path, inputs: list[str], out: Path | str, sets: list[str], server: S3Server | None = None) -> dict:
    if isinstance(out, Path):
        shutil.rmtree(out, ignore_errors=True)
    args = [sys.executable, "-m", "reorder_cli.cli", "run", str(config), "-m", "str", "-o", str(out), "-q",
            *(["--overwrite"] if server else [])]
    for i in inputs:
        args += ["-i", i]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    subprocess.run(args, check=True)
    if server is not None:
        bucket, _, key = str(out).removeprefix("s3://").partition("/")
        log = json.loads(server.s3.get_object(Bucket=bucket, Key=f"{key}/.run_log.json")["Body"].read())
    else:
        log = json.loads((out / ".run_log.json").read_text())
    return {"wall": time.perf_counter() - t0, **log}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="a folder of .parquet and .jsonl shards (scripts/corpus.py)")
    parser.add_argument("out", type=Path, help="a scratch folder for the outputs")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra config key=value")
    parser.add_argument("--output-on-s3", action="store_true", help="local inputs; output local vs on S3")
    parser.add_argument("--work-on-s3", action="store_true", help="out of core; work_dir local vs on S3")
    parser.add_argument("--repeat", type=int, default=1, help="--work-on-s3: alternating pairs of runs")
    args = parser.parse_args()
    server = S3Server()
    try:
        server.bucket("bench")
        args.out.mkdir(parents=True, exist_ok=True)
        local_cfg = args.out / "local.yaml"
        local_cfg.write_text(yaml.safe_dump({"score_field": "score", "seed": 42}))
        s3_cfg = args.out / "s3.yaml"
        s3_cfg.write_text(yaml.safe_dump({"score_field": "score", "seed": 42, "storage_options": server.options()}))
        if args.output_on_s3:
            output_on_s3(server, args, local_cfg, s3_cfg)
            return
        if args.work_on_s3:
            work_on_s3(server, args, s3_cfg)
            return
        for fmt in ("parquet", "jsonl"):
            files = sorted(args.corpus.glob(f"*.{fmt}"))
            if not files:
                continue
            size = sum(f.stat().st_size for f in files)
            urls = server.upload(files, "bench", fmt)
            for where, cfg, inputs in (("local", local_cfg, [str(f) for f in files]), ("s3", s3_cfg, urls)):
                for label, sets in (("default", []), ("shard_size=0", ["shard_size=0"])):
                    r = run(cfg, inputs, args.out / f"{fmt}-{where}", sets + args.sets)
                    read = r.get("store_bytes_read", {})
                    print(f"{fmt:8s} {where:6s} {label:13s} input {size / 1e6:7.1f} MB  plan (keys+order) "
                          f"{r['plan_seconds']:6.2f} s  run {r['seconds']:6.2f} s  wall {r['wall']:6.2f} s  "
                          f"read: sample {read.get('sample', 0) / 1e6:6.2f} MB, "
                          f"keys {read.get('keys', 0) / 1e6:7.2f} MB "
                          f"({100 * read.get('keys', 0) / size:5.2f}%), rewrite {read.get('rewrite', 0) / 1e6:7.2f} MB",
                          flush=True)
    finally:
        server.stop()


def output_on_s3(server: S3Server, args, local_cfg: Path, s3_cfg: Path) -> None:
    work = [f"work_dir={args.out / 'work'}"]
    for fmt in ("parquet", "jsonl"):
        files = [str(f) for f in sorted(args.corpus.glob(f"*.{fmt}"))]
        if not files:
            continue
        size = sum(Path(f).stat().st_size for f in files)
        local = run(local_cfg, files, args.out / f"{fmt}-local-out", args.sets)
        remote = run(s3_cfg, files, f"s3://bench/{fmt}-out", args.sets + work, server)
        print(f"{fmt:8s} input {size / 1e6:7.1f} MB  output local: run {local['seconds']:6.2f} s, wall "
              f"{local['wall']:6.2f} s; output on s3: run {remote['seconds']:6.2f} s, wall {remote['wall']:6.2f} s; "
              f"ratio (run) {remote['seconds'] / local['seconds']:.2f}", flush=True)


def work_on_s3(server: S3Server, args, s3_cfg: Path) -> None:
    for fmt in ("parquet", "jsonl"):
        files = sorted(args.corpus.glob(f"*.{fmt}"))
        if not files:
            continue
        size = sum(f.stat().st_size for f in files)
        urls = server.upload(files, "bench", f"work-{fmt}")
        sets = [*args.sets, "rewrite=out-of-core"]
        where = {"local": [f"work_dir={args.out / 'work'}"], "s3": ["work_dir=s3://bench/work"]}
        seconds: dict[str, list[float]] = {"local": [], "s3": []}
        for k in range(args.repeat):  # alternating pairs: local first, then s3 first
            for label in (("local", "s3") if k % 2 == 0 else ("s3", "local")):
                r = run(s3_cfg, urls, f"s3://bench/{fmt}-{label}", sets + where[label], server)
                seconds[label].append(r["seconds"])
                read = {k: round(v / 1e6, 2) for k, v in r["store_bytes_read"].items() if v}
                print(f"{fmt:8s} work {label:5s} run {r['seconds']:6.2f} s  plan {r['plan_seconds']:6.2f} s  "
                      f"read MB by stage {read}", flush=True)
        med = {label: statistics.median(v) for label, v in seconds.items()}
        print(f"{fmt:8s} input {size / 1e6:7.1f} MB  median run: work local {med['local']:.2f} s, work on s3 "
              f"{med['s3']:.2f} s; ratio {med['s3'] / med['local']:.2f} ({args.repeat} pairs)", flush=True)


if __name__ == "__main__":
    main()
