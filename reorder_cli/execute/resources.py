"""What a cluster task declares to its scheduler: its memory, derived here for Slurm and Ray alike.

Under a cluster executor ``memory_limit`` is the budget of *one task*: the run is planned for one
worker a process, so each task sizes its pieces from the whole budget, and the budget promise (a run
stays within ``memory_limit`` plus :data:`~reorder_cli.rewrite.budget.SLACK_BYTES`) becomes a task's.
"""

from __future__ import annotations

import dataclasses

from reorder_cli.config import RunConfig
from reorder_cli.rewrite.budget import SLACK_BYTES

MIB = 1 << 20


def task_memory_mib(memory_limit: int) -> int:
    """The MiB a task declares: ``memory_limit`` plus the 64 MB slack the budget allows, rounded up
    to whole MiB (Slurm's ``--mem=NM`` unit; Ray's ``memory=`` gets the same in bytes)."""
    return -(-(memory_limit + SLACK_BYTES) // MIB)


def slurm_mem(settings: dict, memory_limit: int) -> str:
    """``--mem`` of every job: ``slurm.mem`` when given, else :func:`task_memory_mib` (``332M``)."""
    return str(settings["mem"]) if settings.get("mem") else f"{task_memory_mib(memory_limit)}M"


def ray_memory(settings: dict, memory_limit: int) -> int:
    """Bytes each Ray task declares: ``ray.memory`` when given, else :func:`task_memory_mib` in bytes."""
    return int(settings["memory"]) if settings.get("memory") else task_memory_mib(memory_limit) * MIB


def per_task(cfg: RunConfig) -> RunConfig:
    """The config a cluster executor plans with: one worker, so each task sizes its pieces from the whole
    ``memory_limit`` (a task's budget, declared to the scheduler). The output does not depend on it."""
    return dataclasses.replace(cfg, workers=1)
