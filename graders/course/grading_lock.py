"""One grading of an assignment at a time in a course.

The batch (``autograde``, a recheck, the demo) and the watcher's look (``watch``: nbgrader collect,
grading, feedback, release) write the same gradebook, the same journal and the students' folders
in submitted/ (collect replaces them): two at once could grade a hand-in that is being replaced,
or handle one hand-in twice. Each takes the assignment's lock (an flock on
``.graders/ASSIGNMENT/grading.lock``); the second waits, says for what, and starts when the first
ends. The kernel drops the lock when its holder dies, however it dies: nothing to clean up.
"""
import contextlib
import datetime
import fcntl
import getpass
import logging
import os
import socket
from pathlib import Path

from graders.course.plain import plain
from graders.errors import GradersError

logger = logging.getLogger(__name__)

LOCK = "grading.lock"
_held = {}  # {lock file: depth}: the watcher's look holds it around the batch it runs, in one process


@contextlib.contextmanager
def grading_lock(work: Path, doing: str):
    """Hold the assignment's lock (waiting for whoever holds it) while the block runs."""
    path = work / LOCK
    key = str(path.absolute())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    handle = _open(path)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = plain(os.pread(handle, 500, 0).decode("utf-8", "replace").strip(), 300) or "another grading"
            logger.info(f"waiting: {holder} is grading this assignment in this course; this one starts when it ends")
            fcntl.flock(handle, fcntl.LOCK_EX)
        _say_who(handle, doing)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(handle)  # releases the lock


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
        except PermissionError:  # another account's lock file: holding it needs no writing
            return os.open(path, os.O_RDONLY)
    except OSError as error:
        raise GradersError(f"cannot open the assignment's grading lock {path} ({error.strerror}): grade as the "
                           f"account that owns the course, or give yours write access to {path.parent}") from None


def _say_who(handle: int, doing: str) -> None:
    """Write who holds the lock, for the one that waits (skipped where the file is not ours to write)."""
    since = datetime.datetime.now().astimezone()
    text = f"{doing} (pid {os.getpid()}, {_user()}@{socket.gethostname()}, since {since:%Y-%m-%d %H:%M:%S %Z})\n"
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, text.encode(), 0)
    except OSError:
        pass


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # an account without a name (a container's)
        return f"uid {os.getuid()}"
