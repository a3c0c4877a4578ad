"""Reading a run's state files (``state.json``, ``run.json``, markers, ``jobs.json``, ...).

A transient ``OSError`` (an NFS hiccup) is retried a few times with a short backoff, then reported; a
file that does not parse is reported. Either is one line naming the file and what to do
(:class:`~reorder_cli.errors.StateError`, which keeps the work folder): never taken for "no file", which
would make a run start over and discard its finished tasks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from reorder_cli.errors import StateError

T = TypeVar("T")

#: What to do about a damaged state file, unless the caller knows better.
RESTART = "re-run with --restart to discard the run's working state and start over"
#: Tries of a read that fails with a transient error, and the wait before the second (doubled each time).
TRIES, FIRST_WAIT = 4, 0.05


def transient(read: Callable[[], T], what: object, fix: str = RESTART) -> T:
    """``read()``, tried again on an ``OSError`` (a missing file is no transient error: it is raised);
    still failing after :data:`TRIES` tries, one line naming ``what``."""
    for attempt in range(TRIES):  # a loop over tries
        try:
            return read()
        except (FileNotFoundError, NotADirectoryError):
            raise
        except OSError as exc:
            if attempt == TRIES - 1:
                why = exc.strerror or str(exc)
                raise StateError(f"{what}: cannot be read ({why}, {TRIES} tries); check the filesystem and "
                                 f"re-run the same command, or {fix}") from None
            time.sleep(FIRST_WAIT * 2**attempt)
    raise AssertionError("unreachable")


def parse_json(data: bytes, what: object, fix: str = RESTART) -> Any:
    """The JSON object in ``data`` (the bytes of ``what``); anything else is one line naming it."""
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise StateError(f"{what}: corrupt ({str(exc).splitlines()[0]}); {fix}") from None
    if not isinstance(value, dict):
        raise StateError(f"{what}: corrupt (not a JSON object); {fix}")
    return value


def read_json(path: str | os.PathLike, fix: str = RESTART) -> Any:
    """A local state file's JSON object (:func:`transient`, :func:`parse_json`); a missing file raises
    ``FileNotFoundError``."""
    return parse_json(transient(lambda: _read(path), path, fix), path, fix)


def _read(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
