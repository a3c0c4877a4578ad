"""A mixture's shares per window of its output tokens: realised, scheduled, and the bound between them.

The output (T tokens) is cut into ``windows`` windows (100: one per 1%) at token positions
``T * w // windows``. A source's **realised** tokens in a window are counted token by token: a document
that straddles an edge counts its tokens on each side. Two references:

- **scheduled**: the schedule as given, ``T * (S_j(p1 / T) - S_j(p0 / T))`` for the window [p0, p1);
- **targeted**: what the merge aims at once the quotas are fixed, ``F_j(d)`` with ``F_j(u) =
  T_j * S_j(u) / S_j(1)`` and d the scheduled time where ``Phi(d) = sum_i F_i(d)`` reaches the edge.
  It differs from *scheduled* only because a source gives whole documents (at most one document more
  than its quota, and its quota is rounded to a token): a source's weight is in effect scaled by
  ``T_j / (T * S_j(1))``, which is 1 up to that rounding.

**The bound** (what :func:`reorder_cli.mix.interleave.interleave` provably holds, against *targeted*):
in every window and for every source j,

    |realised_j - targeted_j| <= max(tau_j, (1 - phi_j) * tau_j + phi_j * sum_{i != j} tau_i)

where ``tau_i`` is the largest document of source i's stream and ``phi_j`` the largest targeted share of
j over the run. Why: where a document begins, each source i is within ``tau_i / 2`` of ``F_i`` at that
document's due time (documents are due at their middles), so the output position is off the schedule by
the sum of those offsets, of which source j's targeted tokens take a share <= phi_j; within a document
the difference moves monotonically, so the extremes are where documents begin. With two sources the
bound is one document (the larger source's largest); with more it can reach one document of each other
source, when documents of several sources fall due at the same time and come out back to back.

The issue's bound, ``max(0.5 pp of the window, one document)``, is :func:`issue_bound`; it is measured,
not guaranteed (the docs say when it fails and what would tighten it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reorder_cli.mix.schedule import Schedule

_BISECTIONS = 64


@dataclass(frozen=True)
class Shares:
    """Per window w (rows) and source j (columns), in tokens."""

    names: tuple[str, ...]
    edges: np.ndarray  # (W + 1,) int64 token positions
    realised: np.ndarray  # (W, n) int64
    scheduled: np.ndarray  # (W, n) float64: the schedule as given
    targeted: np.ndarray  # (W, n) float64: the schedule scaled to what each source gives
    bound: np.ndarray  # (n,) float64: the provable bound on |realised - targeted|, tokens
    largest: int  # the largest document of the output, tokens

    @property
    def width(self) -> np.ndarray:
        return np.diff(self.edges)

    def share(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens per window -> fraction of the window (0 for an empty window)."""
        w = self.width.astype(np.float64)[:, None]
        return np.divide(tokens, w, out=np.zeros(tokens.shape), where=w > 0)


def realised(source: np.ndarray, tokens: np.ndarray, n: int, edges: np.ndarray) -> np.ndarray:
    """(len(edges) - 1, n) tokens of each source between consecutive edges of the output (token-accurate)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    ends = np.cumsum(tokens)
    starts = ends - tokens
    done = np.searchsorted(ends, edges, side="right")  # documents ended at or before each edge
    inside = np.minimum(done, len(tokens) - 1)
    partial = np.where(done < len(tokens), edges - starts[inside], 0)
    at = np.zeros((len(edges), n), np.int64)
    for j in range(n):  # a pass a source (n is small), not a row loop
        cum = np.concatenate([[0], np.cumsum(np.where(source == j, tokens, 0))])
        at[:, j] = cum[done] + np.where((done < len(tokens)) & (source[inside] == j), partial, 0)
    return np.diff(at, axis=0)


def _scale(schedule: Schedule, totals: np.ndarray) -> np.ndarray:
    """f_j = T_j / S_j(1) (0 for a source that gives nothing)."""
    s1 = schedule.total
    return np.divide(totals, s1, out=np.zeros(len(totals)), where=(totals > 0) & (s1 > 0))


def targeted_at(schedule: Schedule, totals: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(len(positions), n): ``F_j(d)`` where d is the least scheduled time with ``Phi(d) >= position``."""
    f = _scale(schedule, np.asarray(totals, dtype=np.float64))
    pos = np.asarray(positions, dtype=np.float64)
    lo, hi = np.zeros(len(pos)), np.ones(len(pos))
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        up = schedule.cumulative(mid) @ f >= pos
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    d = np.where(pos <= 0, 0.0, hi)
    return schedule.cumulative(d) * f


def provable_bound(schedule: Schedule, streams: Sequence[np.ndarray]) -> np.ndarray:
    """The bound on |realised - targeted| a window, per source (see the module's docstring)."""
    tau = np.array([float(np.max(t)) if len(t) else 0.0 for t in streams])
    totals = np.array([float(np.sum(t)) for t in streams])
    f = _scale(schedule, totals)
    phi = 0.0 * tau
    for ends in (schedule.left, schedule.right):  # the targeted share is monotone on a piece
        w = ends * f
        s = w.sum(axis=1, keepdims=True)
        phi = np.maximum(phi, np.divide(w, s, out=np.zeros(w.shape), where=s > 0).max(axis=0))
    others = tau.sum() - tau
    return np.maximum(tau, (1.0 - phi) * tau + phi * others)


def measure(schedule: Schedule, source: np.ndarray, tokens: np.ndarray, windows: int = 100) -> Shares:
    """The shares of an output order (``source`` and ``tokens`` of each output document, in order)."""
    source = np.asarray(source, dtype=np.int64)
    tokens = np.asarray(tokens, dtype=np.int64)
    n = schedule.n
    total = int(tokens.sum())
    edges = (total * np.arange(windows + 1, dtype=np.int64)) // windows
    streams = [tokens[source == j] for j in range(n)]
    totals = np.array([int(s.sum()) for s in streams], np.int64)
    nominal = schedule.cumulative(edges / max(total, 1)) / schedule.total.sum() * total
    return Shares(schedule.names, edges, realised(source, tokens, n, edges), np.diff(nominal, axis=0),
                  np.diff(targeted_at(schedule, totals, edges), axis=0), provable_bound(schedule, streams),
                  int(tokens.max()) if tokens.size else 0)


def tolerance(shares: Shares) -> float:
    """The float64 slack allowed in the checks (the schedule is evaluated and inverted in float64)."""
    return 1e-6 + 1e-9 * float(shares.edges[-1])


def beyond_bound(shares: Shares) -> np.ndarray:
    """(window, source) pairs where the realised tokens are further from *targeted* than the bound."""
    gap = np.abs(shares.realised - shares.targeted)
    return np.argwhere(gap > shares.bound[None, :] + tolerance(shares))


def issue_bound(shares: Shares) -> np.ndarray:
    """(W, 1) the issue's allowance: max(0.5 percentage points of the window, the largest document)."""
    return np.maximum(0.005 * shares.width.astype(np.float64), float(shares.largest))[:, None]


def beyond_issue_bound(shares: Shares, reference: str = "scheduled") -> np.ndarray:
    """(window, source) pairs where |realised - reference| exceeds :func:`issue_bound`."""
    ref = shares.scheduled if reference == "scheduled" else shares.targeted
    return np.argwhere(np.abs(shares.realised - ref) > issue_bound(shares) + tolerance(shares))
