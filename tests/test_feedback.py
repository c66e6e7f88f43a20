"""`python -m graders feedback`: per-student HTML feedback in which no hidden test appears.

On a copy of the demo class, plus one student graded here whose public checks fail with
their assertion messages and whose code prints a hidden line it was told. The leak check
is written here from source/ and release/, independently of graders.outputs.feedback, and is shown
to catch stock `nbgrader generate_feedback`, which leaks (nbgrader issue #917).
"""
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import course
from graders.grading import batch
from graders.isolation import sandbox

MESSAGES = "feedback-messages"  # Q1 a float, Q3 "maybe", and prints a hidden line
HIDDEN_Q3 = "assert q3_answer == \"fewer\""


def rendered(path: Path) -> str:
    """A feedback file's text as its reader sees it: tags, entities and ANSI codes gone, whitespace collapsed."""
    text = html.unescape(re.sub(r"<[^>]*>", "", path.read_text()))
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


def hidden_test_lines(directory: Path) -> set:
    """Every line of source/'s hidden tests that students do not get in release/ anyway (not blank, 8+ characters)."""
    def lines(folder, hidden):
        found = set()
        for path in (directory / folder / course.ASSIGNMENT).glob("*.ipynb"):
            for cell in course.read_notebook(path).cells:
                inside = False
                for line in cell.source.splitlines():
                    inside = (inside or "BEGIN HIDDEN TESTS" in line) and "END HIDDEN TESTS" not in line
                    if inside == hidden and "HIDDEN TESTS" not in line and len(line.strip()) >= 8:
                        found.add(" ".join(line.split()))
        return found

    return lines("source", hidden=True) - lines("release", hidden=False)


def leaks(folder: Path, secrets: set) -> dict:
    """{html file: the hidden lines it shows} under `folder`."""
    found = {}
    for path in sorted(folder.rglob("*.html")):
        text = rendered(path)
        shown = {line for line in secrets | {"BEGIN HIDDEN TESTS"} if line in text}
        if shown:
            found[str(path.relative_to(folder))] = sorted(shown)
    return found


def edited(notebook, cell_id, old, new):
    cell = next(c for c in notebook.cells if c.get("id") == cell_id)
    assert old in cell.source, (cell_id, old)
    cell.source = cell.source.replace(old, new)


def grade_cells(path: Path) -> dict:
    """{grade cell id: the text from its 'Grade cell:' header to the next cell} of one feedback file."""
    text = rendered(path)
    cells = {}
    for match in re.finditer(r"Grade cell: (\w+)(.*?)(?=In \[\d+\]:|Student's answer|$)", text):
        cells[match.group(1)] = match.group(2)
    return cells


@pytest.fixture(scope="module")
def feedback_class(demo_class, tmp_path_factory):
    """A copy of the demo class plus MESSAGES, with our feedback in feedback/ and stock nbgrader's in stock_feedback/."""
    directory = tmp_path_factory.mktemp("feedback") / "course"
    shutil.copytree(demo_class[0], directory, symlinks=True)
    secrets = hidden_test_lines(directory)
    hidden_q3 = next(line for line in secrets if line.startswith(HIDDEN_Q3))
    notebook = course.read_notebook(directory / "source" / course.ASSIGNMENT / "check_your_learning.ipynb")
    edited(notebook, "q1_answer", "n_parameters = (n_input_items * n_hidden_neurons) + n_bias",
           "n_parameters = float((n_input_items * n_hidden_neurons) + n_bias)")
    edited(notebook, "q3_more_or_fewer", 'q3_answer = "fewer"',
           f'q3_answer = "maybe"\nprint({hidden_q3[::-1]!r}[::-1])  # a hidden line, not in this source')
    course.submit(directory, MESSAGES, {"check_your_learning": notebook})  # no mnist_exercise: "missing notebook"
    [result] = batch.Batch(directory, course.ASSIGNMENT, sandbox.Limits(), workers=1).run([MESSAGES])
    assert result.status == "missing notebook", result

    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    env.pop("PYTEST_CURRENT_TEST", None)
    cli = subprocess.run([sys.executable, "-m", "graders", "feedback", course.ASSIGNMENT, "--course", str(directory)],
                         capture_output=True, text=True, env=env, cwd=course.REPO)
    course.nbgrader(directory, "generate_feedback", course.ASSIGNMENT, "--CourseDirectory.feedback_directory=stock_feedback")
    return directory, cli, secrets


def test_every_graded_student_gets_feedback_and_the_others_are_named(feedback_class):
    directory, cli, _ = feedback_class
    assert cli.returncode == 0, cli.stdout + cli.stderr
    lines = dict(line.split(": ", 1) for line in cli.stdout.splitlines() if line.startswith(("demo-", MESSAGES)))
    for student in ("demo-reference", "demo-partial", "demo-counting", "demo-mixed", "demo-blank", "demo-hostile"):
        assert lines[student].startswith(f"feedback/{student}/{course.ASSIGNMENT}/ check_your_learning.html, mnist_exercise.html")
    assert lines["demo-partial"].endswith("(score 4 of 19)")
    assert lines[MESSAGES].startswith(f"feedback/{MESSAGES}/{course.ASSIGNMENT}/ check_your_learning.html (")
    assert lines["demo-crash"].startswith("no feedback, kernel crashed")
    assert lines["demo-broken"].startswith("no feedback, invalid notebook")
    assert not (directory / "feedback" / "demo-crash").exists() and not (directory / "feedback" / "demo-broken").exists()
    assert cli.stdout.splitlines()[-1] == (f"feedback for 7 students in {directory / 'feedback'}/<student>/"
                                           f"{course.ASSIGNMENT}/; 2 not graded, 0 failed")


def test_no_hidden_test_line_appears_in_any_feedback(feedback_class):
    directory, _, secrets = feedback_class
    assert len(secrets) > 40  # the scan has something to find
    assert len(list((directory / "feedback").rglob("*.html"))) == 13
    assert leaks(directory / "feedback", secrets) == {}


def test_stock_nbgrader_feedback_leaks_so_the_scan_can_fail(feedback_class):
    directory, _, secrets = feedback_class
    leaked = leaks(directory / "stock_feedback", secrets)
    assert len(leaked) == 13, leaked.keys()  # every stock file shows hidden tests
    assert "BEGIN HIDDEN TESTS" in rendered(directory / "stock_feedback" / "demo-blank" / course.ASSIGNMENT / "check_your_learning.html")


def test_a_failed_hidden_check_names_its_question_only(feedback_class):
    directory, _, _ = feedback_class
    cells = grade_cells(directory / "feedback" / "demo-partial" / course.ASSIGNMENT / "check_your_learning.html")
    assert "AssertionError: a hidden check of Q3 failed" in cells["q3_answer_test"]
    assert "count_params" not in cells["q3_answer_test"]  # the hidden assertion's own message is hidden too
    assert all("hidden check" not in text for cell, text in cells.items() if cell != "q3_answer_test")


HINTS = {  # demo-mixed's misconceptions (tests/test_report.py): the hint each failed hidden check shows
    ("check_your_learning", "q1_test"): "Each input is connected to every one of the layer's units.",
    ("check_your_learning", "q2_test"): "The layer has many kernels, each with its own weights.",
    ("check_your_learning", "q3_model_test"): "check where the extra one goes",
    ("check_your_learning", "q3_answer_test"): "Compare the output shape of Flatten in the two models",
    ("mnist_exercise", "metrics_test"): "the model's outputs must be probabilities",
    ("mnist_exercise", "gap_test"): "Check the order of the subtraction",
    ("mnist_exercise", "dropout_test"): "a higher dropout rate than the lesson's",
}


def test_a_failed_hidden_check_shows_the_hint_of_the_students_misconception_and_no_answer(feedback_class):
    directory, _, _ = feedback_class
    folder = directory / "feedback" / "demo-mixed" / course.ASSIGNMENT
    for (notebook, cell), hint in HINTS.items():
        text = grade_cells(folder / f"{notebook}.html")[cell]
        assert "a hidden check of" in text and "failed. Hint: " in text and hint in text, (cell, text)
    counting = grade_cells(directory / "feedback" / "demo-counting" / course.ASSIGNMENT / "check_your_learning.html")
    assert "Hint: Count the biases too" in counting["q1_test"] and "Hint: Read the question again" in counting["q2_test"]
    assert "Hint:" not in counting["q3_answer_test"]  # passed
    partial = grade_cells(directory / "feedback" / "demo-partial" / course.ASSIGNMENT / "check_your_learning.html")
    assert "Hint: Compare the output shape of Flatten" in partial["q3_answer_test"]
    for path in (directory / "feedback").glob("demo-*/*/*.html"):  # handed in from the release: no solution marker,
        text = rendered(path)  # nor the table of misconceptions
        assert "SOLUTION" not in text and "MISCONCEPTIONS" not in text, path


def test_failed_public_checks_name_the_question_and_show_the_visible_message(feedback_class):
    directory, _, _ = feedback_class
    folder = directory / "feedback" / "demo-blank" / course.ASSIGNMENT
    questions = grade_cells(folder / "check_your_learning.html")
    expected = {"q1_test": ("# Q1", "NameError: name 'n_parameters' is not defined"),
                "q2_test": ("# Q2", "NameError: name 'n_conv_parameters' is not defined"),
                "q3_model_test": ("# Q3, the model", "NameError: name 'model' is not defined"),
                "q3_answer_test": ("# Q3, more or fewer", "NameError: name 'q3_answer' is not defined")}
    for cell, (heading, message) in expected.items():
        assert heading in questions[cell] and message in questions[cell], (cell, questions[cell])
    exercise = grade_cells(folder / "mnist_exercise.html")
    assert "# Task 1, preprocess" in exercise["preprocess_test"]
    assert "NotImplementedError" in exercise["preprocess_test"]
    assert "NameError: name 'dropout_rate' is not defined" in exercise["dropout_test"]
    assert all("hidden check" not in text for text in {**questions, **exercise}.values())

    cells = grade_cells(directory / "feedback" / MESSAGES / course.ASSIGNMENT / "check_your_learning.html")
    assert "AssertionError: Q1: n_parameters should be a whole number (an int)" in cells["q1_test"]
    assert "AssertionError: Q3: q3_answer should be \"more\" or \"fewer\"" in cells["q3_answer_test"]


def test_output_quoting_a_hidden_line_is_removed(feedback_class):
    directory, _, _ = feedback_class
    executed = course.read_notebook(directory / "autograded" / MESSAGES / course.ASSIGNMENT / "check_your_learning.ipynb")
    printed = "".join(o.get("text", "") for c in executed.cells if c.get("id") == "q3_more_or_fewer" for o in c.outputs)
    assert HIDDEN_Q3 in printed  # the student's code printed the hidden line
    ours = rendered(directory / "feedback" / MESSAGES / course.ASSIGNMENT / "check_your_learning.html")
    assert HIDDEN_Q3 not in ours and "removed here because it quoted the hidden tests" in ours


def test_long_output_lines_wrap_in_the_feedback_page(tmp_path):
    """A hint is one long line: the page's outputs wrap it (tests/test_hub.py measures it in Chromium)."""
    from graders.outputs.feedback import WRAP_OUTPUTS, wrap_outputs
    page = tmp_path / "check_your_learning.html"
    page.write_text("<html><head><title>f</title></head><body><div class='output_subarea output_text output_error'><pre>hint</pre></div></body></html>")
    wrap_outputs(page)
    wrap_outputs(page)  # idempotent: feedback is written again after a regrade
    assert page.read_text().count(WRAP_OUTPUTS) == 1 and page.read_text().index(WRAP_OUTPUTS) < page.read_text().index("</head>")
