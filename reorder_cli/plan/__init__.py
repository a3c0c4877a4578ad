"""Keys -> order -> layout: the plan of a run, from the scores alone.

:func:`build_plan` is the one entry: it reads every input's keys, orders them in memory or,
when they outgrow the budget, out of core, and cuts the order into shards. The rewrite path
(in memory, or the stored plan's scatter and gather tasks) is the rewrite's choice.
"""

from __future__ import annotations

from collections.abc import Callable

from reorder_cli.config import RunConfig
from reorder_cli.formats import score_expr
from reorder_cli.formats.discover import InputFile
from reorder_cli.plan import build
from reorder_cli.plan.build import Plan
from reorder_cli.workdir import WorkDir


def build_plan(files: list[InputFile], cfg: RunConfig, work: WorkDir, keys_budget: int,
               task: Callable) -> tuple[Plan, bool]:
    """(the plan, whether its keys went out of core); ``task`` opens a progress bar (``Progress.task``)."""
    with task("Reading scores", total=sum(f.size for f in files), unit="bytes") as advance:
        sources = build.read_keys(files, score_expr.for_config(cfg), cfg.invalid_scores == "error", cfg.workers,
                                  advance, work, keys_budget)
    if build.spilled(sources):
        with task("Ordering keys out of core", total=1, unit="steps"):
            return build.build_out_of_core(files, sources, cfg, work, keys_budget), True
    return build.build(files, sources, cfg), False
