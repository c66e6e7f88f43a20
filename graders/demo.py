"""The main job, end to end on a demo class: release, a student's self-check, LMS hand-in,
batch autograde, feedback, export, class report.

Runs in a course directory of its own (a copy of source/ and nbgrader_config.py), with
nbgrader's own commands, its embedded SQLite gradebook and the sandboxed batch grader.
"""
import copy
import shutil
from pathlib import Path

import nbformat

from graders import batch, feedback, intake, report, sandbox, selfcheck
from graders.coursedir import run_nbgrader

REPO = Path(__file__).resolve().parents[1]  # the course this demo copies
ASSIGNMENT = "lesson08"
NOTEBOOKS = ("check_your_learning", "mnist_exercise")

MARKER = ".onions-demo"  # a directory holding it was made by this demo and may be replaced

HOSTILE = """try:
    print(open("../../source/lesson08/check_your_learning.ipynb").read()[:80])
except OSError as error:
    print("could not read the hidden tests:", error)
"""


def copy_course(directory: Path) -> None:
    """A new course in `directory` (empty or new) holding this course's source/ and nbgrader_config.py."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: choose a new directory or remove it first")
    shutil.copytree(REPO / "source", directory / "source")
    shutil.copy2(REPO / "nbgrader_config.py", directory / "nbgrader_config.py")


def _edited(notebook, cell_id, old, new):
    notebook = copy.deepcopy(notebook)
    cell = next(c for c in notebook.cells if c.get("id") == cell_id)
    cell.source = cell.source.replace(old, new)
    return notebook


def students(directory: Path) -> dict:
    """{student: {file name: bytes}}: a small class with the usual troubles."""
    def load(folder, name):
        return nbformat.read(str(directory / folder / ASSIGNMENT / f"{name}.ipynb"), as_version=4)

    def files(cyl, mnist):
        return {"check_your_learning.ipynb": nbformat.writes(cyl).encode(), "mnist_exercise.ipynb": nbformat.writes(mnist).encode()}

    reference = {name: load("source", name) for name in NOTEBOOKS}
    blank = {name: load("release", name) for name in NOTEBOOKS}
    cyl, mnist = NOTEBOOKS
    partial = _edited(reference[cyl], "q3_more_or_fewer", 'q3_answer = "fewer"', 'q3_answer = "more"')
    hostile = _edited(reference[cyl], "q1_answer", "width, height", HOSTILE + "width, height")
    crash = _edited(reference[cyl], "q1_answer", "width, height", "import os\nos._exit(1)\nwidth, height")
    broken = files(reference[cyl], blank[mnist])
    broken["check_your_learning.ipynb"] = broken["check_your_learning.ipynb"][:500]
    return {
        "demo-reference": files(reference[cyl], reference[mnist]),  # full marks on every autograded cell
        "demo-partial": files(partial, blank[mnist]),  # Q3 "more", the exercise not done
        "demo-blank": files(blank[cyl], blank[mnist]),  # the release handed in untouched
        "demo-hostile": files(hostile, blank[mnist]),  # tries to read the hidden tests
        "demo-crash": files(crash, blank[mnist]),  # kills its own kernel
        "demo-broken": broken,  # a notebook cut short: not valid JSON
    }


def run(directory: Path, use_sandbox: bool = True, log=print) -> list:
    directory = Path(directory).resolve()  # nbgrader runs in it: a relative path would point elsewhere
    if (directory / MARKER).is_file():
        shutil.rmtree(directory)
    copy_course(directory)
    (directory / MARKER).write_text("made by: python -m graders demo (replaced on the next run)\n")
    nbgrader_log = directory / "nbgrader.log"
    log(f"demo class in {directory}")
    run_nbgrader(directory, "generate_assignment", ASSIGNMENT, "--force", log=nbgrader_log)
    log(f"generated release/{ASSIGNMENT} with nbgrader generate_assignment")
    handed_in = students(directory)
    draft = directory / "student-draft" / "check_your_learning.ipynb"  # demo-partial's, before handing in
    draft.parent.mkdir()
    draft.write_bytes(handed_in["demo-partial"]["check_your_learning.ipynb"])
    log("a student checks their notebook before handing it in: python -m graders selfcheck check_your_learning.ipynb")
    log(selfcheck.report(str(draft.relative_to(directory)), selfcheck.check(draft)))
    archive = intake.lms_archive(directory / "lms-download.zip", handed_in)
    log(f"the class hands in through an LMS: {archive.name}, as Canvas' 'Download Submissions' names it")
    intake.intake(directory, archive, ASSIGNMENT, log=log)
    limits = sandbox.Limits()
    grader = batch.Batch(directory, ASSIGNMENT, limits, batch.default_workers(limits.memory_bytes),
                         use_sandbox=use_sandbox, log=log)
    results = grader.run()
    log(batch.summary(results))
    feedback.Feedback(directory, ASSIGNMENT).run(log=log)
    run_nbgrader(directory, "export", "--to", str(directory / "grades.csv"), log=nbgrader_log)
    log(f"grades exported by nbgrader export: {directory / 'grades.csv'}")
    log(f"written answers: TAs grade them in formgrader (README, 'Grading the written answers'): "
        f"cd {directory} && jupyter server, then open /formgrader")
    path = report.write_report(directory, ASSIGNMENT, log=log)
    log(f"class report: {path}")
    return results
