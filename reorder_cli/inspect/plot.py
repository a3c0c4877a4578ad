"""Score-by-position pictures in the style of the paper's figures, ready for a slide.

A scatter of a uniform sample of rows (score against output position, coloured by score on
one colour scale shared by every panel, with a colour bar) and the binned mean drawn on top
with a halo; one panel per order, titled with the method's readable name and parameters
("SAW (S=3, L=2, r=0.075)"), under a subtitle naming the inputs and the row count. Point
sizes follow the number of points; position ticks have thousands separators and an end tick.
PNG, SVG or PDF by the file's suffix. Matplotlib is an optional extra, imported only here and
only when a picture is asked for; it draws without pyplot's global state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError

MAX_POINTS = 50_000
DPI = 100
MISSING = "plotting needs the optional extra: pip install 'reorder[plot]' (in a checkout: pip install '.[plot]')"


FORMATS = (".png", ".svg", ".pdf")
_PAPER = {"shuffle": "Random", "sorting": "Sorting (CL)", "folding": "Folding", "zigzag": "Zigzag",
          "segment": "Segment (SEG)", "str": "STR", "saw": "SAW", "input": "Input order"}


def title(method: str, params: dict[str, Any]) -> str:
    """A readable name of an order: "SAW (S=3, L=2, r=0.075)", "Folding (FO-3)", "Sorting (CL), JIT w=64"."""
    p = params
    if method in ("str", "saw"):
        name = f"{_PAPER[method]} (S={p['num_sections']}, L={p['folding_layer']}, r={p['folding_ratio']:g})"
    elif method == "folding":
        name = f"Folding (FO-{p['folding_layer']})"
    elif method == "zigzag":
        name = f"Zigzag (ZIG-{p['zigzag_layer']})"
    elif method == "segment":
        front, back = ("high" if p["front_is_high"] else "low"), ("high" if p["back_is_high"] else "low")
        name = f"Segment (SEG: front {p['x_pct']:g}% {front}, back {p['y_pct']:g}% {back})"
    elif method == "sorting" and p.get("use_gumbel"):
        name = f"Sorting (CL, Gumbel T={p['temperature']:g})"
    else:
        name = _PAPER.get(method, method)
    extras = []
    if p.get("ascending") is False:
        extras.append("descending")
    if p.get("window_size", 0) > 1:
        extras.append(f"JIT w={p['window_size']:,}")
    if method == "shuffle":
        extras.append(f"seed {p['seed']}")
    return ", ".join([name, *extras])


def require(path: Path | None = None) -> None:
    """Fail early, before any long work: a suffix we cannot write, or matplotlib not installed."""
    if path is not None and Path(path).suffix.lower() not in FORMATS:
        raise ReorderError(f"{path}: --plot writes .png, .svg or .pdf; give the file one of these suffixes")
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


def point_size(points: int) -> float:
    """Marker area (points²): large for a few hundred dots, small for 50,000."""
    return float(np.clip(12_000 / max(points, 1), 1.5, 24.0))


def binned_mean(scores: np.ndarray, rows_a_bin: int = 40, max_bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, mean score) over equal bins of at least ``rows_a_bin`` rows (at most ``max_bins``):
    smooth at small n, detailed at large n. NaN scores (invalid rows kept) are left out."""
    n = len(scores)
    bins = int(np.clip(n // rows_a_bin, 1, max_bins)) if n else 0
    if bins == 0:
        return np.empty(0), np.empty(0)
    edges = (np.arange(bins + 1, dtype=np.int64) * n) // bins
    values = np.asarray(scores, dtype=np.float64)
    valid = ~np.isnan(values)
    sums = np.add.reduceat(np.where(valid, values, 0.0), edges[:-1])
    counts = np.add.reduceat(valid.astype(np.int64), edges[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return (edges[:-1] + edges[1:] - 1) / 2, means


def _position_ticks(ax, n: int) -> None:
    """Ticks with thousands separators, and one at the end (n, the row count)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ticks = [t for t in MaxNLocator(nbins=8, integer=True).tick_values(0, n) if 0 <= t <= n]
    ticks = [t for t in ticks if n - t > 0.06 * n] + [n]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{int(round(x)):,}"))
    ax.set_xlim(0, n)


def write(path: Path, panels: list[tuple[str, Any]], subtitle: str = "", size: tuple[int, int] | None = None) -> Path:
    """One panel per (title, scores in output order) into ``path`` (.png, .svg or .pdf) of ``size`` pixels."""
    require(path)
    from matplotlib import patheffects
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    width, height = size or default_size(len(panels))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    samples = []
    for _, scores in panels:
        positions = sample_positions(len(scores))
        samples.append((positions, np.asarray(scores[positions], dtype=np.float64)))
    finite = np.concatenate([v[np.isfinite(v)] for _, v in samples] or [np.empty(0)])
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    n_max = max((len(scores) for _, scores in panels), default=1)
    halo = [patheffects.withStroke(linewidth=2.8, foreground="white", alpha=0.8)]
    for ax, (name, scores), (positions, values) in zip(axes, panels, samples, strict=True):
        ax.scatter(positions, values, c=values, cmap="viridis", norm=norm, s=point_size(len(positions)),
                   linewidths=0, alpha=0.75, rasterized=True, zorder=1)
        centres, means = binned_mean(scores)
        ax.plot(centres, means, color="black", linewidth=1.3, alpha=0.85, zorder=3, path_effects=halo,
                label="binned mean")
        ax.set_title(name, fontsize=11, loc="left", fontweight="bold")
        ax.set_ylabel("score")
        ax.grid(alpha=0.25, linewidth=0.5, zorder=0)
        ax.tick_params(labelsize=9)
    _position_ticks(axes[-1], max(1, n_max))
    axes[0].legend(loc="upper left", fontsize=8, frameon=True, framealpha=0.85)
    axes[-1].set_xlabel("position in training order")
    fig.colorbar(ScalarMappable(norm=norm, cmap="viridis"), ax=list(axes), label="score", shrink=0.9, aspect=30)
    fig.suptitle("Score by position in training order", fontsize=13, fontweight="bold")
    if subtitle:
        axes[0].set_title(subtitle, loc="right", fontsize=9, color="dimgray")
    path = Path(path)
    from matplotlib import rc_context

    try:
        with rc_context({"svg.hashsalt": "reorder"}):  # SVG ids from a fixed salt, not a random one
            fig.savefig(path, dpi=DPI, format=path.suffix.lower().lstrip("."), metadata=_metadata(path))
    except OSError as exc:
        raise ReorderError(f"{path}: cannot write the picture: {exc.strerror or exc}") from None
    return path


def selection_path(path: Path) -> Path:
    """Where ``preview --plot FILE`` draws a selection: FILE's name with ``-selection`` before the suffix."""
    path = Path(path)
    return path.with_name(f"{path.stem}-selection{path.suffix}")


def write_selection(path: Path, panels: list[tuple[str, np.ndarray, np.ndarray, float | None]],
                    size: tuple[int, int] | None = None) -> Path:
    """One panel per (title, kept scores, dropped scores, cut-off): the two score distributions as
    stacked histograms on shared bins, the cut-off as a vertical line."""
    require(path)
    from matplotlib.figure import Figure

    width, height = size or default_size(len(panels))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    both = np.concatenate([np.concatenate([k, d]) for _, k, d, _ in panels] or [np.empty(0)])
    lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 81)
    for ax, (name, kept, dropped, cutoff) in zip(axes, panels, strict=True):
        ax.hist([dropped, kept], bins=bins, stacked=True, color=["#b0b0b0", "#2a788e"],
                label=[f"dropped ({len(dropped):,})", f"kept ({len(kept):,})"])
        if cutoff is not None:
            ax.axvline(cutoff, color="#d1495b", linewidth=1.4, label=f"cut-off {cutoff:g}")
        ax.set_title(name, fontsize=11, loc="left", fontweight="bold")
        ax.set_ylabel("rows")
        ax.grid(alpha=0.25, linewidth=0.5)
        ax.legend(loc="upper left", fontsize=8, frameon=True, framealpha=0.85)
    axes[-1].set_xlabel("score")
    fig.suptitle("Selection: kept and dropped scores", fontsize=13, fontweight="bold")
    path = Path(path)
    try:
        fig.savefig(path, dpi=DPI, format=path.suffix.lower().lstrip("."), metadata=_metadata(path))
    except OSError as exc:
        raise ReorderError(f"{path}: cannot write the picture: {exc.strerror or exc}") from None
    return path


def _metadata(path: Path) -> dict[str, Any]:
    """No creation date in SVG/PDF files, so the same data gives the same bytes."""
    suffix = path.suffix.lower()
    return {"Date": None} if suffix == ".svg" else {"CreationDate": None} if suffix == ".pdf" else {}


def describe_inputs(paths: list[str], rows: int) -> str:
    """The subtitle: "data/fineweb: 8 files · 200,000 rows" (one file: its path), paths shortened to the
    current folder where that is shorter."""
    if not paths:
        return f"{rows:,} rows"
    short = [_short(p) for p in paths]
    if len(short) == 1:
        return f"{short[0]} · {rows:,} rows"
    try:
        folder = os.path.commonpath([os.path.dirname(p) or "." for p in short])
    except ValueError:  # absolute and relative paths mixed
        folder = ""
    where = f"{folder or '.'}: " if folder else ""
    return f"{where}{len(short)} files · {rows:,} rows"


def _short(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if len(rel) < len(path) else path
