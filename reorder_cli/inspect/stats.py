"""``reorder stats`` as data: the totals and settings of a manifest (``--json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.inspect import deep, plot, token_counts
from reorder_cli.metrics.summary import token_profile
from reorder_cli.publish import manifest


@dataclass
class Stats:
    """A finished run as ``reorder stats`` shows it; ``differences`` are what ``--deep`` found."""

    doc: manifest.Manifest
    metrics: dict[str, Any] | None  # recorded in the manifest, or recomputed by --deep
    deep: bool = False
    differences: list[str] = field(default_factory=list)
    by: str = "rows"  # the profile's x axis: rows, or training tokens
    profile: dict[str, Any] | None = None  # the profile shown: the manifest's, or by training token


def read(path: Path, deep_check: bool = False, plot_file: Path | None = None,
         plot_size: tuple[int, int] | None = None, plot_title: str | None = None, by: str = "rows") -> Stats:
    """Read the manifest; with ``deep_check`` re-read the shards' scores and compare; with ``plot_file``
    draw their score by position (a mixture: its sources' shares and score profiles, from the manifest
    alone). ``by="tokens"``: the profile (and picture) by training token, from the token counts a run with
    ``tokenizer:`` recorded."""
    if plot_file:
        plot.require(plot_file)
    doc, folder = manifest.read(path)
    tokens = token_counts.of_output(doc, folder) if token_counts.check_by(by) == "tokens" else None
    if tokens is not None and not tokens.sum():
        raise ReorderError(f"{manifest.find(folder)}: --by tokens: the output's token stream is empty")
    mixture = doc.mixture is not None
    per_shard = deep.shard_scores(doc, folder) if deep_check or (plot_file and not mixture) or tokens is not None \
        else []
    recomputed, differences = deep.check(doc, per_shard) if deep_check else (None, [])
    shape = doc.profile if tokens is None else token_profile(deep.concat(per_shard), tokens)
    if plot_file and mixture:
        plot.write_mixture(plot_file, doc.mixture, plot_size, plot_title)
    elif plot_file:
        panel = plot.Panel(doc.method, doc.params, deep.concat(per_shard), doc.score or doc.score_field,
                           doc.selection, tokens)
        plot.write(plot_file, [panel], plot.describe_inputs(len(doc.inputs), doc.totals["input_rows"]),
                   plot_size, plot_title)
    found = doc.metrics or (recomputed or {}).get("metrics")
    return Stats(doc, found, deep_check, differences, by, shape)


def summary(doc: manifest.Manifest, by: str = "rows", profile: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine-readable stats (``reorder stats --json``); ``profile``: the one shown (``by`` tokens). A
    mixture's adds the manifest's ``mixture`` section: per source its rows, tokens, epochs, quota and cut, and
    the realised and scheduled shares and mean score of each source in each window."""
    return {
        "by": by,
        "method": doc.method,
        "params": doc.params,
        "totals": doc.totals,
        "invalid_scores": doc.invalid_scores,
        **({"score": doc.score} if doc.score else {}),
        **({"selection": doc.selection} if doc.selection else {}),
        "shards": [{"file": s.file, "rows": s.rows, "bytes": s.bytes, "positions": [s.first, s.end], "score": s.score}
                   for s in doc.shards],
        "profile": profile or doc.profile,
        "metrics": doc.metrics,
        **({"mixture": doc.mixture} if doc.mixture is not None else {}),
    }
