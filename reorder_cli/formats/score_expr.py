"""Score expressions: ``score: "0.4 * educational_value + 0.3 * facts + 0.3 * style"``.

A small recursive-descent parser (never ``eval``) turns the text into a tree, which is
compiled to ONE Polars expression over the referenced fields' float64 columns; the keys
pass extracts each field the way it extracts a plain ``score_field`` (the reference's
``float(value)`` rule, :mod:`.scores`) and evaluates the expression once a block.

Grammar, loosest first::

    expr    := sum [ ('<' | '<=' | '>' | '>=' | '==' | '!=') sum ]   comparisons give 1.0 or 0.0
    sum     := product { ('+' | '-') product }
    product := unary { ('*' | '/') unary }
    unary   := ('-' | '+') unary | power
    power   := atom [ '**' unary ]                                       right-associative, as in Python
    atom    := number | field | name '(' expr { ',' expr } ')' | '(' expr ')'
    field   := part { '.' part }     part: an identifier, or a quoted name ("a b", 'a-b' or `a b`)

Functions: ``min(a, b, ...)``, ``max(a, b, ...)``, ``abs(x)``, ``log(x)`` (natural),
``exp(x)``, ``clip(x, lo, hi)``, ``where(cond, a, b)`` (``a`` where ``cond`` is not 0).

Arithmetic is IEEE float64 (``1/0`` is inf, ``log(-1)`` is NaN); a NaN operand makes a
comparison, ``min``/``max``/``clip`` and ``where``'s condition NaN too. A row whose score
comes out NaN or infinite, or whose fields are missing or not numbers, has an invalid
score (``invalid_scores`` applies).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from reorder_cli.config import selection_token_field
from reorder_cli.errors import ReorderError

#: name -> (fewest, most) arguments (None: any number).
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "min": (2, None), "max": (2, None), "abs": (1, 1), "log": (1, 1), "exp": (1, 1), "clip": (3, 3),
    "where": (3, 3),
}
#: The stated limits of an expression: its length, and how deeply its parts nest (parentheses, function
#: calls, signs and powers each add a level). Within them every expression evaluates.
MAX_LENGTH = 10_000
MAX_DEPTH = 64
COMPARISONS = ("<=", ">=", "==", "!=", "<", ">")
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<quoted>\"[^\"]*\"|'[^']*'|`[^`]*`)|(?P<op>\*\*|<=|>=|==|!=|[-+*/(),.<>]))"
)

Node = tuple  # ("num", v) | ("field", dotted) | ("neg", x) | ("op", op, a, b) | ("call", name, args)


@dataclass(frozen=True)
class Scoring:
    """How the keys pass scores a row: one field (``expr`` None) or an expression over ``fields``;
    plus the token count field a ``tokens`` selection reads."""

    text: str  # the field's dotted path, or the expression as written
    fields: tuple[str, ...]  # dotted paths the score reads, in order of first use
    expr: Node | None = None
    token_field: str | None = None

    @property
    def is_expression(self) -> bool:
        return self.expr is not None

    def evaluate(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """float64 scores from the fields' float64 columns (NaN where a field is invalid); NaN where
        the result is not finite."""
        if self.expr is None:
            out = np.asarray(columns[self.fields[0]], dtype=np.float64)
        else:
            rows = len(columns[self.fields[0]])
            out = _nan_where(evaluate(self.expr, columns, rows), *(columns[f] for f in self.fields))
        return np.where(np.isfinite(out), out, np.nan)


def scoring(field: str | None = None, expression: str | None = None, token_field: str | None = None) -> Scoring:
    """The :class:`Scoring` of a config or manifest: ``expression`` when given, else ``field``."""
    if expression is not None:
        tree = parse(expression)
        fields = fields_of(tree)
        if not fields:
            raise ReorderError(f"config key 'score': the expression {expression!r} references no field; a score "
                               "must depend on the row (name at least one field)")
        return Scoring(expression, fields, tree, token_field)
    field = field or "score"
    return Scoring(field, (field,), None, token_field)


def for_config(cfg: Any) -> Scoring:
    """The scoring of a run's config (:class:`config.RunConfig`): its expression or field, and the token
    field of a token-budget selection."""
    return scoring(cfg.score_field, cfg.score, selection_token_field(cfg.select))


def of(spec: str | Scoring) -> Scoring:
    """A plain field name as a :class:`Scoring`; a :class:`Scoring` unchanged."""
    return spec if isinstance(spec, Scoring) else scoring(field=spec)


# ------------------------------------------------------------------ parsing


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, position)
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                at = pos + len(text[pos:]) - len(text[pos:].lstrip())
                self.fail(at, f"unexpected character {text[at]!r}")
            kind = m.lastgroup
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0
        self.depth = 0  # how deeply the operand being read nests

    def fail(self, pos: int, message: str):
        before, after = self.text[:pos], self.text[pos:]
        before, after = ("…" + before[-40:] if len(before) > 40 else before), (
            after[:40] + "…" if len(after) > 40 else after)
        shown = f"{before} >>> {after}".strip()
        raise ReorderError(f"config key 'score': position {pos + 1}: {message} (here: {shown})")

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.text))

    def take(self, op: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if op is not None and (tok[0] != "op" or tok[1] != op):
            found = "the end" if tok[0] == "end" else repr(tok[1])
            self.fail(tok[2], f"expected '{op}', found {found}")
        self.i += 1
        return tok

    def is_op(self, *ops: str) -> bool:
        kind, text, _ = self.peek()
        return kind == "op" and text in ops

    def parse(self) -> Node:
        if not self.tokens:
            self.fail(0, "empty expression")
        node = self.expr()
        kind, text, pos = self.peek()
        if kind != "end":
            self.fail(pos, f"unexpected {text!r} (an operator or the end was expected)")
        return node

    def expr(self) -> Node:
        left = self.sum()
        if self.is_op(*COMPARISONS):
            op = self.take()[1]
            left = ("op", op, left, self.sum())
            if self.is_op(*COMPARISONS):
                self.fail(self.peek()[2], "comparisons do not chain; use parentheses")
        return left

    def sum(self) -> Node:
        left = self.product()
        while self.is_op("+", "-"):
            op = self.take()[1]
            left = ("op", op, left, self.product())
        return left

    def product(self) -> Node:
        left = self.unary()
        while self.is_op("*", "/"):
            op = self.take()[1]
            left = ("op", op, left, self.unary())
        return left

    def unary(self) -> Node:
        """Every nesting passes here (a parenthesis, a call's argument, a sign, a power's exponent)."""
        if self.depth >= MAX_DEPTH:
            self.fail(self.peek()[2], f"nested more than {MAX_DEPTH} levels deep (parentheses, function calls, "
                                      "signs and powers each add one); that is the limit: simplify the expression")
        self.depth += 1
        try:
            if self.is_op("-"):
                self.take()
                return ("neg", self.unary())
            if self.is_op("+"):
                self.take()
                return self.unary()
            return self.power()
        finally:
            self.depth -= 1

    def power(self) -> Node:
        base = self.atom()
        if self.is_op("**"):
            self.take()
            return ("op", "**", base, self.unary())
        return base

    def atom(self) -> Node:
        kind, text, pos = self.peek()
        if kind == "num":
            self.take()
            return ("num", float(text))
        if kind == "op" and text == "(":
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if kind == "name" and self.i + 1 < len(self.tokens) and self.tokens[self.i + 1][:2] == ("op", "("):
            return self.call()
        if kind in ("name", "quoted"):
            return ("field", self.field())
        found = "the end" if kind == "end" else repr(text)
        self.fail(pos, f"expected a number, a field, a function or '(', found {found}")

    def field(self) -> str:
        parts = [self.part()]
        while self.is_op("."):
            self.take()
            parts.append(self.part())
        return ".".join(parts)

    def part(self) -> str:
        kind, text, pos = self.take()
        if kind == "name":
            return text
        if kind == "quoted":
            name = text[1:-1]
            if not name or any(c in name for c in ".'\"[]"):
                self.fail(pos, f"a quoted field name must be non-empty, without . ' \" [ or ]: {text}")
            return name
        self.fail(pos, f"expected a field name, found {'the end' if kind == 'end' else repr(text)}")

    def call(self) -> Node:
        _, name, pos = self.take()
        if name not in FUNCTIONS:
            self.fail(pos, f"unknown function '{name}' (known: {', '.join(sorted(FUNCTIONS))})")
        self.take("(")
        args = [self.expr()]
        while self.is_op(","):
            self.take()
            args.append(self.expr())
        self.take(")")
        lo, hi = FUNCTIONS[name]
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}"
            self.fail(pos, f"{name}() takes {want} argument(s), got {len(args)}")
        return ("call", name, tuple(args))


def parse(text: str) -> Node:
    if not isinstance(text, str):
        raise ReorderError(f"config key 'score': expected an expression (a string), got {text!r}")
    if len(text) > MAX_LENGTH:
        raise ReorderError(f"config key 'score': the expression is {len(text):,} characters long; the limit is "
                           f"{MAX_LENGTH:,} (score long formulas in a field of their own)")
    return _Parser(text).parse()


def fields_of(node: Node) -> tuple[str, ...]:
    """The fields ``node`` reads, in order of first use."""
    return tuple(dict.fromkeys(n[1] for n in _walk(node) if n[0] == "field"))


# ------------------------------------------------------------------ evaluating


def _children(node: Node) -> tuple:
    kind = node[0]
    return (node[1],) if kind == "neg" else (node[2], node[3]) if kind == "op" else node[2] if kind == "call" else ()


def _walk(node: Node) -> Iterator[Node]:
    """The nodes of ``node``, parents first, children left to right: iteratively, however deep the tree."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(_children(n)))


def _polars(fn: Callable[..., pl.Expr], *arrays: np.ndarray) -> np.ndarray:
    """``fn`` of Polars columns ``x0, x1, ...`` (names of its own: a field's name is never a column
    selector here) over ``arrays``: Polars' own kernels for log, exp and pow."""
    frame = pl.DataFrame({f"x{i}": a for i, a in enumerate(arrays)})
    return frame.select(fn(*(pl.col(f"x{i}") for i in range(len(arrays)))).alias("s")).to_series().to_numpy()


def _nan_where(out: np.ndarray, *operands: np.ndarray) -> np.ndarray:
    out = np.array(out, dtype=np.float64)
    bad = np.zeros(len(out), dtype=bool)
    for x in operands:
        bad |= np.isnan(x)
    out[bad] = np.nan
    return out


def _pick(a: np.ndarray, b: np.ndarray, smaller: bool) -> np.ndarray:
    return _nan_where(np.where(a <= b if smaller else a >= b, a, b), a, b)


_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
_COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal,
            "!=": np.not_equal}


def _apply(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """One node of the tree on its operands' float64 columns."""
    kind = node[0]
    if kind == "neg":
        return -args[0]
    if kind == "op":
        op, (a, b) = node[1], args
        if op in _COMPARE:
            return _nan_where(_COMPARE[op](a, b).astype(np.float64), a, b)
        if op == "**":
            return _polars(lambda x, y: x.pow(y), a, b)
        with np.errstate(all="ignore"):
            return _ARITHMETIC[op](a, b)
    name = node[1]
    if name in ("min", "max"):
        out = args[0]
        for arg in args[1:]:  # a loop over the arguments, never over rows
            out = _pick(out, arg, name == "min")
        return out
    if name == "abs":
        return np.abs(args[0])
    if name in ("log", "exp"):
        return _polars(lambda x: x.log() if name == "log" else x.exp(), args[0])
    if name == "clip":
        return _pick(_pick(args[0], args[1], False), args[2], True)
    cond, a, b = args  # where
    return _nan_where(np.where(cond != 0, a, b), cond)


def evaluate(node: Node, columns: dict[str, np.ndarray], rows: int) -> np.ndarray:
    """``node`` over the fields' float64 columns (looked up by their literal dotted path), node by node
    without recursion: every node is computed once, in time linear in the tree's size."""
    stack: list[tuple[Node, bool]] = [(node, False)]
    values: list[np.ndarray] = []
    while stack:  # a loop over the tree's nodes, never over rows
        n, ready = stack.pop()
        if n[0] == "num":
            values.append(np.full(rows, n[1], dtype=np.float64))
        elif n[0] == "field":
            values.append(np.asarray(columns[n[1]], dtype=np.float64))
        elif not ready:
            stack.append((n, True))
            stack.extend((c, False) for c in reversed(_children(n)))
        else:
            k = len(_children(n))
            args = values[-k:]
            del values[-k:]
            values.append(np.asarray(_apply(n, args), dtype=np.float64))
    return values[0]
