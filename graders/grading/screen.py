"""A student's notebooks looked at before nbgrader reads them: size, number of cells, cell ids.

nbgrader's passes run in the grader's one process, so a notebook of 100,000 cells would cost it
minutes (300 s measured) before any sandbox starts: notebooks over `c.GradersBatch.max_cells` or
`.max_notebook_bytes` are refused here, with one line naming the limit. Cell ids: editors copy
cells with their ids, and nbformat replaces a repeated id with a random one on every read, so the
prepared notebook and the graded one would differ ("invalid result"); an empty id fails
nbformat's schema ("invalid notebook" with the detail `''`). Each is given a new id here, the
same on every run, in a copy nbgrader reads instead of the submission (which is never changed).
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

VALID_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # nbformat 4.5's schema for a cell id


@dataclass
class Screened:
    problem: str = ""  # why this student is not graded (one line), or ""
    fixed: dict = field(default_factory=dict)  # notebook file name -> its content with every cell id valid and unique
    notes: list = field(default_factory=list)  # one line per id given anew


def screen(folder: Path, max_bytes: int, max_cells: int) -> Screened:
    """Look at every NAME.ipynb of a submission folder. What nbformat could not read at all is left
    to nbgrader, which says why as usual."""
    screened = Screened()
    for path in sorted(folder.glob("*.ipynb")):
        size = path.stat().st_size
        if size > max_bytes:
            screened.problem = (f"{path.name} is {size / (1 << 20):.0f} MB, over the limit of {max_bytes >> 20} MB "
                                "(c.GradersBatch.max_notebook_bytes)")
            return screened
        try:
            notebook = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            continue
        cells = notebook.get("cells") if isinstance(notebook, dict) else None
        if not isinstance(cells, list):
            continue
        if len(cells) > max_cells:
            screened.problem = (f"{path.name} has {len(cells):,} cells, over the limit of {max_cells:,} "
                                "(c.GradersBatch.max_cells)")
            return screened
        if not (notebook.get("nbformat") == 4 and isinstance(notebook.get("nbformat_minor"), int)
                and notebook["nbformat_minor"] >= 5):
            continue  # before nbformat 4.5, cells have no ids
        odd = next((number for number, cell in enumerate(cells, 1) if not isinstance(cell, dict)), None)
        if odd:
            screened.problem = f"{path.name}: cell {odd} is not a cell (a JSON object), so its id cannot be fixed"
            return screened
        notes = renumber(cells, path.name)
        if notes:
            screened.fixed[path.name] = (json.dumps(notebook, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
            screened.notes += notes
    return screened


def renumber(cells: list, name: str) -> list:
    """Give every cell whose id is missing, invalid or a repeat a new one (the first cell with an id
    keeps it): its old id, or "cell", then "-" and its number, made unique. Returns one note per cell."""
    first, notes = {}, []
    for number, cell in enumerate(cells, 1):
        old = cell.get("id")
        if isinstance(old, str) and VALID_ID.fullmatch(old) and old not in first:
            first[old] = number
    taken, kept = set(first), set()
    for number, cell in enumerate(cells, 1):
        old = cell.get("id")
        if isinstance(old, str) and first.get(old) == number and old not in kept:
            kept.add(old)
            continue
        had = "id" in cell
        if not had:
            why = "is missing"
        elif old == "":
            why = "is empty"
        elif isinstance(old, str) and old in first:
            why = f"repeats cell {first[old]}'s"
        else:
            why = "is not a valid id"
        base = old[:50] if isinstance(old, str) and VALID_ID.fullmatch(old) else "cell"
        new, extra = f"{base}-{number}", 1
        while new in taken:
            extra += 1
            new = f"{base}-{number}-{extra}"
        taken.add(new)
        cell["id"] = new
        shown = json.dumps(old)[:40] if had else ""
        notes.append(f"{name}: cell {number}'s id {shown + ' ' if shown else ''}{why}, now {new!r}")
    return notes
