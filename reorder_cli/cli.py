"""The ``reorder`` command line: parse, call, print. No logic lives here."""

from __future__ import annotations

import os

# Polars' allocator (jemalloc) keeps freed pages for 10 s by default, which would let a
# run's resident memory creep up batch after batch; return them within a second instead.
# Must be set before Polars is first imported.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:1000,muzzy_decay_ms:0")

import warnings  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

# Only light modules at import time: `reorder --help` and `--version` must not load polars,
# pyarrow, numpy or rich (tests/test_startup.py). Each command imports what it needs.
from reorder_cli import __version__, cli_help  # noqa: E402
from reorder_cli.errors import ReorderError  # noqa: E402
from reorder_cli.metrics import defaults as metric_defaults  # noqa: E402
from reorder_cli.util.stage_names import SLURM_JOBS, TASK_STAGES  # noqa: E402

app = typer.Typer(
    cls=cli_help.Group,
    help="Rewrite scored training shards in STR, SAW or baseline order (Dai et al., ACL 2026).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ------------------------------------------------------------------ options several commands share

JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print one JSON envelope on stdout: {command, ok, data, warnings} (and error when ok is false); "
    "schema: reorder_cli/envelope.schema.json.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no summary.")]
VerboseOption = Annotated[bool, typer.Option(
    "--verbose", "-v", help="More detail: the settings a run used, and timings.")]
MethodOption = Annotated[str | None, typer.Option(
    "--method", "-m", metavar="METHOD", autocompletion=cli_help.method_names,
    help="Ordering method (see `reorder methods`); wins over the config.")]
InputOption = Annotated[list[str] | None, typer.Option(
    "--input", "-i", metavar="PATH", help="Input file, folder or glob (repeatable).")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", autocompletion=cli_help.set_keys,
    help="Override a config key (repeatable).")]
ConfigArgument = Annotated[Path | None, typer.Argument(
    metavar="[CONFIG.yaml]", help="Method config (YAML); optional: without it every key takes the method's default.")]
OutputOption = Annotated[str | None, typer.Option("--output", "-o", metavar="PATH", help="Output folder (or URL).")]
# the common keys as flags: sugar for --set (config.FLAG_KEYS), which wins over them
ScoreFieldOption = Annotated[str | None, typer.Option(
    "--score-field", metavar="FIELD", help="Field holding the score, e.g. metadata.score (score_field).")]
ScoreOption = Annotated[str | None, typer.Option(
    "--score", metavar="EXPR", help="Score expression over fields (score).")]
SelectOption = Annotated[list[str] | None, typer.Option(
    "--select", metavar="METHOD:VALUE", help="Keep a subset first, e.g. top-r:0.6 or tokens:10B; repeat to chain "
    "(select).")]
TokenFieldOption = Annotated[str | None, typer.Option(
    "--token-field", metavar="FIELD", help="Field holding each row's token count (select.token_field).")]
ByOption = Annotated[str, typer.Option(
    "--by", metavar="rows|tokens", help="The profile's and the picture's x axis: output rows, or training tokens "
    "(token-weighted, from the token counts: a run's tokenizer: or, in preview, --token-field).")]
ShardSizeOption = Annotated[str | None, typer.Option(
    "--shard-size", metavar="SIZE", help="Output shard size, e.g. 512MB (shard_size).")]
FormatOption = Annotated[str | None, typer.Option(
    "--format", metavar="FORMAT", help="Output format: auto, parquet, jsonl.zst or jsonl (format).")]
OutputArgument = Annotated[str, typer.Argument(metavar="OUTPUT", help="An output folder (or URL) or its "
                                               ".manifest.json.")]
WorkDirOption = Annotated[str | None, typer.Option(
    "--work-dir", metavar="PATH",
    help="The run's work_dir, when it set one (a cluster run of an output on an object store always does).")]
PlotFile = Annotated[Path | None, typer.Option(
    "--plot", metavar="FILE",
    help="Draw the score by output position here: .png, .svg or .pdf, by the file's suffix (needs matplotlib).")]
PlotSize = Annotated[str | None, typer.Option(
    "--plot-size", metavar="WxH", help="Picture size in pixels (default 1200 wide, 300 a panel, at least 400 tall).")]
PlotTitle = Annotated[str | None, typer.Option(
    "--title", metavar="TEXT", help="The picture's heading (default: what it shows). Pictures name no file or folder.")]


@contextmanager
def _command(name: str, as_json: bool, quiet: bool, verbose: bool) -> Iterator[None]:
    """Every command runs in this: its output mode (--json, -q, -v), and a ReorderError as one line, exit 2."""
    from reorder_cli import render

    try:
        render.begin(name, as_json=as_json, quiet=quiet, verbose=verbose)
        yield
    except ReorderError as exc:
        _fail(str(exc))
    render.finish()


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
    "Tool keys (format, shard_size, shard_rows, invalid_scores, workers, ...) are listed in docs/reference/config.md; "
    "method parameters with `reorder methods`. A config with `sources:` is a mixture of several sources, each in "
    "its own order, under weights over training (configs/mixture.yaml; docs/guides/mixtures.md): no --method or "
    "--input."
)


@app.command(epilog=RUN_EPILOG)
def run(
    config_file: ConfigArgument = None,
    method: MethodOption = None,
    inputs: InputOption = None,
    output: OutputOption = None,
    sets: SetOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a previous reorder output there.")] = False,
    memory_limit: Annotated[str | None, typer.Option(
        "--memory-limit", metavar="SIZE",
        help="Memory budget of the whole run, e.g. 2GB (default: half the machine's memory).")]
    = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", metavar="N", help="Tasks at once (default: one per core).")] = None,
    keep_work: Annotated[bool, typer.Option("--keep-work", help="Keep OUTPUT/.reorder after success.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Discard an unfinished earlier run instead of resuming.")]
    = False,
    plan_only: Annotated[bool, typer.Option(
        "--plan-only", help="Plan an out-of-core run and stop; run its tasks with `reorder task`.")] = False,
    executor: Annotated[str, typer.Option(
        "--executor", metavar="local|slurm|ray",
        help="local (this machine), slurm (sbatch job arrays) or ray (Ray tasks); see `reorder status`.")]
    = "local",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="--executor slurm: check the inputs, write and print the sbatch scripts of the "
        "stages whose sizes are known, submit nothing.")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="--executor slurm: block until published (exit 0) or a task failed (exit 1).")] = False,
    wait_timeout: Annotated[str | None, typer.Option(
        "--wait-timeout", metavar="DURATION",
        help="--wait: give up after this long (90, 30m, 2h; exit 2), the jobs going on.")] = None,
    score_field: ScoreFieldOption = None,
    score: ScoreOption = None,
    select: SelectOption = None,
    token_field: TokenFieldOption = None,
    shard_size: ShardSizeOption = None,
    out_format: FormatOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Order the rows of scored shards and write them as new shards plus .manifest.json.

    A killed or failed run keeps its finished work in OUTPUT/.reorder; the same command resumes it.
    """
    from reorder_cli import config, pipeline, render
    from reorder_cli.util import units

    extra = [f"memory_limit={memory_limit}"] * (memory_limit is not None) + [f"workers={workers}"] * (
        workers is not None)
    sets = config.flag_sets({"--score-field": score_field, "--score": score, "--select": select,
                             "--token-field": token_field, "--shard-size": shard_size, "--format": out_format}) + (
        sets or [])
    with _command("run", as_json, quiet, verbose):
        if executor not in ("local", "slurm", "ray"):
            raise ReorderError(f"--executor: expected local, slurm or ray, got {executor!r}")
        if (dry_run or wait) and executor != "slurm":
            raise ReorderError("--dry-run and --wait go with --executor slurm")
        if wait_timeout is not None and not wait:
            raise ReorderError("--wait-timeout goes with --wait")
        timeout = None if wait_timeout is None else units.parse_duration(wait_timeout, "--wait-timeout")
        if plan_only and executor != "local":
            raise ReorderError("--plan-only goes with --executor local (a cluster executor plans by itself)")
        cfg = config.load(config_file, [*(sets or []), *extra], method=method, inputs=inputs or None, output=output)
        render.ignored_keys(cfg)
        render.unused_keys([cfg])
        try:
            if executor == "slurm":
                from reorder_cli.execute import slurm

                args = slurm.run_arguments(config_file, method=method, inputs=inputs, output=output, sets=sets,
                                           memory_limit=memory_limit, workers=workers, keep_work=keep_work)
                sub = slurm.run(cfg, args, dry_run=dry_run, overwrite=overwrite, restart=restart,
                                progress=render.progress())
                waiting = wait and sub.status in ("submitted", "queued")
                render.slurm_submission(sub, waiting)
                if waiting:
                    ok, line = slurm.wait(cfg.output, work_dir=cfg.work_dir, timeout=timeout)
                    render.slurm_waited(sub, ok, line)
                    if not ok:
                        raise typer.Exit(1)
                return
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if executor == "ray":
                    from reorder_cli.execute import ray_exec

                    result = ray_exec.run(cfg, overwrite=overwrite, restart=restart, keep_work=keep_work,
                                          progress=render.progress(), sets=sets)
                else:
                    result = pipeline.run(cfg, overwrite=overwrite, progress=render.progress(), keep_work=keep_work,
                                          restart=restart, plan_only=plan_only)
        except KeyboardInterrupt:
            render.interrupted(pipeline.work_root(cfg))
            raise typer.Exit(130) from None
        _warn(caught)
        render.run_result(result, cfg)


@app.command("task")
def task_cmd(
    output: Annotated[str, typer.Argument(
        metavar="OUTPUT", help="The output folder (or URL) of a run planned as tasks.")],
    stage: Annotated[str | None, typer.Argument(
        metavar="STAGE", help=f"{', '.join(TASK_STAGES[:-1])} or {TASK_STAGES[-1]} (omit to list the tasks).")]
    = None,
    index: Annotated[int | None, typer.Argument(metavar="INDEX", help="Task index within the stage.")] = None,
    work_dir: WorkDirOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Run one task of a run planned as tasks (a cluster job does this), or list them.

    Stages, in order, each after every task of the one before has finished:
    keys (one task an input), split, sort, place (the order), layout,
    scatter (one task an input slice), gather (one task an output shard).
    A run planned with --plan-only starts at scatter.
    Then `reorder publish OUTPUT` publishes the shards and the manifest.
    """
    from reorder_cli import render, stages

    with _command("task", as_json, quiet, verbose):
        if stage is None:
            render.task_list(stages.describe(output, work_dir))
            return
        if index is None:
            raise ReorderError("give the task index: reorder task OUTPUT STAGE INDEX")
        record = stages.run_one(output, stage, index, work_dir)
        render.task_done(stage, index, record)


@app.command("publish")
def publish_cmd(
    output: Annotated[str, typer.Argument(
        metavar="OUTPUT", help="The output folder (or URL) of a run planned with --plan-only.")],
    work_dir: WorkDirOption = None,
    keep_work: Annotated[bool, typer.Option("--keep-work", help="Keep the work folder after success.")] = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Publish a run planned with --plan-only once `reorder task` has run all its tasks.

    The config and inputs are the run's own (kept in its work folder): nothing else to repeat.
    """
    from reorder_cli import pipeline, render

    with _command("publish", as_json, quiet, verbose):
        result = pipeline.publish(output, work_dir, render.progress(), keep_work=keep_work)
        render.run_result(result, result.cfg)


STATUS_HELP = (
    f"Each stage of a run that ran as tasks ({', '.join(TASK_STAGES)}; {SLURM_JOBS[0]}, the job of --executor slurm "
    f"that submits the next stages; then {SLURM_JOBS[1]}): done / pending counts, failed tasks with their logs, and "
    "what the finished tasks cost (rows, bytes in and out, seconds, peak RSS), summed from their markers."
)


@app.command("status", help=STATUS_HELP)
def status_cmd(
    output: Annotated[str, typer.Argument(
        metavar="OUTPUT", help="The output folder (or URL) of a run (any executor).")],
    work_dir: WorkDirOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    from reorder_cli import render
    from reorder_cli.execute import status

    with _command("status", as_json, quiet, verbose):
        render.run_status(status.status(output, work_dir))


def _warn(caught: list) -> None:
    from reorder_cli import render

    for w in caught:
        render.warning(str(w.message))


@app.command("stats")
def stats_cmd(
    path: OutputArgument,
    deep_check: Annotated[bool, typer.Option(
        "--deep", help="Re-read the shards' scores, recompute profile and metrics, compare with the manifest.")]
    = False,
    plot_file: PlotFile = None,
    plot_size: PlotSize = None,
    plot_title: PlotTitle = None,
    by: ByOption = "rows",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Show a finished run: shards, totals, parameters, guidance metrics and the score-by-position profile.

    Reads only the manifest, unless --deep or --plot ask for the shards' scores."""
    from reorder_cli import render
    from reorder_cli.inspect import deep, plot, stats

    with _command("stats", as_json, quiet, verbose):
        view = stats.read(path, deep_check, plot_file, plot.parse_size(plot_size) if plot_size else None, plot_title,
                          by)
        problem = (f"{path}: the shards disagree with the manifest: {deep.describe(view.differences)}"
                   if view.differences else None)
        render.stats(view, plot_file, deep_check, problem)
        if problem:
            raise typer.Exit(2)


PREVIEW_EPILOG = (
    "Example: reorder preview configs/str.yaml --input 'data/*.parquet' --compare str,saw,sorting,shuffle "
    "--plot curves.png. With --compare, every method takes its own defaults (the paper's settings) for the keys "
    "that shape its order, not the config's (a warning names those left out); --set KEY=VALUE gives a value to "
    "every method; the config's other keys (score field, seed, direction, input, ...) apply to all."
)


@app.command("preview", epilog=PREVIEW_EPILOG)
def preview_cmd(
    config_file: ConfigArgument = None,
    method: MethodOption = None,
    inputs: InputOption = None,
    sets: SetOption = None,
    compare: Annotated[str | None, typer.Option(
        "--compare", "-c", metavar="METHOD,...", autocompletion=cli_help.method_list,
        help="Several methods side by side, comma-separated: str,saw,sorting,shuffle; each with its own defaults "
        "for the keys that shape its order (see below).")] = None,
    window: Annotated[int, typer.Option(
        "--window", metavar="N", help="Rows in a window (about a batch) for the metrics.")]
    = metric_defaults.WINDOW,
    boundary_pct: Annotated[float, typer.Option(
        "--boundary-pct", metavar="PCT",
        help="Boundary sharpening looks at the first and last this many percent of positions.")]
    = metric_defaults.BOUNDARY_PCT,
    plot_file: PlotFile = None,
    plot_size: PlotSize = None,
    plot_title: PlotTitle = None,
    score_field: ScoreFieldOption = None,
    score: ScoreOption = None,
    select: SelectOption = None,
    token_field: TokenFieldOption = None,
    by: ByOption = "rows",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Show the order a run would give (profile and guidance metrics) from the scores alone; writes no shards."""
    from reorder_cli import config, render
    from reorder_cli.inspect import plot, preview
    from reorder_cli.metrics import guidance as metrics

    sets = config.flag_sets({"--score-field": score_field, "--score": score, "--select": select,
                             "--token-field": token_field}) + (sets or [])
    with _command("preview", as_json, quiet, verbose):
        params = metrics.Params(window=window, boundary_pct=boundary_pct)
        size = plot.parse_size(plot_size) if plot_size else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sets, counts_field = preview.token_counts_field(config_file, sets or [], by)
            cfgs = preview.configs(config_file, sets, method=method, compare=compare, inputs=inputs or None)
            render.unused_keys(cfgs)
            result = preview.run(cfgs, params, render.progress(), plot_file, size, plot_title, by, counts_field)
        _warn(caught)
        render.preview(result, plot_file)


VERIFY_EPILOG = (
    "Exit code 0: everything matches; 1: differences (one line each); 2: a usage or read error. "
    "Example: reorder verify data-str --with-inputs"
)


@app.command("verify", epilog=VERIFY_EPILOG)
def verify_cmd(
    path: OutputArgument,
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", "--inputs", "-i", metavar="PATH",
        help="Also prove the output is a permutation of these inputs: file, folder or "
        "glob (repeatable).")] = None,
    with_inputs: Annotated[bool, typer.Option(
        "--with-inputs", help="Also prove it against the inputs the manifest records.")] = False,
    workers: Annotated[int, typer.Option(
        "--workers", "-w", metavar="N", help="Files read at once (0: one per core).")] = 0,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Check an output against its manifest (hashes, rows, positions, scores) and, with inputs, its rows."""
    from reorder_cli import render
    from reorder_cli.inspect import verify

    with _command("verify", as_json, quiet, verbose):
        report = verify.verify(path, inputs=inputs, manifest_inputs=with_inputs, workers=workers,
                               progress=render.progress())
        render.verify(report)
        if not report.ok:
            raise typer.Exit(1)


AUDIT_EPILOG = (
    "LOG: JSONL, one line per optimizer step or per (step, rank): {\"step\": S, \"ids\": [...]} (several files "
    "are pooled). With --tokens the ids are sample indices of sequences of --seq-length tokens of the exported "
    "token stream (or, with --offsets, each sequence's first token). Exit code 0: the order held; 1: it did not; "
    "2: a usage or read error. Example: reorder audit data-str audit.rank*.jsonl"
)


@app.command("audit", epilog=AUDIT_EPILOG)
def audit_cmd(
    path: Annotated[Path, typer.Argument(metavar="OUTPUT", help="The output folder the trainer read.")],
    logs: Annotated[list[Path], typer.Argument(metavar="LOG", help="What the trainer consumed (JSONL; one or more).")],
    id_field: Annotated[str | None, typer.Option(
        "--id-field", metavar="FIELD", help="Field of the rows that the log's ids are (default: id).")] = None,
    positions: Annotated[bool, typer.Option("--positions", help="The log's ids are positions in the order.")]
    = False,
    tokens: Annotated[bool, typer.Option(
        "--tokens", help="The log's ids are sample indices of fixed-length sequences of the output's token stream "
        "(a run with tokenizer:); needs --seq-length.")] = False,
    seq_length: Annotated[int | None, typer.Option(
        "--seq-length", metavar="L", help="Tokens a sample holds (the trainer's sequence length).")] = None,
    offsets: Annotated[bool, typer.Option(
        "--offsets", help="With --tokens: the ids are each sequence's first token offset in the stream.")] = False,
    global_batch: Annotated[int | None, typer.Option(
        "--global-batch", "-g", metavar="N",
        help="Samples a step consumes (default: inferred, the most common).")] = None,
    start_sample: Annotated[int, typer.Option(
        "--start-sample", metavar="N", help="Samples consumed before the log's first step (a resumed run).")] = 0,
    plot_file: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE", help="Draw each consumed sample's position in the order against when it was "
        "consumed (a diagonal band when the order held): .png, .svg or .pdf, by the file's suffix (needs "
        "matplotlib).")] = None,
    plot_title: PlotTitle = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Check what a trainer consumed against the order: every step must take exactly its window."""
    from reorder_cli import render
    from reorder_cli.inspect import audit, plot

    with _command("audit", as_json, quiet, verbose):
        if plot_file:
            plot.require(plot_file)
        report = audit.audit(path, logs, id_field=id_field, positions=positions, global_batch=global_batch,
                             start_sample=start_sample, tokens=tokens, seq_length=seq_length, offsets=offsets)
        if plot_file:
            audit.write_plot(plot_file, report, plot_title)
        render.audit(report, global_batch is not None, plot_file)
        if not report.held:
            raise typer.Exit(1)


config_app = typer.Typer(cls=cli_help.Group, help="Show, check or describe a run's config.", no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show_cmd(
    config_file: ConfigArgument = None, method: MethodOption = None, inputs: InputOption = None,
    output: OutputOption = None, sets: SetOption = None, score_field: ScoreFieldOption = None,
    score: ScoreOption = None, select: SelectOption = None, token_field: TokenFieldOption = None,
    shard_size: ShardSizeOption = None, out_format: FormatOption = None,
    as_json: JsonOption = False, quiet: QuietOption = False, verbose: VerboseOption = False,
) -> None:
    """The config `reorder run` would use with these arguments, and where each value comes from."""
    from reorder_cli import config_show, render

    flags = {"--score-field": score_field, "--score": score, "--select": select, "--token-field": token_field,
             "--shard-size": shard_size, "--format": out_format}
    with _command("config show", as_json, quiet, verbose):
        render.config_shown(config_show.resolve(config_file, sets or [], flags, method=method, inputs=inputs,
                                                output=output))


@config_app.command("validate")
def config_validate_cmd(
    config_file: ConfigArgument = None, method: MethodOption = None, sets: SetOption = None,
    as_json: JsonOption = False, quiet: QuietOption = False, verbose: VerboseOption = False,
) -> None:
    """Check a config's keys and values without running (exit 0, or a one-line error and exit 2)."""
    from reorder_cli import config_show, render

    with _command("config validate", as_json, quiet, verbose):
        render.config_valid(config_file, config_show.resolve(config_file, sets or [], {}, method=method, inputs=None,
                                                             output=None))


@config_app.command("schema")
def config_schema_cmd(as_json: JsonOption = False, quiet: QuietOption = False, verbose: VerboseOption = False) -> None:
    """Print the JSON Schema of a config file (for editors and CI), generated from the key registry."""
    from reorder_cli import config_show, render

    with _command("config schema", as_json, quiet, verbose):
        render.config_schema(config_show.json_schema())


@app.command()
def methods(as_json: JsonOption = False, quiet: QuietOption = False, verbose: VerboseOption = False) -> None:
    """List the ordering methods with their parameters and defaults."""
    from reorder_cli import render

    with _command("methods", as_json, quiet, verbose):
        render.methods_table()


if __name__ == "__main__":
    app()
