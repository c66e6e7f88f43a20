"""nbgrader's Execute step, made immune to stderr noise, and its sandboxed stand-in.

nbgrader scores 0 for a test cell with any stderr output, and TensorFlow writes warnings
there at random (C++ log lines such as ``E0000 ... NodeDef mentions attribute``, from
background threads, into whichever cell is running). A test fails by raising, so a course that
asks for it (this one: ``GradingExecute`` for stock nbgrader, ``c.StagedExecute.stderr_as_stdout``
for the batch) has stderr text relabelled as stdout after execution: kept for the reader,
ignored by the grade. Elsewhere nbgrader's rule holds.
"""
import json
from pathlib import Path

import nbformat
from nbgrader.api import MissingEntry
from nbgrader.converters import Autograde
from nbgrader.preprocessors import Execute, NbGraderPreprocessor, OverwriteCells
from traitlets import Bool, Integer, Unicode


class GradingExecute(Execute):
    def preprocess(self, nb, resources=None, km=None):
        nb, resources = super().preprocess(nb, resources, km)
        relabel_stderr(nb)
        return nb, resources


def relabel_stderr(nb) -> int:
    """Turn stderr stream outputs into stdout ones; return how many were relabelled."""
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                output["name"] = "stdout"
                count += 1
    return count


def autograde_preprocessors(execute=GradingExecute) -> list:
    """nbgrader's own autograde pipeline with only its Execute step replaced."""
    default = Autograde.class_traits()["autograde_preprocessors"].make_dynamic_default()
    return [execute if step is Execute else step for step in default]


FOREIGN = "foreign cell"  # how DropForeignCells' warnings begin


class DropForeignCells(OverwriteCells):
    """OverwriteCells, except for a cell whose nbgrader metadata the assignment does not know (copied
    from another assignment, or made by hand): nbgrader would fail the whole notebook; here the
    cell loses that metadata and is graded as an ordinary cell, earning nothing (the maximum is
    the gradebook's), and a warning names it."""

    def preprocess(self, nb, resources):
        self.known = None  # this notebook's grade ids in the gradebook, looked up once
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        meta = cell.metadata.get("nbgrader")
        marked = isinstance(meta, dict) and (meta.get("grade_id") is not None or any(
            meta.get(flag) for flag in ("grade", "solution", "locked", "task")))
        if marked and self.known is None:
            try:
                self.known = {c.name for c in self.gradebook.find_notebook(self.notebook_id, self.assignment_id).source_cells}
            except MissingEntry:
                self.known = set()
        if marked and meta.get("grade_id") not in self.known:
            del cell.metadata["nbgrader"]
            self.log.warning(f"{FOREIGN} {meta.get('grade_id') or '(no grade id)'} in {self.notebook_id}: its nbgrader "
                             "metadata is not this assignment's, so it is graded as an ordinary cell and earns nothing")
            return cell, resources
        return super().preprocess_cell(cell, resources, cell_index)


def sanitize_preprocessors() -> list:
    """nbgrader's own sanitizing steps with only OverwriteCells replaced (DropForeignCells)."""
    default = Autograde.class_traits()["sanitize_preprocessors"].make_dynamic_default()
    return [DropForeignCells if step is OverwriteCells else step for step in default]


class InvalidExecution(Exception):
    """The executed notebook that came back from the sandbox is not the notebook that went in."""


MAX_OUTPUT_CHARS = 200_000  # StagedExecute.max_output_chars' default


class StagedExecute(NbGraderPreprocessor):
    """Take the outputs from the copy that the sandbox executed, instead of executing here.

    The executed copy was written by code the student controls, so it is untrusted: it must
    have exactly the cells (ids, types, sources) of the notebook nbgrader prepared, and only
    its outputs and execution counts are taken.
    """

    stage_directory = Unicode("", help="where the sandbox left <student>/<assignment>/<notebook>.executed.ipynb").tag(config=True)
    max_bytes = Integer(256 << 20, help="the largest executed notebook read back").tag(config=True)
    max_output_chars = Integer(MAX_OUTPUT_CHARS, help="the largest output kept of a cell, in characters of its JSON "
                               "(a larger one is cut to half this, with a note): beside nbgrader's LimitOutput, "
                               "which this step replaces").tag(config=True)
    stderr_as_stdout = Bool(False, help="turn each test cell's stderr into stdout, so that noise a library writes there "
                            "(TensorFlow's) does not score 0 as nbgrader scores it; off: nbgrader's rule").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        info = resources["nbgrader"]
        path = Path(self.stage_directory) / info["student"] / info["assignment"] / f"{info['notebook']}.executed.ipynb"
        executed = read_executed(path, self.max_bytes)
        copy_outputs(executed, nb, self.max_output_chars)
        if self.stderr_as_stdout:
            relabel_stderr(nb)
        return nb, resources


def read_executed(path: Path, max_bytes: int):
    if not path.is_file():
        raise InvalidExecution(f"no executed notebook at {path}")
    if path.stat().st_size > max_bytes:
        raise InvalidExecution(f"the executed notebook is {path.stat().st_size >> 20} MB, over the {max_bytes >> 20} MB limit")
    try:
        executed = nbformat.read(str(path), as_version=4)
        nbformat.validate(executed)
    except Exception as error:
        raise InvalidExecution(f"the executed notebook is not a valid notebook ({type(error).__name__})") from None
    return executed


def copy_outputs(executed, nb, limit: int = MAX_OUTPUT_CHARS) -> None:
    """Copy outputs from `executed` into `nb`, refusing any other difference in the cells."""
    if len(executed.cells) != len(nb.cells):
        raise InvalidExecution("the executed notebook has a different number of cells")
    for theirs, ours in zip(executed.cells, nb.cells):
        if (theirs.get("id"), theirs.cell_type, theirs.source) != (ours.get("id"), ours.cell_type, ours.source):
            raise InvalidExecution(f"cell {ours.get('id')} changed during execution")
        if ours.cell_type == "code":
            ours.outputs = [capped(output, limit) for output in theirs.get("outputs", [])]
            ours.execution_count = theirs.get("execution_count")


def capped(output, limit: int = MAX_OUTPUT_CHARS):
    """One output of at most about `limit` characters: 50 MB of print must not reach the gradebook or the TA."""
    size = len(json.dumps(output))
    if size <= limit:
        return output
    note = f"\n[graders: {size:,} characters of output cut to the first {limit // 2:,}]\n"
    if output.get("output_type") == "error":
        output["traceback"] = [line[:2000] for line in output.get("traceback", [])[-20:]]
        output["evalue"] = output.get("evalue", "")[:2000]
        output["ename"] = output.get("ename", "")[:200]
        return output
    text = output.get("text", "") if output.get("output_type") == "stream" else json.dumps(output.get("data", {}))
    return nbformat.v4.new_output("stream", name=output.get("name", "stdout"), text=text[: limit // 2] + note)
