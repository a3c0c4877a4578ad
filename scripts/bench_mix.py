"""The mixture core's own cost, one core: ``quota.allot``, ``interleave.interleave`` and ``shares.measure`` on
three sources (1.5 M, 1 M and 0.5 M documents of 50-2,000 tokens; a ramp, a constant and a rise; a budget of
90% of their tokens, max_epochs 2), ``--repeat`` times. docs/scale.md section 9 projects from it.

    python scripts/bench_mix.py --repeat 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from reorder_cli.mix import interleave, quota, schedule, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every source's documents by this")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sizes = [int(n * args.scale) for n in (1_500_000, 1_000_000, 500_000)]
    tokens = [rng.integers(50, 2000, size=n).astype(np.int64) for n in sizes]
    sched = schedule.build(["web", "books", "code"], [[[0, 0.5], [1, 0.3]], 0.3, [[0, 0.2], [1, 0.4]]])
    budget = int(sum(int(t.sum()) for t in tokens) * 0.9)
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        allotment = quota.allot(sched, tokens, budget, 42, [2, 2, 2])
        t1 = time.perf_counter()
        merged = interleave.interleave(allotment.schedule, [c.tokens for c in allotment.contributions])
        t2 = time.perf_counter()
        shares.measure(allotment.schedule, merged.source, merged.tokens, 100)
        t3 = time.perf_counter()
        n = len(merged.source)
        print(f"rows {n:,}: allot {t1 - t0:.2f} s, merge {t2 - t1:.2f} s ({(t2 - t1) / n * 1e9:.0f} ns a row), "
              f"shares {t3 - t2:.2f} s")


if __name__ == "__main__":
    main()
