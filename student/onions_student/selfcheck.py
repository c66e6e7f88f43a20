"""Student self-check: ``python -m onions_student selfcheck NOTEBOOK ...`` (graders: ``python -m graders
selfcheck``), one line per question.

Runs a copy of each notebook in memory the way nbgrader validates it (its ClearHiddenTests,
ClearOutput and Execute steps, with NBGRADER_EXECUTION set), so the student's file is never
written and hidden tests never run, even on a source notebook. A test fails only by raising:
TensorFlow's stderr noise is not a failure. Questions come from nbgrader's cell metadata: each
graded cell is one question, and the solution cells just before a test cell are its answer.
"""
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient.exceptions import DeadKernelError
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, Execute
from traitlets.config.loader import Config, JSONFileConfigLoader

# seconds per cell: the course's c.Execute.timeout, from the nbgrader_config.json beside the notebook
# (the student kit has one); without it this, not nbgrader's 30 s, which would stop any training
CELL_TIMEOUT = 300
COURSE_CONFIG = "nbgrader_config.json"  # JSON, not nbgrader_config.py: reading it runs no code
CODE_PLACEHOLDER = "raise NotImplementedError()"  # what nbgrader leaves in an unanswered code cell
TEXT_PLACEHOLDER = "YOUR ANSWER HERE"  # ... and in an unanswered written answer

PASSED = "passed"
FAILED = "failed public test"
NOT_ANSWERED = "not answered"
BY_HAND = "answered (graded by hand)"

WHAT_RUNS_WHERE = (
    "Here, your code and the public tests ran together in one kernel on this machine.\n"
    "When graded, your code runs in a sandbox, then hidden tests check the answers it left (numbers, "
    "arrays, saved models, histories) in a process that never runs your code.")


@dataclass
class Question:
    label: str  # the test cell's first comment line ("Q1 (1 point)"), or "<heading>, written answer (n points)"
    status: str  # PASSED, FAILED or NOT_ANSWERED; BY_HAND or NOT_ANSWERED for a written answer
    detail: str = ""  # why
    written: bool = False  # graded by hand: no public test

    def line(self, width: int = 0) -> str:
        return f"{self.label:<{width}}  {self.status}" + (f": {self.detail}" if self.detail else "")


class QuietExecute(Execute):
    """nbgrader's Execute, with the kernel process's own stderr (TensorFlow's start-up logs) kept off the terminal.

    What cells write to stderr still reaches their outputs, where it does not count as failing.
    """

    def start_new_kernel(self, **kwargs):  # what nbconvert's preprocess() calls
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        super().start_new_kernel(**kwargs)


def read(path: Path):
    """The notebook at `path`, or a one-line RuntimeError saying what is wrong with the file."""
    if not path.is_file():
        raise RuntimeError(f"{path}: no such notebook: give the path of a saved .ipynb file")
    try:
        notebook = nbformat.read(str(path), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise RuntimeError(f"{path} is not a valid notebook ({reason}): open it in Jupyter and save it again") from None
    if not any(utils.is_grade(cell) for cell in notebook.cells):
        raise RuntimeError(f"{path} has no graded cells: give one of the course's notebooks, e.g. check_your_learning.ipynb")
    return notebook


def run_copy(notebook, folder: Path, progress=lambda cell, number, total: None):
    """Execute `notebook` (changed in place: pass a copy) in `folder`, its hidden tests removed first.

    Cells that raise are recorded and the rest still run; raises DeadKernelError if the kernel dies.
    """
    try:
        ClearHiddenTests().preprocess(notebook, {})
    except RuntimeError as error:  # an unterminated or nested hidden-test region
        raise RuntimeError(f"the hidden tests cannot be removed: {error}") from None
    ClearOutput().preprocess(notebook, {})

    def started(cell, cell_index):
        progress(cell, cell_index + 1, len(notebook.cells))

    with utils.setenv(NBGRADER_EXECUTION="validate"):  # as nbgrader validate runs it: ungraded long cells skip
        QuietExecute(config=course_config(folder), on_cell_execute=started).preprocess(
            notebook, {"metadata": {"path": str(folder)}})
    return notebook


def course_config(folder: Path) -> Config:
    """The course's settings for nbgrader's Execute: the JSON config in `folder`, if any, over CELL_TIMEOUT."""
    config = Config({"Execute": {"timeout": CELL_TIMEOUT}})
    if (Path(folder) / COURSE_CONFIG).is_file():
        config.merge(JSONFileConfigLoader(COURSE_CONFIG, path=str(folder)).load_config())
    return config


def cell_timeout(folder: Path) -> int:
    return Execute(config=course_config(folder)).timeout


def questions(executed) -> list:
    """One Question per graded cell of an executed notebook, in notebook order."""
    found, answers, after_test, heading = [], [], False, ""
    for cell in executed.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not utils.is_grade(cell):
            if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):  # "## Task 2: ..." -> "Task 2"
                heading = cell.source.lstrip().splitlines()[0].lstrip("#").split(":")[0].strip()
            if utils.is_solution(cell) and cell.cell_type == "code":
                if after_test:  # the answer to the next question starts
                    answers, after_test = [], False
                answers.append(cell)
            continue
        points = f"({meta['points']:g} point{'' if meta['points'] == 1 else 's'})"
        if cell.cell_type == "markdown":
            answered = cell.source.replace(TEXT_PLACEHOLDER, "").strip()
            found.append(Question(f"{heading or meta['grade_id']}, written answer {points}",
                                  BY_HAND if answered else NOT_ANSWERED, written=True))
        elif utils.is_solution(cell):  # an autograded answer: it passes when it runs without error
            found.append(Question(f"{meta['grade_id']} {points}", *status_of(cell, [cell])))
        else:
            after_test = True
            first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
            label = first.lstrip("#").strip() if first.startswith("#") else f"{meta['grade_id']} {points}"
            found.append(Question(label, *status_of(cell, answers)))
    return found


def status_of(test, answers) -> tuple:
    """(status, detail) of an executed test cell, given the answer cells it checks."""
    error = first_error(test)
    if error is None:
        return (PASSED, "")
    if any(CODE_PLACEHOLDER in answer.source for answer in answers):
        return NOT_ANSWERED, f"`{CODE_PLACEHOLDER}` is still in your answer"
    if error.ename == "NotImplementedError":
        return (NOT_ANSWERED, "")
    detail = describe(error)
    broken = [first_error(answer) for answer in answers if first_error(answer) and answer is not test]
    if broken:
        detail += f" (your code above raised {describe(broken[0])})"
    return FAILED, detail


def first_error(cell):
    return next((output for output in cell.get("outputs", []) if output.output_type == "error"), None)


def describe(error) -> str:
    """One line for an error output: an assertion's own message, else the exception."""
    if error.ename in ("CellTimeoutError", "KeyboardInterrupt"):
        return "still running at the limit per cell (c.Execute.timeout)"
    text = (error.evalue or error.ename) if error.ename == "AssertionError" else f"{error.ename}: {error.evalue}"
    return (text.strip().splitlines() or [""])[0][:300]


def check(path: Path, progress=lambda cell, number, total: None) -> list:
    """Questions of the notebook at `path`, answered by running an in-memory copy: the file is only read."""
    path = Path(path)
    return questions(run_copy(read(path), path.resolve().parent, progress))


def report(name: str, found: list) -> str:
    tests = [q for q in found if not q.written]
    width = max(len(q.label) for q in found)
    lines = [name] + [f"  {q.line(width)}" for q in found]
    lines.append(f"  {sum(q.status == PASSED for q in tests)} of {len(tests)} public tests passed. "
                 "Hidden tests will check more when your work is graded.")
    return "\n".join(lines)


def print_progress(cell, number, total):
    print(f"  running cell {number}/{total} ({cell.get('id', '?')})", file=sys.stderr, flush=True)


def run(args) -> int:
    """Check each notebook in turn; 0 when every public test passed, 1 otherwise."""
    paths = [Path(p) for p in args.notebooks]
    for path in paths:  # every file is readable before the first kernel starts
        read(path)
    all_passed = True
    for path in paths:
        print(f"{path}: running a copy, hidden tests removed", file=sys.stderr, flush=True)
        try:
            found = check(path, print_progress)
        except DeadKernelError:
            print(f"{path}\n  not checked: the kernel died (see the last cell above); "
                  "run the notebook in Jupyter to find out why", flush=True)
            all_passed = False
            continue
        print(report(str(path), found), flush=True)
        all_passed &= all(q.status == PASSED for q in found if not q.written)
    print(WHAT_RUNS_WHERE, flush=True)
    return 0 if all_passed else 1


def add_command(commands) -> None:
    parser = commands.add_parser(
        "selfcheck", help="students: run a notebook's public tests, one line per question",
        description="Run a copy of each NOTEBOOK (the file is never changed; save it first) with any hidden "
                    "tests removed, and print one line per question: passed, failed public test (and why) or "
                    "not answered; written answers: answered (graded by hand) or not answered. Exit status 0 "
                    "when every public test passed, 1 otherwise. Hidden tests check more when work is graded.")
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="a .ipynb file, e.g. check_your_learning.ipynb")
    parser.set_defaults(run=run)
