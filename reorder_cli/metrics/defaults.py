"""The metrics' default parameters, as plain constants.

Kept apart from :mod:`guidance` (which needs numpy) so that the command line can show them
as option defaults without importing numpy at start-up.
"""

WINDOW = 1024  # rows in a window (about a batch)
BOUNDARY_PCT = 5.0  # the first and the last k percent of positions
