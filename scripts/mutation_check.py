"""Mutation check of the order tasks: deliberate off-by-ones the order-task tests must catch.

Copies ``reorder_cli/``, ``tests/`` and ``pyproject.toml`` to temporary folders (the working tree
is never touched; one copy per job), runs the selected tests once on the unmutated copies (the
control: they must pass), then, for each mutant, patches one file of a copy with an exact string
replacement (which must match exactly once: a patch that no longer applies is an error, not a skip),
runs the mutant's tests there (``PYTHONPATH`` = the copy, ``-x -q -p no:cacheprovider``,
``--hypothesis-seed=0``) and requires them to fail. The file is restored before that copy serves the
next mutant. ``--jobs N`` (default: the CPUs this process may use, at most 4) runs N pytest processes
at once, each in its own copy; the outcome does not depend on N.

    python scripts/mutation_check.py            # control + every mutant
    python scripts/mutation_check.py --list     # the mutants
    python scripts/mutation_check.py NAME ...   # control + the named mutants
    python scripts/mutation_check.py --jobs 1   # one pytest at a time

Exit 0 when the control passes and every mutant is killed; 1 otherwise (each survivor named).
``tests/test_mutation.py`` (marker ``mutation``) runs it under pytest, so CI runs it.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OT = "reorder_cli/plan/order_tasks.py"
RANK_MAPS = "reorder_cli/methods/rank_maps.py"
ORDERINGS = "reorder_cli/methods/orderings.py"
SHAPES = "tests/test_order_tasks.py::test_shapes_same_as_in_memory"


def shape(*names: str) -> tuple[str, ...]:
    """The cases of the order tasks' shape property (tests/test_order_tasks.py) that guard a mutant."""
    return tuple(f"{SHAPES}[{name}]" for name in names)


#: Shared by the in-memory order and the tasks, so only the oracle's tests can see a change there.
ORACLE_TESTS = ("tests/test_orderings.py::test_matches_oracle", "tests/test_orderings.py::test_str_clipped_regions")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant("segment-middle-after-a-low-back", OT,  # front high, back low: the middle starts after the back
           "mid_start = rest[0] if back_high else rest[0] + n_back",
           "mid_start = rest[0] if back_high else rest[0] + n_back - 1", shape("segment-high-low")),
    Mutant("segment-front-start-high", OT,
           "front_start = m - n_front if front_high else 0",
           "front_start = m - n_front - 1 if front_high else 0", shape("segment-high-low")),
    Mutant("segment-back-picks-offset", OT,  # same end: the back's picks follow the front's
           'picks[member + (0 if name == "front" else n_front)]',
           'picks[member + (0 if name == "front" else n_front - 1)]',
           shape("segment-low-low", "segment-high-high")),
    Mutant("segment-draw-offset", OT,  # middle and back draw after the segments before them
           'rng.bit_generator.advance(spec["offset"])',
           'rng.bit_generator.advance(spec["offset"] + 1)', shape("segment-low-high", "segment-high-low")),
    Mutant("invalid-first-swapped", OT,  # policy first: the valid rows start after the invalid ones
           "return start, min(m, start + chunk), start + (n_inv if first_invalid else 0)",
           "return start, min(m, start + chunk), start + (0 if first_invalid else n_inv)",
           shape("jit", "folding-zigzag")),
    Mutant("jit-chunk-not-whole-windows", OT,
           "chunk -= chunk % window",
           "chunk -= (chunk - 1) % window", shape("jit")),
    Mutant("gumbel-range-drops-its-least-key", OT,
           "inside = np.flatnonzero((keys >= lo) & ((keys < hi) | last))",
           "inside = np.flatnonzero((keys > lo) & ((keys < hi) | last))", shape("gumbel")),
    Mutant("selection-tie-row", OT,
           "mask |= (scores == score) & (rows >= from_row)",
           "mask |= (scores == score) & (rows > from_row)", shape("selection")),
    Mutant("zigzag-odd-layer-length", RANK_MAPS,
           "step = np.where(odd, base + (layer < extra) - 1 - step, step)",
           "step = np.where(odd, base + (layer <= extra) - 1 - step, step)", shape("folding-zigzag")),
    Mutant("transition-span-start-in-chunk", RANK_MAPS,  # a span that starts before the place chunk
           "lo, hi = max(s, start), min(e, stop)",
           "lo, hi = max(s, start + 1), min(e, stop)", shape("str-saw-clipped")),
    Mutant("transition-region-not-clipped-by-cursor", ORDERINGS,
           "start, end = max(cursor, split - radius), min(n, split + radius)",
           "start, end = split - radius, min(n, split + radius)", ORACLE_TESTS),
)


def copy_project(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    for name in ("reorder_cli", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def apply(copy: Path, mutant: Mutant) -> str:
    """Patch the copy's file; return its original text. Raises SystemExit when the patch does not
    match exactly once (the code changed: update the mutant)."""
    path = copy / mutant.path
    text = path.read_text()
    found = text.count(mutant.old)
    if found != 1:
        raise SystemExit(f"mutation_check: mutant {mutant.name!r}: {mutant.path} holds its text {found} times, "
                         f"not once; update the mutant in scripts/mutation_check.py: {mutant.old!r}")
    path.write_text(text.replace(mutant.old, mutant.new))
    return text


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """pytest on ``tests`` in the copy (imports resolve to the copy's package); (exit code, output tail)."""
    shutil.rmtree(copy / ".hypothesis", ignore_errors=True)  # no example replayed from another mutant
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    args = ["-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", "--hypothesis-profile=mutation", *tests]
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=copy, env=env, capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    failed = [line.split(" - ")[0] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return proc.returncode, "\n".join(failed or lines[-15:])


def imported_from(copy: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    out = subprocess.run([sys.executable, "-c", "import reorder_cli; print(reorder_cli.__file__)"], cwd=copy,
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def default_jobs() -> int:
    """The CPUs this process may use, at most 4 (each job is one pytest process, mostly one core)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def split(items: list[str], parts: int) -> list[tuple[str, ...]]:
    """``items`` dealt round-robin into at most ``parts`` non-empty groups."""
    return [tuple(items[k::parts]) for k in range(min(parts, len(items)))]


def check(names: list[str] | None = None, echo=print, mutants: tuple[Mutant, ...] = MUTANTS,
          jobs: int | None = None) -> list[str]:
    """Run the control and the mutants (all, or ``names``); return the problems (empty: all killed).
    ``jobs`` pytest processes run at once (default :func:`default_jobs`), each in its own copy."""
    chosen = [m for m in mutants if not names or m.name in names]
    unknown = set(names or ()) - {m.name for m in mutants}
    if unknown:
        raise SystemExit(f"mutation_check: no mutant named {', '.join(sorted(unknown))} (see --list)")
    jobs = max(1, jobs or default_jobs())
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        copies = [Path(tmp) / f"copy-{k}" for k in range(jobs)]
        for copy in copies:
            copy_project(copy)
        for copy in copies:
            where = imported_from(copy)
            if not where.startswith(str(copy)):
                return [f"the copy's tests import reorder_cli from {where}, not from the copy"]
        for m in chosen:  # every patch must apply before anything runs
            (copies[0] / m.path).write_text(apply(copies[0], m))
        free: queue.Queue[Path] = queue.Queue()
        for copy in copies:
            free.put(copy)

        def in_a_copy(tests: tuple[str, ...], mutant: Mutant | None = None) -> tuple[int, str, float]:
            copy = free.get()
            try:
                original = apply(copy, mutant) if mutant else None
                started = time.monotonic()
                try:
                    code, tail = run_tests(copy, tests)
                finally:
                    if mutant:
                        (copy / mutant.path).write_text(original)
                return code, tail, time.monotonic() - started
            finally:
                free.put(copy)

        control = sorted({t for m in chosen for t in m.tests})
        with ThreadPoolExecutor(jobs) as pool:
            started = time.monotonic()
            outcomes = list(pool.map(in_a_copy, split(control, jobs)))
            failed = [(code, tail) for code, tail, _ in outcomes if code != 0]
            echo(f"control (unmutated): exit {failed[0][0] if failed else 0} in {time.monotonic() - started:.0f}s")
            if failed:
                return [f"the unmutated copy fails its tests (exit {failed[0][0]}):\n{failed[0][1]}"]
            problems = []
            for m, (code, tail, took) in zip(chosen, pool.map(lambda m: in_a_copy(m.tests, m), chosen), strict=True):
                killed = code == 1  # tests failed (2..5: interrupted, usage or collection errors: not a kill)
                echo(f"{m.name}: {'killed by ' + tail if killed else 'SURVIVED'} (exit {code}) in {took:.0f}s")
                if not killed:
                    problems.append(f"mutant {m.name} ({m.path}: {m.old!r} -> {m.new!r}) "
                                    f"{'survived' if code == 0 else f'was not killed by a failing test (exit {code})'}"
                                    f":\n{tail}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--jobs", type=int, default=None,
                        help="pytest processes at once, each in its own copy (default: the CPUs, at most 4)")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name}: {m.path}: {m.old!r} -> {m.new!r}")
        return 0
    problems = check(args.names or None, jobs=args.jobs)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
