"""A recheck's merge: a prepared notebook (the new hidden tests) takes the outputs it had when graded.

Used by the runner in a recheck job (graders.inside.run_notebook.recheck) and, on copies, by the
grader to choose between a recheck and a full grading (graders.grading.recheck.plan).
"""
from graders.inside import hidden


class RecheckError(Exception):
    """A notebook that cannot be rechecked: the batch grades its student in full."""


def merge(notebook, previous, checked: set, delimiters, tests, carried: list = None) -> list:
    """Give `notebook` the outputs of `previous` (the same notebook as executed before, with the old
    hidden parts), without the outputs of the old checks whose hidden part changed (of the cells
    `checked`, by index); returns [(index, cell, hidden part, names it reads)] to check again: a
    check whose hidden part is unchanged keeps its old output, since it would give it again (its
    index is appended to `carried`, when given). The grader runs it first, on
    copies, to choose between a recheck and a full grading. Refuses
    (RecheckError) what a recheck cannot reproduce: another cell, another public part, a hidden
    part that reads a name the kernel never exported, a cell checked now but not then. `tests`: the
    notebook's test cells' grade ids, the gradebook's (graders.inside.hidden.is_test_cell)."""
    if len(notebook.cells) != len(previous.cells):
        raise RecheckError("the notebook has another number of cells than when it was graded")
    checks, carried = [], [] if carried is None else carried
    for index, (cell, old) in enumerate(zip(notebook.cells, previous.cells)):
        test = hidden.is_test_cell(cell, tests)
        public, code = hidden.split(cell.source, *delimiters) if test else (cell.source, None)
        old_public, old_code = hidden.split(old.source, *delimiters) if test else (old.source, None)
        if (cell.get("id"), cell.cell_type, public) != (old.get("id"), old.cell_type, old_public):
            raise RecheckError(f"cell {cell.get('id')} is not the one graded")
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = old.get("outputs", []), old.get("execution_count")
        if not test or index not in checked:
            if test and code is not None and old_code is None and not _failed(cell):
                raise RecheckError(f"cell {cell.get('id')} has a hidden part now, and none when it was graded")
            continue
        if code is not None and code == old_code:
            carried.append(index)
            continue  # the same check on the same exports (and code, in the fingerprint): the same result
        cell.outputs = [output for output in cell.outputs if output.get("output_type") != "error"]  # the old check's
        if code is None:
            continue
        names = hidden.free_names(code)
        unknown = [name for name in names if name not in hidden.free_names(old_code or "")]
        if unknown:
            raise RecheckError(f"the hidden part of {cell.get('id')} reads {unknown[0]}, which was not exported")
        checks.append((index, cell, code, names))
    return checks


def _failed(cell) -> bool:
    return any(output.get("output_type") == "error" for output in cell.get("outputs", []))
