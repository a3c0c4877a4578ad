"""The plan of a mixture run: every source ordered as its own run, cut to its quota, merged by scheduled time.

1. Each source's keys are read (its score, and ``token_field`` when the budget counts tokens) and ordered
   as the single-source run of its config would order them (:func:`reorder_cli.plan.build.build`: its
   method, keys, select and invalid-score policy).
2. :func:`reorder_cli.mix.quota.allot` fixes each source's tokens from the schedule and the budget, and
   which of its documents, in which epoch, it gives (a seeded subset of a surplus, repeats of a shortfall).
3. :func:`reorder_cli.mix.interleave.interleave` merges the streams by due time.

The result is a :class:`~reorder_cli.plan.build.Plan` like any run's, so the rewrite (in memory, out of
core, as tasks on a cluster) writes it unchanged. Its inputs are **virtual**: source j's files once per
epoch it gives, so that a row given twice is two input rows of the plan (every output row is still one
input row of the plan, exactly once). ``Plan.mixture`` carries the manifest's ``mixture`` section.

The keys of all sources are held in memory on the node that plans (about 40 bytes a row, beside the
ordering's own): the mixture's order is one process's work for now (docs/scale.md counts it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reorder_cli.config import RunConfig, source_configs
from reorder_cli.errors import ReorderError
from reorder_cli.formats import score_expr
from reorder_cli.formats.discover import InputFile, discover
from reorder_cli.mix import interleave, quota, shares
from reorder_cli.mix.spec import schedule_of
from reorder_cli.plan import build
from reorder_cli.plan.build import Plan
from reorder_cli.plan.layout import counted_prefix, layout
from reorder_cli.util.units import fmt_bytes
from reorder_cli.workdir import WorkDir, identity

#: Windows the manifest records the realised shares in (1% of the output's tokens each).
WINDOWS = 100


@dataclass
class Source:
    """One source of a mixture, ordered: its files, keys and single-source plan."""

    name: str
    cfg: RunConfig
    files: list[InputFile]
    keys: list
    plan: Plan  # its order as a single-source run of ``cfg`` (global rows of ``files``' concatenation)
    tokens: np.ndarray  # int64 tokens of each document of ``plan.order``, in that order


def source_files(cfg: RunConfig, skipped: list[str] | None = None,
                 configs: list[RunConfig] | None = None) -> list[list[InputFile]]:
    """Each source's input files (``configs``: its :func:`source_configs`, when already resolved); a file in
    two sources is refused (a row would belong to both)."""
    out, seen = [], {}
    for i, one in enumerate(configs or source_configs(cfg)):  # a loop over sources
        try:
            files = discover(one.inputs, skipped if skipped is not None else [])
        except ReorderError as err:
            raise ReorderError(f"config key 'sources[{i}].input': {err}") from None
        for f in files:
            key = str(f.path.absolute()) if hasattr(f.path, "absolute") else str(f.path)
            if key in seen:
                raise ReorderError(f"config key 'sources[{i}].input': {f.path} is also an input of "
                                   f"sources[{seen[key]}]; a file belongs to one source")
            seen[key] = i
        out.append(files)
    return out


def order_sources(cfg: RunConfig, work: WorkDir | None, task: Callable, budget: int = 0) -> list[Source]:
    """Every source's keys read and ordered as its own run (step 1); ``task``: ``Progress.task``. With
    ``budget`` (bytes, the run's keys budget), keys that would not fit it are refused in one line."""
    mixture, out, first, rows, configs = cfg.mixture, [], 0, 0, source_configs(cfg)
    for one, files, spec in zip(configs, source_files(cfg, configs=configs), mixture["sources"], strict=True):
        scoring = score_expr.scoring(one.score_field, one.score,
                                     mixture["token_field"] or score_expr.selection_token_field(one.select))
        with task(f"Reading scores of {spec['name']}", total=sum(f.size for f in files), unit="bytes") as advance:
            keys = build.read_keys(files, scoring, one.invalid_scores == "error", cfg.workers, advance, work,
                                   first_index=first)
        first += len(files)
        rows += sum(k.rows for k in keys)
        if budget and not build.keys_fit(rows * 2, budget):  # the keys, and the mixture's own arrays beside them
            need = 2 * rows * build.IN_MEMORY_BYTES_PER_ROW + build.IN_MEMORY_CONSTANT
            raise ReorderError(f"memory_limit: a mixture's order is planned in one process for now, its keys in "
                               f"memory; {rows:,} rows so far (through source '{spec['name']}') need about "
                               f"{fmt_bytes(need)}, more than the {fmt_bytes(budget)} memory_limit leaves for keys: "
                               "raise memory_limit (docs/scale.md counts this limit)")
        try:
            plan = build.build(files, keys, one)
        except ReorderError as err:
            raise ReorderError(f"sources[{len(out)}] ({spec['name']}): {err}") from None
        if mixture["token_field"]:
            tokens = np.concatenate([k.tokens() for k in keys])[plan.order].astype(np.int64)
        else:
            tokens = np.ones(plan.rows, dtype=np.int64)
        out.append(Source(spec["name"], one, files, keys, plan, tokens))
    return out


def plan(cfg: RunConfig, sources: list[Source]) -> Plan:
    """The mixture's plan (steps 2 and 3): virtual inputs, the merged order, shards cut as ``cfg`` says."""
    mixture = cfg.mixture
    schedule = schedule_of(mixture)
    allotment = quota.allot(schedule, [s.tokens for s in sources], mixture["budget"], cfg.seed,
                            [spec["max_epochs"] for spec in mixture["sources"]], mixture["redistribute"])
    merged = interleave.interleave(allotment.schedule, [c.tokens for c in allotment.contributions])

    files, keys, bases = [], [], []  # virtual inputs: source j's files once per epoch it gives
    row = 0
    for s, c in zip(sources, allotment.contributions, strict=True):
        bases.append([])
        for _ in range(c.epochs):
            bases[-1].append(row)
            files += s.files
            keys += s.keys
            row += s.plan.input_rows
    row_starts = np.concatenate([[0], np.cumsum([k.rows for k in keys], dtype=np.int64)]).astype(np.int64)

    order = np.empty(len(merged.source), dtype=np.int64)
    scores = np.empty(len(order), dtype=np.float64)
    sizes = np.empty(len(order), dtype=np.int64)
    for j, (s, c) in enumerate(zip(sources, allotment.contributions, strict=True)):  # a loop over sources
        at = np.flatnonzero(merged.source == j)  # output positions of source j, in its stream's order
        docs = c.index[merged.index[at]]  # positions in the source's own order
        epoch = c.epoch[merged.index[at]]
        order[at] = np.asarray(bases[j], dtype=np.int64)[epoch] + s.plan.order[docs]
        scores[at] = s.plan.scores[docs]
        sizes[at] = s.plan.sizes[docs]
    if not len(order):
        raise ReorderError("config key 'budget': the mixture gives no rows")
    section = _section(cfg, sources, allotment, merged, scores)
    shards = layout(sizes, cfg.layout_shard_bytes, cfg.shard_rows)
    return Plan(
        files=files, sources=keys, row_starts=row_starts, order=order, scores=scores, sizes=sizes, shards=shards,
        valid_prefix=counted_prefix(scores, shards),  # each source's invalid rows, interleaved: anywhere
        invalid_count=sum(s.plan.invalid_count for s in sources),
        invalid_samples=[x for s in sources for x in s.plan.invalid_samples][:20],
        dropped=sum(s.plan.dropped for s in sources), selection=None, mixture=section,
    )


def config_of(section: dict) -> dict:
    """The mixture as the run's config holds it (``RunConfig.mixture``, in the run's identity), from the manifest's
    ``mixture`` section, which records all of it."""
    return {"budget": section["budget"], "unit": section["unit"], "token_field": section["token_field"],
            "redistribute": section["redistribute"],
            "sources": [{k: s[k] for k in ("name", "weight", "max_epochs", "config")} for s in section["sources"]]}


def _source_identity(s: Source) -> str:
    """sha256 of what a source's rows depend on: its resolved config and its input files."""
    ident = identity(s.cfg, s.files)
    ident.pop("tool_version", None)
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def _section(cfg: RunConfig, sources: list[Source], allotment: quota.Allotment, merged: interleave.Order,
             scores: np.ndarray) -> dict:
    """The manifest's ``mixture`` section: per source its config, identity, rows, tokens and epochs; the
    realised and scheduled shares per 1% of the output's tokens, and each source's mean score there."""
    mixture = cfg.mixture
    measured = shares.measure(allotment.schedule, merged.source, merged.tokens, WINDOWS)
    start = np.concatenate([[0], np.cumsum(merged.tokens)[:-1]])
    window = np.minimum(np.searchsorted(measured.edges, start, side="right") - 1, WINDOWS - 1)
    n = len(sources)
    valid = ~np.isnan(scores)
    flat = window * n + merged.source
    total = np.bincount(flat[valid], weights=scores[valid], minlength=WINDOWS * n).reshape(WINDOWS, n)
    count = np.bincount(flat[valid], minlength=WINDOWS * n).reshape(WINDOWS, n)
    mean = np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)

    def rounded(a: np.ndarray) -> list:
        return [[None if np.isnan(x) else round(float(x), 6) for x in row] for row in a]

    entries = []
    for j, (s, c, spec) in enumerate(zip(sources, allotment.contributions, mixture["sources"], strict=True)):
        entries.append({
            "name": s.name, "weight": spec["weight"], "max_epochs": spec["max_epochs"],
            "method": s.cfg.method, "params": s.cfg.params, "score_field": s.cfg.score_field, "score": s.cfg.score,
            "select": s.plan.selection, "inputs": [str(f.path) for f in s.files],
            "input_rows": s.plan.input_rows, "ordered_rows": s.plan.rows, "available": c.available,
            "quota": c.quota, "rows": int((merged.source == j).sum()), "tokens": c.total, "epochs": c.epochs,
            "cut": c.cut, "distinct_rows": int(len(np.unique(c.index))), "identity": _source_identity(s),
            "config": spec["config"],
        })
    distinct = sum(e["distinct_rows"] for e in entries)
    given = sum(s.plan.input_rows - s.plan.dropped for s in sources)
    return {
        "budget": mixture["budget"], "unit": mixture["unit"], "token_field": mixture["token_field"],
        "redistribute": mixture["redistribute"], "seed": cfg.seed,
        "stopped": [{"source": name, "u": at} for name, at in allotment.stopped],
        "sources": entries,
        "totals": {"unscheduled_rows": given - distinct, "repeated_rows": int(len(merged.source)) - distinct},
        "shares": {"windows": WINDOWS, "edges": [int(x) for x in measured.edges],
                   "realised": rounded(measured.share(measured.realised)),
                   "scheduled": rounded(measured.share(measured.scheduled)),
                   "mean_score": rounded(mean)},
    }
