"""The one exception type for user mistakes and bad input.

The CLI prints its message as a single line and exits non-zero; anything else is a bug
and keeps its traceback.
"""


class ReorderError(Exception):
    """A problem the user can fix: bad config, bad input, refused output folder."""


class KeepsWork(ReorderError):
    """An error after which the run's finished tasks are kept in its work folder (a re-run resumes once
    the cause is mended), unlike bad input or config, which discard a run that has not published."""


class StateError(KeepsWork):
    """A run's working state is unreadable, corrupt or damaged (a state file, a marker, a task's output).

    Unlike other errors it never discards the work folder: what was finished there is kept, and the
    message says what to do (re-run the task named, or ``--restart``)."""
