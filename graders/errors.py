"""The one kind of error a user can fix.

A `GradersError`'s message is one line that names the problem and says what to do; the command
prints it as ``error: <message>`` and exits with status 1. Anything else that escapes a command
is a bug: it keeps its traceback, under a line saying where to report it (``--debug`` shows the
traceback of a GradersError too). nbgrader's NbGraderException plays the same part there.
"""

class GradersError(RuntimeError):
    """A problem the user can fix (a RuntimeError, as the errors it replaces were)."""

    exit_status = 1


def bug_line() -> str:
    return ("error: this is a bug in onions, not something you did: please report it to the course's "
            "maintainers with the traceback above, the command you ran and `python -m graders --version` "
            "(docs/internals.md, 'Reporting a bug')")
