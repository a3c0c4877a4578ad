"""All terminal output: tables, the terminal drawing of a score profile, summary, warning and error lines.

The commands in :mod:`reorder_cli.cli` call one function of the package and hand its result here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from reorder_cli.config import RunConfig, default_for, method_params
from reorder_cli.errors import ReorderError
from reorder_cli.inspect.audit import Report as AuditReport
from reorder_cli.inspect.plot import title
from reorder_cli.inspect.preview import Preview
from reorder_cli.inspect.stats import Stats
from reorder_cli.inspect.verify import Report
from reorder_cli.methods import METHODS
from reorder_cli.pipeline import RunResult
from reorder_cli.publish.manifest import Manifest
from reorder_cli.util.progress import Progress
from reorder_cli.util.units import fmt_bytes, fmt_mb

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
        table.add_column(col, justify="left" if col in ("order", "quarter ranges") else "right",
                         no_wrap=col != "order")  # a long order name wraps; the numbers never do
    for label, m in rows:
        b, c, j = m["boundary"], m["cycles"], m["continuity"]
        table.add_row(label, _f2(b["start"]), _f2(b["end"]), str(c["rises"]), str(c["falls"]),
                      _quarters(c["quarter_range"]), _fmt(j["max_jump"]), _fmt(j["mean_jump"]),
                      _fmt(m["local_diversity"]))
    return table


def metrics_legend(metrics: dict[str, Any]) -> str:
    return METRIC_LEGEND.format(**metrics["params"])


def shard_table(manifest: Manifest, limit: int = 20) -> Table:
    shards = manifest.shards
    table = Table(title=f"{len(shards)} shard(s)", title_justify="left")
    for col in ("file", "rows", "bytes", "positions", "score min", "mean", "max"):
        table.add_column(col, justify="left" if col == "file" else "right")
    shown = shards if len(shards) <= limit else shards[: limit // 2] + [None] + shards[-limit // 2 :]
    for s in shown:
        if s is None:
            table.add_row("…", "", "", "", "", "", "")
            continue
        sc = s.score
        table.add_row(s.file, f"{s.rows:,}", fmt_bytes(s.bytes), f"{s.first:,}–{s.end:,}",
                      _fmt(sc["min"]), _fmt(sc["mean"]), _fmt(sc["max"]))
    t = manifest.totals
    table.add_section()
    table.add_row("total", f"{t['rows']:,}", fmt_bytes(t["bytes"]), "", _fmt(t["score"]["min"]),
                  _fmt(t["score"]["mean"]), _fmt(t["score"]["max"]))
    return table


def header(manifest: Manifest) -> Text:
    params = ", ".join(f"{k}={v}" for k, v in manifest.params.items())
    t, inv = manifest.totals, manifest.invalid_scores
    text = Text()
    if manifest.mixture is not None:
        text.append(mixture_line(manifest.mixture), style="bold")
        text.append("\n")
    else:
        text.append(f"method {manifest.method}", style="bold")
        text.append(f"  ({params})\n")
    text.append(f"{t['input_rows']:,} input rows from {len(manifest.inputs)} file(s) -> {t['rows']:,} rows in "
                f"{t['shards']} {manifest.format} shard(s), {fmt_bytes(t['bytes'])}\n")
    if manifest.score:
        text.append(f"score: {manifest.score}\n")
    if manifest.selection:
        text.append(selection_text(manifest.selection) + "\n")
    if inv["count"]:
        text.append(f"invalid scores: {inv['count']:,} ({inv['policy']}; dropped {inv['dropped']:,})\n")
    return text


def mixture_line(section: dict[str, Any]) -> str:
    """A mixture in one line: "mixture of 3 sources (web, code, math): budget 9,000 tokens (token_field
    token_count), seed 11"."""
    sources = section["sources"]
    unit = section["unit"]
    counted = f" (token_field {section['token_field']})" if section.get("token_field") else ""
    redistribute = ", redistributed" if section.get("redistribute") else ""
    return (f"mixture of {len(sources)} source{'' if len(sources) == 1 else 's'} "
            f"({', '.join(s['name'] for s in sources)}): budget {section['budget']:,} {unit}{counted}, "
            f"seed {section['seed']}{redistribute}")


def _weight(points: list[list[float]]) -> str:
    """A source's weight: "0.3" (constant), "0.6 -> 0.3" (from start to end), "0.1 -> 0.3 -> 0.4 (at 0, 0.5,
    1)"."""
    ws = [w for _, w in points]
    if len(set(ws)) == 1:
        return f"{ws[0]:g}"
    text = " -> ".join(f"{w:g}" for w in ws)
    us = [u for u, _ in points]
    return text if us == [0.0, 1.0] else f"{text} (at {', '.join(f'{u:g}' for u in us)})"


def mixture_table(section: dict[str, Any]) -> Table:
    """One row a source of a mixture: its order, weight, rows, tokens (a budget in rows: rows) and their share
    of the output, its quota and what it held, the epochs it gave, and whether a surplus was cut."""
    unit = section["unit"]
    sources = section["sources"]
    table = Table(title=f"{len(sources)} source(s)", title_justify="left")
    columns = ["source", "order", "weight", "rows", *([unit] if unit != "rows" else []), "share",
               f"quota ({unit})", f"available ({unit})", "epochs", "cut"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("source", "order", "weight", "cut") else "right")
    total = sum(s["tokens"] for s in sources) or 1
    for s in sources:
        table.add_row(s["name"], title(s["method"], s["params"]), _weight(s["weight"]), f"{s['rows']:,}",
                      *([f"{s['tokens']:,}"] if unit != "rows" else []), f"{s['tokens'] / total:.1%}",
                      f"{s['quota']:,}", f"{s['available']:,}", f"{s['epochs']} of {s['max_epochs']}",
                      "yes" if s["cut"] else "no")
    table.add_section()
    table.add_row("total", "", "", f"{sum(s['rows'] for s in sources):,}",
                  *([f"{sum(s['tokens'] for s in sources):,}"] if unit != "rows" else []), "100.0%",
                  f"{sum(s['quota'] for s in sources):,}", f"{sum(s['available'] for s in sources):,}", "", "")
    return table


def mixture_notes(section: dict[str, Any]) -> str:
    """What the table does not say: the rows repeated and those left out, a source the schedule stopped, each
    selection; the legend of ``cut``."""
    t = section["totals"]
    lines = [f"repeated rows: {t['repeated_rows']:,}; rows left out (a surplus cut, or a selection): "
             f"{t['unscheduled_rows']:,}"]
    lines += [f"{x['source']} ran out at u={x['u']:.3g} of the schedule" for x in section.get("stopped") or []]
    lines += [f"{s['name']}: {selection_text(s['select'])}" for s in section["sources"] if s.get("select")]
    lines.append("cut: the source held more than its quota and gave a seeded subset; epochs: how often its rows "
                 "came round, of max_epochs")
    return "\n".join(lines)


def mixture(section: dict[str, Any]) -> None:
    """A mixture's table of sources and its notes (``reorder stats`` and ``reorder preview``)."""
    out.print(mixture_table(section))
    out.print(Text(mixture_notes(section) + "\n", style="dim"), soft_wrap=True)


# ------------------------------------------------------------------ the output mode of a command

#: Width of the tables when stdout is not a terminal (CI, Slurm logs, a pipe) and COLUMNS is not set.
WIDE = 200


def _console(stderr: bool) -> Console:
    """A terminal keeps its width; anything else takes COLUMNS (rich reads it) or :data:`WIDE`, so that a
    log's tables are not wrapped at 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and not os.environ.get("COLUMNS", "").isdigit()
    return Console(stderr=stderr, width=WIDE if piped else None)


@dataclass
class Mode:
    """How the running command talks: ``json`` (one envelope on stdout), ``level`` -1 (-q), 0 or 1 (-v)."""

    command: str = ""
    json: bool = False
    level: int = 0
    warnings: list[str] = field(default_factory=list)
    emitted: bool = False
    started: float = field(default_factory=time.perf_counter)


mode = Mode()
out = _console(False)
err = _console(True)


def begin(command: str, *, as_json: bool = False, quiet: bool = False, verbose: bool = False) -> None:
    """Set the output mode of ``command`` (every command calls this first)."""
    global mode, out, err
    mode = Mode(command, as_json, -1 if quiet else 1 if verbose else 0)
    out, err = _console(False), _console(True)
    if quiet and verbose:
        raise ReorderError("-q/--quiet and -v/--verbose contradict each other; give one of them")


def finish() -> None:
    """-v: how long the command took."""
    detail(f"{mode.command}: {time.perf_counter() - mode.started:.2f} s")


def progress() -> Progress:
    """Progress bars on stderr, unless -q or --json."""
    return Progress(enabled=mode.level >= 0 and not mode.json, console=err)


def emit(data: Any, error: str | None = None) -> None:
    """The one JSON printer: ``{"command", "ok", "data", "warnings"[, "error"]}`` on stdout, once a command
    (reorder_cli/envelope.schema.json). ``error`` (one line) makes ``ok`` false."""
    if mode.emitted:
        return
    mode.emitted = True
    doc: dict[str, Any] = {"command": mode.command, "ok": error is None, "data": data, "warnings": mode.warnings}
    if error is not None:
        doc["error"] = error
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ lines and views of the commands


def error(message: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    if mode.json:
        emit(None, error=message)


def warning(message: str) -> None:
    mode.warnings.append(message)
    err.print(Text.assemble(("warning:", "yellow"), f" {message}"), highlight=False, soft_wrap=True)


def note(message: str) -> None:
    err.print(Text.assemble(("note:", "yellow"), f" {message}"), highlight=False, soft_wrap=True)


def done(message: str, label: str = "done") -> None:
    err.print(Text.assemble((label, "green"), f" {message}"), highlight=False, soft_wrap=True)


def info(message: str) -> None:
    if mode.level >= 0:
        err.print(message, highlight=False, soft_wrap=True)


def detail(message: str) -> None:
    """A line only -v shows."""
    if mode.level > 0:
        err.print(Text(message, style="dim"), highlight=False, soft_wrap=True)


def unused_keys(cfgs: list[RunConfig]) -> None:
    """One warning line for the config keys that none of the chosen methods reads."""
    unused = {key: users for key, users in cfgs[0].unused.items() if all(key in c.unused for c in cfgs)}
    chosen = ", ".join(c.method for c in cfgs)
    if len(unused) == 1:
        (key, users), = unused.items()
        warning(f"config key '{key}' is not used by method {chosen}; it is read by: {', '.join(users)}")
    elif unused:
        keys = ", ".join(f"'{key}' (read by {', '.join(users)})" for key, users in unused.items())
        warning(f"config keys {keys} are not used by method {chosen}")


def ignored_keys(cfg: RunConfig) -> None:
    for key, why in cfg.ignored.items():
        if key == "reverse_even_layers":
            note(f"config key '{key}' is ignored ({why})")


def run_data(result: RunResult, cfg: RunConfig) -> dict[str, Any]:
    """``reorder run --json``: what was done, where, and the manifest's totals."""
    used = result.cfg or cfg
    return {"status": result.status, "output": str(result.output), "method": used.method, "path": result.path,
            "seconds": round(result.seconds, 3), "reused_shards": result.reused_shards,
            "totals": result.manifest.totals if result.manifest else None, "notes": result.notes}


def run_result(result: RunResult, cfg: RunConfig) -> None:
    """The lines after ``reorder run``: warnings, then what was done (-v: the settings used too)."""
    if result.status == "already done":
        done(result.notes[0])
        return emit(run_data(result, cfg)) if mode.json else None
    for text in result.warnings:
        warning(text)
    if result.status != "planned" and result.manifest is not None:
        used = result.cfg or cfg
        params = ", ".join(f"{k}={v}" for k, v in result.manifest.params.items())
        detail(f"settings: {used.method} ({params}); {used.workers} worker(s), memory limit "
               f"{fmt_bytes(used.memory_limit)}, {result.path or 'no rewrite'}")
    if mode.json:
        return emit(run_data(result, cfg))
    if result.status == "planned":
        where = f" --work-dir {cfg.work_dir}" if cfg.work_dir else ""
        done(f"{result.notes[-1]}; run each with `reorder task {cfg.output} scatter I{where}`, then `gather J`, then "
             f"`reorder publish {cfg.output}{where}`", label="planned")
        return
    if mode.level < 0:
        return
    used = result.cfg or cfg
    if used.output_from_config:
        note(f"output folder {result.output} comes from the config file's 'output' key; -o/--output chooses another")
    done(summary_line(result, used))


def selection_text(sel: dict[str, Any]) -> str:
    """What a selection kept, in one phrase: rows (and tokens) kept of those with a valid score, the rule."""
    what = " then ".join(f"{p['method']} (" + ", ".join(f"{k}={v}" for k, v in p.items() if k != "method") + ")"
                         for p in (sel["params"] if isinstance(sel["params"], list) else [sel["params"]]))
    text = f"select {what} kept {sel['rows_after']:,} of {sel['rows_before']:,} rows"
    if sel.get("tokens_before") is not None:
        text += f", {sel['tokens_after']:,} of {sel['tokens_before']:,} tokens"
    return text + f"; {sel['rule']}"


def summary_line(result: RunResult, cfg: RunConfig) -> str:
    """The last line of a run: what was written where, and how it happened."""
    t = result.manifest.totals
    fmt = cfg.format + (f" ({cfg.format_note})" if cfg.format_note else "")
    what = f"{t['rows']:,} rows -> {t['shards']} {fmt} shard(s), {fmt_bytes(t['bytes'])} in {result.output}"
    dropped = f"; dropped {t['dropped_rows']:,} invalid" if t["dropped_rows"] else ""
    if result.manifest.selection:
        dropped += f"; {selection_text(result.manifest.selection)}"
    if result.planned and result.reused_shards >= t["shards"]:
        return (f"{cfg.method}: {what}{dropped}; published the shards its tasks made ({result.seconds:.1f} s, moved "
                "into place, nothing rewritten)")
    if result.reused_shards >= t["shards"]:
        how = (f"published the shards an earlier, interrupted run had finished ({result.seconds:.1f} s, "
               "moved into place, nothing rewritten)")
        return f"{cfg.method}: {what}{dropped}; {how}"
    if result.reused_shards:
        how = (f"resumed: {result.reused_shards} of {t['shards']} shard(s) came from an earlier, interrupted run; "
               f"{result.seconds:.1f} s, {result.path}")
        return f"{cfg.method}: {what}{dropped}  ({how})"
    rate = t["input_bytes"] / max(result.seconds, 1e-9) / 1e6
    return (f"{cfg.method}: {what}{dropped}  ({result.seconds:.1f} s, {rate:.0f} MB/s of input, "
            f"{result.path})")


def interrupted(work_root: Path) -> None:
    line = "interrupted; " + (f"finished work is kept in {work_root}: re-run the same command to resume"
                              if work_root.exists() else "the output folder was left as it was before the run")
    err.print(line, highlight=False, soft_wrap=True)
    if mode.json:
        emit(None, error=line)


def task_list(status: dict[str, dict[str, int | None]]) -> None:
    if mode.json:
        return emit({"stages": status})
    for name, counts in status.items():
        total = counts["tasks"]
        if total is None:
            out.print(f"{name}: not known yet (decided by an earlier stage)")
        else:
            out.print(f"{name}: {counts['done']} of {total} finished (indices 0..{total - 1})")


def task_done(stage: str, index: int, record: dict[str, Any]) -> None:
    if mode.json:
        return emit({"stage": stage, "index": index, "skipped": bool(record.get("skipped")), "record": record})
    state = "already finished" if record.get("skipped") else "finished"
    done(f"{stage} {index} {state}: {record['rows']:,} rows")


def metrics(rows: list[tuple[str, dict]]) -> None:
    out.print(metrics_table(rows))
    out.print(Text(metrics_legend(rows[0][1]), style="dim"), soft_wrap=False)


def config_shown(shown: Any) -> None:
    """``reorder config show``: each key, its value and where it came from (YAML a run can read back)."""
    import yaml

    if mode.json:
        return emit({k: {"value": v, "source": shown.sources[k]} for k, v in shown.values.items()})
    for key, value in shown.values.items():
        if value is None or value == {}:
            continue
        text = yaml.safe_dump({key: value}, default_flow_style=True, width=10**6, sort_keys=False).strip()[1:-1]
        sys.stdout.write(f"{text}  # {shown.sources[key]}\n")
    if shown.missing:
        note(f"not set: {', '.join(shown.missing)} (a run needs them: --method, --input, --output or the config's "
             "keys)")


def config_valid(path: Path | None, shown: Any) -> None:
    """``reorder config validate``: the one line of a config that passed."""
    need = f"; a run still needs {', '.join(shown.missing)}" if shown.missing else ""
    method = "not set" if "method" in shown.missing else shown.cfg.method
    if mode.json:
        return emit({"config": None if path is None else str(path), "method": None if "method" in shown.missing
                     else shown.cfg.method, "missing": list(shown.missing)})
    done(f"{path or 'the command line'}: a valid config (method {method}){need}", label="valid")


def config_schema(schema: dict[str, Any]) -> None:
    """``reorder config schema``: the JSON Schema itself (what editors and CI read), or in the envelope."""
    if mode.json:
        return emit(schema)
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")


def stats(view: Stats, plot_file: Path | None, deep: bool, problem: str | None) -> None:
    """``reorder stats``: the manifest's view; ``problem``: the --deep check's one line when the shards
    disagree with the manifest."""
    from reorder_cli.inspect.stats import summary

    doc = view.doc
    if mode.json:
        extra = {"deep": {"differences": view.differences}} if deep else {}
        emit({**summary(doc, view.by, view.profile), "metrics": view.metrics, **extra}, error=problem)
        return error(problem) if problem else None
    out.print(header(doc))
    if doc.mixture is not None:
        mixture(doc.mixture)
    out.print(shard_table(doc))
    if view.metrics:
        metrics([(doc.method, view.metrics)])
    else:
        out.print("guidance metrics: not recorded in this manifest (reorder stats --deep computes them)")
    width = min(out.width, 140)
    out.print(f"\n[bold]mean score by {'training token' if view.by == 'tokens' else 'output position'}[/]")
    out.print(profile_chart(view.profile or doc.profile, width=width), highlight=False)
    if plot_file:
        info(f"picture: {plot_file}")
    if problem:
        error(problem)
    elif deep:
        info(f"deep check: {len(doc.shards)} shard(s) re-read; scores, profile and metrics match the manifest")


def preview(result: Preview, plot_file: Path | None) -> None:
    if mode.json:
        from reorder_cli.inspect.preview import summary

        return emit(summary(result))
    out.print(f"[bold]preview[/]: {result.input_rows:,} rows from {len(result.files)} file(s), scores read and "
              f"ordered in {result.seconds:.1f} s; nothing written", highlight=False, soft_wrap=True)
    if result.mixture is not None:
        out.print(Text(mixture_line(result.mixture), style="bold"), highlight=False, soft_wrap=True)
        mixture(result.mixture)
    metrics([(title(o.method, o.params), o.metrics) for o in result.orders])
    width = min(out.width, 140)
    for o in result.orders:
        if o.selection:
            out.print(Text(f"{title(o.method, o.params)}: {selection_text(o.selection)}"), highlight=False,
                      soft_wrap=True)
    floors = {(o.floor.text(), o.floor.setting()): o.floor.total for o in result.orders if o.floor}
    for (text, setting), total in floors.items():
        lower = f"; or set {setting}" if setting else ""
        out.print(Text(f"memory floor: the least --memory-limit of a run is {fmt_mb(total)} (out of core, 1 worker: "
                       f"{text}){lower}"),
                  highlight=False, soft_wrap=True)
    for o in result.orders:
        by = "training token (token-weighted)" if result.by == "tokens" else "output position"
        out.print(f"\n[bold]{title(o.method, o.params)}[/]: mean score by {by}", highlight=False)
        out.print(profile_chart(o.profile, width=width), highlight=False)
    if plot_file:
        info(f"picture: {plot_file}")
    if result.selection_plot:
        info(f"picture of the selection (kept and dropped scores): {result.selection_plot}")


def verify(report: Report) -> None:
    """The differences, one line each, then the verdict; --json lists them in ``data``."""
    for text in report.warnings:
        warning(text)
    if mode.json:
        data = {"shards": report.shards, "rows": report.rows, "bytes": report.bytes,
                "permutation": report.permutation, "differences": [str(p) for p in report.problems]}
        return emit(data, error=None if report.ok else report.summary())
    for problem in report.problems:
        out.print(Text(str(problem)), highlight=False, soft_wrap=True)
    out.print(Text(report.summary(), style="green" if report.ok else "bold red"), highlight=False, soft_wrap=True)


def _yaml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def methods_table() -> None:
    """Every method of the registry with its parameters and defaults."""
    if mode.json:
        return emit([{"name": name, "paper_name": m.paper_name, "aliases": list(m.aliases),
                      "description": m.description,
                      "parameters": [{"name": k.name, "default": default_for(name, k), "help": k.help}
                                     for k in method_params(name)]} for name, m in METHODS.items()])
    table = Table(show_lines=True)
    table.add_column("method", no_wrap=True)
    table.add_column("what it does")
    table.add_column("parameters (default)")
    for name, m in METHODS.items():
        params = "\n".join(f"{k.name} ({_yaml(default_for(name, k))}): {k.help}" for k in method_params(name))
        table.add_row(name + "".join(f" (alias {a})" for a in m.aliases), m.description, params)
    out.print(table)


def audit(report: AuditReport, batch_given: bool, plot_file: Path | None) -> None:
    """What ``reorder audit`` found: the window contract held, or where it broke."""
    r = report
    verdict = "the order held" if r.held else f"the order broke, first at step {r.first_bad_step}"
    if mode.json:
        return emit(r.to_json(), error=None if r.held else verdict)
    if r.tokens:
        t = r.tokens
        out.print(f"token stream: {t['total']:,} tokens; samples are sequences of {t['seq_length']:,} tokens, logged "
                  f"as {'token offsets' if t['offsets'] else 'sample indices'}; tolerance one sequence "
                  "(never_seen lists first token offsets)", highlight=False, soft_wrap=True)
    out.print(f"{r.steps:,} step(s), {r.samples:,} samples; global batch {r.global_batch:,} "
              f"({'given' if batch_given else 'inferred'}), {r.ranks_per_step} log line(s) a step", highlight=False)
    out.print(f"in their window: {r.in_window:.4%}; largest displacement: {r.max_displacement} step(s)",
              highlight=False)
    out.print(f"never seen: {r.never_seen:,}; seen twice: {r.seen_twice:,}; not in the output: {r.unknown:,}; "
              f"steps of the wrong size: {r.short_steps:,}", highlight=False)
    for kind, items in r.examples.items():
        if items:
            out.print(Text(f"  {kind}: {', '.join(map(str, items))}"), highlight=False, soft_wrap=True)
    if plot_file:
        info(f"picture: {plot_file}")
    out.print(Text(verdict, style="green" if r.held else "bold red"), highlight=False)


# ------------------------------------------------------------------ cluster executors


def run_status(report: dict[str, Any]) -> None:
    """``reorder status``: one line a stage, then each running and each failed task with its log; then one
    line a stage of what its finished tasks recorded (:func:`stats_line`)."""
    if mode.json:
        return emit(report)
    for stage, s in report["stages"].items():
        running = f"{len(s['running'])} running, " if s["running"] else ""
        counts = "" if s["tasks"] is None else f": {s['done']} of {s['tasks']} done, {running}{s['pending']} pending"
        failed = f", {len(s['failed'])} failed" if s["failed"] else ""
        style = {"done": "green", "failed": "red", "running": "cyan"}.get(s["state"], "yellow")
        out.print(Text.assemble((f"{stage:8}", "bold"), (f"{s['state']:8}", style), counts + failed),
                  highlight=False, soft_wrap=True)
        for task in s["running"]:
            where = f"  on {task['host']}" if task.get("host") else ""
            out.print(f"  running: {stage} {task['index']}{where}  log: {task['log']}", highlight=False,
                      soft_wrap=True)
        for task in s["failed"]:
            out.print(f"  failed: {stage} {task['index']}  log: {task['log']}", highlight=False, soft_wrap=True)
    if report.get("stats"):
        out.print("finished tasks (their markers' statistics):", highlight=False, soft_wrap=True)
    for stage, t in report.get("stats", {}).items():  # a loop over stages
        out.print(f"  {stage:8}{stats_line(t)}", highlight=False, soft_wrap=True)
    if report["finished"]:
        out.print(f"finished: {report['output']} is published", highlight=False, soft_wrap=True)


def stats_line(t: dict[str, Any]) -> str:
    """One stage's task statistics (``reorder status``): ``3 tasks, 1,000 rows, 2.1 MB in, 1.0 MB out, 0.4 s,
    peak RSS 180 MB``."""
    return (f"{t['tasks']} task{'s' * (t['tasks'] != 1)}, {t['rows']:,} rows, {fmt_bytes(t['bytes_in'])} in, "
            f"{fmt_bytes(t['bytes_out'])} out, {t['seconds']:.1f} s, peak RSS {fmt_bytes(t['peak_rss_max'])}")


def _slurm_data(sub: Any) -> dict[str, Any]:
    return {"status": sub.status, "output": str(sub.output),
            "jobs": [{"job_id": j.job_id, "stage": j.stage, "tasks": len(j.indices), "script": str(j.script)}
                     for j in sub.jobs]}


def slurm_waited(sub: Any, ok: bool, line: str) -> None:
    """``--wait``: published, or the line naming the failed task."""
    if mode.json:
        return emit({**_slurm_data(sub), "published": ok}, error=None if ok else line)
    (done if ok else error)(line)


def slurm_submission(sub: Any, waiting: bool = False) -> None:
    """What ``--executor slurm`` did: the scripts (a dry run prints them) or the submitted job ids; with
    --json the envelope, unless ``waiting`` (:func:`slurm_waited` emits it)."""
    if mode.json:
        return None if waiting else emit(_slurm_data(sub))
    if sub.status == "already done":
        done(sub.note)
        return
    if sub.status == "queued":
        done(sub.note, label="queued")
        return
    if sub.status == "dry run":
        for job in sub.jobs:
            out.print(f"# ---- {job.script}", highlight=False, soft_wrap=True)
            out.print(job.text, highlight=False, soft_wrap=True, markup=False, end="")
        done(f"{len(sub.jobs)} sbatch script(s) written, none submitted (dry run)", label="dry run")
        return
    for job in sub.jobs:
        out.print(f"{job.job_id}  {job.stage}  {len(job.indices)} task(s)  {job.script}", highlight=False,
                  soft_wrap=True)
    if mode.level >= 0:
        done(f"{len(sub.jobs)} Slurm job(s) for {sub.output}; `reorder status {sub.output}` follows them",
             label="submitted")
