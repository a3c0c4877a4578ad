"""The ``sources:`` section of a mixture config, checked and put in one normal form.

A mixture config has ``sources:`` (a list) instead of one input and method, plus ``budget`` (tokens,
counted by ``token_field``; rows without one), optionally ``redistribute``. Each source is a mapping::

    - name: web
      input: data/web/*.parquet
      weight: [[0.0, 0.8], [1.0, 0.4]]   # or a constant: 0.2
      max_epochs: 1                       # how often its rows may repeat (default 1)
      method: str                         # and any ordering key: score_field, score, select, seed, ...

Top-level ordering keys (``method``, ``score_field``, ``select``, ``seed``, ...) apply to every source that
does not set its own; output keys (``format``, ``shard_size``, ...) are top-level only. This module checks
the section's shape and the schedule; :func:`reorder_cli.config.source_configs` resolves each source's
config as a single-source run's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.mix import schedule

#: Keys of a source that belong to the mixture, not to the source's own ordering.
MIX_KEYS = ("name", "weight", "max_epochs")
#: Top-level keys of a mixture config that no single-source run has.
TOP_KEYS = ("sources", "budget", "token_field", "redistribute")


#: The keys of a mixture and what each means (rendered in the config reference, docs/reference/config.md).
KEY_HELP: dict[str, str] = {
    "sources": "a list of sources; a config with it is a mixture (no top-level input or method; see Mixtures)",
    "budget": "the output's size: tokens counted by token_field, or rows without one; 10B allowed",
    "token_field": "the field holding each document's tokens (an integer >= 1), for a budget in tokens",
    "redistribute": "true: a source short of its quota with all its max_epochs stops where it runs out and the "
                    "others share its weight; false (default): the run refuses, naming the source",
    "sources[i].name": "the source's name (unique)",
    "sources[i].input": "its input files, folders or globs (a file belongs to one source)",
    "sources[i].weight": "a constant, or points [[u, w], ...] over the fraction u of the training tokens "
                         "(strictly increasing u in [0, 1], w >= 0, linear between points, flat beyond)",
    "sources[i].max_epochs": "how often its rows may repeat to fill its quota (default 1)",
    "sources[i].KEY": "its own ordering: method, score_field or score, select, invalid_scores and any ordering "
                      "key; a top-level one applies to every source that does not set its own",
}


def is_mixture(raw: Mapping[str, Any]) -> bool:
    return "sources" in raw


def normal(raw: Mapping[str, Any], source_keys: tuple[str, ...], ordering_keys: tuple[str, ...],
           count: Callable[[str, Any], int]) -> dict[str, Any]:
    """The mixture section of ``raw`` (a config file merged with ``--set``): ``{budget, unit, token_field,
    redistribute, sources: [{name, weight, max_epochs, config}]}``, where each source's ``config`` is the
    top-level ordering keys (``ordering_keys`` of ``raw``) overlaid with its own. ``source_keys`` are the keys
    a source may set beside :data:`MIX_KEYS`; ``count`` checks a token count (``10B``)."""
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ReorderError("config key 'sources': expected a list of sources, each with a name, an input and a "
                           "weight (see Mixtures)")
    if "budget" not in raw:
        raise ReorderError("config key 'budget': a mixture needs a budget: the tokens of the output (counted by "
                           "token_field), or its rows without a token_field")
    budget = count("budget", raw["budget"])
    token_field = raw.get("token_field")
    if token_field is not None and (not isinstance(token_field, str) or not token_field):
        raise ReorderError(f"config key 'token_field': expected a field name, got {token_field!r}")
    redistribute = raw.get("redistribute", False)
    if not isinstance(redistribute, bool):
        raise ReorderError(f"config key 'redistribute': expected true or false, got {redistribute!r}")
    shared = {k: raw[k] for k in ordering_keys if k in raw}
    out = []
    for i, src in enumerate(sources):
        where = f"sources[{i}]"
        if not isinstance(src, Mapping):
            raise ReorderError(f"config key '{where}': expected a mapping with name, input and weight, got {src!r}")
        unknown = [k for k in src if k not in MIX_KEYS and k not in source_keys]
        if unknown:
            top = " (an output key: set it at the top level, for the whole mixture)" if unknown[0] not in \
                ordering_keys else ""
            raise ReorderError(f"config key '{where}.{unknown[0]}': not a key of a source{top}; a source takes "
                               f"{', '.join([*MIX_KEYS, *source_keys])}")
        for key in ("name", "input", "weight"):
            if key not in src:
                raise ReorderError(f"config key '{where}.{key}': missing; every source needs a name, an input and "
                                   "a weight")
        max_epochs = src.get("max_epochs", 1)
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
            raise ReorderError(f"config key '{where}.max_epochs': expected an integer >= 1, got {max_epochs!r}")
        own = {k: v for k, v in src.items() if k not in MIX_KEYS}
        exclusive = {"score", "score_field"}  # a source's own score or score_field replaces the top-level either
        config = {k: v for k, v in shared.items() if not (own.keys() & exclusive and k in exclusive)} | own
        out.append({"name": src["name"], "weight": src["weight"], "max_epochs": max_epochs, "config": config})
    schedule.build([s["name"] for s in out], [s["weight"] for s in out])  # names and weights: one-line errors
    for i, s in enumerate(out):  # the points as floats: one form whatever the YAML spelled
        u, w = schedule.parse_weight(s["weight"], f"sources[{i}].weight")
        s["weight"] = [[float(a), float(b)] for a, b in zip(u, w, strict=True)]
    return {"budget": budget, "unit": "tokens" if token_field else "rows", "token_field": token_field,
            "redistribute": redistribute, "sources": out}


def schedule_of(mixture: Mapping[str, Any]) -> schedule.Schedule:
    """The schedule of a normal mixture section."""
    return schedule.build([s["name"] for s in mixture["sources"]], [s["weight"] for s in mixture["sources"]])
