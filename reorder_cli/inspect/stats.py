"""What ``reorder stats`` shows: tables and a terminal drawing of the score profile."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from reorder_cli.util.units import fmt_bytes

_BLOCKS = " ▁▂▃▄▅▆▇█"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def resample(values: list[float | None], width: int) -> list[float | None]:
    """Average ``values`` down (or repeat them up) to ``width`` columns."""
    n = len(values)
    out: list[float | None] = []
    for c in range(width):
        a, b = c * n // width, max(c * n // width + 1, (c + 1) * n // width)
        chunk = [v for v in values[a:b] if v is not None]
        out.append(sum(chunk) / len(chunk) if chunk else None)
    return out


def profile_chart(profile: dict[str, Any], width: int = 80, height: int = 10) -> str:
    """Mean score by output position as a column chart of block characters."""
    values = resample(profile["mean"], max(10, width - 8))
    known = [v for v in values if v is not None]
    if not known:
        return "(no valid scores)"
    lo, hi = min(known), max(known)
    span = (hi - lo) or 1.0
    levels = [None if v is None else (v - lo) / span * height * 8 for v in values]
    lines = []
    for row in range(height, 0, -1):
        label = f"{hi:7.3f} " if row == height else (f"{lo:7.3f} " if row == 1 else " " * 8)
        cells = []
        for lv in levels:
            if lv is None:
                cells.append(" ")
                continue
            fill = lv - (row - 1) * 8
            cells.append(_BLOCKS[8] if fill >= 8 else _BLOCKS[max(0, int(fill))] if fill > 0 else " ")
        if row == 1:
            cells = [c if c != " " or lv is None else _BLOCKS[1] for c, lv in zip(cells, levels, strict=True)]
        lines.append(label + "".join(cells))
    lines.append(" " * 8 + "first position" + " " * max(1, len(values) - 27) + "last")
    return "\n".join(lines)


METRIC_LEGEND = (
    "start/end: mean score of the first/last {boundary_pct:g}% of positions vs the global mean, in sigma · "
    "rises/falls: moves of the smoothed profile by more than {cycle_threshold:g} sigma (and 5 standard errors) · "
    "quarters: score range "
    "each quarter of training covers, as a fraction of the whole range · jumps: between consecutive windows' mean "
    "scores, in sigma · local div.: mean std inside windows of {window:,} rows / global std"
)


def _quarters(values: list[float | None]) -> str:
    return " ".join("-" if v is None else f"{v:.2f}" for v in values)


def _f2(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def metrics_table(rows: list[tuple[str, dict[str, Any]]]) -> Table:
    """One row an order (label, metrics) and one column a metric."""
    table = Table(title="guidance metrics", title_justify="left", box=None, pad_edge=False)
    columns = ("order", "start", "end", "rises", "falls", "quarter ranges", "max\njump", "mean\njump", "local\ndiv.")
    for col in columns:
        table.add_column(col, justify="left" if col in ("order", "quarter ranges") else "right", no_wrap=True)
    for label, m in rows:
        b, c, j = m["boundary"], m["cycles"], m["continuity"]
        table.add_row(label, _f2(b["start"]), _f2(b["end"]), str(c["rises"]), str(c["falls"]),
                      _quarters(c["quarter_range"]), _fmt(j["max_jump"]), _fmt(j["mean_jump"]),
                      _fmt(m["local_diversity"]))
    return table


def metrics_legend(metrics: dict[str, Any]) -> str:
    return METRIC_LEGEND.format(**metrics["params"])


def params_line(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if k not in ("score_field",))


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable stats (``reorder stats --json``)."""
    totals = manifest["totals"]
    return {
        "method": manifest["method"],
        "params": manifest["params"],
        "totals": totals,
        "invalid_scores": manifest["invalid_scores"],
        "shards": [
            {k: s[k] for k in ("file", "rows", "bytes", "positions", "score")} for s in manifest["shards"]
        ],
        "profile": manifest["profile"],
        "metrics": manifest.get("metrics"),
    }


def shard_table(manifest: dict[str, Any], limit: int = 20) -> Table:
    shards = manifest["shards"]
    table = Table(title=f"{len(shards)} shard(s)", title_justify="left")
    for col in ("file", "rows", "bytes", "positions", "score min", "mean", "max"):
        table.add_column(col, justify="left" if col == "file" else "right")
    shown = shards if len(shards) <= limit else shards[: limit // 2] + [None] + shards[-limit // 2 :]
    for s in shown:
        if s is None:
            table.add_row("…", "", "", "", "", "", "")
            continue
        sc = s["score"]
        first, end = s["positions"]
        table.add_row(s["file"], f"{s['rows']:,}", fmt_bytes(s["bytes"]), f"{first:,}–{end:,}",
                      _fmt(sc["min"]), _fmt(sc["mean"]), _fmt(sc["max"]))
    t = manifest["totals"]
    table.add_section()
    table.add_row("total", f"{t['rows']:,}", fmt_bytes(t["bytes"]), "", _fmt(t["score"]["min"]),
                  _fmt(t["score"]["mean"]), _fmt(t["score"]["max"]))
    return table


def header(manifest: dict[str, Any]) -> Text:
    params = ", ".join(f"{k}={v}" for k, v in manifest["params"].items())
    t, inv = manifest["totals"], manifest["invalid_scores"]
    text = Text()
    text.append(f"method {manifest['method']}", style="bold")
    text.append(f"  ({params})\n")
    text.append(f"{t['input_rows']:,} input rows from {len(manifest['inputs'])} file(s) -> {t['rows']:,} rows in "
                f"{t['shards']} {manifest['output']['format']} shard(s), {fmt_bytes(t['bytes'])}\n")
    if inv["count"]:
        text.append(f"invalid scores: {inv['count']:,} ({inv['policy']}; dropped {inv['dropped']:,})\n")
    return text
