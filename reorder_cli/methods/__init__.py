"""The ordering methods: one registry that owns every fact about a method.

A :class:`Method` holds its CLI name, the paper's name, a one-line description, the
ordering keys it reads (with the paper's defaults where they differ from the key table in
:mod:`reorder_cli.config`), what must match the authors' reference code, the in-memory
permutation (:mod:`.orderings`) and, for the methods built on ranks, the chunked rank map
that the out-of-core plan uses (:mod:`.rank_maps`). ``reorder methods``, the help texts,
the config's key table and the out-of-core plan all read this registry, so they cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reorder_cli.methods import orderings
from reorder_cli.methods.rank_maps import RankMap

Params = Mapping[str, Any]

#: Keys every method reads.
COMMON = ("score_field", "seed")
#: Keys of the methods that sort by score and then may jitter.
SORTED = ("ascending", "window_size")


@dataclass(frozen=True)
class Method:
    name: str
    paper_name: str
    description: str
    keys: tuple[str, ...]  # the ordering keys it reads
    permute: Callable[[np.ndarray, Params], np.ndarray]  # valid scores (input order) -> order
    reference: str  # what must match the reference implementation
    defaults: Mapping[str, Any] = field(default_factory=dict)  # the paper's settings, over the key table's
    rank_map: Callable[[int, Params], RankMap] | None = None  # ranks at positions, for the out-of-core plan
    aliases: tuple[str, ...] = ()


def _layered(key: str, zig: bool) -> Callable[[int, Params], RankMap]:
    return lambda m, p: RankMap([(0, m)], p[key], zig=zig)


def _transitions(zig: bool) -> Callable[[int, Params], RankMap]:
    return lambda m, p: RankMap(orderings.transition_spans(m, p["num_sections"], p["folding_ratio"]),
                                p["folding_layer"], zig=zig)


_REGISTRY = (
    Method("shuffle", "Random",
           "Random: rows stably sorted by one default_rng(seed).random() key each, drawn in input order.",
           COMMON, orderings.shuffle, "no (any seeded RNG; this one can be drawn chunk by chunk)"),
    Method("sorting", "CL", "CL: sorted by score (stable), optional Gumbel rank noise, then JIT.",
           COMMON + SORTED + ("use_gumbel", "temperature"), orderings.sorting, "yes",
           rank_map=lambda m, p: RankMap([])),
    Method("folding", "FO", "FO: the sorted sequence folded into L interleaved layers, then JIT.",
           COMMON + SORTED + ("folding_layer",), orderings.folding, "yes", rank_map=_layered("folding_layer", False)),
    Method("zigzag", "ZIG", "ZIG: like folding, every other layer reversed, then JIT.",
           COMMON + SORTED + ("zigzag_layer",), orderings.zigzagging, "yes", rank_map=_layered("zigzag_layer", True)),
    Method("segment", "SEG", "SEG: front / middle / back segments from the score ends, each shuffled.",
           COMMON + ("x_pct", "y_pct", "front_is_high", "back_is_high"), orderings.segment,
           "segment membership yes; order inside segments no"),
    Method("str", "STR", "STR (stair): sorted, with the regions around S-1 split points folded; then JIT.",
           COMMON + SORTED + ("folding_layer", "num_sections", "folding_ratio"), orderings.stair, "yes",
           defaults={"num_sections": 2, "folding_layer": 3, "folding_ratio": 0.225},
           rank_map=_transitions(False), aliases=("stair",)),
    Method("saw", "SAW", "SAW: sorted, with the regions around S-1 split points zigzagged; then JIT.",
           COMMON + SORTED + ("folding_layer", "num_sections", "folding_ratio"), orderings.saw, "yes",
           defaults={"num_sections": 3, "folding_layer": 2, "folding_ratio": 0.075},
           rank_map=_transitions(True)),
    Method("input", "-", "Input order: the rows as they come (after selection); for selecting without reordering.",
           ("score_field",), orderings.input_order, "yes (the identity)"),
)

#: Canonical name -> method, in the order ``reorder methods`` lists them.
METHODS: dict[str, Method] = {m.name: m for m in _REGISTRY}
#: Alias -> canonical name.
ALIASES: dict[str, str] = {a: m.name for m in _REGISTRY for a in m.aliases}


def names() -> list[str]:
    """Every name the command line accepts: canonical names, then aliases."""
    return [*METHODS, *ALIASES]


def canonical(name: str) -> str | None:
    """The canonical name of ``name`` (an alias or a name), or None when unknown."""
    name = ALIASES.get(name, name)
    return name if name in METHODS else None


def order_rows(method: str, scores: np.ndarray, params: Params) -> np.ndarray:
    """The permutation for ``method`` (a canonical name) on ``scores``."""
    return METHODS[method].permute(np.asarray(scores, dtype=np.float64), params)
