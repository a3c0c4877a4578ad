"""``reorder audit``: did the trainer consume the order, window by window?

A log is JSONL, one line per optimizer step or per (step, rank): ``{"step": s, "ids": [...]}``,
with the ids of the samples consumed (the values of ``id_field``, or positions of the order with
``positions=True``). Lines of the same step are pooled (ranks, micro-steps). The i-th step of the
log (counted from its first step number, so a log may start at 0 or 1) should consume exactly
positions [start + i·G, start + (i+1)·G) of the manifest's order; the order inside a window is free.
G is inferred as the most common number of samples a step consumed, unless given.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reorder_cli.errors import ReorderError
from reorder_cli.loader.source import Source

SAMPLES = 10  # ids listed in the report for each kind of problem


@dataclass
class Report:
    steps: int  # optimizer steps in the log
    samples: int  # samples the log records
    global_batch: int  # G (inferred or given)
    start_sample: int
    ranks_per_step: int  # the most common number of log lines a step has
    in_window: float  # fraction of the samples consumed inside their intended window
    max_displacement: int  # in steps
    first_bad_step: int | None  # the step number (as logged) where the order first broke
    never_seen: int  # positions of the windows the log covers that were not consumed
    seen_twice: int  # positions consumed more than once
    unknown: int  # logged ids that are not in the output
    short_steps: int  # steps (the last excepted) that consumed fewer or more than G samples
    examples: dict[str, list] = field(default_factory=dict)
    # (intended position, consumption index) pairs for a picture; not in the JSON
    trace: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def held(self) -> bool:
        return (self.in_window == 1.0 and not self.never_seen and not self.seen_twice and not self.unknown
                and not self.short_steps)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("trace")
        return {"held": self.held, **d}


#: The largest step number a log may hold (step arithmetic stays within int64).
MAX_STEP = 2**62
_ID_KINDS = {str: "strings", int: "integers"}


def _kinds(ids: list) -> str:
    return ", ".join(sorted({type(i).__name__ for i in ids}))


def read_log(paths: list[Path]) -> tuple[list[int], list[list], list[int]]:
    """(step numbers, ids of each step, lines of each step) from JSONL logs; a line per step or (step, rank)."""
    steps: dict[int, list] = {}
    kind = None  # the kind of the log's ids: "strings" or "integers"
    for path in paths:
        try:
            fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ReorderError(f"{path}: cannot read the log: {exc.strerror}") from None
        with fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    step, ids = rec["step"], rec["ids"]
                except (ValueError, KeyError, TypeError, IndexError, RecursionError):
                    raise ReorderError(f"{path}: line {n}: expected {{\"step\": S, \"ids\": [...]}}") from None
                if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP \
                        or not isinstance(ids, list):
                    raise ReorderError(f"{path}: line {n}: 'step' must be an integer in [0, 2**62] and 'ids' a list")
                kinds = {_ID_KINDS.get(type(i)) for i in ids}  # a set built in C, not a loop of ours
                if None in kinds or len(kinds | {kind} - {None}) > 1:
                    raise ReorderError(f"{path}: line {n}: the ids must be all strings or all integers, in every "
                                       f"line of the log; found {_kinds(ids)}"
                                       + (f" (earlier lines hold {kind})" if kind else ""))
                kind = kind or next(iter(kinds), None)
                steps.setdefault(step, []).append(ids)
    if not steps:
        raise ReorderError(f"{paths[0]}: the log holds no step")
    order = sorted(steps)
    return order, [[i for part in steps[s] for i in part] for s in order], [len(steps[s]) for s in order]


def output_ids(source: Source, id_field: str) -> pa.Array:
    """The ``id_field`` of every row of the output, in order."""
    parts = []
    for shard in source.shards:
        if shard.format == "parquet":
            try:
                parts.append(pq.read_table(shard.path, columns=[id_field])[id_field].combine_chunks())
            except (KeyError, pa.ArrowException):
                raise ReorderError(f"{shard.path}: no column {id_field!r} (choose one with --id-field)") from None
        else:
            values = [r.get(id_field) for rows in source._jsonl(shard, lambda a, b: np.arange(a, b)) for r in rows]
            parts.append(pa.array(values))
    ids = pa.chunked_array(parts).combine_chunks() if parts else pa.array([])
    if ids.null_count:
        raise ReorderError(f"{source.folder}: {ids.null_count} row(s) have no {id_field!r}; choose --id-field")
    if pc.count_distinct(ids).as_py() != len(ids):
        raise ReorderError(f"{source.folder}: the values of {id_field!r} are not unique; choose another --id-field "
                           "or log positions (--positions)")
    return ids


def audit(output: Path, logs: list[Path], id_field: str = "id", positions: bool = False,
          global_batch: int | None = None, start_sample: int = 0) -> Report:
    source = Source(output)
    _bounded("--start-sample", start_sample, 0, source.rows, source)
    if global_batch is not None:
        _bounded("--global-batch", global_batch, 1, max(1, source.rows), source)
    step_numbers, step_ids, lines = read_log(logs)
    counts = np.array([len(ids) for ids in step_ids], dtype=np.int64)
    flat = [i for ids in step_ids for i in ids]
    if positions:
        try:
            pos = np.array(flat, dtype=np.int64) if not flat or type(flat[0]) is int else None  # one kind a log
        except (TypeError, ValueError, OverflowError):
            pos = None
        if pos is None:
            raise ReorderError(f"{logs[0]}: --positions: the ids must be integer positions (below 2**63), "
                               f"found {_kinds(flat)}")
        pos[(pos < 0) | (pos >= source.rows)] = -1
    else:
        try:
            logged = pa.array(flat).cast(pa.string())
        except (pa.ArrowException, OverflowError):
            raise ReorderError(f"{logs[0]}: the ids are not all strings or all integers of at most 64 bits") from None
        index = pc.index_in(logged, value_set=output_ids(source, id_field).cast(pa.string()))
        pos = index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    g = int(global_batch) if global_batch else int(np.bincount(counts).argmax())
    if g < 1:
        raise ReorderError(f"{logs[0]}: the steps consumed no sample")
    rel_step = np.array(step_numbers, dtype=np.int64) - step_numbers[0]
    actual = np.repeat(rel_step, counts)
    known = pos >= 0
    intended = np.where(known, (pos - start_sample) // g, -1)
    inside = known & (intended == actual)
    disp = np.abs(intended - actual)[known]
    # duplicates: the second and later consumption of a position
    order = np.argsort(pos, kind="stable")
    sp = pos[order]
    dup_sorted = np.zeros(len(sp), dtype=bool)
    dup_sorted[1:] = (sp[1:] == sp[:-1]) & (sp[1:] >= 0)
    dup = np.zeros(len(pos), dtype=bool)
    dup[order] = dup_sorted
    covered_end = min(start_sample + (int(rel_step[-1]) + 1) * g, source.rows)
    seen = np.zeros(max(covered_end - start_sample, 0), dtype=bool)
    in_cover = known & (pos >= start_sample) & (pos < covered_end)
    seen[pos[in_cover] - start_sample] = True
    missing = np.flatnonzero(~seen) + start_sample
    short = counts != g
    short[-1] = counts[-1] > g
    bad = ~inside | dup
    bad_steps = set(actual[bad].tolist()) | set(rel_step[short].tolist())
    if len(missing):
        bad_steps.add(int((missing[0] - start_sample) // g))
    first_bad = min(bad_steps) + step_numbers[0] if bad_steps else None
    flat_arr = np.array(flat, dtype=object)
    examples = {
        "outside_window": [{"id": flat_arr[i], "step": int(actual[i]) + step_numbers[0],
                            "intended_step": int(intended[i]) + step_numbers[0]}
                           for i in np.flatnonzero(known & ~inside)[:SAMPLES]],
        "never_seen": missing[:SAMPLES].tolist(),
        "seen_twice": [flat_arr[i] for i in np.flatnonzero(dup)[:SAMPLES]],
        "unknown": [flat_arr[i] for i in np.flatnonzero(~known)[:SAMPLES]],
    }
    return Report(
        steps=len(step_numbers), samples=len(flat), global_batch=g, start_sample=start_sample,
        ranks_per_step=int(np.bincount(lines).argmax()),
        in_window=round(float(inside.mean()) if len(flat) else 1.0, 6),
        max_displacement=int(disp.max()) if len(disp) else 0, first_bad_step=first_bad,
        never_seen=len(missing), seen_twice=int(dup.sum()), unknown=int((~known).sum()),
        short_steps=int(short.sum()), examples=examples,
        trace=(pos, np.arange(len(pos), dtype=np.int64)),
    )


def _bounded(option: str, value, lo: int, hi: int, source: Source) -> None:
    """An integer option checked against what the output allows (its rows)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ReorderError(f"{option} {value!r}: must be an integer in [{lo:,}, {hi:,}] (the output {source.folder} "
                           f"holds {source.rows:,} rows)")


def write_plot(path: Path, report: Report, title: str) -> None:
    """Intended position against the order of consumption; a diagonal band when the order held."""
    from matplotlib.figure import Figure

    pos, index = report.trace
    keep = pos >= 0
    step = max(1, int(keep.sum()) // 50_000)
    fig = Figure(figsize=(8, 6), dpi=100)
    ax = fig.add_subplot()
    ax.scatter(index[keep][::step], pos[keep][::step], s=2, color="tab:blue" if report.held else "tab:red")
    ax.set_xlabel("consumed (sample index in the log)")
    ax.set_ylabel("position in the order")
    ax.set_title(f"{title}: {'order held' if report.held else 'order broken'} "
                 f"({report.in_window:.1%} in window, G={report.global_batch})")
    fig.savefig(path)
