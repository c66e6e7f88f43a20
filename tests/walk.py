"""A walk of the whole file system for what only graders may read (issue 31, the hub's test 3).

`secret_files` walks as root and lists every file (made or changed since the hub's test began: reading
the whole machine takes ten minutes on two cores) that holds a line of a solution region, a model
answer or a hidden test of source/, the grading labels, a gradebook or a full copy of a dataset;
`readable_by` then opens each as an account (runuser), through every folder above it, so a file
counts as readable only when that account could read it. Opening a listed path is stricter than a
walk: a folder the account may enter but not list still counts.
"""
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np

import course
from graders.course import gradingsplit

REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1\n?", re.S)
SKIPPED = ("/proc", "/sys", "/dev", "/run")
SMALL = 2 << 20  # files up to this size are read whole; larger ones by their header (and .npz by their index)
SQLITE = b"SQLite format 3\x00"


def secret_lines() -> list:
    """Lines of source/'s solution regions, model answers and hidden tests that appear nowhere in public,
    long and plain enough (no quote, no backslash) to be found as they are in a notebook's JSON too."""
    secret, public = set(), set()
    for path in (course.REPO / "source").rglob("*.ipynb"):
        for cell in course.read_notebook(path).cells:
            if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
                secret |= {line.strip() for line in cell.source.splitlines()}
                continue
            secret |= {line.strip() for _, body in REGION.findall(cell.source) for line in body.splitlines()}
            public |= {line.strip() for line in REGION.sub("", cell.source).splitlines()}
    secret = {line for line in secret - public if len(line) >= 20 and '"' not in line and "\\" not in line}
    return sorted(secret - _published_in(secret, ("keras", "numpy")))


def _published_in(lines: set, packages: tuple) -> set:
    """The `lines` that the libraries the notebooks import print in their own code or docs (keras'
    docstrings hold `model = keras.Model(inputs=inputs, outputs=outputs)`): public, not an answer."""
    import importlib.util
    found = set()
    for package in packages:
        for path in Path(importlib.util.find_spec(package).origin).parent.rglob("*.py"):
            found |= lines.intersection(line.strip() for line in path.read_text(errors="replace").splitlines())
    return found


def course_copies(keep: list) -> list:
    """Other copies of this course on this machine (the developers' checkouts and course folders, CI's),
    outside the folders of `keep` (the hub's own, its accounts' homes)."""
    found = []
    for root in ("/work", "/tmp", "/home", "/opt", "/srv"):
        for top, folders, _ in os.walk(root):
            if any(top == str(k) or top.startswith(f"{k}/") for k in keep):
                folders.clear()
            elif Path(top, "source", course.ASSIGNMENT).is_dir():
                found.append(top)
                folders.clear()
            elif top.count(os.sep) > 4:
                folders.clear()
    return found


def kind(path: str, size: int, lines: set, labels: list) -> str:
    """What secret the file holds, or ''."""
    try:
        with open(path, "rb") as file:
            content = file.read() if size <= SMALL else file.read(1 << 20)
    except OSError:
        return ""
    if content.startswith(SQLITE):
        # a course's gradebook: nbgrader's own test fixtures (site-packages/nbgrader/tests) are public
        return "gradebook" if b"submitted_assignment" in content and course.ASSIGNMENT.encode() in content else ""
    if any(label in content for label in labels):
        return "grading labels"
    if path.endswith(".npz"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (OSError, zipfile.BadZipFile):
            return ""
        if {"x_test.npy", "y_test.npy"} <= names and "x_grading.npy" not in names:
            with np.load(path, allow_pickle=False) as npz:
                if npz["y_test"].shape == (10000,):
                    return "full dataset"
        return ""
    if size <= SMALL and not lines.isdisjoint(map(_plain, content.splitlines())):
        return "solution or hidden-test line"
    return ""


def _plain(line: bytes) -> bytes:
    """A line as written in source/, whether it is in a .py file, a notebook's JSON ("    line\\n",)
    or a text file: what a copy of a notebook or of its code holds, line for line."""
    line = line.strip()
    if line.startswith(b'"'):
        line = line[1:-2] if line.endswith(b'",') else line[1:-1] if line.endswith(b'"') else line[1:]
        line = (line[:-2] if line.endswith(b"\\n") else line).strip()
    return line


def secret_files(skip: list, since: float = 0, own: set = frozenset()) -> dict:
    """{path: kind} of the whole file system, less `skip` (and /proc, /sys, /dev, /run): every file is
    looked at, and read when it was made or changed (its ctime: a copy, a chmod) at `since` or later."""
    # `own`: lines the test's students typed themselves (a right answer is the student's own work)
    lines = {line.encode() for line in secret_lines() if line not in own}
    labels = [np.ascontiguousarray(array).tobytes() for array in gradingsplit.known_label_arrays()]
    pruned = {*SKIPPED, *skip}
    found = {}
    stack = ["/"]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    status = entry.stat(follow_symlinks=False)
                    if entry.path not in pruned and not (status.st_uid == 0 and status.st_mode & 0o011 == 0):
                        stack.append(entry.path)  # (a folder root alone may enter holds nothing for anyone else)
                elif entry.is_file(follow_symlinks=False):
                    status = entry.stat(follow_symlinks=False)
                    what = status.st_ctime >= since and kind(entry.path, status.st_size, lines, labels)
                    if what:
                        found[entry.path] = what
            except OSError:
                continue
    return found


OPENS = ("import json, sys\nfor path in json.load(sys.stdin):\n    try:\n        open(path, 'rb').read(1)\n"
         "        print(path)\n    except OSError:\n        pass\n")


def readable_by(account: str, paths) -> list:
    """The paths `account` can open and read."""
    result = subprocess.run(["runuser", "-u", account, "--", "/usr/bin/python3", "-c", OPENS], input=json.dumps(sorted(paths)),
                            capture_output=True, text=True, timeout=300, cwd="/")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def summary(found: dict, paths) -> str:
    counts = {}
    for path in paths:
        counts[found[path]] = counts.get(found[path], 0) + 1
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "none"

