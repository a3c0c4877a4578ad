"""Which tasks are running, for ``reorder status``.

Every task, whichever executor runs it, writes ``logs/STAGE-INDEX.started`` (its host and pid) when it
starts and removes it when it ends, finished or failed (:meth:`WorkDir.running`). A task killed outright
(SIGKILL, a node lost) cannot remove it, so a marker is believed only when it can be checked or nothing
better says: a task is *running* when it has neither finished nor failed, and

- Slurm lists its array element as running (``R``), for a run submitted with ``--executor slurm``
  (the ids in ``slurm/jobs.json``); Slurm is then the only judge of the tasks on other hosts; or
- its marker names this host and a process that is alive; or
- its marker names another host and no Slurm queue can be asked (Ray workers elsewhere: ``reorder
  status`` cannot check them, and says which host).
"""

from __future__ import annotations

import os
import socket

from reorder_cli.workdir import WorkDir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _by_marker(work: WorkDir, trust_other_hosts: bool) -> dict[str, dict[int, str | None]]:
    """stage -> {index: host (None: this host)} of the tasks whose ``.started`` marker is believed."""
    out: dict[str, dict[int, str | None]] = {}
    host = socket.gethostname()
    for stage, index, info in work.started_markers():  # a loop over markers
        if info.get("host") == host:
            if _alive(int(info.get("pid", 0))):
                out.setdefault(stage, {})[index] = None
        elif trust_other_hosts:
            out.setdefault(stage, {})[index] = info.get("host")
    return out


def running(work: WorkDir) -> dict[str, dict[int, str | None]]:
    """stage -> {index: host the task runs on, None when this host or Slurm says so} (not yet filtered
    against the finished and failed markers: :mod:`reorder_cli.execute.status` does that)."""
    from reorder_cli.execute import slurm

    in_slurm = slurm.running_elements(work)  # None: not a Slurm run, or no queue to ask
    found = _by_marker(work, trust_other_hosts=in_slurm is None)
    for stage, index in in_slurm or ():
        found.setdefault(stage, {})[index] = None
    return found
