"""The ``reorder`` command line: parse, call, print. No logic lives here."""

from __future__ import annotations

import os

# Polars' allocator (jemalloc) keeps freed pages for 10 s by default, which would let a
# run's resident memory creep up batch after batch; return them within a second instead.
# Must be set before Polars is first imported.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:1000,muzzy_decay_ms:0")

import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from . import __version__, audit, config, deep, manifest, metrics, pipeline, plot, preview, stats, tasks, verify  # noqa: E402
from .errors import ReorderError  # noqa: E402
from .orderings import METHODS  # noqa: E402
from .progress import Progress  # noqa: E402

app = typer.Typer(
    help="Rewrite scored training shards in STR, SAW or baseline order (Dai et al., ACL 2026).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

DESCRIPTIONS = {
    "shuffle": "Random: a uniform seeded permutation (NumPy default_rng(seed).permutation).",
    "sorting": "CL: sorted by score (stable), optional Gumbel rank noise, then JIT.",
    "folding": "FO: the sorted sequence folded into L interleaved layers, then JIT.",
    "zigzag": "ZIG: like folding, every other layer reversed, then JIT.",
    "segment": "SEG: front / middle / back segments from the score ends, each shuffled.",
    "str": "STR (stair): sorted, with the regions around S-1 split points folded; then JIT.",
    "saw": "SAW: sorted, with the regions around S-1 split points zigzagged; then JIT.",
}


def _fail(message: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        out.print(f"reorder {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")]
    = False,
) -> None:
    """Reorder scored JSONL/Parquet shards for one-pass LLM training."""


RUN_EPILOG = (
    "Example: reorder run configs/str.yaml --input 'data/*.parquet' --output data-str --set shard_size=512MB. "
    "Tool keys (format, shard_size, shard_rows, invalid_scores, workers, ...) are listed in the README; "
    "method parameters with `reorder methods`."
)


@app.command(epilog=RUN_EPILOG)
def run(
    config_file: Annotated[Path, typer.Argument(metavar="CONFIG.yaml", help="Method config (YAML).")],
    method: Annotated[str | None, typer.Option("--method", "-m", help="Ordering method; wins over the config.")]
    = None,
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="Input file, folder or glob (repeatable).")]
    = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Output folder.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")]
    = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a previous reorder output there.")] = False,
    memory_limit: Annotated[str | None, typer.Option(
        "--memory-limit", help="Memory budget of the whole run, e.g. 2GB (default: half the machine's memory).")]
    = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Tasks at once (default: one per core).")]
    = None,
    keep_work: Annotated[bool, typer.Option("--keep-work", help="Keep OUTPUT/.reorder after success.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Discard an unfinished earlier run instead of resuming.")]
    = False,
    plan_only: Annotated[bool, typer.Option(
        "--plan-only", help="Plan an out-of-core run and stop; run its tasks with `reorder task`.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")] = False,
) -> None:
    """Order the rows of scored shards and write them as new shards plus .manifest.json.

    A killed or failed run keeps its finished work in OUTPUT/.reorder; the same command resumes it.
    """
    extra = [f"memory_limit={memory_limit}"] * (memory_limit is not None) + [f"workers={workers}"] * (
        workers is not None)
    try:
        cfg = config.load(config_file, [*(sets or []), *extra], method=method, inputs=inputs or None, output=output)
        for key, why in cfg.ignored.items():
            if key == "reverse_even_layers":
                err.print(Text.assemble(("note:", "yellow"), f" config key '{key}' is ignored ({why})"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = pipeline.run(cfg, overwrite=overwrite, progress=Progress(enabled=not quiet, console=err),
                                  keep_work=keep_work, restart=restart, plan_only=plan_only)
        _warn(caught)
    except ReorderError as exc:
        _fail(str(exc))
        return
    except KeyboardInterrupt:
        kept = (cfg.output / pipeline.WORK_DIR).exists()
        err.print("interrupted; " + (f"finished work is kept in {cfg.output / pipeline.WORK_DIR}: re-run the same "
                  "command to resume" if kept else "the output folder was left as it was before the run"),
                  highlight=False)
        raise typer.Exit(130) from None
    for note in result.notes:
        if note.startswith(("memory_limit", "a row group")):
            err.print(Text.assemble(("warning:", "yellow"), f" {note}"), highlight=False, soft_wrap=True)
    if plan_only:
        err.print(Text.assemble(("planned", "green"), f" {result.notes[-1]}; run each with `reorder task "
                                f"{cfg.output} scatter I`, then `gather J`, then this command again to publish"),
                  highlight=False, soft_wrap=True)
        return
    if not quiet:
        t = result.manifest["totals"]
        rate = t["input_bytes"] / max(result.seconds, 1e-9) / 1e6
        line = (
            f" {cfg.method}: {t['rows']:,} rows -> {t['shards']} shard(s), {stats.fmt_bytes(t['bytes'])} in "
            f"{result.output}  ({result.seconds:.1f} s, {rate:.0f} MB/s of input, {result.path})"
            + (f"; dropped {t['dropped_rows']:,} invalid" if t["dropped_rows"] else "")
        )
        err.print(Text.assemble(("done", "green"), line), highlight=False, soft_wrap=True)


@app.command("task")
def task_cmd(
    output: Annotated[Path, typer.Argument(help="The output folder of a run planned with --plan-only.")],
    phase: Annotated[str | None, typer.Argument(help="scatter or gather (omit to list the tasks).")] = None,
    index: Annotated[int | None, typer.Argument(help="Task index (an input slice for scatter, a shard for gather).")]
    = None,
) -> None:
    """Run one task of a planned out-of-core run (for cluster array jobs), or list them.

    Every scatter task must finish before any gather task; then `reorder run` with the
    same arguments publishes the shards and the manifest.
    """
    try:
        if phase is None:
            for name, counts in tasks.status(output).items():
                total = counts["tasks"]
                out.print(f"{name}: {counts['finished']} of {total} finished (indices 0..{total - 1})")
            return
        if index is None:
            raise ReorderError("give the task index: reorder task OUTPUT PHASE INDEX")
        record = tasks.run_one(output, phase, index)
    except ReorderError as exc:
        _fail(str(exc))
        return
    state = "already finished" if record.get("skipped") else "finished"
    err.print(Text.assemble(("done", "green"), f" {phase} {index} {state}: {record['rows']:,} rows"), highlight=False)


PlotFile = Annotated[Path | None, typer.Option("--plot", help="Write a score-by-position picture (PNG) here.")]
PlotSize = Annotated[str | None, typer.Option(
    "--plot-size", metavar="WxH", help="Picture size in pixels (default 1200 wide, 300 a panel, at least 400 tall).")]


def _warn(caught: list) -> None:
    for w in caught:
        err.print(Text.assemble(("warning:", "yellow"), f" {w.message}"), highlight=False)


def _show_metrics(rows: list[tuple[str, dict]]) -> None:
    out.print(stats.metrics_table(rows))
    out.print(Text(stats.metrics_legend(rows[0][1]), style="dim"), soft_wrap=False)


@app.command("stats")
def stats_cmd(
    path: Annotated[Path, typer.Argument(help="An output folder or its .manifest.json.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable stats.")] = False,
    deep_check: Annotated[bool, typer.Option(
        "--deep", help="Re-read the shards' scores, recompute profile and metrics, compare with the manifest.")]
    = False,
    plot_file: PlotFile = None,
    plot_size: PlotSize = None,
) -> None:
    """Show a finished run: shards, totals, parameters, guidance metrics and the score-by-position profile.

    Reads only the manifest, unless --deep or --plot ask for the shards' scores."""
    differences: list[str] = []
    try:
        doc, folder = manifest.read(path)
        size = plot.parse_size(plot_size) if plot_size else None
        if plot_file:
            plot.require()
        per_shard = deep.shard_scores(doc, folder) if deep_check or plot_file else []
        recomputed, differences = deep.check(doc, per_shard) if deep_check else (None, [])
        if plot_file:
            scores = deep.concat(per_shard)
            title = f"{doc['method']} ({stats.params_line(doc['params'])})"
            plot.write_png(plot_file, [(title, scores, manifest.profile(scores))], size)
    except ReorderError as exc:
        _fail(str(exc))
        return
    found = doc.get("metrics") or (recomputed or {}).get("metrics")
    if as_json:
        extra = {"deep": {"differences": differences}} if deep_check else {}
        sys.stdout.write(json.dumps({**stats.summary(doc), "metrics": found, **extra}, indent=2) + "\n")
    else:
        out.print(stats.header(doc))
        out.print(stats.shard_table(doc))
        if found:
            _show_metrics([(doc["method"], found)])
        else:
            out.print("guidance metrics: not recorded in this manifest (reorder stats --deep computes them)")
        width = min(out.width, 140)
        out.print("\n[bold]mean score by output position[/]")
        out.print(stats.profile_chart(doc["profile"], width=width), highlight=False)
        if plot_file:
            err.print(f"picture: {plot_file}", highlight=False)
    if differences:
        _fail(f"{path}: the shards disagree with the manifest: {deep.describe(differences)}")
    if deep_check and not as_json:
        err.print(f"deep check: {len(doc['shards'])} shard(s) re-read; scores, profile and metrics match the manifest",
                  highlight=False)


PREVIEW_EPILOG = (
    "Example: reorder preview configs/str.yaml --input 'data/*.parquet' --compare str,saw,sorting,shuffle "
    "--plot curves.png. With --compare, every method takes the config's values where the config sets them "
    "and its own defaults elsewhere."
)


@app.command("preview", epilog=PREVIEW_EPILOG)
def preview_cmd(
    config_file: Annotated[Path, typer.Argument(metavar="CONFIG.yaml", help="Method config (YAML).")],
    method: Annotated[str | None, typer.Option("--method", "-m", help="Ordering method; wins over the config.")]
    = None,
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="Input file, folder or glob (repeatable).")]
    = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")]
    = None,
    compare: Annotated[str | None, typer.Option(
        "--compare", "-c", help="Several methods side by side, comma-separated: str,saw,sorting,shuffle.")] = None,
    window: Annotated[int, typer.Option("--window", help="Rows in a window (about a batch) for the metrics.")]
    = metrics.Params.window,
    boundary_pct: Annotated[float, typer.Option(
        "--boundary-pct", help="Boundary sharpening looks at the first and last this many percent of positions.")]
    = metrics.Params.boundary_pct,
    plot_file: PlotFile = None,
    plot_size: PlotSize = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics and profiles as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Show the order a run would give (profile and guidance metrics) from the scores alone; writes no shards."""
    try:
        params = metrics.Params(window=window, boundary_pct=boundary_pct)
        size = plot.parse_size(plot_size) if plot_size else None
        if plot_file:
            plot.require()
        cfgs = preview.configs(config_file, sets or [], method=method, compare=compare, inputs=inputs or None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = preview.run(cfgs, params, Progress(enabled=not (quiet or as_json), console=err))
        _warn(caught)
        titles = [f"{o.method} ({stats.params_line(o.params)})" for o in result.orders]
        if plot_file:
            plot.write_png(plot_file, [(t, o.scores, o.profile) for t, o in zip(titles, result.orders, strict=True)],
                           size)
    except ReorderError as exc:
        _fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps(preview.summary(result), indent=2) + "\n")
        return
    out.print(f"[bold]preview[/]: {result.input_rows:,} rows from {len(result.files)} file(s), scores read and "
              f"ordered in {result.seconds:.1f} s; nothing written", highlight=False, soft_wrap=True)
    _show_metrics([(o.method, o.metrics) for o in result.orders])
    width = min(out.width, 140)
    for title, o in zip(titles, result.orders, strict=True):
        out.print(f"\n[bold]{title}[/]: mean score by output position", highlight=False)
        out.print(stats.profile_chart(o.profile, width=width), highlight=False)
    if plot_file:
        err.print(f"picture: {plot_file}", highlight=False)


VERIFY_EPILOG = (
    "Exit code 0: everything matches; 1: differences (one line each); 2: a usage or read error. "
    "Example: reorder verify data-str --with-inputs"
)


@app.command("verify", epilog=VERIFY_EPILOG)
def verify_cmd(
    path: Annotated[Path, typer.Argument(help="An output folder or its .manifest.json.")],
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", "--inputs", "-i", help="Also prove the output is a permutation of these inputs: file, folder or "
        "glob (repeatable).")] = None,
    with_inputs: Annotated[bool, typer.Option(
        "--with-inputs", help="Also prove it against the inputs the manifest records.")] = False,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Files read at once (0: one per core).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Check an output against its manifest (hashes, rows, positions, scores) and, with inputs, its rows."""
    try:
        report = verify.verify(path, inputs=inputs, manifest_inputs=with_inputs, workers=workers,
                               progress=Progress(enabled=not quiet, console=err))
    except ReorderError as exc:
        _fail(str(exc))
        return
    for w in report.warnings:
        err.print(Text.assemble(("warning:", "yellow"), f" {w}"), highlight=False, soft_wrap=True)
    for problem in report.problems:
        out.print(Text(str(problem)), highlight=False, soft_wrap=True)
    style = "green" if report.ok else "bold red"
    out.print(Text(report.summary(), style=style), highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


AUDIT_EPILOG = (
    "LOG: JSONL, one line per optimizer step or per (step, rank): {\"step\": S, \"ids\": [...]} (several files "
    "are pooled). Exit code 0: the order held; 1: it did not; 2: a usage or read error. "
    "Example: reorder audit data-str audit.rank*.jsonl"
)


@app.command("audit", epilog=AUDIT_EPILOG)
def audit_cmd(
    path: Annotated[Path, typer.Argument(help="The output folder the trainer read.")],
    logs: Annotated[list[Path], typer.Argument(metavar="LOG...", help="What the trainer consumed (JSONL).")],
    id_field: Annotated[str, typer.Option("--id-field", help="Field of the rows that the log's ids are.")] = "id",
    positions: Annotated[bool, typer.Option("--positions", help="The log's ids are positions in the order.")]
    = False,
    global_batch: Annotated[int | None, typer.Option(
        "--global-batch", "-g", help="Samples a step consumes (default: inferred, the most common).")] = None,
    start_sample: Annotated[int, typer.Option(
        "--start-sample", help="Samples consumed before the log's first step (a resumed run).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    plot_file: PlotFile = None,
) -> None:
    """Check what a trainer consumed against the order: every step must take exactly its window."""
    try:
        if plot_file:
            plot.require()
        report = audit.audit(path, logs, id_field=id_field, positions=positions, global_batch=global_batch,
                             start_sample=start_sample)
        if plot_file:
            audit.write_plot(plot_file, report, str(path))
    except ReorderError as exc:
        _fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    else:
        r = report
        out.print(f"{r.steps:,} step(s), {r.samples:,} samples; global batch {r.global_batch:,} "
                  f"({'given' if global_batch else 'inferred'}), {r.ranks_per_step} log line(s) a step",
                  highlight=False)
        out.print(f"in their window: {r.in_window:.4%}; largest displacement: {r.max_displacement} step(s)",
                  highlight=False)
        out.print(f"never seen: {r.never_seen:,}; seen twice: {r.seen_twice:,}; not in the output: {r.unknown:,}; "
                  f"steps of the wrong size: {r.short_steps:,}", highlight=False)
        for kind, items in r.examples.items():
            if items:
                out.print(Text(f"  {kind}: {', '.join(map(str, items))}"), highlight=False, soft_wrap=True)
        if plot_file:
            err.print(f"picture: {plot_file}", highlight=False)
        verdict = "the order held" if r.held else f"the order broke, first at step {r.first_bad_step}"
        out.print(Text(verdict, style="green" if r.held else "bold red"), highlight=False)
    if not report.held:
        raise typer.Exit(1)


def _yaml(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@app.command()
def methods() -> None:
    """List the ordering methods with their parameters and defaults."""
    table = Table(show_lines=True)
    table.add_column("method")
    table.add_column("what it does")
    table.add_column("parameters (default)")
    for name in METHODS:
        params = "\n".join(
            f"{k.name} ({_yaml(config.default_for(name, k))}): {k.help}" for k in config.method_params(name)
        )
        label = name + (" (alias stair)" if name == "str" else "")
        table.add_row(label, DESCRIPTIONS[name], params)
    out.print(table)


if __name__ == "__main__":
    app()
