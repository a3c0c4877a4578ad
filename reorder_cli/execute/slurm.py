"""``reorder run --executor slurm``: the run's tasks as Slurm jobs.

The command checks the inputs and claims the output folder (writing ``.reorder/run.json``); every
stage of :mod:`reorder_cli.stages` then runs as Slurm jobs. One sbatch script per stage is written
under ``OUTPUT/.reorder/slurm/``: a job array over that stage's *unfinished* task indices (an index
list, so a re-submit after a failure runs only what is missing). A stage's size is known only once an
earlier stage has finished (split decides the sort and place tasks, layout the scatter and gather
tasks), so a submission goes as far as the sizes are known and ends with a ``submit`` job that runs the
same command again (three waves for a fresh run: keys and split; sort, place and layout; scatter,
gather and publish); the last ends with a publish job that runs the same ``reorder run``. Each job is
chained to the previous with ``--dependency=afterok:`` and ``--kill-on-invalid-dep=yes``, so
a failed task cancels its dependents instead of leaving them pending. Arrays larger than the
cluster's ``MaxArraySize`` are split (an array's index must stay below it; the index list maps an
array index to a task index). A task's output goes to ``OUTPUT/.reorder/logs/STAGE-INDEX.log``; a task
that fails (or is cancelled) leaves ``STAGE-INDEX.failed`` there, which ``reorder status`` reports.
Every job declares ``--mem`` (``slurm.mem``, else memory_limit + 64 MB: :mod:`.resources`) and ``--time``
(``slurm.time_STAGE``, else ``slurm.time``). ``jobs.json`` keeps each job's id, stage and index list, so
``reorder status`` maps the array elements Slurm runs to tasks.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reorder_cli import pipeline, run_lock
from reorder_cli import stages as graph
from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.execute import credentials, resources
from reorder_cli.execute import status as run_status
from reorder_cli.util import atomic, squeue, state_io, store
from reorder_cli.util.progress import Progress
from reorder_cli.util.stage_names import SLURM_JOBS
from reorder_cli.workdir import WorkDir, locate

#: MaxArraySize and MaxJobCount when ``scontrol`` cannot say (Slurm's defaults).
DEFAULT_LIMITS = {"MaxArraySize": 1001, "MaxJobCount": 10000}


@dataclass
class Job:
    stage: str  # scatter, gather or publish
    script: Path
    text: str
    indices: list[int]  # the task indices it runs (publish: [0])
    after: list[str]  # stages it waits for
    job_id: str | None = None


@dataclass
class Submission:
    status: str  # "submitted", "dry run", "already done" or "queued" (its jobs are; nothing submitted)
    output: Path
    jobs: list[Job] = field(default_factory=list)
    note: str = ""


def job_settings(cfg: RunConfig) -> dict[str, Any]:
    """The ``slurm:`` section with every job's ``--mem`` filled in (:func:`resources.slurm_mem`)."""
    return {**cfg.slurm, "mem": resources.slurm_mem(cfg.slurm, cfg.memory_limit)}


def reorder_command() -> list[str]:
    """The current interpreter's ``reorder``, so the jobs run the same installation."""
    return [sys.executable, "-m", "reorder_cli.cli"]


def run_arguments(config_file: Path | None, *, method: str | None, inputs: list[str] | None, output: str | None,
                  sets: list[str] | None, memory_limit: str | None, workers: int | None,
                  keep_work: bool = False) -> list[str]:
    """The arguments of ``reorder run`` that the publish job repeats (the executor's own left out); a
    credential among ``sets`` is refused (:func:`credentials.check_sets`): the scripts would hold it."""
    credentials.check_sets(sets, "slurm")
    args = ["run", *([str(Path(config_file).absolute())] if config_file else [])]
    args += ["--method", method] if method else []
    for item in inputs or []:
        args += ["--input", item]
    args += ["--output", output] if output else []
    for item in sets or []:
        args += ["--set", item]
    args += ["--memory-limit", memory_limit] if memory_limit else []
    args += ["--workers", str(workers)] if workers else []
    args += ["--keep-work"] if keep_work else []
    return args


def cluster_limits() -> dict[str, int]:
    """MaxArraySize and MaxJobCount from ``scontrol show config`` (Slurm's defaults without scontrol)."""
    limits = dict(DEFAULT_LIMITS)
    if shutil.which("scontrol") is None:
        return limits
    proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in limits and value.strip().isdigit():
            limits[key.strip()] = int(value.strip())
    return limits


def _header(stage: str, array: str | None, settings: dict[str, Any], cwd: Path) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name=reorder-{stage}"]
    lines += [f"#SBATCH --array={array}"] if array else []
    lines += ["#SBATCH --output=/dev/null", f"#SBATCH --chdir={cwd}"]
    settings = {**settings, "time": settings.get(f"time_{stage}", settings.get("time"))}  # the stage's own first
    for key, option in (("partition", "partition"), ("account", "account"), ("qos", "qos"), ("time", "time"),
                        ("cpus_per_task", "cpus-per-task"), ("mem", "mem")):
        if settings.get(key) is not None:
            lines.append(f"#SBATCH --{option}={settings[key]}")
    lines += [f"#SBATCH {extra}" for extra in settings.get("extra_sbatch", [])]
    return lines


def script(stage: str, indices: list[int], work: WorkDir, settings: dict[str, Any], command: list[str],
           cwd: Path) -> str:
    """The sbatch script of one stage (an array over ``indices``), or of the submit or publish job.
    ``command`` is run with the task index appended (a task stage) or as it is (submit, publish)."""
    logs = shlex.quote(str(work.logs))
    if stage in SLURM_JOBS:
        head = _header(stage, None, settings, cwd)
        pick = ["I=0"]
        run = shlex.join(command)
    else:
        cap = f"%{settings['max_parallel']}" if "max_parallel" in settings else ""
        head = _header(stage, f"0-{len(indices) - 1}{cap}", settings, cwd)
        pick = [f"INDICES=({' '.join(map(str, indices))})", 'I="${INDICES[$SLURM_ARRAY_TASK_ID]}"']
        run = shlex.join(command) + ' "$I"'
    body = [
        f"# reorder: {stage} task(s) {_ranges(indices)}; written by `reorder run --executor slurm`,",
        "# which re-submits only unfinished tasks when run again.",
        "set -euo pipefail",
        *pick,
        f"mkdir -p {logs}",
        f"LOG={logs}/$(printf '{stage}-%05d' \"$I\")",
        'exec >"$LOG.log" 2>&1',
        'rm -f "$LOG.failed"',
        f"trap 'rc=$?; echo \"reorder: {stage} task $I failed (exit $rc)\"; touch \"$LOG.failed\"; exit $rc' ERR",
        f"trap 'echo \"reorder: {stage} task $I cancelled\"; touch \"$LOG.failed\"; exit 143' TERM",
        *settings.get("setup", []),
        run,
    ]
    return "\n".join(head + body) + "\n"


def _ranges(indices: list[int]) -> str:
    """0 1 2 5 7 8 -> '0-2,5,7-8'."""
    out, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            out.append(str(i) if i == start else f"{start}-{i}")
            start = None
    return ",".join(out)


def plan_jobs(output: Path, settings: dict[str, Any], run_args: list[str], limits: dict[str, int],
              cwd: Path, work_dir: str | None = None) -> list[Job]:
    """The jobs that take the run in ``output`` as far as its stages' sizes are known: an array of the
    unfinished tasks of each such stage, each after the one before; then the publish job, or, when a
    stage's size is decided by a stage in this submission (the sort and place tasks by split, the scatter
    and gather tasks by layout), a submit job that runs the same command again once that stage is done."""
    work = locate(output, work_dir)
    todo: dict[str, list[int]] = {}
    known = True
    for stage in graph.STAGES:
        pending = graph.todo(work, stage)
        if pending is None:
            known = False
            break
        todo[stage] = pending
    total = sum(map(len, todo.values()))
    if total > limits["MaxJobCount"]:
        raise ReorderError(f"{output}: {total} unfinished tasks, more than this cluster accepts (MaxJobCount "
                           f"{limits['MaxJobCount']}); raise MaxJobCount or use larger inputs slices and shards")
    size = max(1, limits["MaxArraySize"] - 1)  # array indices 0 .. MaxArraySize-1
    jobs: list[Job] = []
    after: list[str] = []
    base = reorder_command()
    for stage in todo:
        chunks = [todo[stage][k:k + size] for k in range(0, len(todo[stage]), size)]
        for n, chunk in enumerate(chunks):
            name = f"{stage}.sh" if len(chunks) == 1 else f"{stage}-{n}.sh"
            command = [*base, "task", *work.task_args(), str(work.output), stage]
            text = script(stage, chunk, work, settings, command, cwd)
            jobs.append(Job(stage, work.slurm / name, text, chunk, list(after)))
        if chunks:
            after = [stage]
    if known:
        text = script("publish", [0], work, settings, [*base, *run_args, "--quiet"], cwd)
        jobs.append(Job("publish", work.slurm / "publish.sh", text, [0], after))
    else:
        text = script("submit", [0], work, settings, [*base, *run_args, "--executor", "slurm", "--quiet"], cwd)
        jobs.append(Job("submit", work.slurm / "submit.sh", text, [0], after))
    return jobs


def write(jobs: list[Job]) -> None:
    for job in jobs:
        job.script.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(job.script, job.text.encode())


def _sbatch(job: Job, depends: list[str], hold: bool = False) -> str:
    args = ["sbatch", "--parsable"] + (["--hold"] if hold else [])
    if depends:
        args += [f"--dependency=afterok:{':'.join(depends)}", "--kill-on-invalid-dep=yes"]
    proc = subprocess.run([*args, str(job.script)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        why = " ".join((proc.stderr or proc.stdout).split()) or f"exit code {proc.returncode}"
        raise ReorderError(f"{job.script}: sbatch refused it: {why}")
    return proc.stdout.strip().split(";")[0]


def submitted(work: WorkDir) -> dict[str, Any]:
    """``slurm/jobs.json``: every job the run submitted (``jobs``) and each one's stage and indices (``arrays``)."""
    jobs_file = work.slurm / "jobs.json"
    return state_io.read_json(jobs_file) if jobs_file.exists() else {"jobs": [], "arrays": []}


def submit(jobs: list[Job], work: WorkDir, lock: run_lock.Lock) -> None:
    """Submit ``jobs`` in order, each after the stages it waits for; ids are kept in ``slurm/jobs.json``. The jobs
    that wait for none are submitted held, the run's lock is handed to the chain, then they are released: no
    job of the chain runs before it holds the lock (its submit and publish jobs take it over)."""
    ids: dict[str, list[str]] = {}
    first: list[str] = []  # the jobs submitted held
    try:
        for job in jobs:
            depends = [i for stage in job.after for i in ids.get(stage, [])]
            job.job_id = _sbatch(job, depends, hold=not depends)
            ids.setdefault(job.stage, []).append(job.job_id)
            first += [] if depends else [job.job_id]
        before = submitted(work)
        atomic.write_json(work.slurm / "jobs.json", {  # every submission of the run: --wait and status follow them
            "jobs": before["jobs"] + [j.job_id for j in jobs], "submitted": time.time(),
            "arrays": before.get("arrays", []) + [{"id": j.job_id, "stage": j.stage, "indices": j.indices}
                                                 for j in jobs]})
        lock.hand_to_jobs([j.job_id for j in jobs])
        proc = subprocess.run(["scontrol", "release", ",".join(first)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            why = " ".join((proc.stderr or proc.stdout).split()) or f"exit code {proc.returncode}"
            raise ReorderError(f"{work.slurm}: scontrol release of the jobs {', '.join(first)} failed: {why}; "
                               "nothing stays submitted")
    except ReorderError:
        lock.handed = False  # the lock is not the chain's: released when the command ends
        done = [j.job_id for j in jobs if j.job_id]
        if done and shutil.which("scancel"):  # nothing half-submitted: the chain is all or nothing
            subprocess.run(["scancel", *done], capture_output=True, check=False)
        raise


def running_elements(work: WorkDir) -> list[tuple[str, int]] | None:
    """``(stage, task index)`` of this run's jobs that Slurm lists as running (an array element maps to its
    task through the job's index list); None when the run was not submitted to Slurm or squeue cannot say."""
    if not (work.slurm / "jobs.json").is_file() or shutil.which("squeue") is None:
        return None
    arrays = {a["id"]: a for a in submitted(work).get("arrays", [])}
    proc = subprocess.run(["squeue", "-h", "-r", "-t", "R", "-o", "%F %K"], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0 or not arrays:
        return None
    found = []
    for line in proc.stdout.splitlines():
        job, _, element = line.partition(" ")
        array = arrays.get(job.strip())
        if array is None:
            continue
        k = int(element) if element.strip().isdigit() else 0  # the publish job: not an array (N/A)
        if k < len(array["indices"]):
            found.append((array["stage"], array["indices"][k]))
    return found


def require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise ReorderError("--executor slurm: sbatch is not on PATH (run on a Slurm login node, or load its module)")


def wait(output: Path, poll: float = 1.0, work_dir: str | None = None, timeout: float | None = None,
         retry: float = squeue.RETRY_SECONDS) -> tuple[bool, str]:
    """Block until the run in ``output`` is published (True) or a task failed or every job ended (False);
    returns the outcome and one line saying it. A ``squeue`` that keeps failing (asked again, ``retry``
    seconds apart), or ``timeout`` seconds passed, is a :class:`ReorderError`: the jobs may still run."""
    work = locate(output, work_dir)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ids = submitted(work)["jobs"]  # a submit job adds some
        report = run_status.status(output, work_dir, stats=False)
        if report["finished"]:
            return True, f"{output}: published"
        failure = run_status.first_failure(report)
        if failure is not None:
            stage, task = failure
            return False, f"{stage} task {task['index']} failed; its log: {task['log']}"
        try:
            alive = squeue.active(ids, delay=retry)
        except ReorderError as exc:
            raise ReorderError(f"{output}: --wait stopped: {exc}; `reorder status {output}` shows the run") from None
        if not alive:
            time.sleep(poll)  # the last job may have published just now
            if run_status.status(output, work_dir, stats=False)["finished"]:
                return True, f"{output}: published"
            return False, (f"{output}: the Slurm jobs ({', '.join(ids)}) ended without publishing (cancelled?); "
                           "`reorder status` shows what is left, the same command resubmits it")
        if deadline is not None and time.monotonic() >= deadline:  # the whole time waited, never less
            raise ReorderError(f"{output}: not published within --wait-timeout ({timeout:g} s); its Slurm jobs "
                               f"({', '.join(sorted(alive, key=ids.index))}) go on: `reorder status {output}` "
                               "follows them, the same command with --wait waits again")
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))


def _refuse_if_queued(work: WorkDir, lock: run_lock.Lock) -> None:
    """A run whose Slurm jobs (``jobs.json``) are queued or running is not submitted again: :class:`run_lock.Held`
    naming them. The chain's own submit job (which took the lock over) is not asked: its jobs before it ended."""
    if lock.member:
        return
    ids = [i for i in submitted(work)["jobs"] if i != squeue.this_job()]
    active = squeue.active(ids)
    if active:
        active_ids = sorted(active, key=ids.index)
        raise run_lock.Held(f"{work.output}: this run's Slurm jobs {', '.join(active_ids)} are queued or running",
                            {}, active_ids)


def run(cfg: RunConfig, run_args: list[str], *, dry_run: bool = False, overwrite: bool = False,
        restart: bool = False, progress: Progress | None = None) -> Submission:
    """Check the inputs and claim the output here (:func:`pipeline.prepare`), then write the scripts of
    the stages whose sizes are known and, unless ``dry_run``, submit them. A finished run is reported as
    such and nothing is submitted."""
    if cfg.work_dir is not None and store.is_url(cfg.work_dir):
        raise ReorderError(f"work_dir {cfg.work_dir}: Slurm jobs write their logs and read their scripts on a shared "
                           "file system; set work_dir to a shared folder (the inputs and the output may stay on "
                           "the store), or use --executor ray or local")
    credentials.check_slurm_lines(cfg.slurm)  # before anything is written
    if not dry_run:
        require_sbatch()
    try:
        with pipeline.preparing(resources.per_task(cfg), overwrite, restart, "reorder run --executor slurm",
                                _refuse_if_queued) as prepared:
            if prepared.status == "already done":
                return Submission("already done", cfg.output, note=prepared.notes[0])
            work = locate(cfg.output, cfg.work_dir)
            with run_lock.held(work, "reorder run --executor slurm") as lock:  # taken by preparing: the same
                jobs = plan_jobs(cfg.output, job_settings(cfg), run_args, cluster_limits(), Path.cwd(), cfg.work_dir)
                write(jobs)
                if dry_run:
                    return Submission("dry run", cfg.output, jobs)
                for job in jobs:  # tasks submitted again are failed no longer (--wait would stop at once)
                    for index in job.indices:
                        work.clear_failure(job.stage, index)
                submit(jobs, work, lock)
                return Submission("submitted", cfg.output, jobs)
    except run_lock.Held as held:
        if not held.jobs:
            raise
        return Submission("queued", cfg.output, note=(
            f"{cfg.output}: this run's Slurm jobs {', '.join(held.jobs)} are queued or running; nothing submitted "
            f"(`reorder status {cfg.output}` follows them, --wait waits for them)"))
