"""``reorder preview``: the order one or several methods would give, from the scores alone.

Runs only the keys pass (scores, never text) once, then orders the rows for every
method and measures the result. Nothing is written: no shards, no output folder.
A mixture config (``sources:``) is planned as its run plans it (every source ordered as its own run,
cut to its quota, merged): the merged order is measured, and the plan's ``mixture`` section (the
manifest's) is shown and drawn.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli import config
from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.formats import score_expr
from reorder_cli.formats.discover import InputFile, discover
from reorder_cli.inspect import plot, token_counts
from reorder_cli.metrics import guidance as metrics
from reorder_cli.metrics import partial
from reorder_cli.metrics.summary import token_profile
from reorder_cli.mix import spec as mix_spec
from reorder_cli.plan import build as plan
from reorder_cli.plan import mixture as mix_plan
from reorder_cli.plan import select, shard_bytes
from reorder_cli.rewrite import budget
from reorder_cli.util import store
from reorder_cli.util.progress import Progress


@dataclass
class Ordered:
    """One method's order: the score at each output position and what it measures."""

    method: str
    params: dict[str, Any]
    scores: np.ndarray
    dropped: int
    metrics: dict[str, Any]
    profile: dict[str, Any]
    selection: dict[str, Any] | None = None  # what a select: section kept (Selected.to_json)
    floor: budget.Floor | None = None  # the least memory_limit of a run of this order out of core
    tokens: np.ndarray | None = None  # with --by tokens: each row's token count, in this order


@dataclass
class Preview:
    files: list[InputFile]
    input_rows: int
    seconds: float
    orders: list[Ordered]
    selection_plot: Path | None = None  # the kept / dropped score distributions, when a selection was drawn
    by: str = "rows"  # the profile's x axis: rows, or training tokens (--by tokens)
    mixture: dict[str, Any] | None = None  # a mixture's plan: the manifest's ``mixture`` section it would write


def token_counts_field(config_file: Path | None, sets: list[str], by: str) -> tuple[list[str], str | None]:
    """(the ``--set`` pairs to load the configs with, the field of each row's token count for ``--by tokens``).
    A ``--token-field`` (``select.token_field``) given when no token budget reads it only names that field: it is
    taken out of the pairs. Otherwise the field is the token budget's, found once the configs are loaded."""
    given = config.parse_overrides(sets).get("select")
    field = given.get("token_field") if isinstance(given, dict) else None
    if token_counts.check_by(by) != "tokens" or field is None or _token_budget(given) \
            or _token_budget(config.file_keys(config_file).get("select")):
        return sets, None
    return [p for p in sets if p.partition("=")[0].strip() != "select.token_field"], field


def _token_budget(select_value: Any) -> bool:
    """Whether a ``select:`` value as written (a mapping, METHOD:VALUE, a path or a chain of them) holds a token
    budget, the selection that reads ``token_field``."""
    steps = select_value if isinstance(select_value, list) else [select_value]
    sections = [config.select_section(step) for step in steps if step is not None]
    return any(s.get("method") == "tokens" or "budget" in s for s in sections)


def configs(
    config_file: Path | None, sets: list[str], *, method: str | None, compare: str | None, inputs: list[str] | None
) -> list[RunConfig]:
    """One resolved config a method: the config's values where it sets them, else the method's defaults."""
    if method and compare:
        raise ReorderError("give --method or --compare, not both")
    if compare is not None and mix_spec.is_mixture(config.file_keys(config_file)):
        raise ReorderError("--compare compares methods of one source; a mixture (sources:) is previewed as it "
                           "is: give each source's method in its config")
    names = [m.strip() for m in compare.split(",") if m.strip()] if compare else [method]
    if compare is not None and not names:
        raise ReorderError("--compare expects a comma-separated list of methods, e.g. str,saw,sorting,shuffle")
    # A preview writes nothing: the output folder is neither needed nor created.
    if not compare:
        return [config.load(config_file, sets, method=m, inputs=inputs, output=os.devnull) for m in names]
    # Side by side, every method gets its own (paper) parameters: the config file's values of the keys
    # that shape an order are left out, unless --set gives them (then every method takes them).
    cfgs = [config.load(config_file, sets, method=m, inputs=inputs, output=os.devnull,
                        skip_file_keys=config.shape_keys(config.resolve_method(m))) for m in names]
    given = set(config.parse_overrides(sets))
    in_file = config.file_keys(config_file)
    skipped = sorted({k for k, v in in_file.items() if k not in given
                      and any(k in config.shape_keys(c.method) and c.params[k] != v for c in cfgs)})
    if skipped:
        warnings.warn(f"--compare gives every method its own defaults (the paper's settings); the config's "
                      f"{', '.join(skipped)} {'is' if len(skipped) == 1 else 'are'} not used (--set KEY=VALUE "
                      "applies a value to every method)", stacklevel=2)
    return cfgs


def run(cfgs: list[RunConfig], params: metrics.Params, progress: Progress | None = None,
        plot_file: Path | None = None, plot_size: tuple[int, int] | None = None,
        plot_title: str | None = None, by: str = "rows", token_field: str | None = None) -> Preview:
    """Read the scores once, order them by every config's method and measure each order; with
    ``plot_file``, draw one panel a method. ``by="tokens"``: the profile and the picture by training token,
    the token counts read from ``token_field`` or, without it, from the field a selection reads."""
    if plot_file:
        plot.require(plot_file)
    progress = progress or Progress(enabled=False)
    if cfgs[0].mixture:
        return mixture(cfgs[0], params, progress, plot_file, plot_size, plot_title, by)
    started = time.perf_counter()
    first = cfgs[0]
    with_field = next((c for c in cfgs if select.token_field(c.select)), first)
    token_field = token_field or select.token_field(with_field.select)
    if by == "tokens" and not token_field:
        raise ReorderError("--by tokens needs each row's token count: name the field holding it with --token-field "
                           "FIELD (select.token_field)")
    store.configure(first.storage_options)
    files = discover(first.inputs)
    with progress.task("Reading scores", total=sum(f.size for f in files), unit="bytes") as advance:
        scoring = score_expr.scoring(with_field.score_field, with_field.score, token_field)
        sources = plan.read_keys(files, scoring, first.invalid_scores == "error", first.workers, advance)
    counts = np.concatenate([s.tokens() for s in sources]) if by == "tokens" else None
    orders = []
    for cfg in cfgs:  # a loop over methods
        laid = shard_bytes.for_layout(config.with_format(cfg, [(f.format, f.compression) for f in files]), files)
        p = plan.build(files, sources, laid)  # cut into the shards a run cuts: its metrics are merged from them
        low = budget.floor(p, laid)
        tokens = None if counts is None else counts[p.order]
        merged = partial.of_array(p.scores, params, p.shards)
        shape = merged.profile if tokens is None else _token_profile(p.scores, tokens, files)
        orders.append(Ordered(cfg.method, cfg.params, p.scores, p.dropped, merged.metrics, shape, p.selection, low,
                              tokens))
    input_rows = int(sum(s.rows for s in sources))
    selection_plot = None
    if plot_file:
        panels = [plot.Panel(o.method, o.params, o.scores, cfg.score or cfg.score_field, o.selection, o.tokens)
                  for cfg, o in zip(cfgs, orders, strict=True)]
        plot.write(plot_file, panels, plot.describe_inputs(len(files), input_rows), plot_size, plot_title)
        drawn = [(panel, *_kept_and_dropped(sources, cfg)) for cfg, panel in zip(cfgs, panels, strict=True)
                 if panel.selection]
        if drawn:
            selection_plot = plot.write_selection(plot.selection_path(plot_file), drawn, plot_size, plot_title)
    return Preview(files, input_rows, time.perf_counter() - started, orders, selection_plot, by)


def mixture(cfg: RunConfig, params: metrics.Params, progress: Progress, plot_file: Path | None = None,
            plot_size: tuple[int, int] | None = None, plot_title: str | None = None, by: str = "rows") -> Preview:
    """A mixture config's plan, in memory (:func:`reorder_cli.plan.mixture.order_sources`, then
    :func:`~reorder_cli.plan.mixture.plan`): its merged order measured as one order, its ``mixture`` section
    kept; with ``plot_file`` the sources' shares and score profiles drawn (:func:`plot.write_mixture`)."""
    if token_counts.check_by(by) == "tokens":
        raise ReorderError("--by tokens: a mixture's shares and profiles are already by its budget's unit (tokens "
                           "with token_field); preview it without --by")
    started = time.perf_counter()
    store.configure(cfg.storage_options)
    sources = mix_plan.order_sources(cfg, None, progress.task)
    files = [f for s in sources for f in s.files]
    cfg = shard_bytes.for_layout(config.with_format(cfg, [(f.format, f.compression) for f in files]), files)
    p = mix_plan.plan(cfg, sources)  # cut into the shards a run cuts: its metrics are merged from them
    low = budget.floor(p, cfg)
    merged = partial.of_array(p.scores, params, p.shards)
    ordered = Ordered(cfg.method, cfg.params, p.scores, p.dropped, merged.metrics, merged.profile, None, low)
    if plot_file:
        plot.write_mixture(plot_file, p.mixture, plot_size, plot_title)
    return Preview(files, int(sum(s.plan.input_rows for s in sources)), time.perf_counter() - started, [ordered],
                   by=by, mixture=p.mixture)


def _token_profile(scores: np.ndarray, tokens: np.ndarray, files: list[InputFile]) -> dict[str, Any]:
    if not tokens.sum():
        raise ReorderError(f"{files[0].path}: --by tokens: the rows hold no token at all (every token count is 0)")
    return token_profile(scores, tokens)


def _kept_and_dropped(sources: list, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """The valid scores a config's selection keeps, and those it drops."""
    scores = np.concatenate([s.scores() for s in sources])
    tokens = np.concatenate([s.tokens() for s in sources]) if select.token_field(cfg.select) else None
    keep = select.choose(cfg.select, len(scores), select.in_memory(scores, tokens), max(1, len(scores))).cut.keep(
        0, scores)
    return scores[keep], scores[~keep & ~np.isnan(scores)]


def summary(result: Preview) -> dict[str, Any]:
    """The machine-readable preview (``reorder preview --json``); a mixture's adds its plan's ``mixture``
    section (what its run's manifest would record: per source its rows, tokens, epochs, quota and cut; the
    shares and mean scores per window)."""
    return {
        "by": result.by,
        "inputs": {"files": len(result.files), "rows": result.input_rows, "bytes": sum(f.size for f in result.files)},
        "orders": [
            {"method": o.method, "params": o.params, "rows": len(o.scores), "dropped_rows": o.dropped,
             "metrics": o.metrics, "profile": o.profile, "memory_floor": o.floor.total,
             **({"selection": o.selection} if o.selection else {})}
            for o in result.orders
        ],
        **({"mixture": result.mixture} if result.mixture is not None else {}),
    }
