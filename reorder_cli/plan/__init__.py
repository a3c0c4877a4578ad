"""Keys -> order -> layout: the plan of a run, from the scores alone.

:func:`read_keys` reads every input's keys (in memory, or spilled to the work folder when they outgrow
the budget). Keys that fit are ordered in memory (:func:`build.build`); spilled ones by the order's
tasks (:mod:`.order_tasks`, run through the stages of :mod:`reorder_cli.stages`), which a cluster
runs the same way. The rewrite path (in memory, or the stored plan's scatter and gather tasks) is the
rewrite's choice.
"""

from __future__ import annotations

from collections.abc import Callable

from reorder_cli.config import RunConfig
from reorder_cli.formats import KeySource, score_expr
from reorder_cli.formats.discover import InputFile
from reorder_cli.plan import build
from reorder_cli.workdir import WorkDir


def read_keys(files: list[InputFile], cfg: RunConfig, work: WorkDir, keys_budget: int,
              task: Callable) -> list[KeySource]:
    """Every input's keys, under a progress bar (``task``: ``Progress.task``)."""
    with task("Reading scores", total=sum(f.size for f in files), unit="bytes") as advance:
        return build.read_keys(files, score_expr.for_config(cfg), cfg.invalid_scores == "error", cfg.workers,
                               advance, work, keys_budget)
