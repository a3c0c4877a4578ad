"""Slurm's queue: which of a run's jobs are still pending or running (``squeue``).

The one place that asks it whether jobs are alive: ``--wait``, a re-submission of a run whose jobs are
queued (:mod:`reorder_cli.execute.slurm`), and the run's lock held by its Slurm jobs
(:mod:`reorder_cli.run_lock`). A ``squeue`` that fails is asked again a few times; then the caller
gets one line, never a guess.
"""

from __future__ import annotations

import os
import subprocess
import time

from reorder_cli.errors import ReorderError

#: The states of a job that still holds its place in the chain: pending, running, completing, configuring,
#: suspended.
ACTIVE_STATES = "PD,R,CG,CF,S"
#: How many times a failing ``squeue`` is asked, and the seconds between two attempts.
ATTEMPTS = 3
RETRY_SECONDS = 2.0


def this_job() -> str | None:
    """The id of the Slurm job this process runs in (None outside a job)."""
    return os.environ.get("SLURM_JOB_ID") or None


def active(ids: list[str], attempts: int = ATTEMPTS, delay: float = RETRY_SECONDS) -> set[str]:
    """Those of ``ids`` that Slurm lists pending or running. A ``squeue`` that fails (or is missing) is asked
    ``attempts`` times, ``delay`` seconds apart, then a :class:`ReorderError` names why."""
    if not ids:
        return set()
    why = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(delay)
        try:
            proc = subprocess.run(["squeue", "-h", "-o", "%F", "-t", ACTIVE_STATES], capture_output=True,
                                  text=True, check=False)
        except OSError as exc:  # no squeue on PATH: asking again will not help
            why = f"squeue cannot be run: {exc.strerror or exc}"
            break
        if proc.returncode == 0:
            return set(proc.stdout.split()) & set(ids)
        why = " ".join((proc.stderr or proc.stdout).split()) or f"exit code {proc.returncode}"
        why = f"squeue failed {attempt + 1} time(s): {why}"
    raise ReorderError(f"{why}; cannot tell whether the Slurm jobs {', '.join(ids)} still run")
