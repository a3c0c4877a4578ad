"""The one exception type for user mistakes and bad input.

The CLI prints its message as a single line and exits non-zero; anything else is a bug
and keeps its traceback.
"""


class ReorderError(Exception):
    """A problem the user can fix: bad config, bad input, refused output folder."""
