"""Progress lines and warnings go through `logging`, under the logger "graders", as nbgrader's and
distributed's do: a caller that imports the package (a test, a notebook, a script) sees nothing
unless it asks (caplog, a handler of its own), and the command line shows them as plain lines.
"""
import contextlib
import logging
import sys

ROOT = "graders"


@contextlib.contextmanager
def on_terminal(debug: bool = False):
    """While the block runs: progress (INFO; DEBUG too with `debug`) on stdout, warnings and errors
    on stderr, each a plain line; the logger as it was afterwards."""
    logger = logging.getLogger(ROOT)
    out, err = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    before = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False  # a root handler (distributed's, a user's) must not print each line twice
    try:
        yield logger
    finally:
        logger.removeHandler(out)
        logger.removeHandler(err)
        logger.setLevel(before[0])
        logger.propagate = before[1]
