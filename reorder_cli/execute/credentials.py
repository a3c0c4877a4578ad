"""What a cluster executor refuses to hand its tasks: credentials it could only pass in the clear.

A Slurm job repeats the command's ``--set`` values in its sbatch script (which Slurm keeps in its job
records), and a Ray task gets only the shareable ``storage_options`` (:func:`store.shareable`): a
credential given with ``--set storage_options...`` can reach neither safely, and a ``slurm.setup`` or
``slurm.extra_sbatch`` line that sets a secret environment variable would write its value into every
script. Both are one line saying how to pass it: the environment the tasks run in, a profile, or the
store's own credential chain. (A config file's credentials stay in that file: the driver, or the Slurm
job that publishes, reads them there; tasks take theirs from their own chain.)
"""

from __future__ import annotations

import re
from typing import Any

from reorder_cli.config import parse_overrides
from reorder_cli.errors import ReorderError
from reorder_cli.util import store

HOW = ("give the tasks their credentials through the environment they run in (AWS_ACCESS_KEY_ID and "
       "AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS ...), a profile (storage_options.profile) or the "
       "store's own chain (an instance role)")

#: ``NAME=value`` in a script line: an assignment (``export NAME=...``) or an ``--export=...,NAME=...`` item.
_ASSIGNMENT = re.compile(r"(?:^|[\s,;])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\S*)")


def check_sets(sets: list[str] | None, executor: str) -> None:
    """One line when a ``--set`` carries a credential (:func:`store.secret_names`) for ``executor``'s tasks."""
    found = store.secret_names(parse_overrides(sets or []).get("storage_options"))
    if found:
        raise ReorderError(f"--set {found[0]}: a credential on the command line cannot reach --executor {executor} "
                           f"tasks safely ({_why(executor)}); remove it and {HOW}")


def _why(executor: str) -> str:
    return ("Slurm jobs would repeat it in their sbatch scripts and Slurm's job records" if executor == "slurm"
            else "only the storage_options that say where the store is are sent to them")


def check_slurm_lines(settings: dict[str, Any]) -> None:
    """One line when a ``slurm.setup`` or ``slurm.extra_sbatch`` line gives a secret environment variable
    (``AWS_SECRET_ACCESS_KEY=...``) a value written out in it (``$VAR`` and ``$(...)`` are not)."""
    for key in ("setup", "extra_sbatch"):
        for line in settings.get(key) or []:
            for name, value in _ASSIGNMENT.findall(str(line)):
                if store.is_secret(name) and value.strip("'\"") and not value.strip("'\"").startswith("$"):
                    raise ReorderError(f"slurm.{key}: sets {name} in the sbatch scripts (which Slurm keeps in its "
                                       f"job records); remove it: export {name} where you submit (the jobs inherit "
                                       "that environment), or use a profile or the store's own chain")
