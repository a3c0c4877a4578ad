"""The ``reorder`` command line: parse, call, print. No logic lives here."""

from __future__ import annotations

import os

# Polars' allocator (jemalloc) keeps freed pages for 10 s by default, which would let a
# run's resident memory creep up batch after batch; return them within a second instead.
# Must be set before Polars is first imported.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:1000,muzzy_decay_ms:0")

import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

# Only light modules at import time: `reorder --help` and `--version` must not load polars,
# pyarrow, numpy or rich (tests/test_startup.py). Each command imports what it needs.
from reorder_cli import __version__  # noqa: E402
from reorder_cli.errors import ReorderError  # noqa: E402
from reorder_cli.metrics import defaults as metric_defaults  # noqa: E402

app = typer.Typer(
    help="Rewrite scored training shards in STR, SAW or baseline order (Dai et al., ACL 2026).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    from reorder_cli import render

    render.error(message)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reorder {__version__}")
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
    executor: Annotated[str, typer.Option(
        "--executor", help="local (this machine), slurm (sbatch job arrays) or ray (Ray tasks); see `reorder status`.")]
    = "local",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="--executor slurm: check the inputs, write and print the sbatch scripts of the "
        "stages whose sizes are known, submit nothing.")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="--executor slurm: block until published (exit 0) or a task failed (exit 1).")] = False,
) -> None:
    """Order the rows of scored shards and write them as new shards plus .manifest.json.

    A killed or failed run keeps its finished work in OUTPUT/.reorder; the same command resumes it.
    """
    from reorder_cli import config, pipeline, render
    from reorder_cli.util.progress import Progress

    extra = [f"memory_limit={memory_limit}"] * (memory_limit is not None) + [f"workers={workers}"] * (
        workers is not None)
    try:
        if executor not in ("local", "slurm", "ray"):
            raise ReorderError(f"--executor: expected local, slurm or ray, got {executor!r}")
        if (dry_run or wait) and executor != "slurm":
            raise ReorderError("--dry-run and --wait go with --executor slurm")
        if plan_only and executor != "local":
            raise ReorderError("--plan-only goes with --executor local (a cluster executor plans by itself)")
        cfg = config.load(config_file, [*(sets or []), *extra], method=method, inputs=inputs or None, output=output)
        render.ignored_keys(cfg)
        render.unused_keys([cfg])
        if executor == "slurm":
            from reorder_cli.execute import slurm

            args = slurm.run_arguments(config_file, method=method, inputs=inputs, output=output, sets=sets,
                                       memory_limit=memory_limit, workers=workers, keep_work=keep_work)
            sub = slurm.run(cfg, args, dry_run=dry_run, overwrite=overwrite, restart=restart,
                            progress=Progress(enabled=not quiet, console=render.err))
            render.slurm_submission(sub, quiet)
            if wait and sub.status == "submitted":
                ok, line = slurm.wait(cfg.output, work_dir=cfg.work_dir)
                (render.done if ok else render.error)(line)
                if not ok:
                    raise typer.Exit(1)
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if executor == "ray":
                from reorder_cli.execute import ray_exec

                result = ray_exec.run(cfg, overwrite=overwrite, restart=restart, keep_work=keep_work,
                                      progress=Progress(enabled=not quiet, console=render.err), sets=sets)
            else:
                result = pipeline.run(cfg, overwrite=overwrite, progress=Progress(enabled=not quiet,
                                      console=render.err), keep_work=keep_work, restart=restart, plan_only=plan_only)
        _warn(caught)
    except ReorderError as exc:
        _fail(str(exc))
        return
    except KeyboardInterrupt:
        render.interrupted(pipeline.work_root(cfg))
        raise typer.Exit(130) from None
    render.run_result(result, cfg, quiet)


WorkDirOption = Annotated[str | None, typer.Option(
    "--work-dir", help="The run's work_dir, when it set one (always, for an output on an object store).")]


@app.command("task")
def task_cmd(
    output: Annotated[str, typer.Argument(help="The output folder (or URL) of a run planned as tasks.")],
    phase: Annotated[str | None, typer.Argument(
        help="keys, split, sort, place, layout, scatter or gather (omit to list the tasks).")] = None,
    index: Annotated[int | None, typer.Argument(help="Task index within the stage.")] = None,
    work_dir: WorkDirOption = None,
) -> None:
    """Run one task of a run planned as tasks (a cluster job does this), or list them.

    Stages, in order, each after every task of the one before has finished:
    keys (one task an input), split, sort, place (the order), layout,
    scatter (one task an input slice), gather (one task an output shard).
    A run planned with --plan-only starts at scatter.
    Then `reorder run` with the same arguments publishes the shards and the manifest.
    """
    from reorder_cli import render, stages

    try:
        if phase is None:
            render.task_list(stages.describe(output, work_dir))
            return
        if index is None:
            raise ReorderError("give the task index: reorder task OUTPUT STAGE INDEX")
        record = stages.run_one(output, phase, index, work_dir)
    except ReorderError as exc:
        _fail(str(exc))
        return
    render.task_done(phase, index, record)


@app.command("publish")
def publish_cmd(
    output: Annotated[str, typer.Argument(help="The output folder (or URL) of a run planned with --plan-only.")],
    work_dir: WorkDirOption = None,
    keep_work: Annotated[bool, typer.Option("--keep-work", help="Keep the work folder after success.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")] = False,
) -> None:
    """Publish a run planned with --plan-only once `reorder task` has run all its tasks.

    The config and inputs are the run's own (kept in its work folder): nothing else to repeat.
    """
    from reorder_cli import pipeline, render
    from reorder_cli.util.progress import Progress

    try:
        result = pipeline.publish(output, work_dir, Progress(enabled=not quiet, console=render.err),
                                  keep_work=keep_work)
    except ReorderError as exc:
        _fail(str(exc))
        return
    render.run_result(result, result.cfg, quiet)


@app.command("status")
def status_cmd(
    output: Annotated[str, typer.Argument(help="The output folder (or URL) of a run (any executor).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    work_dir: WorkDirOption = None,
) -> None:
    """Each stage of a run (plan, scatter, gather, publish): done / pending counts, failed tasks with their logs."""
    from reorder_cli import render
    from reorder_cli.execute import status

    try:
        report = status.status(output, work_dir)
    except ReorderError as exc:
        _fail(str(exc))
        return
    if as_json:
        render.as_json(report)
    else:
        render.run_status(report)


PlotFile = Annotated[Path | None, typer.Option("--plot", help="Write a score-by-position picture (PNG) here.")]
PlotSize = Annotated[str | None, typer.Option(
    "--plot-size", metavar="WxH", help="Picture size in pixels (default 1200 wide, 300 a panel, at least 400 tall).")]


def _warn(caught: list) -> None:
    from reorder_cli import render

    for w in caught:
        render.warning(str(w.message))


@app.command("stats")
def stats_cmd(
    path: Annotated[str, typer.Argument(help="An output folder (or URL) or its .manifest.json.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable stats.")] = False,
    deep_check: Annotated[bool, typer.Option(
        "--deep", help="Re-read the shards' scores, recompute profile and metrics, compare with the manifest.")]
    = False,
    plot_file: PlotFile = None,
    plot_size: PlotSize = None,
) -> None:
    """Show a finished run: shards, totals, parameters, guidance metrics and the score-by-position profile.

    Reads only the manifest, unless --deep or --plot ask for the shards' scores."""
    from reorder_cli import render
    from reorder_cli.inspect import deep, plot, stats

    try:
        view = stats.read(path, deep_check, plot_file, plot.parse_size(plot_size) if plot_size else None)
    except ReorderError as exc:
        _fail(str(exc))
        return
    if as_json:
        extra = {"deep": {"differences": view.differences}} if deep_check else {}
        render.as_json({**stats.summary(view.doc), "metrics": view.metrics, **extra})
    else:
        render.stats(view, plot_file)
    if view.differences:
        _fail(f"{path}: the shards disagree with the manifest: {deep.describe(view.differences)}")
    if deep_check and not as_json:
        render.deep_ok(view)


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
    = metric_defaults.WINDOW,
    boundary_pct: Annotated[float, typer.Option(
        "--boundary-pct", help="Boundary sharpening looks at the first and last this many percent of positions.")]
    = metric_defaults.BOUNDARY_PCT,
    plot_file: PlotFile = None,
    plot_size: PlotSize = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics and profiles as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Show the order a run would give (profile and guidance metrics) from the scores alone; writes no shards."""
    from reorder_cli import render
    from reorder_cli.inspect import plot, preview
    from reorder_cli.metrics import guidance as metrics
    from reorder_cli.util.progress import Progress

    try:
        params = metrics.Params(window=window, boundary_pct=boundary_pct)
        size = plot.parse_size(plot_size) if plot_size else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfgs = preview.configs(config_file, sets or [], method=method, compare=compare, inputs=inputs or None)
            render.unused_keys(cfgs)
            result = preview.run(cfgs, params, Progress(enabled=not (quiet or as_json), console=render.err),
                                 plot_file, size)
        _warn(caught)
    except ReorderError as exc:
        _fail(str(exc))
        return
    if as_json:
        render.as_json(preview.summary(result))
    else:
        render.preview(result, plot_file)


VERIFY_EPILOG = (
    "Exit code 0: everything matches; 1: differences (one line each); 2: a usage or read error. "
    "Example: reorder verify data-str --with-inputs"
)


@app.command("verify", epilog=VERIFY_EPILOG)
def verify_cmd(
    path: Annotated[str, typer.Argument(help="An output folder (or URL) or its .manifest.json.")],
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", "--inputs", "-i", help="Also prove the output is a permutation of these inputs: file, folder or "
        "glob (repeatable).")] = None,
    with_inputs: Annotated[bool, typer.Option(
        "--with-inputs", help="Also prove it against the inputs the manifest records.")] = False,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Files read at once (0: one per core).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Check an output against its manifest (hashes, rows, positions, scores) and, with inputs, its rows."""
    from reorder_cli import render
    from reorder_cli.inspect import verify
    from reorder_cli.util.progress import Progress

    try:
        report = verify.verify(path, inputs=inputs, manifest_inputs=with_inputs, workers=workers,
                               progress=Progress(enabled=not quiet, console=render.err))
    except ReorderError as exc:
        _fail(str(exc))
        return
    render.verify(report)
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
    from reorder_cli import render
    from reorder_cli.inspect import audit, plot

    try:
        if plot_file:
            plot.require(plot_file)
        report = audit.audit(path, logs, id_field=id_field, positions=positions, global_batch=global_batch,
                             start_sample=start_sample)
        if plot_file:
            audit.write_plot(plot_file, report, str(path))
    except ReorderError as exc:
        _fail(str(exc))
        return
    if as_json:
        render.as_json(report.to_json())
    else:
        render.audit(report, global_batch is not None, plot_file)
    if not report.held:
        raise typer.Exit(1)


@app.command()
def methods() -> None:
    """List the ordering methods with their parameters and defaults."""
    from reorder_cli import render

    render.methods_table()


if __name__ == "__main__":
    app()
