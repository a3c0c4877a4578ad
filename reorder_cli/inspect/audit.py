"""``reorder audit``: did the trainer consume the order, window by window?

A log is JSONL, one line per optimizer step or per (step, rank): ``{"step": s, "ids": [...]}``,
with the ids of the samples consumed (the values of ``id_field``, or positions of the order with
``positions=True``). Lines of the same step are pooled (ranks, micro-steps). The i-th step of the
log (counted from its first step number, so a log may start at 0 or 1) should consume exactly
positions [start + i·G, start + (i+1)·G) of the manifest's order; the order inside a window is free.
G is inferred as the most common number of samples a step consumed (the last step left out when
there are others), unless given.

The tail: the last step of the log may consume fewer than G samples only where the order runs out,
i.e. when its window [start + i·G, start + (i+1)·G) reaches past the last position; it must then
consume exactly the first positions of that window, [start + i·G, start + i·G + c). That is the
Hugging Face ``Trainer``'s last optimizer step when the micro-batches per rank are not a multiple of
k (it steps on the remaining ones); the report gives its size as ``tail_samples``. Any other step of
the wrong size is a ``short_steps``.
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
class Trace:
    """Each consumed sample, in log order: its position in the order (-1: unknown id), its step (counted
    from the log's first) and whether it broke the order (outside its window, repeated or unknown); and the
    steps (from 0) that broke it, those of the wrong size included."""

    positions: np.ndarray
    steps: np.ndarray
    bad: np.ndarray
    bad_steps: np.ndarray


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
    short_steps: int  # steps that consumed fewer or more than G samples (an accepted tail excepted)
    tail_samples: int  # samples of a last step shorter than G where the order runs out (0: none)
    examples: dict[str, list] = field(default_factory=dict)
    trace: Trace | None = None  # for the picture; not in the JSON

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
    g = int(global_batch) if global_batch else int(np.bincount(counts[:-1] if len(counts) > 1 else counts).argmax())
    if g < 1:
        raise ReorderError(f"{logs[0]}: the steps consumed no sample")
    rel_step = np.array(step_numbers, dtype=np.int64) - step_numbers[0]
    last_window = start_sample + int(rel_step[-1]) * g
    # a short last step is the tail when its window reaches past the order's end: it covers what it consumed
    tail = int(counts[-1]) if counts[-1] < g and last_window + g > source.rows else 0
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
    covered_end = min(last_window + (tail or g), source.rows)
    seen = np.zeros(max(covered_end - start_sample, 0), dtype=bool)
    in_cover = known & (pos >= start_sample) & (pos < covered_end)
    seen[pos[in_cover] - start_sample] = True
    missing = np.flatnonzero(~seen) + start_sample
    short = counts != g
    short[-1] = counts[-1] != g and not tail
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
        short_steps=int(short.sum()), tail_samples=tail, examples=examples,
        trace=Trace(pos, actual, bad, np.array(sorted(bad_steps), dtype=np.int64)),
    )


def _bounded(option: str, value, lo: int, hi: int, source: Source) -> None:
    """An integer option checked against what the output allows (its rows)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ReorderError(f"{option} {value!r}: must be an integer in [{lo:,}, {hi:,}] (the output {source.folder} "
                           f"holds {source.rows:,} rows)")


ZOOM_STEPS = 8  # steps the close-up shows around the first broken one


def write_plot(path: Path, report: Report, heading: str | None = None) -> Path:
    """Position in the order against the samples consumed, over the whole log and close up around the
    first broken step (the first steps when the order held): the ideal diagonal, the window each step had
    to take (a band), the broken steps shaded and the samples that broke the order in red."""
    from matplotlib.figure import Figure

    from reorder_cli.inspect import plot

    t = report.trace
    fig = Figure(figsize=(10, 9), dpi=plot.DPI, layout="constrained")
    whole, close = fig.subplots(2, 1, height_ratios=[3, 2])
    _draw_consumption(whole, report, 0, len(t.positions))
    around = int(t.bad_steps[0]) - 2 if len(t.bad_steps) else 0
    lo, hi = np.searchsorted(t.steps, [max(around, 0), max(around, 0) + ZOOM_STEPS])
    _draw_consumption(close, report, int(lo), int(hi))
    pct = f"{report.in_window:.2%}"
    pct = ">99.99%" if report.in_window < 1 and pct == "100.00%" else pct
    verdict = "order held" if report.held else f"order broken from step {report.first_bad_step}"
    whole.set_title(f"{verdict} · {pct} in window · {report.steps:,} steps of G={report.global_batch:,}",
                    loc="left", fontsize=10, color="dimgray")
    close.set_title(f"close-up: samples {lo:,} to {hi:,}, "
                    f"{'the first steps' if not len(t.bad_steps) else 'from two steps before the first broken one'}",
                    loc="left", fontsize=10, color="dimgray")
    whole.legend(loc="upper left", fontsize=8, frameon=True, framealpha=0.85)
    fig.suptitle(heading or "What the trainer consumed against the order", fontsize=13, fontweight="bold")
    return plot.save(fig, path)


def _draw_consumption(ax, report: Report, lo: int, hi: int) -> None:
    """Samples ``lo``..``hi`` (in log order) of the trace on ``ax``; at most ``plot.MAX_POINTS`` of each kind."""
    from reorder_cli.inspect import plot

    t, g, start = report.trace, report.global_batch, report.start_sample
    steps, positions, bad = t.steps[lo:hi], t.positions[lo:hi], t.bad[lo:hi]
    index = np.arange(lo, hi, dtype=np.int64)
    # the band: each step's window [start + s·G, start + (s+1)·G), drawn from the sample where the step begins
    first = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]]) if len(index) else index
    edges = np.r_[lo + first, hi]
    low = start + np.r_[steps[first], steps[first[-1:]]] * g
    ax.fill_between(edges, low, low + g, step="post", color=plot.POINTS, alpha=0.18, linewidth=0,
                    label=f"window of each step (G={g:,})")
    ax.plot([lo, hi], [start + lo, start + hi], color="black", linewidth=1, linestyle="--",
            label="ideal: consumed in order", zorder=4)
    broken = np.isin(steps[first], t.bad_steps)  # a flag a step; runs of broken steps are shaded at once
    if broken.any():
        change = np.flatnonzero(np.diff(np.r_[False, broken, False]))
        runs = edges[change].reshape(-1, 2)
        ax.broken_barh(list(zip(runs[:, 0], runs[:, 1] - runs[:, 0], strict=True)), (0, 1),
                       transform=ax.get_xaxis_transform(), color="#d1495b", alpha=0.12, linewidth=0,
                       label=f"broken steps ({len(t.bad_steps):,} in all)", zorder=0)
    known = positions >= 0
    for mask, color, size, label in ((known & ~bad, plot.POINTS, 0, "sample in its window"),
                                     (known & bad, "#d1495b", 9, "outside its window or repeated")):
        chosen = np.flatnonzero(mask)
        chosen = chosen[plot.sample_positions(len(chosen))]
        if len(chosen):
            ax.scatter(index[chosen], positions[chosen], s=max(plot.point_size(len(chosen)), size), color=color,
                       linewidths=0, rasterized=True, label=label, zorder=3)
    ax.set_xlim(lo, max(hi, lo + 1))
    plot.thousands(ax.xaxis, ax.yaxis)
    ax.set_xlabel("samples consumed (in the log's order)")
    ax.set_ylabel("position in the order")
    ax.grid(alpha=0.25, linewidth=0.5, zorder=0)
