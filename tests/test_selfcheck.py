"""`python -m graders selfcheck`: one line per question from the public tests only, on a copy.

Real kernels on real notebooks: the untouched release, the source with its hidden tests in
place, a wrong answer. check_your_learning does most of the work (fast); MNIST runs once, blank.
"""
import argparse
import re
import shutil
import subprocess
import sys
import time

import nbformat
import pytest
from nbgrader import utils
from traitlets.config.loader import PyFileConfigLoader

import submissions
import course
from graders.outputs import selfcheck

CYL, MNIST = course.NOTEBOOKS


def selfcheck_command(*paths) -> int:
    """The command as `python -m graders` parses and runs it (its plug-in protocol)."""
    parser = argparse.ArgumentParser()
    selfcheck.add_command(parser.add_subparsers())
    args = parser.parse_args(["selfcheck", *map(str, paths)])
    return args.run(args)


def question_lines(printed: str) -> list:
    """The printed question lines, the padding between label and status cut to two spaces."""
    return [re.sub(r" {2,}", "  ", line.strip()) for line in printed.splitlines()
            if line.startswith("  ") and "public tests passed" not in line]


def write_edited(folder, name, *edits):
    """source/<name> with each (cell id, text, replacement) applied, written into `folder`."""
    notebook = course.read_notebook(course.REPO / "source" / course.ASSIGNMENT / f"{name}.ipynb")
    for cell_id, old, new in edits:
        notebook = submissions.edited(notebook, cell_id, old, new)
    path = folder / f"{name}.ipynb"
    nbformat.write(notebook, str(path))
    return path


def snapshot(folder) -> dict:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.mark.slow  # runs the lesson's notebooks (trains)
def test_the_untouched_release_is_not_answered_anywhere(tmp_path, capsys):
    for name in course.NOTEBOOKS:
        shutil.copy(course.REPO / "release" / course.ASSIGNMENT / f"{name}.ipynb", tmp_path)
    before = snapshot(tmp_path)

    status = selfcheck_command(*(tmp_path / f"{name}.ipynb" for name in course.NOTEBOOKS))

    printed = capsys.readouterr()
    graded = sum(utils.is_grade(cell) for name in course.NOTEBOOKS
                 for cell in course.read_notebook(tmp_path / f"{name}.ipynb").cells)
    lines = question_lines(printed.out)
    assert status == 1
    assert len(lines) == graded == 12, printed.out
    assert all("not answered" in line for line in lines), printed.out
    assert "Task 2, written answer (1 point)  not answered" in lines
    assert "0 of 4 public tests passed. Hidden tests will check more" in printed.out
    assert "0 of 5 public tests passed" in printed.out
    assert printed.out.endswith(selfcheck.WHAT_RUNS_WHERE + "\n")
    assert "running cell 8/22 (training_answer)" in printed.err  # progress, as each cell runs
    assert snapshot(tmp_path) == before, "the self-check changed or added files next to the notebooks"


def test_solutions_pass_and_hidden_tests_never_run(tmp_path, monkeypatch):
    """Q1's answer 307200 passes the public test but fails the hidden one, which must not run.

    The notebook also writes TensorFlow-style noise to stderr in every later cell (which must
    not fail a test), and a file in its working directory (which must be the notebook's folder).
    """
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # else ipykernel does not forward descriptor-2 output
    name, cell_id, old, new, _ = submissions.WRONG_ANSWERS["q1-no-bias"]
    path = write_edited(tmp_path, name, (cell_id, old, new),
                        (cell_id, "width, height", submissions.NOISY_CELLS + "\nopen('ran_here', 'w').close()\nwidth, height"))
    on_disk = path.read_bytes()

    executed = selfcheck.run_copy(selfcheck.read(path), path.parent)
    found = selfcheck.questions(executed)

    assert [(q.label, q.status) for q in found] == [
        ("Q1 (1 point)", "passed"), ("Q2 (1 point)", "passed"),
        ("Q3, the model (2 points)", "passed"), ("Q3, more or fewer (1 point)", "passed")]
    tests = [cell for cell in executed.cells if utils.is_grade(cell)]
    assert all("HIDDEN" not in cell.source and "307300" not in cell.source for cell in tests)
    assert all(any(o.get("name") == "stderr" for o in cell.outputs) for cell in tests), "no noise reached the tests"
    assert (tmp_path / "ran_here").exists(), "the notebook did not run in its own folder"
    assert path.read_bytes() == on_disk and b"### BEGIN HIDDEN TESTS" in on_disk


def test_a_wrong_answer_fails_its_public_test_and_says_why(tmp_path, capsys):
    path = write_edited(tmp_path, CYL,
                        ("q1_answer", "n_parameters = (n_input_items * n_hidden_neurons) + n_bias", 'n_parameters = "abc"'),
                        ("q3_more_or_fewer", 'q3_answer = "fewer"', "raise NotImplementedError()"))

    status = selfcheck_command(path)

    printed = capsys.readouterr().out
    assert status == 1
    assert question_lines(printed) == [
        "Q1 (1 point)  failed public test: Q1: n_parameters should be a whole number (an int)",
        "Q2 (1 point)  failed public test: NameError: name 'ratio' is not defined "
        "(your code above raised TypeError: unsupported operand type(s) for /: 'str' and 'int')",
        "Q3, the model (2 points)  passed",
        "Q3, more or fewer (1 point)  not answered: `raise NotImplementedError()` is still in your answer",
    ], printed
    assert "1 of 4 public tests passed. Hidden tests will check more when your work is graded." in printed
    assert "307300" not in printed and "parameter count" not in printed  # nothing of the hidden tests


def test_the_kernel_dying_is_reported_not_raised(tmp_path, capsys):
    path = write_edited(tmp_path, CYL, ("q1_answer", "width, height", "import os\nos._exit(1)\nwidth, height"))

    assert selfcheck_command(path) == 1
    assert "not checked: the kernel died" in capsys.readouterr().out


def test_a_missing_or_invalid_notebook_is_a_one_line_error_before_anything_runs(tmp_path, capsys):
    good = shutil.copy(course.REPO / "release" / course.ASSIGNMENT / f"{CYL}.ipynb", tmp_path)
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(plain, str(tmp_path / "plain.ipynb"))
    for name, problem in (("missing.ipynb", "no such notebook"), ("broken.ipynb", "is not a valid notebook"),
                          ("plain.ipynb", "has no graded cells")):
        with pytest.raises(RuntimeError, match=problem) as error:
            selfcheck_command(good, tmp_path / name)
        assert "\n" not in str(error.value)
    assert "running cell" not in capsys.readouterr().err


def test_the_command_line_prints_error_and_exits_1(tmp_path):
    result = subprocess.run([sys.executable, "-m", "graders", "selfcheck", str(tmp_path / "missing.ipynb")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'missing.ipynb'}: no such notebook: "
                                          "give the path of a saved .ipynb file"], result.stderr


def test_the_cell_timeout_is_the_courses_from_the_kit_and_stops_a_long_cell(tmp_path):
    """The kit carries the course's c.Execute.timeout as JSON; the self-check reads it beside the notebook."""
    from graders.edges import kit

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course.REPO)).load_config()
    shipped = kit.build(course.REPO, course.ASSIGNMENT)[f"{course.ASSIGNMENT}-student/{selfcheck.COURSE_CONFIG}"]
    (tmp_path / selfcheck.COURSE_CONFIG).write_bytes(shipped)
    assert selfcheck.cell_timeout(tmp_path) == config.Execute.timeout
    assert selfcheck.cell_timeout(tmp_path / "elsewhere") == selfcheck.CELL_TIMEOUT  # no config: not nbgrader's 30 s
    (tmp_path / selfcheck.COURSE_CONFIG).write_text('{"Execute": {"timeout": 3}}')
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(30)", id="slow")])
    notebook.cells[0].metadata["nbgrader"] = {"grade": True, "grade_id": "slow", "locked": True, "points": 1,
                                              "schema_version": 3, "solution": False, "task": False}
    nbformat.write(notebook, str(tmp_path / "slow.ipynb"))
    started = time.monotonic()
    [question] = selfcheck.check(tmp_path / "slow.ipynb")
    assert question.status == selfcheck.FAILED and "limit per cell" in question.detail, question
    assert time.monotonic() - started < 25


@pytest.mark.parametrize("name", course.NOTEBOOKS)
def test_the_released_header_tells_students_how_to_check_themselves(name):
    header = course.read_notebook(course.REPO / "release" / course.ASSIGNMENT / f"{name}.ipynb").cells[0].source
    assert f"    python -m onions_student selfcheck {name}.ipynb\n" in header  # the student kit's command
    assert f"nbgrader validate {name}.ipynb" in header
