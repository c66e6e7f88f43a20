"""The student kit's guard: refuse a kit that holds anything of the graders' (issue 31).

A kit is refused, with one line naming the file, when any file in it (the members of nested
archives too: the wheel) holds a line of a solution region, a model answer or a hidden test of
`source/`, a NumPy array (the kit holds none, so no grading label), the grading labels' bytes,
a SQLite database (a gradebook), or when it holds a file outside its list. The guard reads the
secrets from `source/` itself, so a leak the release test would miss is still caught here.
"""
import io
import json
import re
import zipfile
from pathlib import Path

from graders.errors import GradersError

MIN_LINE = 10  # shorter lines ("else:", "x = 1") are too common to call a leak
NUMPY_MAGIC = b"\x93NUMPY"
SQLITE_MAGIC = b"SQLite format 3\x00"


class KitRefused(GradersError):
    """The kit would give something away: one line naming the file."""


def secret_lines(source: Path, delimiters: dict) -> set:
    """The stripped lines of every solution region, model answer and hidden test of `source`'s
    notebooks that appear nowhere else in them (a line also given in public is not a secret)."""
    secret, public = set(), set()
    for path in sorted(Path(source).rglob("*.ipynb")):
        for cell in json.loads(path.read_text()).get("cells", []):
            text = "".join(cell.get("source", []))
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.get("cell_type") == "markdown" and meta.get("solution"):
                secret |= _lines(text)
                continue
            inside, outside = _split(text, delimiters)
            secret |= _lines(inside)
            public |= _lines(outside)
    return {line for line in secret - public if len(line) >= MIN_LINE}


def _split(text: str, delimiters: dict):
    """(the text inside the regions, the text outside them)."""
    inside, outside = [], text
    for begin, end in delimiters.items():
        pattern = re.compile(rf"^[ \t]*#*\s*{re.escape(begin)}[^\n]*\n(.*?)^[ \t]*#*\s*{re.escape(end)}[^\n]*$",
                             re.S | re.M)
        inside += pattern.findall(outside)
        outside = pattern.sub("", outside)
    return "\n".join(inside), outside


def _lines(text: str) -> set:
    return {line.strip() for line in text.splitlines() if line.strip()}


def check(files: dict, allowed: set, secrets: set, labels: list = ()) -> None:
    """Raise KitRefused for the first file of `files` ({name in the kit: bytes}) that leaks."""
    for name in sorted(files):
        if name not in allowed:
            raise KitRefused(f"{name}: not in the kit's list of files")
        _check_file(name, files[name], secrets, labels)


def _check_file(name: str, content: bytes, secrets: set, labels) -> None:
    if content.startswith(NUMPY_MAGIC) or name.endswith((".npy", ".npz")):
        raise KitRefused(f"{name}: a NumPy array (the kit holds none: grading labels stay with the graders)")
    if content.startswith(SQLITE_MAGIC) or name.endswith(".db"):
        raise KitRefused(f"{name}: a database (a gradebook stays with the graders)")
    for label_bytes in labels:
        if label_bytes in content:
            raise KitRefused(f"{name}: holds the grading labels")
    if zipfile.is_zipfile(io.BytesIO(content)):
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            for member in archive.infolist():
                if not member.is_dir():
                    _check_file(f"{name}/{member.filename}", archive.read(member), secrets, labels)
        return
    text = content.decode("utf-8", errors="replace")
    if name.endswith(".ipynb"):
        try:
            text = "\n".join("".join(cell.get("source", [])) for cell in json.loads(text).get("cells", []))
        except (ValueError, AttributeError):
            raise KitRefused(f"{name}: not a notebook") from None
    leaked = sorted(_lines(text) & secrets)
    if leaked:
        raise KitRefused(f"{name}: holds a line of a solution or hidden test of source/: {leaked[0][:80]!r}")
