"""A mixture's weights over training: each source's weight, its normalised share, and the integral of that share.

A source's ``weight`` is a constant (``0.3``) or piecewise-linear points ``[[u, w], ...]`` over the fraction
``u`` in [0, 1] of the training tokens. Points are strictly increasing in ``u``; before the first point and
after the last the weight is held flat at the end values (so ``[[0.5, 1.0]]`` is the constant 1.0, and
``[[0.2, 0.0], [0.8, 1.0]]`` is 0 until u=0.2, a ramp to 1 at u=0.8, then 1).

All sources' breakpoints together cut [0, 1] into pieces on which every weight is linear. The share of
source j is ``s_j(u) = w_j(u) / sum_i w_i(u)`` and its cumulative share ``S_j(u)`` is the integral of
``s_j`` from 0 to u; ``sum_j S_j(u) = u``, and a budget of B tokens gives source j ``B * S_j(u)`` tokens by
u. On a piece, ``s_j`` is a ratio of two linear functions, so ``S_j`` is exact in closed form (a quadratic
when the total weight is constant on the piece, with a logarithm otherwise), evaluated in float64 to
about 1e-13 relative (the ``log1p`` form below; a series where the total weight barely changes). Its
inverse (:meth:`Schedule.invert`) is a bisection on the piece, to within 1.4e-17 in u.

A piece may also start at a value different from where the previous one ended (a jump): the schedule
that :func:`reorder_cli.mix.quota.allot` builds when a source runs out and its weight goes to the others
(``redistribute``) sets that source's weight to 0 from the point where it ran out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError

#: Bisection steps of :meth:`Schedule.invert`: u to within a piece's width (<= 1) / 2**56, about 1.4e-17,
#: below float64's spacing for u >= 1/8 (B * 1.4e-17 tokens: nothing for any real budget).
_BISECTIONS = 56
#: |z| below which ``(log1p(z) - z) / z**2`` is taken from its series (the direct form loses digits).
_SERIES = 1e-2


def _key(i: int, field: str = "weight") -> str:
    return f"sources[{i}].{field}"


def _number(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ReorderError(f"config key '{key}': expected a finite number, got {v!r}")
    return float(v)


def parse_weight(value: Any, key: str) -> tuple[np.ndarray, np.ndarray]:
    """A weight as config gives it -> (u, w) points: strictly increasing u in [0, 1], w >= 0.

    A constant c is the points ``[(0, c), (1, c)]``."""
    if not isinstance(value, list | tuple):
        w = _number(value, key)
        if w < 0:
            raise ReorderError(f"config key '{key}': a weight must be >= 0, got {value!r}")
        return np.array([0.0, 1.0]), np.array([w, w])
    if not value:
        raise ReorderError(f"config key '{key}': expected a number or points [[u, w], ...], got an empty list")
    us, ws = [], []
    for n, point in enumerate(value):
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise ReorderError(f"config key '{key}[{n}]': expected a point [u, w], got {point!r}")
        u, w = _number(point[0], f"{key}[{n}]"), _number(point[1], f"{key}[{n}]")
        if not 0.0 <= u <= 1.0:
            raise ReorderError(f"config key '{key}[{n}]': u must be in [0, 1] (a fraction of the training tokens), "
                               f"got {point[0]!r}")
        if w < 0:
            raise ReorderError(f"config key '{key}[{n}]': a weight must be >= 0, got {point[1]!r}")
        if us and u <= us[-1]:
            raise ReorderError(f"config key '{key}[{n}]': u must increase strictly from point to point, "
                               f"got {point[0]!r} after {us[-1]!r}")
        us.append(u)
        ws.append(w)
    return np.array(us), np.array(ws)


def _phi(z: np.ndarray) -> np.ndarray:
    """``(log1p(z) - z) / z**2`` for |z| < 0.01 (-1/2 at 0), from its series (truncated below 1e-18)."""
    series = np.zeros_like(z)
    for k in range(10, 1, -1):  # -1/2 + z/3 - z^2/4 + ... - z^8/10, Horner
        series = series * z + (-1.0) ** (k + 1) / k
    return series


@dataclass(frozen=True)
class Schedule:
    """Every source's weight over u in [0, 1], piece by piece (weights linear on each piece).

    ``grid`` holds the K+1 breakpoints (0 first, 1 last); ``left[k, j]`` and ``right[k, j]`` are source j's
    weight at the two ends of piece k (``grid[k]``, ``grid[k+1]``). ``cum[k, j]`` is ``S_j(grid[k])``."""

    names: tuple[str, ...]
    grid: np.ndarray
    left: np.ndarray
    right: np.ndarray
    cum: np.ndarray

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def total(self) -> np.ndarray:
        """``S_j(1)``: each source's share of the whole run (they sum to 1 up to rounding)."""
        return self.cum[-1]

    # ---------------------------------------------------------------- evaluation

    def _piece(self, u: np.ndarray) -> np.ndarray:
        """The piece holding each u (a breakpoint belongs to the piece on its right; 1 to the last)."""
        return np.clip(np.searchsorted(self.grid, u, side="right") - 1, 0, len(self.grid) - 2)

    def weights(self, u: Any) -> np.ndarray:
        """(len(u), n) weights at u (right-continuous at a jump)."""
        u = np.clip(np.atleast_1d(np.asarray(u, dtype=np.float64)), 0.0, 1.0)
        k = self._piece(u)
        h = (self.grid[k + 1] - self.grid[k])[:, None]
        x = (u - self.grid[k])[:, None]
        return self.left[k] + (self.right[k] - self.left[k]) * (x / h)

    def shares(self, u: Any) -> np.ndarray:
        """(len(u), n) normalised shares ``s_j(u)``; each row sums to 1."""
        w = self.weights(u)
        return w / w.sum(axis=1, keepdims=True)

    def _integral(self, k: np.ndarray, x: np.ndarray, j: Any) -> np.ndarray:
        """``S_j(grid[k] + x) - S_j(grid[k])`` for x in [0, width of piece k] (exact form, float64)."""
        return self._pieces(k, j)(x)

    def _pieces(self, k: np.ndarray, j: Any):
        """The integral on pieces ``k`` for source j (an int, or a slice for every source) as a function of
        x, with everything that does not depend on x computed once (:meth:`invert` calls it 56 times).

        With ``w_j = a_j + b_j x`` and the total ``A + B x`` on the piece (A > 0), the integral of the share
        is ``(a_j/A) x + (a_j/A - b_j/B) ((A/B) log((A + B x) / A) - x)``; where ``|z| = |B x / A| < 0.01`` it
        is computed as ``(a_j/A) x + (a_j B - b_j A) (x/A)**2 phi(z)`` (no cancellation). The piece's weights
        are first scaled by their largest (shares do not change), and the log is a difference of logs of
        the totals, so weights down to the smallest floats neither overflow nor turn into NaN."""
        h = self.grid[k + 1] - self.grid[k]
        scale = np.maximum(self.left[k].max(axis=1), self.right[k].max(axis=1))[:, None]
        left, right = self.left[k] / scale, self.right[k] / scale
        big_a, end = left.sum(axis=1), right.sum(axis=1)
        big_b = (end - big_a) / h
        a, b = left[:, j], ((right - left) / h[:, None])[:, j]
        if a.ndim == 2:  # every source
            big_a, end, big_b, h = big_a[:, None], end[:, None], big_b[:, None], h[:, None]
        flat = big_b == 0.0
        safe_b = np.where(flat, 1.0, big_b)
        a_share, near_coef = a / big_a, a * big_b - b * big_a  # not / A**2: A may be tiny (A**2 -> 0)
        far_coef, a_over_b, log_a = a / big_a - b / safe_b, big_a / safe_b, np.log(big_a)

        def integral(x: np.ndarray) -> np.ndarray:
            if a.ndim == 2:
                x = x[:, None]
            small = np.abs(big_b * x) < _SERIES * big_a  # |z| < 0.01 (z not formed: it may overflow)
            if small.all():  # the series only (every piece where the total weight is flat): the same values
                return a_share * x + near_coef * (x / big_a) ** 2 * _phi(big_b * x / big_a)
            if not small.any():  # the log only
                t = x / h
                return a_share * x + far_coef * (a_over_b * (np.log(big_a * (1.0 - t) + end * t) - log_a) - x)
            x_near = np.where(small, x, 0.0)  # np.where computes both forms: keep the unused one finite
            near = near_coef * (x_near / big_a) ** 2 * _phi(big_b * x_near / big_a)
            t = x / h
            total = np.where(small, 1.0, big_a * (1.0 - t) + end * t)  # A + B x, exactly the end's total at h
            far = far_coef * (a_over_b * np.where(small, 0.0, np.log(total) - log_a) - np.where(small, 0.0, x))
            return a_share * x + np.where(small, near, far)

        return integral

    def cumulative(self, u: Any) -> np.ndarray:
        """(len(u), n) cumulative shares ``S_j(u)``; each row sums to u (up to rounding)."""
        u = np.clip(np.atleast_1d(np.asarray(u, dtype=np.float64)), 0.0, 1.0)
        k = self._piece(u)
        return self.cum[k] + self._integral(k, u - self.grid[k], slice(None))

    def invert(self, j: int, target: Any) -> np.ndarray:
        """The least u with ``S_j(u) >= target``, for each target (clipped to [0, S_j(1)]); vectorised.

        The piece comes from a binary search of ``S_j`` at the breakpoints, then 56 bisection steps on
        the piece's exact form, so u is within 2**-56 of the piece's width (about 1.4e-17) of the least u."""
        target = np.clip(np.atleast_1d(np.asarray(target, dtype=np.float64)), 0.0, self.cum[-1, j])
        col = self.cum[:, j]
        k = np.clip(np.searchsorted(col, target, side="left") - 1, 0, len(self.grid) - 2)
        rest = target - col[k]
        lo, hi = np.zeros_like(target), self.grid[k + 1] - self.grid[k]
        integral = self._pieces(k, j)
        for _ in range(_BISECTIONS):
            mid = 0.5 * (lo + hi)
            up = integral(mid) >= rest
            hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
        return np.where(target <= 0.0, 0.0, np.minimum(self.grid[k] + hi, 1.0))

    # ---------------------------------------------------------------- a source runs out

    def stopped(self, j: int, at: float) -> Schedule:
        """This schedule with source j's weight 0 from u=``at`` on (the others' shares grow to fill it)."""
        grid, left, right = self.grid, self.left, self.right
        if not np.any(grid == at) and 0.0 < at < 1.0:
            k = int(self._piece(np.array([at]))[0])
            mid = self.weights(np.array([at]))[0]
            grid = np.insert(grid, k + 1, at)
            left = np.insert(left, k + 1, mid, axis=0)
            right = np.insert(right, k, mid, axis=0)
        left, right = left.copy(), right.copy()
        after = grid[:-1] >= at
        left[after, j] = 0.0
        right[after, j] = 0.0
        return _assemble(self.names, grid, left, right, key="budget")


def _assemble(names: tuple[str, ...], grid: np.ndarray, left: np.ndarray, right: np.ndarray, key: str) -> Schedule:
    for ends in (left, right):
        zero = np.flatnonzero(ends.sum(axis=1) <= 0.0)
        if zero.size:
            k = int(zero[0])
            u = grid[k] if ends is left else grid[k + 1]
            raise ReorderError(f"config key '{key}': every source's weight is 0 at u={u:g}; give some source "
                               "a weight there")
    sched = Schedule(names, grid, left, right, np.zeros((len(grid), len(names))))
    k = np.arange(len(grid) - 1)
    steps = sched._integral(k, grid[1:] - grid[:-1], slice(None))
    cum = np.vstack([np.zeros((1, len(names))), np.cumsum(steps, axis=0)])
    return Schedule(names, grid, left, right, cum)


def build(names: Sequence[str], weights: Sequence[Any]) -> Schedule:
    """The schedule of sources ``names`` with ``weights`` (as :func:`parse_weight` reads them).

    Refuses, each with a one-line error naming the key: a name that is empty or used twice, a negative
    weight, points not strictly increasing or outside [0, 1], and a u where every weight is 0 (checked at
    every breakpoint of every source: the total weight is linear between them, so it is smallest there)."""
    if not names:
        raise ReorderError("config key 'sources': expected at least one source")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ReorderError(f"config key '{_key(i, 'name')}': expected a non-empty string, got {name!r}")
        if name in seen:
            raise ReorderError(f"config key '{_key(i, 'name')}': the name {name!r} is used twice "
                               f"(also sources[{seen[name]}])")
        seen[name] = i
    points = [parse_weight(w, _key(i)) for i, w in enumerate(weights)]
    grid = np.unique(np.concatenate([np.array([0.0, 1.0])] + [u for u, _ in points]))
    at = np.stack([np.interp(grid, u, w) for u, w in points], axis=1)  # np.interp holds the ends flat
    zero = np.flatnonzero(at.sum(axis=1) <= 0.0)
    if zero.size:
        raise ReorderError(f"config key 'sources': every source's weight is 0 at u={grid[zero[0]]:g}; "
                           "give some source a weight there")
    return _assemble(tuple(names), grid, at[:-1], at[1:], key="sources")
