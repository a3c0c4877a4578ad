"""Every worked example of docs/orderings.md, run against the real ordering functions: the doc cannot drift.

The examples are parsed from the doc's ```examples block (one a line: ``NAME key=value ... -> result``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from reorder_cli import methods
from reorder_cli.methods import orderings

from .conftest import params

DOC = Path(__file__).resolve().parent.parent / "docs" / "orderings.md"
BLOCKS = {"FO": lambda a: orderings.fold(a["m"], a["L"]), "ZIG": lambda a: orderings.zigzag(a["m"], a["L"]),
          "JIT": lambda a: orderings.jitter(a["m"], a["w"], a["seed"])}


def parse_examples(text: str) -> list[tuple[str, str, dict, list[int]]]:
    """(line, name, arguments, expected order) for every line of every ```examples block."""
    found = []
    for block in re.findall(r"^```examples\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.strip().splitlines():
            head, arrow, tail = line.partition(" -> ")
            assert arrow, f"no ' -> ' in example line {line!r}"
            name, *pairs = head.split()
            found.append((line, name, dict(_value(p) for p in pairs), expand(tail)))
    return found


def _value(pair: str) -> tuple[str, object]:
    key, _, raw = pair.partition("=")
    if key == "scores":
        return key, [float(v) for v in raw.split(",")]
    if raw in ("true", "false"):
        return key, raw == "true"
    return key, float(raw) if "." in raw else int(raw)


def expand(result: str) -> list[int]:
    """``"0..2 | 5 4"`` -> [0, 1, 2, 5, 4]."""
    out: list[int] = []
    for token in result.replace("|", " ").split():
        a, dots, b = token.partition("..")
        out += list(range(int(a), int(b) + 1)) if dots else [int(a)]
    return out


def compute(name: str, args: dict) -> list[int]:
    if name in BLOCKS:
        return BLOCKS[name](args).tolist()
    args = dict(args)
    scores = args.pop("scores", None)
    if scores is None:
        scores = np.arange(args.pop("n"), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return methods.order_rows(methods.canonical(name), np.asarray(scores), params(name, **args)).tolist()


EXAMPLES = parse_examples(DOC.read_text(encoding="utf-8"))


def test_the_doc_has_an_example_of_every_method_and_block():
    names = {name for _, name, _, _ in EXAMPLES}
    assert names >= set(methods.METHODS) | set(BLOCKS), sorted(set(methods.METHODS) | set(BLOCKS) - names)


@pytest.mark.parametrize("line,name,args,expected", EXAMPLES, ids=[e[0][:60] for e in EXAMPLES])
def test_worked_example(line, name, args, expected):
    assert compute(name, args) == expected, line


def test_a_wrong_example_fails():
    """Negative control: the same check on a doc line with two ranks swapped finds the difference."""
    (_, name, args, expected), = parse_examples(
        "```examples\nstr n=20 num_sections=2 folding_ratio=0.1 folding_layer=2 -> 0..7 | 8 9 10 11 | 12..19\n```\n")
    assert compute(name, args) != expected
    assert expand("3..5 | 1") == [3, 4, 5, 1]
