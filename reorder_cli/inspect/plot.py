"""Score-by-position pictures in the style of the paper's figures.

A scatter of a uniform sample of rows (score against output position, coloured by
score) with the binned mean on top; one panel per order. Matplotlib is an optional
extra, imported only here and only when a picture is asked for; it draws with its Agg
renderer and never touches pyplot's global state.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError

MAX_POINTS = 50_000
DPI = 100
MISSING = "plotting needs the optional extra: pip install 'reorder[plot]'"


def title(method: str, params: dict[str, Any]) -> str:
    """A panel's title: the method and its parameters (the score field left out)."""
    return f"{method} ({', '.join(f'{k}={v}' for k, v in params.items() if k != 'score_field')})"


def require() -> None:
    """Fail early, before any long work, when matplotlib is not installed."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ReorderError(MISSING) from None


def parse_size(text: str) -> tuple[int, int]:
    """``1200x800`` -> (1200, 800) pixels."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ReorderError(f"--plot-size expects WIDTHxHEIGHT in pixels, e.g. 1200x800, got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (200 <= width <= 20000 and 150 <= height <= 20000):
        raise ReorderError(f"--plot-size {text}: width must be 200-20000 and height 150-20000 pixels")
    return width, height


def default_size(panels: int) -> tuple[int, int]:
    return 1200, max(400, 300 * panels)


def sample_positions(n: int, points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """At most ``points`` positions of 0..n-1, one drawn uniformly from each of that many
    equal strata: uniform over positions, deterministic, and free of aliasing with any
    periodic structure of the order."""
    m = min(n, points)
    if m == 0:
        return np.empty(0, dtype=np.int64)
    jitter = np.random.default_rng(seed).random(m)
    return np.minimum(((np.arange(m) + jitter) * (n / m)).astype(np.int64), n - 1)


def write_png(path: Path, panels: list[tuple[str, Any, dict[str, Any]]], size: tuple[int, int] | None = None) -> Path:
    """One panel per (title, scores in output order, profile) into a PNG of ``size`` pixels."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReorderError(MISSING) from None
    width, height = size or default_size(len(panels))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    for ax, (title, scores, profile) in zip(axes, panels, strict=True):
        positions = sample_positions(len(scores))
        values = np.asarray(scores[positions], dtype=np.float64)
        ax.scatter(positions, values, c=values, cmap="viridis", s=4, linewidths=0, alpha=0.8, rasterized=True)
        edges = np.asarray(profile["edges"], dtype=np.float64)
        means = np.array([np.nan if v is None else v for v in profile["mean"]], dtype=np.float64)
        ax.plot((edges[:-1] + edges[1:] - 1) / 2, means, color="black", linewidth=0.9, alpha=0.75,
                label="binned mean")
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel("score")
        ax.set_xlim(0, max(1, len(scores) - 1))
        ax.grid(alpha=0.25, linewidth=0.5)
    axes[0].legend(loc="upper left", fontsize=8, frameon=False)
    axes[-1].set_xlabel("position in training order")
    path = Path(path)
    try:
        fig.savefig(path, dpi=DPI, format="png")
    except OSError as exc:
        raise ReorderError(f"{path}: cannot write the picture: {exc.strerror or exc}") from None
    return path
