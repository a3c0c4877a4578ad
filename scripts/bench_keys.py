"""Measure the plan's key sort: the order's tasks (reorder_cli.plan.order_tasks) vs Polars' streaming sort vs
in memory.

Generates ``--rows`` keys (3-decimal scores in [0, 5] with 0.1% NaN, or ``--int-scores`` 0..5,
and sizes) once under ``--dir``, then runs every case in its own process under
``/usr/bin/time -v`` and reports wall seconds and peak resident memory (ru_maxrss: anonymous
and file-backed pages). Example:

    python scripts/bench_keys.py --rows 50000000 --memory 500MB --dir bench-out/keys

Cases: ``ooc-<method>`` (the keys cut into ``--files`` inputs, each's sorted run written as its keys
task does, then the split, every sort and every place task, one after the other in one process, each
within --memory; the seconds of each step are printed), ``inmem-<method>``
(what plan.build does with the keys in memory), ``polars`` (stable sort by score of the
valid rows with their row index, streaming engine, POLARS_OOC_MEMORY_BUDGET_MB = --memory,
sunk to Arrow IPC). ``--check`` also compares the orders of ooc, in-memory and Polars.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PARAMS = dict(score_field="score", seed=42, ascending=True, window_size=0, folding_layer=3, zigzag_layer=3,
              num_sections=2, folding_ratio=0.225, use_gumbel=False, temperature=1.0, x_pct=30.0, y_pct=30.0,
              front_is_high=False, back_is_high=True)


def generate(folder: Path, rows: int, int_scores: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "keys.arrow").exists():
        return
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, rows).astype(np.float64) if int_scores else np.round(rng.random(rows) * 5, 3)
    scores[rng.random(rows) < 0.001] = np.nan
    sizes = rng.integers(200, 20000, rows)
    np.save(folder / "scores.npy", scores)
    np.save(folder / "sizes.npy", sizes)
    import polars as pl

    pl.DataFrame({"score": scores, "size": sizes}).write_ipc(folder / "keys.arrow")


def run_case(case: str, folder: Path, memory: int) -> None:
    """One case, in this process (the parent measures it)."""
    sys.path.insert(0, str(ROOT))
    kind, _, method = case.partition("-")
    out = folder / f"out-{case}"
    out.mkdir(exist_ok=True)
    if kind == "ooc":
        run_tasks(folder, out, method, memory, int(os.environ.get("BENCH_FILES", "8")))
    elif kind == "inmem":
        from reorder_cli.methods import order_rows

        scores, sizes = np.load(folder / "scores.npy"), np.load(folder / "sizes.npy")
        valid = ~np.isnan(scores)
        valid_rows = np.flatnonzero(valid)
        order = valid_rows[order_rows(method, scores[valid_rows], PARAMS)]
        order = np.concatenate([order, np.flatnonzero(~valid)])
        np.save(out / "plan-order.npy", order)
        np.save(out / "plan-scores.npy", scores[order])
        np.save(out / "plan-sizes.npy", sizes[order])
    elif kind == "polars":
        import polars as pl

        query = (
            pl.scan_ipc(folder / "keys.arrow")
            .with_row_index("row")
            .filter(pl.col("score").is_not_nan())
            .sort("score", maintain_order=True)
        )
        query.sink_ipc(out / "sorted.arrow")
    else:
        raise SystemExit(f"unknown case {case}")


def run_tasks(folder: Path, out: Path, method: str, memory: int, files: int) -> None:
    """The order as its tasks, one after the other; prints the seconds and rows/s of each stage."""
    import shutil

    from reorder_cli.plan import order_tasks as ot
    from reorder_cli.util.npy import save_npy

    for name in ("keys", "order", "plan"):
        shutil.rmtree(out / name, ignore_errors=True)
    keys, order, plan = out / "keys", out / "order", out / "plan"
    keys.mkdir(parents=True)
    scores, sizes = np.load(folder / "scores.npy", mmap_mode="r"), np.load(folder / "sizes.npy", mmap_mode="r")
    n = len(scores)
    bounds = np.linspace(0, n, files + 1).astype(np.int64)
    times, rows, valid = {}, [], []
    start = time.perf_counter()
    for f in range(files):  # what each keys task writes, beside the scores and sizes it read
        part_scores, part_sizes = np.array(scores[bounds[f]:bounds[f + 1]]), np.array(sizes[bounds[f]:bounds[f + 1]])
        save_npy(keys / ot.key_name("scores", f), part_scores)
        save_npy(keys / ot.key_name("sizes", f), part_sizes)
        valid.append(ot.write_order_keys(keys, f, part_scores, part_sizes, ot.run_direction(method, PARAMS)))
        rows.append(len(part_scores))
    times["keys (sorted runs)"] = time.perf_counter() - start
    start = time.perf_counter()
    meta = ot.split(keys, order, plan, rows, valid, method, PARAMS, "last", None, memory)
    times["split"] = time.perf_counter() - start
    start = time.perf_counter()
    for k in range(ot.sort_tasks(meta)):
        ot.sort_task(keys, order, meta, k, memory)
    times[f"sort ({ot.sort_tasks(meta)} tasks)"] = time.perf_counter() - start
    start = time.perf_counter()
    for a in range(ot.place_tasks(meta)):
        ot.place_task(keys, order, plan, meta, a)
    times[f"place ({ot.place_tasks(meta)} tasks)"] = time.perf_counter() - start
    shutil.copy(plan / "order.npy", out / "plan-order.npy")
    print(" | ".join(f"{k}: {v:.1f} s, {n / v / 1e6:.2f}M rows/s" for k, v in times.items()))


def measure(case: str, folder: Path, memory: int) -> tuple[float, float, str]:
    env = dict(os.environ)
    if case == "polars":
        env["POLARS_OOC_MEMORY_BUDGET_MB"] = str(memory >> 20)
        env["POLARS_OOC_SPILL_DIR"] = str(folder / "polars-spill")
    argv = ["/usr/bin/time", "-v", sys.executable, __file__, "--run", case, "--dir", str(folder),
            "--memory", str(memory)]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{case} failed:\n{done.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return seconds, peak_kb / 1024, done.stdout.strip()


def check(folder: Path, cases: list[str]) -> None:
    orders = {}
    for case in cases:
        out = folder / f"out-{case}"
        if case == "polars":
            import polars as pl

            orders[case] = pl.read_ipc(out / "sorted.arrow", columns=["row"])["row"].to_numpy().astype(np.int64)
        else:
            orders[case] = np.load(out / "plan-order.npy", mmap_mode="r")
    first = cases[0]
    for case in cases[1:]:
        a, b = orders[first], orders[case]
        n = min(len(a), len(b))  # Polars' output holds the valid rows only
        print(f"check {first} vs {case}: {'identical' if np.array_equal(a[:n], b[:n]) else 'DIFFERENT'} ({n} rows)")


def parse_size(text: str) -> int:
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--memory", default="500MB")
    parser.add_argument("--dir", type=Path, default=ROOT / "bench-out" / "keys")
    parser.add_argument("--int-scores", action="store_true", help="scores 0..5 (heavy ties)")
    parser.add_argument("--cases", default="ooc-sorting,polars,inmem-sorting,ooc-str,inmem-str")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    memory = parse_size(args.memory)
    if args.run:
        run_case(args.run, args.dir, memory)
        return
    generate(args.dir, args.rows, args.int_scores)
    cases = args.cases.split(",")
    print(f"{args.rows:,} keys, memory budget {memory >> 20} MB, {'int' if args.int_scores else '3-decimal'} scores")
    print(f"{'case':16} {'seconds':>8} {'peak RSS MB':>12}")
    for case in cases:
        seconds, peak, output = measure(case, args.dir, memory)
        print(f"{case:16} {seconds:8.1f} {peak:12.0f}  {output}", flush=True)
    if args.check:
        check(args.dir, [c for c in cases if c in ("ooc-sorting", "inmem-sorting", "polars")])


if __name__ == "__main__":
    main()
