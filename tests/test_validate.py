"""nbgrader's Validate agrees with `python -m graders selfcheck`, whatever TensorFlow prints on stderr.

Each notebook is what a student holds (the source with its hidden tests removed, answered or
not) and writes TensorFlow-style noise to stderr in every cell after the first answer, the
test cells included. Stock Validate fails the correct one; with the course's configuration
(graders/grading/validate.py) `nbgrader validate` and selfcheck give the same verdict on each.
check_your_learning only: it is the notebook with public tests that needs no training.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.preprocessors import ClearHiddenTests

import course
import submissions
from graders.outputs import selfcheck

CYL = "check_your_learning"
NOISE = ("q1_answer", "width, height", submissions.NOISY_CELLS + "\nwidth, height")
ANSWER = "n_parameters = (n_input_items * n_hidden_neurons) + n_bias"
NOTEBOOKS = {  # name: (edits of the source, selfcheck's and Validate's verdict)
    "correct": ([NOISE], True),
    "biases-forgotten": ([NOISE, ("q1_answer", ANSWER, "n_parameters = n_input_items * n_hidden_neurons")], True),
    "not-an-int": ([NOISE, ("q1_answer", ANSWER, 'n_parameters = "abc"')], False),
}
PASSED, FAILED = "Success! Your notebook passes all the tests.", "VALIDATION FAILED"


def student_copy(folder: Path, name: str, edits) -> Path:
    notebook = course.read_notebook(course.REPO / "source" / course.ASSIGNMENT / f"{CYL}.ipynb")
    for edit in edits:
        notebook = submissions.edited(notebook, *edit)
    ClearHiddenTests().preprocess(notebook, {})
    (folder / name).mkdir()
    path = folder / name / f"{CYL}.ipynb"
    nbformat.write(notebook, str(path))
    return path


def validate(path: Path, config: bool) -> str:
    """`nbgrader validate` as a student runs it, in the notebook's folder, with or without the course's config."""
    if config:
        shutil.copy(course.REPO / "nbgrader_config.py", path.parent)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # else fd 2 is not forwarded
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    result = subprocess.run([sys.executable, "-m", "nbgrader", "validate", path.name], cwd=path.parent, env=env,
                            capture_output=True, text=True, timeout=600)
    (path.parent / "nbgrader_config.py").unlink(missing_ok=True)
    return result.stdout


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("validate")
    shutil.copytree(course.REPO / "release" / course.ASSIGNMENT, folder / "untouched")
    (folder / "untouched" / "mnist_exercise.ipynb").unlink()
    return folder


@pytest.mark.slow  # runs the lesson's notebooks (trains)
def test_stock_validate_fails_a_correct_but_noisy_notebook(folder):
    path = student_copy(folder, "stock", *NOTEBOOKS["correct"][:1])
    assert FAILED in validate(path, config=False)


@pytest.mark.slow  # runs the lesson's notebooks (trains)
@pytest.mark.parametrize("name", ["untouched", *NOTEBOOKS])
def test_validate_agrees_with_selfcheck(folder, name, monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    if name == "untouched":
        path, expected = folder / name / f"{CYL}.ipynb", False
    else:
        edits, expected = NOTEBOOKS[name]
        path = student_copy(folder, name, edits)
    found = selfcheck.questions(selfcheck.run_copy(selfcheck.read(path), path.parent))
    assert all(q.status == selfcheck.PASSED for q in found) == expected, [q.line() for q in found]
    printed = validate(path, config=True)
    assert (PASSED if expected else FAILED) in printed, printed[-3000:]
