"""An nbgrader course directory: lay one out, run nbgrader's own commands in it, read its gradebook.

The repository root is the real course directory. The demo and the tests grade in a copy
(source/ and nbgrader_config.py only), so they never touch a real class's gradebook.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

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


def nbgrader(course: Path, *args: str, log: Path = None) -> subprocess.CompletedProcess:
    """Run an nbgrader command in `course` with this interpreter; output to `log` if given.

    nbgrader starts `alembic` and Jupyter kernels by name, so this venv's bin/ goes first on PATH.
    """
    env = dict(os.environ)
    # ipykernel stops forwarding file-descriptor output (TensorFlow's C++ logs) to the notebook
    # when it sees this variable; grading must behave the same when run from the tests.
    env.pop("PYTEST_CURRENT_TEST", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [sys.executable, "-m", "nbgrader", *args]
    if log is None:
        result = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True)
        output = result.stdout + result.stderr
    else:
        with open(log, "a") as stream:
            result = subprocess.run(command, cwd=course, env=env, stdout=stream, stderr=subprocess.STDOUT)
        output = f"see {log}"
    if result.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {result.returncode}): {output[-2000:]}")
    return result


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
