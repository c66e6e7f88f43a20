"""A second assignment, in a course of its own and without TensorFlow, graded by the batch grader
with no change to the code: notebook names come from source/, settings from nbgrader_config.py."""
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import course
from graders.course import coursedir
from graders.grading import batch
from graders.isolation import sandbox

ASSIGNMENT = "lesson09"
CONFIG = """c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "tiny"
c.Execute.timeout = 60
"""
ANSWER = "### BEGIN SOLUTION\nsquares = [n * n for n in range(5)]\n### END SOLUTION\n"
TEST = ('assert isinstance(squares, list), "squares should be a list"\n'
        "### BEGIN HIDDEN TESTS\n"
        'assert squares == [0, 1, 4, 9, 16], "squares are not the squares of 0 to 4"\n'
        "### END HIDDEN TESTS\n")
LIAR = ("class Squares(list):\n    def __eq__(self, other):\n        return True\n"
        "squares = Squares([1, 2, 3])\n")


def graded_cell(source, grade_id, **flags):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade_id": grade_id, "schema_version": 3, "grade": False, "solution": False,
                                 "locked": False, "task": False, **flags}
    return cell


def squares_notebook(answer=ANSWER):
    return new_notebook(cells=[new_markdown_cell("# Lesson 09: squares"),
                               graded_cell(answer, "answer", solution=True),
                               graded_cell(TEST, "test", grade=True, locked=True, points=2)],
                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


@pytest.fixture(scope="module")
def tiny_course(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny") / "course"
    (directory / "source" / ASSIGNMENT).mkdir(parents=True)
    (directory / "nbgrader_config.py").write_text(CONFIG)
    nbformat.write(squares_notebook(), str(directory / "source" / ASSIGNMENT / "squares.ipynb"))
    course.nbgrader(directory, "generate_assignment", ASSIGNMENT)
    for student, answer in {"right": ANSWER, "wrong": "squares = [n * 2 for n in range(5)]\n", "liar": LIAR}.items():
        course.submit(directory, student, {"squares": squares_notebook(answer)}, assignment=ASSIGNMENT)
    results = batch.Batch(directory, ASSIGNMENT, sandbox.Limits(wall_seconds=120, memory_bytes=2 << 30), workers=2).run()
    return directory, {r.student: r for r in results}


def test_a_second_assignment_grades_with_its_own_notebooks_and_settings(tiny_course):
    directory, results = tiny_course
    assert {s: r.status for s, r in results.items()} == {"right": "graded", "wrong": "graded", "liar": "graded"}
    assert {s: (r.score, r.max_score) for s, r in results.items()} == {"right": (2, 2), "wrong": (0, 2), "liar": (0, 2)}
    assert set(results["right"].notebooks) == {"squares"}
    with coursedir.Course(directory).gradebook() as gradebook:
        assert gradebook.find_submission(ASSIGNMENT, "liar").score == 0  # its list's == lies; the checker's does not


def test_the_batch_state_is_a_journal_of_one_line_per_grading(tiny_course):
    directory, _ = tiny_course
    state = coursedir.Course(directory).state(ASSIGNMENT)
    lines = state.path.read_text().splitlines()
    assert len(lines) == 3 and set(state.load()) == {"right", "wrong", "liar"}
    state.path.write_text("\n".join(lines) + '\n["right", {"status": "gra')  # cut short by a crash
    assert set(state.load()) == {"right", "wrong", "liar"} and state.load()["right"]["status"] == "graded"
