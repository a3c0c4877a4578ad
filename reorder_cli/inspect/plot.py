"""Score-by-position pictures in the style of the paper's figures, ready for a paper or a slide.

A scatter of a uniform sample of rows (score against output position, in one colour: the y axis
gives the score, so there is no colour bar) and the binned mean drawn on top with a halo; one panel
per order, titled with the method's readable name and parameters ("SAW (S=3, L=2, r=0.075)") and,
after a selection, the rows it kept of how many. STR and SAW panels mark their section splits
(dashed lines) and transition regions (shaded), computed by the method's own code. The y axis
names the score field or expression; the subtitle gives the number of input files and rows, never
a path (``--title`` sets the heading). Point sizes follow the number of points; position ticks have
thousands separators and an end tick. The selection picture's bins have the cut-off on an edge.
PNG, SVG or PDF by the file's suffix. Matplotlib is an optional extra, imported only here and
only when a picture is asked for; it draws without pyplot's global state.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.methods import orderings

MAX_POINTS = 50_000
DPI = 100
MISSING = "plotting needs the optional extra: pip install 'reorder[plot]' (in a checkout: pip install '.[plot]')"


FORMATS = (".png", ".svg", ".pdf")
POINTS, REGION, SPLIT = "#2a788e", "#f28e2b", "#c0392b"  # sampled rows, transition regions, section splits
_PAPER = {"shuffle": "Random", "sorting": "Sorting (CL)", "folding": "Folding", "zigzag": "Zigzag",
          "segment": "Segment (SEG)", "str": "STR", "saw": "SAW", "input": "Input order",
          "mixture": "Mixture"}


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


def _token_means(panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """(slice centres, token-weighted mean score) over equal slices of the training tokens, as many as
    :func:`binned_mean` would take over the rows."""
    from reorder_cli.metrics.summary import token_profile

    shape = token_profile(panel.scores, panel.tokens, int(np.clip(len(panel.scores) // 40, 1, 200)))
    edges = np.asarray(shape["edges"], dtype=np.float64)
    return (edges[:-1] + edges[1:]) / 2, np.array([np.nan if m is None else m for m in shape["mean"]])


def thousands(*axes: Any) -> None:
    """Tick labels with thousands separators on these axes (``ax.xaxis``, ``ax.yaxis``)."""
    from matplotlib.ticker import FuncFormatter

    for axis in axes:
        axis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{int(round(x)):,}"))


def _position_ticks(ax, n: int) -> None:
    """Ticks with thousands separators, and one at the end (n, the row count)."""
    from matplotlib.ticker import MaxNLocator

    ticks = [t for t in MaxNLocator(nbins=8, integer=True).tick_values(0, n) if 0 <= t <= n]
    ticks = [t for t in ticks if n - t > 0.06 * n] + [n]
    ax.set_xticks(ticks)
    thousands(ax.xaxis)
    ax.set_xlim(0, n)


@dataclass
class Panel:
    """One order to draw: its method and parameters, the score at each output position (NaN: an invalid
    row kept), the score's field or expression, and the selection that was made (``Selected.to_json``)."""

    method: str
    params: dict[str, Any]
    scores: np.ndarray
    score: str | None = None  # the score expression, else the score field
    selection: dict[str, Any] | None = None
    tokens: np.ndarray | None = None  # each row's token count: the x axis is then training tokens (--by tokens)

    def x(self, positions: Any) -> np.ndarray:
        """Where output positions (a row's start; ``len(scores)``: the end) fall on the x axis: themselves,
        or the training tokens before them."""
        if self.tokens is None:
            return np.asarray(positions)
        return np.r_[0, np.cumsum(self.tokens)][np.asarray(positions, dtype=np.int64)]

    @property
    def extent(self) -> int:
        """The end of the x axis: rows, or training tokens."""
        return len(self.scores) if self.tokens is None else int(np.sum(self.tokens))

    @property
    def heading(self) -> str:
        """The method's readable name; after a selection, which rows it kept of how many."""
        name = title(self.method, self.params)
        return f"{name} · {kept_of(self.selection)}" if self.selection else name


def kept_of(selection: dict[str, Any]) -> str:
    """The rows a selection kept, of the valid rows it chose from: 'kept 40 of 100 rows (top-k)'."""
    return (f"kept {selection['rows_after']:,} of {selection['rows_before']:,} rows "
            f"({selection['params']['method']})")


def score_label(score: str | None) -> str:
    """The score axis: the score field or expression (``Panel.score``), wrapped when long."""
    return textwrap.fill(score or "score", 40)


def marks(method: str, params: dict[str, Any], scores: np.ndarray) -> tuple[list[int], list[tuple[int, int]]]:
    """(section splits, transition regions [start, end)) of an STR/SAW order, in output positions; none for
    another method. Computed by the method's own code on the valid rows, after the invalid rows placed first."""
    if method not in ("str", "saw"):
        return [], []
    valid = ~np.isnan(np.asarray(scores, dtype=np.float64))
    n = int(valid.sum())
    offset = int(np.argmax(valid)) if n else 0  # invalid_scores: first puts them before the order
    splits = orderings.split_points(n, params["num_sections"]) if n else []
    spans = orderings.transition_spans(n, params["num_sections"], params["folding_ratio"])
    return [offset + p for p in splits], [(offset + a, offset + b) for a, b in spans]


def figure(panels: list[Panel], subtitle: str = "", size: tuple[int, int] | None = None,
           heading: str | None = None) -> Any:
    """The score-by-position figure (a matplotlib ``Figure``), one panel an order."""
    from matplotlib import patheffects
    from matplotlib.figure import Figure

    width, height = size or default_size(len(panels))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    n_max = max((p.extent for p in panels), default=1)
    halo = [patheffects.withStroke(linewidth=2.8, foreground="white", alpha=0.8)]
    for ax, panel in zip(axes, panels, strict=True):
        positions = sample_positions(len(panel.scores))
        values = np.asarray(panel.scores[positions], dtype=np.float64)
        # one colour: the y axis gives the score, so a colour scale (and its bar) would encode nothing
        xs = positions if panel.tokens is None else (panel.x(positions) + panel.x(positions + 1)) / 2
        ax.scatter(xs, values, color=POINTS, s=point_size(len(positions)), linewidths=0, alpha=0.6,
                   rasterized=True, zorder=1)
        centres, means = binned_mean(panel.scores) if panel.tokens is None else _token_means(panel)
        ax.plot(centres, means, color="black", linewidth=1.3, alpha=0.85, zorder=3, path_effects=halo,
                label="binned mean")
        splits, spans = marks(panel.method, panel.params, panel.scores)
        if panel.tokens is not None:  # a few marks a panel, moved to the tokens before them
            splits, spans = panel.x(splits).tolist(), [tuple(panel.x([a, b]).tolist()) for a, b in spans]
        for i, (a, b) in enumerate(spans):
            ax.axvspan(a, b, color=REGION, alpha=0.18, linewidth=0, zorder=0,
                       label="transition region" if i == 0 else None)
        for i, p in enumerate(splits):
            ax.axvline(p, color=SPLIT, linestyle="--", linewidth=1.1, zorder=2,
                       label="section split" if i == 0 else None)
        ax.set_title(panel.heading, fontsize=11, loc="left", fontweight="bold")
        ax.set_ylabel(score_label(panel.score))
        ax.grid(alpha=0.25, linewidth=0.5, zorder=0)
        ax.tick_params(labelsize=9)
        ax.legend(loc="upper left", fontsize=8, frameon=True, framealpha=0.85)
    _position_ticks(axes[-1], max(1, n_max))
    by_tokens = any(p.tokens is not None for p in panels)
    axes[-1].set_xlabel("training tokens (in training order)" if by_tokens else "position in training order")
    fig.suptitle(heading or "Score by position in training order", fontsize=13, fontweight="bold")
    if subtitle:
        axes[0].set_title(subtitle, loc="right", fontsize=9, color="dimgray")
    return fig


def write(path: Path, panels: list[Panel], subtitle: str = "", size: tuple[int, int] | None = None,
          heading: str | None = None) -> Path:
    """The score-by-position figure into ``path`` (.png, .svg or .pdf) of ``size`` pixels."""
    require(path)
    return save(figure(panels, subtitle, size, heading), path)


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` in the format of ``path``'s suffix, the same bytes for the same figure."""
    from matplotlib import rc_context

    path = Path(path)
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


def cutoff_bins(lo: float, hi: float, cutoffs: list[float | None], count: int = 80) -> list[np.ndarray]:
    """Histogram edges of equal width spanning [lo, hi], one set a panel, each with its cut-off on an edge
    (so no bar mixes rows on both sides of it)."""
    hi = hi if hi > lo else lo + 1
    width = (hi - lo) / count
    out = []
    for cut in cutoffs:
        if cut is None or not np.isfinite(cut):
            out.append(np.linspace(lo, hi, count + 1))
            continue
        first, last = np.floor((lo - cut) / width), np.ceil((hi - cut) / width)
        out.append(cut + width * np.arange(first, max(last, first + 1) + 1))
    return out


def selection_figure(panels: list[tuple[Panel, np.ndarray, np.ndarray]], size: tuple[int, int] | None = None,
                     heading: str | None = None) -> Any:
    """One panel per (order, kept scores, dropped scores): the two score distributions as stacked
    histograms, the cut-off as a vertical line on a bin edge."""
    from matplotlib.figure import Figure

    width, height = size or default_size(len(panels))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    both = np.concatenate([np.concatenate([k, d]) for _, k, d in panels] or [np.empty(0)])
    lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    cutoffs = [panel.selection.get("cutoff") for panel, _, _ in panels]
    for ax, (panel, kept, dropped), bins, cutoff in zip(axes, panels, cutoff_bins(lo, hi, cutoffs), cutoffs,
                                                        strict=True):
        ax.hist([dropped, kept], bins=bins, stacked=True, color=["#b0b0b0", POINTS],
                label=[f"dropped ({len(dropped):,})", f"kept ({len(kept):,})"])
        if cutoff is not None:
            ax.axvline(cutoff, color="#d1495b", linewidth=1.4, label=f"cut-off {cutoff:g}")
        ax.set_title(f"{title(panel.method, panel.params)} · {kept_of(panel.selection)}: {panel.selection['rule']}",
                     fontsize=11, loc="left", fontweight="bold")
        ax.set_ylabel("rows")
        ax.grid(alpha=0.25, linewidth=0.5)
        ax.legend(loc="upper left", fontsize=8, frameon=True, framealpha=0.85)
    axes[-1].set_xlabel(score_label(panels[-1][0].score))
    fig.suptitle(f"{heading}: kept and dropped scores" if heading else "Selection: kept and dropped scores",
                 fontsize=13, fontweight="bold")
    return fig


def write_selection(path: Path, panels: list[tuple[Panel, np.ndarray, np.ndarray]],
                    size: tuple[int, int] | None = None, heading: str | None = None) -> Path:
    """The selection figure into ``path``."""
    require(path)
    return save(selection_figure(panels, size, heading), path)


def _metadata(path: Path) -> dict[str, Any]:
    """No creation date in SVG/PDF files, so the same data gives the same bytes."""
    suffix = path.suffix.lower()
    return {"Date": None} if suffix == ".svg" else {"CreationDate": None} if suffix == ".pdf" else {}


def describe_inputs(files: int, rows: int) -> str:
    """The subtitle: "8 input files · 200,000 rows"; no path (a picture goes into a paper or a slide)."""
    return f"{files:,} input file{'' if files == 1 else 's'} · {rows:,} rows"


# ------------------------------------------------------------------ a mixture's shares and score profiles

#: One colour a source (Tableau 10, colour-blind safer than matplotlib's default cycle); more sources repeat it.
SOURCE_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                  "#9c755f", "#bab0ac")


def _grid(rows: list[list[float | None]]) -> np.ndarray:
    """A manifest's windows x sources list of lists (``None``: no value) as float64, NaN for ``None``."""
    return np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=np.float64)


def describe_mixture(section: dict[str, Any]) -> str:
    """The subtitle of a mixture's picture: "3 sources · 670 rows · 9,037 tokens (budget 9,000)"."""
    sources = section["sources"]
    rows = sum(s["rows"] for s in sources)
    unit = section["unit"]
    text = f"{len(sources)} source{'' if len(sources) == 1 else 's'} · {rows:,} rows"
    if unit != "rows":
        text += f" · {sum(s['tokens'] for s in sources):,} {unit}"
    return text + f" (budget {section['budget']:,} {unit})"


def mixture_figure(section: dict[str, Any], subtitle: str = "", size: tuple[int, int] | None = None,
                   heading: str | None = None) -> Any:
    """A mixture (the manifest's ``mixture`` section, or a preview's plan's): on top, each source's realised
    share of every window of the output as a stacked area, the schedule's shares as dashed lines on the
    areas' boundaries (cumulative); below, each source's mean score in every window (its score profile; a
    window without a row of the source is bridged). The x axis is the output's training tokens (or rows,
    when the budget counts rows), from the windows' edges."""
    from matplotlib import patheffects
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    sources = section["sources"]
    shares = section["shares"]
    names = [s["name"] for s in sources]
    colours = [SOURCE_COLOURS[j % len(SOURCE_COLOURS)] for j in range(len(sources))]
    edges = np.asarray(shares["edges"], dtype=np.float64)
    realised, scheduled, mean = (_grid(shares[k]) for k in ("realised", "scheduled", "mean_score"))
    centres = (edges[:-1] + edges[1:]) / 2
    unit = section["unit"]
    extent = max(1, int(edges[-1]))

    width, height = size or (1200, 760)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    # realised: a window's shares hold over the whole window (a step from each edge to the next)
    top.stackplot(edges, np.vstack([realised, realised[-1:]]).T, step="post", colors=colours, alpha=0.85,
                  linewidth=0, zorder=1)
    # scheduled: where each area's top would be, were the shares exactly the schedule's
    halo = [patheffects.withStroke(linewidth=3.0, foreground="white", alpha=0.8)]
    xs = np.r_[edges[0], centres, edges[-1]]
    bounds = np.cumsum(scheduled, axis=1)
    for j in range(len(sources) - 1):  # the last boundary is 1 everywhere
        ys = np.r_[bounds[0, j], bounds[:, j], bounds[-1, j]]
        top.plot(xs, ys, color="black", linestyle="--", linewidth=1.3, zorder=3, path_effects=halo)
    total = sum(s["tokens"] for s in sources) or 1
    handles = [Patch(facecolor=c, alpha=0.85, label=f"{s['name']} ({s['tokens'] / total:.0%} overall)")
               for s, c in zip(sources, colours, strict=True)]
    handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1.3, label="scheduled"))
    top.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False,
               title="realised share", title_fontsize=9, alignment="left")
    top.set_ylim(0, 1)
    top.set_ylabel(f"share of the window's {unit}")
    top.set_title(f"Share of each source in every 1% of the output's {unit}", fontsize=11, loc="left",
                  fontweight="bold")
    if subtitle:
        top.set_title(subtitle, loc="right", fontsize=9, color="dimgray")

    scorings = [s["score"] or s["score_field"] for s in sources]
    one = len(set(scorings)) == 1  # else each source's score is named in the legend
    for j, (s, c) in enumerate(zip(sources, colours, strict=True)):  # a loop over sources
        known = ~np.isnan(mean[:, j])  # a window without a row of the source: the line goes on to the next
        label = f"{s['name']}: {title(s['method'], s['params'])}" + ("" if one else f"\nof {scorings[j]}")
        bottom.plot(centres[known], mean[known, j], color=c, linewidth=1.6, marker="o" if known.sum() <= 30 else None,
                    markersize=3, label=label, zorder=2)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False,
                  title="source: order" if one else "source: order, score", title_fontsize=9, alignment="left")
    bottom.set_ylabel(score_label(scorings[0] if one else None) + "\n(window mean)")
    bottom.set_title("Mean score of each source in every window (its score profile)", fontsize=11, loc="left",
                     fontweight="bold")
    for ax in (top, bottom):
        ax.grid(alpha=0.25, linewidth=0.5, zorder=0)
        ax.tick_params(labelsize=9)
    _position_ticks(bottom, extent)
    bottom.set_xlabel(f"training {unit} (in training order)")
    fig.suptitle(heading or f"Mixture of {', '.join(names)}: shares and score profiles", fontsize=13,
                 fontweight="bold")
    return fig


def write_mixture(path: Path, section: dict[str, Any], size: tuple[int, int] | None = None,
                  heading: str | None = None) -> Path:
    """The mixture figure (:func:`mixture_figure`) into ``path`` (.png, .svg or .pdf)."""
    require(path)
    return save(mixture_figure(section, describe_mixture(section), size, heading), path)
