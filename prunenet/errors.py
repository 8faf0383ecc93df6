"""One exception type for user-facing mistakes.

The CLI prints ``error: <message>`` on one line and exits with status 2 for these;
anything else is a bug and keeps its traceback.
"""


class PruneNetError(Exception):
    """A bad input (ratio, path, architecture, file) with a one-line message that names the fix."""
