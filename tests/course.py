"""Helpers for the tests and the benchmark: lay out a copy of this course, run nbgrader in it,
hand in, read its gradebook.

The repository root is the real course directory. The tests grade in a copy (source/ and
nbgrader_config.py only), so they never touch a real class's gradebook.
"""
import shutil
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from graders.course.coursedir import run_nbgrader as nbgrader  # noqa: F401 (the tests' course.nbgrader)

REPO = Path(__file__).resolve().parents[1]
COURSE_ID = "onions"
ASSIGNMENT = "lesson08"
NOTEBOOKS = ("check_your_learning", "mnist_exercise")


def copy_course(directory: Path, repo: Path = REPO) -> Path:
    """Make `directory` a new course holding this course's source/ and nbgrader_config.py."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: choose a new directory or remove it first")
    shutil.copytree(repo / "source", directory / "source")
    shutil.copy2(repo / "nbgrader_config.py", directory / "nbgrader_config.py")
    return directory


def read_notebook(path: Path):
    return nbformat.read(str(path), as_version=4)


def submit(course: Path, student: str, notebooks: dict, assignment: str = ASSIGNMENT) -> Path:
    """Hand in `notebooks` ({name: NotebookNode}) as `student` under submitted/."""
    folder = Path(course) / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, notebook in notebooks.items():
        nbformat.write(notebook, str(folder / f"{name}.ipynb"))
    return folder


def grades(course: Path, assignment: str = ASSIGNMENT) -> dict:
    """{student: {(notebook, grade cell): (score, max_score, needs_manual_grade)}} from the gradebook."""
    result = {}
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}", COURSE_ID) as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            cells = {}
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    cells[(notebook.name, grade.name)] = (grade.score, grade.max_score, grade.needs_manual_grade)
            result[submission.student_id] = cells
    return result
