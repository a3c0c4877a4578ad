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

In tokens (``tokens=True``, ``reorder audit --tokens``), the ids are sample indices of sequences of L tokens of
the output's token stream (sample i: tokens [i·L, (i+1)·L)) or, with ``offsets``, each sequence's first token.
The same checks run over token positions (:class:`Units`): step s must consume [start + s·G·L, start +
(s+1)·G·L), with a tolerance of one sequence (L tokens) on each side, for packing; gaps and overlaps of
fewer than L tokens between the sequences consumed are not counted.
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
    tokens: dict | None = None  # a token audit's stream: seq_length, total, offsets, tolerance_tokens
    trace: Trace | None = None  # for the picture; not in the JSON

    @property
    def held(self) -> bool:
        return (self.in_window == 1.0 and not self.never_seen and not self.seen_twice and not self.unknown
                and not self.short_steps)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("trace")
        if d["tokens"] is None:
            d.pop("tokens")
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


@dataclass(frozen=True)
class Units:
    """What a log's positions measure. A consumed sample covers [p, p + span) of ``extent`` units (rows, or
    the tokens of the exported stream); step a's window is [start + a·G·span, start + (a+1)·G·span), widened
    by ``slack`` units on each side, and a gap of fewer than ``slack`` units between the samples consumed is
    tolerated (a sequence's worth of packing). Rows: span 1, slack 0."""

    extent: int
    span: int = 1
    slack: int = 0
    what: str = "rows"  # what the output holds, for messages


def audit(output: Path, logs: list[Path], id_field: str | None = None, positions: bool = False,
          global_batch: int | None = None, start_sample: int = 0, tokens: bool = False,
          seq_length: int | None = None, offsets: bool = False) -> Report:
    """Audit a log of row ids or positions, or with ``tokens`` one of sample indices (``offsets``: token
    offsets) of the sequences of ``seq_length`` tokens of the exported token stream."""
    if not tokens and (seq_length is not None or offsets):
        raise ReorderError(f"{'--seq-length' if seq_length is not None else '--offsets'} goes with --tokens (a log "
                           "of the token stream's sequences)")
    if tokens:
        return _audit_tokens(output, logs, id_field, positions, global_batch, start_sample, seq_length, offsets)
    source = Source(output)
    units = Units(source.rows, what=f"the output {source.folder} holds {source.rows:,} rows")
    _bounded("--start-sample", start_sample, 0, source.rows, units)
    if global_batch is not None:
        _bounded("--global-batch", global_batch, 1, max(1, source.rows), units)
    step_numbers, step_ids, lines = read_log(logs)
    flat = [i for ids in step_ids for i in ids]
    if positions:
        pos = _integers(flat, logs[0], "--positions", "integer positions")
        pos[(pos < 0) | (pos >= source.rows)] = -1
    else:
        try:
            logged = pa.array(flat).cast(pa.string())
        except (pa.ArrowException, OverflowError):
            raise ReorderError(f"{logs[0]}: the ids are not all strings or all integers of at most 64 bits") from None
        index = pc.index_in(logged, value_set=output_ids(source, id_field or "id").cast(pa.string()))
        pos = index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return _check(pos, flat, step_numbers, step_ids, lines, logs, global_batch, start_sample, units)


def _integers(flat: list, log: Path, option: str, what: str) -> np.ndarray:
    """The log's ids as int64 (one kind a log: all integers, or a one-line error)."""
    try:
        pos = np.array(flat, dtype=np.int64) if not flat or type(flat[0]) is int else None
    except (TypeError, ValueError, OverflowError):
        pos = None
    if pos is None:
        raise ReorderError(f"{log}: {option}: the ids must be {what} (below 2**63), found {_kinds(flat)}")
    return pos


def _audit_tokens(output: Path, logs: list[Path], id_field: str | None, positions: bool, global_batch: int | None,
                  start_sample: int, seq_length: int | None, offsets: bool) -> Report:
    """The token audit: each logged sequence is placed by its first token in the stream and checked with
    :func:`_check` in tokens (span and slack: one sequence)."""
    from reorder_cli.inspect import token_counts

    given = [name for name, on in (("--id-field", id_field is not None), ("--positions", positions)) if on]
    if given:
        raise ReorderError(f"{' and '.join(given)} audit rows; a token audit (--tokens) reads sample indices or, "
                           "with --offsets, token offsets")
    if seq_length is None:
        raise ReorderError("--tokens needs --seq-length L: the tokens of a sample (the trainer's sequence length)")
    total = token_counts.total(output)
    if isinstance(seq_length, bool) or not isinstance(seq_length, int) or not 1 <= seq_length <= max(total, 1):
        raise ReorderError(f"--seq-length {seq_length!r}: must be an integer in [1, {max(total, 1):,}] (the token "
                           f"stream of {output} holds {total:,} tokens)")
    length = seq_length
    sequences = total // length
    units = Units(total, length, length, f"the token stream of {output} holds {sequences:,} sequences of "
                                         f"{length:,} tokens")
    _bounded("--start-sample", start_sample, 0, sequences, units)
    if global_batch is not None:
        _bounded("--global-batch", global_batch, 1, max(1, sequences), units)
    step_numbers, step_ids, lines = read_log(logs)
    flat = [i for ids in step_ids for i in ids]
    if offsets:
        pos = _integers(flat, logs[0], "--offsets", "token offsets")
        pos[(pos < 0) | (pos > total - length)] = -1  # a sequence that does not fit in the stream
    else:
        index = _integers(flat, logs[0], "--tokens", "sample indices")
        known = (index >= 0) & (index < sequences)
        pos = np.where(known, np.where(known, index, 0) * length, -1)  # multiplied only where it cannot overflow
    return _check(pos, flat, step_numbers, step_ids, lines, logs, global_batch, start_sample, units,
                  tokens={"seq_length": length, "total": total, "offsets": offsets, "tolerance_tokens": length})


def _check(pos: np.ndarray, flat: list, step_numbers: list[int], step_ids: list[list], lines: list[int],
           logs: list[Path], global_batch: int | None, start_sample: int, units: Units,
           tokens: dict | None = None) -> Report:
    """The window contract over ``pos`` (each logged sample's first unit, -1: unknown), in ``units``."""
    counts = np.array([len(ids) for ids in step_ids], dtype=np.int64)
    g = int(global_batch) if global_batch else int(np.bincount(counts[:-1] if len(counts) > 1 else counts).argmax())
    if g < 1:
        raise ReorderError(f"{logs[0]}: the steps consumed no sample")
    span, slack, extent = units.span, units.slack, units.extent
    width, start = g * span, start_sample * span  # a window and the log's first unit, in units
    rel_step = np.array(step_numbers, dtype=np.int64) - step_numbers[0]
    last_window = start + int(rel_step[-1]) * width
    # a short last step is the tail when its window reaches past the end (within the slack): it covers what
    # it consumed
    tail = int(counts[-1]) if counts[-1] < g and last_window + width + slack > extent else 0
    actual = np.repeat(rel_step, counts)
    known = pos >= 0
    intended = np.where(known, (pos - start) // width, -1)
    low = start + actual * width
    inside = known & (pos >= low - slack) & (pos + span <= low + width + slack)
    disp = np.where(inside, 0, np.abs(intended - actual))[known]
    # duplicates: a sample overlapping those before it in the order by a sample's worth (rows: the same
    # position again; tokens: the same first token), less the slack
    order = np.flatnonzero(known)[np.argsort(pos[known], kind="stable")]
    sp = pos[order]
    reach = np.maximum.accumulate(sp + span) if len(sp) else sp  # the furthest unit consumed so far
    dup = np.zeros(len(pos), dtype=bool)
    dup[order[1:]] = reach[:-1] - sp[1:] >= max(slack, 1)
    covered_end = min(last_window + (tail * span or width), extent)
    missing_count, missing = _never_seen(sp, start, covered_end, span, slack)
    short = counts != g
    short[-1] = counts[-1] != g and not tail
    bad = ~inside | dup
    bad_steps = set(actual[bad].tolist()) | set(rel_step[short].tolist())
    if missing_count:
        bad_steps.add(int((missing[0] - start) // width))
    first_bad = min(bad_steps) + step_numbers[0] if bad_steps else None
    flat_arr = np.array(flat, dtype=object)
    examples = {
        "outside_window": [{"id": flat_arr[i], "step": int(actual[i]) + step_numbers[0],
                            "intended_step": int(intended[i]) + step_numbers[0]}
                           for i in np.flatnonzero(known & ~inside)[:SAMPLES]],
        "never_seen": missing.tolist(),
        "seen_twice": [flat_arr[i] for i in np.flatnonzero(dup)[:SAMPLES]],
        "unknown": [flat_arr[i] for i in np.flatnonzero(~known)[:SAMPLES]],
    }
    return Report(
        steps=len(step_numbers), samples=len(flat), global_batch=g, start_sample=start_sample,
        ranks_per_step=int(np.bincount(lines).argmax()),
        in_window=round(float(inside.mean()) if len(flat) else 1.0, 6),
        max_displacement=int(disp.max()) if len(disp) else 0, first_bad_step=first_bad,
        never_seen=missing_count, seen_twice=int(dup.sum()), unknown=int((~known).sum()),
        short_steps=int(short.sum()), tail_samples=tail, examples=examples, tokens=tokens,
        trace=Trace(pos, actual, bad, np.array(sorted(bad_steps), dtype=np.int64)),
    )


def _never_seen(starts: np.ndarray, lo: int, hi: int, span: int, slack: int) -> tuple[int, np.ndarray]:
    """(samples never consumed, the first unit of the first ``SAMPLES`` of them) in [lo, hi), given the sorted
    first units of the samples consumed: the gaps their spans leave, those narrower than ``slack`` forgiven."""
    starts = starts[(starts + span > lo) & (starts < hi)]
    ends = np.maximum.accumulate(np.minimum(starts + span, hi)) if len(starts) else starts
    gap_lo = np.r_[lo, ends]
    gap_len = np.r_[np.maximum(starts, lo), hi] - gap_lo
    counted = gap_len >= max(slack, 1)
    gap_lo, samples = gap_lo[counted], gap_len[counted] // span
    each = np.minimum(samples[:SAMPLES], SAMPLES)  # the first samples of the first gaps are enough
    within = np.arange(int(each.sum())) - np.repeat(np.cumsum(each) - each, each)
    return int(samples.sum()), (np.repeat(gap_lo[:SAMPLES], each) + within * span)[:SAMPLES]


def _bounded(option: str, value, lo: int, hi: int, units: Units) -> None:
    """An integer option checked against what the output allows (its rows, or its sequences)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ReorderError(f"{option} {value!r}: must be an integer in [{lo:,}, {hi:,}] ({units.what})")


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

    t, span = report.trace, (report.tokens or {}).get("seq_length", 1)  # a token audit: positions in tokens
    g, start = report.global_batch * span, report.start_sample * span
    steps, positions, bad = t.steps[lo:hi], t.positions[lo:hi], t.bad[lo:hi]
    index = np.arange(lo, hi, dtype=np.int64)
    # the band: each step's window [start + s·G, start + (s+1)·G), drawn from the sample where the step begins
    first = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]]) if len(index) else index
    edges = np.r_[lo + first, hi]
    low = start + np.r_[steps[first], steps[first[-1:]]] * g
    ax.fill_between(edges, low, low + g, step="post", color=plot.POINTS, alpha=0.18, linewidth=0,
                    label=f"window of each step (G={report.global_batch:,})")
    ax.plot([lo, hi], [start + lo * span, start + hi * span], color="black", linewidth=1, linestyle="--",
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
    ax.set_xlabel(f"{'sequences' if report.tokens else 'samples'} consumed (in the log's order)")
    ax.set_ylabel("first token of the sequence in the stream" if report.tokens else "position in the order")
    ax.grid(alpha=0.25, linewidth=0.5, zorder=0)
