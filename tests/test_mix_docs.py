"""docs/_incoming/mixtures.md: every worked example in the page is what the code computes.

The page is out of the site (docs/_incoming/) until mixtures are wired into the config and ``reorder run``.

Each example is a fenced ``text`` block right after a ``<!-- example: NAME -->`` line. The test recomputes
each block here and compares; ``python -m tests.test_mix_docs`` rewrites the blocks in the page.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from reorder_cli.mix import interleave as il
from reorder_cli.mix import quota as qu
from reorder_cli.mix import schedule as sch
from reorder_cli.mix import shares as sh

from .test_mix_interleave import cluster

PAGE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "mixtures.md"
BLOCK = re.compile(r"(<!-- example: (\w+) -->\n```text\n)(.*?)(```)", re.S)


def _row(*cells) -> str:
    return "  ".join(f"{c:>8}" if not isinstance(c, str) else f"{c:<8}" for c in cells).rstrip()


def schedule_example() -> str:
    s = sch.build(["web", "code"], [[[0.0, 0.8], [1.0, 0.4]], 0.2])
    u = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    w, sh_, cum = s.weights(u), s.shares(u), s.cumulative(u)
    lines = [_row("u", "w_web", "w_code", "s_web", "s_code", "S_web", "S_code")]
    lines += [_row(f"{u[i]:.2f}", f"{w[i, 0]:.2f}", f"{w[i, 1]:.2f}", f"{sh_[i, 0]:.4f}", f"{sh_[i, 1]:.4f}",
                   f"{cum[i, 0]:.4f}", f"{cum[i, 1]:.4f}") for i in range(len(u))]
    q = qu.largest_remainder(1_000_000, s.total)
    lines.append(f"budget 1,000,000 tokens -> quotas web {q[0]:,}, code {q[1]:,}")
    return "\n".join(lines)


def quota_example() -> str:
    s = sch.build(["web", "code"], [3, 1])
    a = qu.allot(s, [np.ones(20, np.int64), np.ones(2, np.int64)], budget=12, seed=0, max_epochs=[1, 2])
    lines = []
    for c in a.contributions:
        lines.append(f"{c.name}: quota {c.quota} rows, holds {c.available}, cut {c.cut}, epochs {c.epochs}")
        lines.append(f"  documents {c.index.tolist()}")
        lines.append(f"  epochs    {c.epoch.tolist()}")
    return "\n".join(lines)


def interleave_example() -> str:
    s = sch.build(["web", "code"], [2, 1])
    streams = [np.array([4, 4, 4, 4, 4, 4]), np.array([2, 10])]
    o = il.interleave(s, streams)
    lines = [_row("position", "source", "k", "tokens", "due")]
    lines += [_row(str(p), s.names[o.source[p]], int(o.index[p]), int(o.tokens[p]), f"{o.due[p]:.4f}")
              for p in range(len(o.source))]
    return "\n".join(lines)


def redistribute_example() -> str:
    s = sch.build(["a", "b"], [1, 1])
    a = qu.allot(s, [np.ones(20, np.int64), np.ones(500, np.int64)], budget=100, redistribute=True)
    name, at = a.stopped[0]
    sh_ = a.schedule.shares([0.2, 0.6])
    return "\n".join([f"'{name}' runs out at u={at:.4f}",
                      "quotas: " + ", ".join(f"{c.name} {c.quota}" for c in a.contributions),
                      f"shares at u=0.2: a {sh_[0, 0]:.2f}, b {sh_[0, 1]:.2f}; at u=0.6: a {sh_[1, 0]:.2f}, "
                      f"b {sh_[1, 1]:.2f}"])


def _windows(s: sch.Schedule, streams, first: int = 5) -> tuple[sh.Shares, list[str]]:
    o = il.interleave(s, streams)
    m = sh.measure(s, o.source, o.tokens)
    lines = [_row("window", "source", "realised", "sched.", "target.", "bound", "issue")]
    for w in range(first):
        for j, name in enumerate(s.names):
            lines.append(_row(str(w), name, int(m.realised[w, j]), f"{m.scheduled[w, j]:.1f}",
                              f"{m.targeted[w, j]:.1f}", f"{m.bound[j]:.0f}", f"{sh.issue_bound(m)[w, 0]:.0f}"))
    return m, lines


def shares_example() -> str:
    s = sch.build(["web", "code"], [[[0.0, 0.8], [1.0, 0.4]], 0.2])
    rng = np.random.default_rng(7)
    a = qu.allot(s, [rng.integers(1, 400, 3000), rng.integers(1, 2000, 400)], budget=400_000, seed=0)
    m, lines = _windows(a.schedule, [c.tokens for c in a.contributions], first=2)
    gap = np.abs(m.realised - m.targeted).max(axis=0)
    lines.append("worst |realised - targeted| over the 100 windows: "
                 + ", ".join(f"{n} {g:.1f}" for n, g in zip(s.names, gap, strict=True)))
    lines.append(f"windows beyond the bound: {len(sh.beyond_bound(m))}; beyond the issue's bound (scheduled): "
                 f"{len(sh.beyond_issue_bound(m))}")
    return "\n".join(lines)


def cluster_example() -> str:
    s, streams = cluster()
    o = il.interleave(s, streams)
    m = sh.measure(s, o.source, o.tokens)
    gap = np.abs(m.realised - m.targeted)
    w = int(np.argmax(gap[:, 0]))
    return "\n".join([
        f"output {int(m.edges[-1]):,} tokens, windows of {int(m.width[0]):,}",
        f"small sources' first documents at positions {np.flatnonzero(o.source > 0)[:5].tolist()}",
        f"worst window {w}: big realised {int(m.realised[w, 0]):,}, targeted {m.targeted[w, 0]:,.1f}",
        f"issue's bound {sh.issue_bound(m)[w, 0]:,.0f}; provable bound for big {m.bound[0]:,.0f}",
        f"(window, source) pairs beyond the issue's bound: {len(sh.beyond_issue_bound(m, 'targeted'))}; "
        f"beyond the provable bound: {len(sh.beyond_bound(m))}"])


EXAMPLES = {"schedule": schedule_example, "quota": quota_example, "interleave": interleave_example,
            "redistribute": redistribute_example, "shares": shares_example, "cluster": cluster_example}


def test_the_pages_examples_are_what_the_code_computes():
    found = {m.group(2): m.group(3) for m in BLOCK.finditer(PAGE.read_text(encoding="utf-8"))}
    assert set(found) == set(EXAMPLES)
    for name, make in EXAMPLES.items():
        assert found[name] == make() + "\n", name


def test_the_check_sees_a_changed_number():
    """Negative control: a block edited by hand no longer matches."""
    text = PAGE.read_text(encoding="utf-8")
    block = next(m for m in BLOCK.finditer(text) if m.group(2) == "redistribute")
    assert block.group(3).replace("0.4000", "0.5000") != redistribute_example() + "\n"


if __name__ == "__main__":
    text = PAGE.read_text(encoding="utf-8")
    text = BLOCK.sub(lambda m: m.group(1) + EXAMPLES[m.group(2)]() + "\n" + m.group(4), text)
    PAGE.write_text(text, encoding="utf-8")
    sys.exit(0)
