"""Measure the plan's key sort: out of core (reorder_cli.keys_ooc) vs Polars' streaming sort vs in memory.

Generates ``--rows`` keys (3-decimal scores in [0, 5] with 0.1% NaN, or ``--int-scores`` 0..5,
and sizes) once under ``--dir``, then runs every case in its own process under
``/usr/bin/time -v`` and reports wall seconds and peak resident memory (ru_maxrss: anonymous
and file-backed pages). Example:

    python scripts/bench_keys.py --rows 50000000 --memory 500MB --dir bench-out/keys

Cases: ``ooc-<method>`` (keys_ooc.order_out_of_core, budget --memory), ``inmem-<method>``
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
        from reorder_cli.plan.keys_ooc import order_out_of_core

        *_, stats = order_out_of_core(folder / "scores.npy", folder / "sizes.npy", method, PARAMS, "last", memory, out)
        print("stats", stats)
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
