"""Progress lines and warnings go through `logging`, under the logger "graders", as nbgrader's and
distributed's do: a caller that imports the package (a test, a notebook, a script) sees nothing
unless it asks (caplog, a handler of its own), and the command line shows them as plain lines.
"""
import contextlib
import logging
import sys

ROOT = "graders"


class _Terminal(logging.StreamHandler):
    """A handler that writes to whatever sys.stdout (or stderr) is when a line is emitted, so that a
    replaced stream (pytest's capsys, a redirect) gets the lines, and a closed one is never kept."""

    def __init__(self, stream_name: str, below: int = None):
        super().__init__()
        self.stream_name, self.below = stream_name, below
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, _):
        pass

    def filter(self, record) -> bool:
        return (self.below is None or record.levelno < self.below) and super().filter(record)


@contextlib.contextmanager
def on_terminal(debug: bool = False):
    """While the block runs: progress (INFO; DEBUG too with `debug`) on stdout, warnings and errors
    on stderr, each a plain line; the logger as it was afterwards."""
    logger = logging.getLogger(ROOT)
    out, err = _Terminal("stdout", below=logging.WARNING), _Terminal("stderr")
    err.setLevel(logging.WARNING)
    before = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False  # a root handler (distributed's, a user's) must not print each line twice
    logger.addHandler(out)
    logger.addHandler(err)
    try:
        yield logger
    finally:
        logger.removeHandler(out)
        logger.removeHandler(err)
        logger.setLevel(before[0])
        logger.propagate = before[1]
