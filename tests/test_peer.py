"""nbgrader's own autograde scenarios, graded by stock nbgrader and by `python -m graders autograde`.

The course is built from nbgrader's fixtures (tests/fixtures/nbgrader, BSD-3-Clause) as nbgrader's
`tests/apps/test_nbgrader_autograde.py` builds its scenarios, one student per scenario in one
course, so that one run of each grader covers them all: a changed and an unchanged submission, a
notebook that writes a file (side effects), a missing notebook, an empty submission folder
(missing files), an excluded student (`student_id_exclude`), a late, an empty and an invalid
timestamp, the outdated `c.AutogradeApp.permissions` (custom permissions), and an answer that
sends what the test cells print to stderr (nbgrader scores them 0; so does graders, unless a
course sets `c.StagedExecute.stderr_as_stdout`). A second assignment is nbgrader's hidden-tests
scenario: hidden tests that call the student's `squares` (graders runs each call in the student's
kernel, graders.inside.proxy), handed in as released (stock: 1.5 of 3) and solved (3 of 3). The two
gradebooks and the two autograded/
folders (file names and modes) must be equal; what differs on purpose is in docs/tas.md ("Where
graders differs from stock nbgrader").
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

pytestmark = pytest.mark.slow  # two graders grade a class (about 35 s)

FIXTURES = Path(__file__).parent / "fixtures" / "nbgrader"
COURSE_ID, ASSIGNMENT, HIDDEN = "peer", "ps1", "ps2"
CONFIG = f"""c = get_config()
c.CourseDirectory.course_id = {COURSE_ID!r}
c.CourseDirectory.student_id_exclude = "excluded"
c.AutogradeApp.permissions = 644  # outdated: nbgrader merges it into Autograde (its custom permissions scenario)
c.ClearSolutions.code_stub = dict(python="# YOUR CODE HERE")  # as nbgrader's hidden-tests scenario releases it
"""
DUE, AFTER = "2015-02-02 14:58:23.948203 America/Los_Angeles", "2015-02-02 15:58:23.948203 America/Los_Angeles"
# {student: (p1's fixture or None, p2 handed in, timestamp.txt or None)}
SCENARIOS = {
    "changed": ("submitted-changed", True, None),
    "unchanged": ("submitted-unchanged", True, None),
    "missing-p2": ("submitted-changed", False, None),
    "empty": (None, False, None),
    "excluded": ("submitted-changed", True, None),
    "late": ("submitted-changed", True, AFTER),
    "blank-timestamp": ("submitted-changed", True, ""),
    "bad-timestamp": ("submitted-changed", True, "But I want to be a timestamp string :("),  # nbgrader exits 1
    "stderr": ("submitted-changed", True, None),  # its answer sends what the test cells print to stderr: 0 for them
}
TO_STDERR = "a = 1\nimport sys\nsys.stdout = sys.stderr"
SOLVED = {"squares": 'def squares(n):\n    if n < 1:\n        raise ValueError("n must be at least 1")\n'
                     '    return [i ** 2 for i in range(1, n + 1)]',
          "sum_of_squares": "def sum_of_squares(n):\n    return sum(squares(n))"}
HIDDEN_SCENARIOS = {"hidden-release": {}, "hidden-solved": SOLVED}  # {student: {answer cell: its source}}
STATUSES = {"changed": "graded", "unchanged": "graded", "missing-p2": "missing notebook", "empty": "missing submission",
            "late": "graded", "blank-timestamp": "graded", "bad-timestamp": "invalid timestamp", "stderr": "graded"}


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # `nbgrader db` runs alembic
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """{"stock" | "graders": (course directory, the run)}: the same course graded by each."""
    base = tmp_path_factory.mktemp("peer") / "base"
    (base / "source" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(FIXTURES / "submitted-unchanged.ipynb", base / "source" / ASSIGNMENT / "p1.ipynb")
    shutil.copy(FIXTURES / "side-effects.ipynb", base / "source" / ASSIGNMENT / "p2.ipynb")
    (base / "source" / HIDDEN).mkdir()
    shutil.copy(FIXTURES / "test-hidden-tests.ipynb", base / "source" / HIDDEN / "p1.ipynb")
    (base / "nbgrader_config.py").write_text(CONFIG)
    for args in (("db", "assignment", "add", ASSIGNMENT, "--duedate", DUE), ("generate_assignment", ASSIGNMENT),
                 ("db", "assignment", "add", HIDDEN, "--duedate", DUE), ("generate_assignment", HIDDEN)):
        assert nbgrader(base, *args).returncode == 0
    for student, answers in HIDDEN_SCENARIOS.items():
        (base / "submitted" / student / HIDDEN).mkdir(parents=True)
        notebook = json.loads((base / "release" / HIDDEN / "p1.ipynb").read_text())
        for cell in notebook["cells"]:
            cell["source"] = answers.get(cell["id"], cell["source"])
        (base / "submitted" / student / HIDDEN / "p1.ipynb").write_text(json.dumps(notebook))
    for student, (p1, p2, timestamp) in SCENARIOS.items():
        folder = base / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        if p1:
            shutil.copy(FIXTURES / f"{p1}.ipynb", folder / "p1.ipynb")
        if p2:
            shutil.copy(FIXTURES / "side-effects.ipynb", folder / "p2.ipynb")
        if timestamp is not None:
            (folder / "timestamp.txt").write_text(timestamp)
        if student == "stderr":
            notebook = json.loads((folder / "p1.ipynb").read_text())
            answer = next(cell for cell in notebook["cells"] if cell["id"] == "set_a")
            answer["source"] = "".join(answer["source"]).replace("a = 1", TO_STDERR)
            (folder / "p1.ipynb").write_text(json.dumps(notebook))
    runs = {"base": (base, None)}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for grader, module in (("stock", "nbgrader"), ("graders", "graders")):
        course = base.parent / grader
        shutil.copytree(base, course)
        runs[grader], runs[f"{grader} {HIDDEN}"] = [
            (course, subprocess.run([sys.executable, "-m", module, "autograde", assignment], cwd=course,
                                    capture_output=True, text=True, env=env, timeout=600))
            for assignment in (ASSIGNMENT, HIDDEN)]
    return runs


def grades(course: Path, assignment: str = ASSIGNMENT) -> dict:
    """{student: ({(notebook, grade cell): (score, max score)}, late penalty, late)} from the gradebook."""
    found = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            cells = {(notebook.name, grade.name): (grade.score, grade.max_score)
                     for notebook in submission.notebooks for grade in notebook.grades}
            found[submission.student_id] = (cells, submission.late_submission_penalty, submission.total_seconds_late > 0)
    return found


def autograded(course: Path) -> dict:
    """{file under autograded/: its mode}."""
    return {str(path.relative_to(course / "autograded")): oct(path.stat().st_mode & 0o7777)
            for path in sorted((course / "autograded").rglob("*")) if path.is_file()}


def test_both_gradebooks_hold_the_same_students_with_the_same_scores_cell_for_cell(graded):
    (stock, stock_run), (ours, _) = graded["stock"], graded["graders"]
    assert stock_run.returncode == 1, stock_run.stderr[-3000:]  # the bad timestamp, as in nbgrader's own test
    assert grades(ours) == grades(stock)
    assert sorted(grades(stock)) == sorted(set(SCENARIOS) - {"empty", "excluded", "bad-timestamp"})  # none graded
    assert grades(stock)["late"][2] and not grades(stock)["blank-timestamp"][2]
    assert grades(stock)["changed"][0] != grades(stock)["unchanged"][0]
    assert grades(stock)["stderr"][0][("p1", "foo")] == (0, 1) and grades(stock)["changed"][0][("p1", "foo")] == (1, 1)


def test_hidden_tests_that_call_the_students_function_score_as_in_stock_nbgrader(graded):
    (stock, stock_run), (ours, our_run) = graded[f"stock {HIDDEN}"], graded[f"graders {HIDDEN}"]
    assert stock_run.returncode == 0 and our_run.returncode == 0, stock_run.stderr[-2000:] + our_run.stdout[-2000:]
    assert grades(ours, HIDDEN) == grades(stock, HIDDEN)
    totals = {student: sum(score for score, _ in cells.values()) for student, (cells, *_) in grades(stock, HIDDEN).items()}
    assert totals == {"hidden-release": 1.5, "hidden-solved": 3.0}  # nbgrader's own test says 1.5 for the release
    executed = json.loads((ours / "autograded" / "hidden-release" / HIDDEN / "p1.ipynb").read_text())
    failed = next(cell for cell in executed["cells"] if cell["id"] == "correct_squares")
    assert [output["ename"] for output in failed["outputs"] if output["output_type"] == "error"] == ["AssertionError"]


def test_autograded_holds_the_same_files_with_the_courses_permissions_and_the_notebooks_side_effects(graded):
    stock, ours = autograded(graded["stock"][0]), autograded(graded["graders"][0])
    assert ours == stock
    assert stock["changed/ps1/side-effect.txt"] == stock["changed/ps1/p1.ipynb"] == "0o644"
    assert not any(name.startswith(("excluded/", "empty/")) for name in stock)


def test_each_student_gets_the_status_it_deserves_and_the_excluded_none(graded):
    output = graded["graders"][1].stdout
    table = output.split("\nstudent ", 1)[1].splitlines()[1:]  # the summary's rows
    rows = {line.split()[0]: line for line in table if line.split()[:1] and line.split()[0] in SCENARIOS}
    assert not set(rows) & set(HIDDEN_SCENARIOS)  # the students of the other assignment are not this one's
    assert "excluded" not in rows and "excluded (c.CourseDirectory.student_id_exclude): excluded" in output, output
    for student, status in STATUSES.items():
        assert f" {status} " in f"{rows[student]} ", rows[student]
    assert "holds no notebook" in rows["empty"], rows["empty"]
    assert "timestamp.txt holds 'But I want to be a timestamp string :(', not a date" in rows["bad-timestamp"]


def test_a_student_nbgrader_may_not_add_to_the_gradebook_is_named_with_the_command_that_adds_them(graded, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(graded["base"][0], course, ignore=shutil.ignore_patterns("submitted"))
    shutil.copytree(graded["base"][0] / "submitted" / "changed", course / "submitted" / "newcomer")
    with open(course / "nbgrader_config.py", "a") as config:
        config.write("c.Autograde.create_student = False\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    stock = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT], cwd=course, capture_output=True,
                           text=True, env=env, timeout=600)
    assert stock.returncode == 1 and "No student with ID 'newcomer'" in stock.stderr  # nbgrader's own test says so
    ours = subprocess.run([sys.executable, "-m", "graders", "autograde", ASSIGNMENT], cwd=course, capture_output=True,
                          text=True, env=env, timeout=600)
    row = next(line for line in ours.stdout.splitlines() if line.startswith("newcomer "))
    assert ours.returncode == 1 and " unknown student " in row and "nbgrader db student add newcomer" in row, ours.stdout


def test_the_exit_status_is_nbgraders_and_strict_asks_for_every_student_graded_cleanly(graded, tmp_path):
    """nbgrader exits 0 when a notebook or a whole submission is missing (it scores or skips them);
    so does graders, unless --strict. Both exit 1 for a student they cannot grade (the bad timestamp)."""
    course = tmp_path / "course"
    shutil.copytree(graded["base"][0], course)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    students = ["--student", "missing-p2", "--student", "empty"]
    stock = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--student", "missing-p2"],
                           cwd=course, capture_output=True, text=True, env=env, timeout=600)
    ours, strict = [subprocess.run([sys.executable, "-m", "graders", "autograde", ASSIGNMENT, *students, *extra],
                                   cwd=course, capture_output=True, text=True, env=env, timeout=600)
                    for extra in ((), ("--strict",))]
    assert stock.returncode == 0 and ours.returncode == 0, stock.stderr[-2000:] + ours.stdout
    assert strict.returncode == 1 and "missing notebook" in strict.stdout, strict.stdout
    assert graded["stock"][1].returncode == graded["graders"][1].returncode == 1  # the bad timestamp: both fail
