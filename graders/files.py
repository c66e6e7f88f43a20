"""Two file habits every room needs, written once: replacing a file whole or not at all, and
reading a file that may vanish (a /proc or cgroup file of a process that just ended)."""
import os
import uuid
from pathlib import Path


def write_atomically(target: Path, write, mode: int = None, sync: bool = False) -> None:
    """`write(stream)` fills a new partial file beside `target` (binary, opened on a name nobody
    else has: a student's link there is never followed), which then replaces `target` by rename.
    A crash or an error leaves the old file, or none, never half of one. `mode`: exactly these
    permissions (0o600: only this account reads it), else the umask's; `sync`: on the disk first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".partial-{uuid.uuid4().hex[:8]}-{target.name}")  # keeps target's suffix (numpy's .npz)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        if mode is not None:
            os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
            if sync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def read_or_empty(path) -> str:
    """The text of `path`, or "" when it cannot be read (gone, or never there)."""
    try:
        return Path(path).read_text()
    except OSError:
        return ""
