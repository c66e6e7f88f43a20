"""Files a notebook writes beside itself (its side effects), found once it has run.

nbgrader executes a submission in its autograded/ folder, so a file the notebook writes (a saved
plot, a model, a CSV) stays there for a TA to look at. Here the notebook runs in the sandbox's
working copy: the runner notes what is there before any student code runs (`snapshot`), and at
the end, when no student process is left, hands back what is new or changed (`written`): regular
files only (a link, a FIFO or a device is not a file), names that are plain, at most
MAX_FILES files and MAX_BYTES bytes. They come back under side-effects/ (graders.isolation.handover)
and the batch puts them into autograded/STUDENT/ASSIGNMENT/ beside the graded notebooks.
"""
import hashlib
import os
import stat
from pathlib import Path

from graders.isolation.handover import SIDE_EFFECTS, plain_path

MAX_FILES = 1000
MAX_BYTES = 64 << 20


def _files(folder: Path):
    """(relative path, its lstat) of every regular file under `folder`, links never followed."""
    for parent, folders, names in os.walk(folder):
        for name in sorted(names):
            path = Path(parent, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield path.relative_to(folder).as_posix(), info
        folders.sort()


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(folder: Path) -> dict:
    """{relative path: sha256} of what the folder holds before any student code runs."""
    return {name: _digest(Path(folder, name)) for name, _ in _files(Path(folder))}


def written(folder: Path, before: dict, skip=()) -> tuple:
    """({side-effects/PATH: bytes} of the files new or changed since `before`, [what was left out, one line each])."""
    kept, left_out, total = {}, [], 0
    for name, info in _files(Path(folder)):
        if name in skip or name.split("/")[0] == SIDE_EFFECTS or (name in before and before[name] == _digest(Path(folder, name))):
            continue
        if not plain_path(name):
            left_out.append(f"a file with a name that is not plain text ({name[:80]!r})")
        elif len(kept) >= MAX_FILES or total + info.st_size > MAX_BYTES:
            left_out.append(f"{name[:200]}: over {MAX_FILES} files or {MAX_BYTES >> 20} MB of side effects")
        else:
            kept[f"{SIDE_EFFECTS}/{name}"] = Path(folder, name).read_bytes()
            total += info.st_size
    return kept, left_out
