"""python -m graders report: the README's demo class reported, checked against its gradebook and statuses."""
import base64
import csv
import io
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

import course
from graders.course import coursedir
from graders.inside import hidden

USABLE_IN_DEMO = ("graded",)  # the demo's statuses with usable grades (the others: kernel crashed, invalid notebook)


def graders_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "graders", *args], cwd=cwd, capture_output=True, text=True)


def read_csv(path: Path) -> dict:
    with open(path, newline="") as stream:
        return {row["student"]: row for row in csv.DictReader(stream)}


class Page(HTMLParser):
    """What a report page refers to, and its tables as {table id: [[cell text]]}."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.references, self.tables, self.table, self.row = set(), [], {}, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.references += [(name, value) for name, value in attrs if name in ("src", "href", "srcset", "data", "action")]
        if tag == "table":
            self.table = self.tables.setdefault(dict(attrs)["id"], [])
        elif tag == "tr":
            self.row = []
            self.table.append(self.row)
        elif tag in ("td", "th"):
            self.row.append("")

    def handle_data(self, data):
        if self.row is not None and self.row:
            self.row[-1] += data

    def handle_endtag(self, tag):
        if tag == "tr":
            self.row = None

    def counts(self, table_id) -> dict:
        header, *rows = self.tables[table_id]
        return {row[0]: int(row[1]) for row in rows}


@pytest.fixture(scope="module")
def reported(demo_class, tmp_path_factory):
    """A copy of the demo class, reported as the README says: in the course directory, no options."""
    directory, results = demo_class
    copy = tmp_path_factory.mktemp("report") / "course"
    shutil.copytree(directory, copy)
    done = graders_cli("report", course.ASSIGNMENT, cwd=copy)
    assert done.returncode == 0, done.stderr
    return copy, copy / "reports" / course.ASSIGNMENT, done.stdout, results


def test_prints_the_report_path_last(reported):
    directory, out, stdout, _ = reported
    assert (directory / stdout.splitlines()[-1]).resolve() == (out / "report.html").resolve()
    assert sorted(p.name for p in out.iterdir()) == ["misconceptions.png", "pass_rate.png", "report.html", "score_histogram.png",
                                                     "scores_by_question.csv", "similarity.png", "status_counts.png"]


def test_csv_equals_the_gradebook_cell_for_cell(reported):
    directory, out, _, results = reported
    rows = read_csv(out / "scores_by_question.csv")
    gradebook = course.grades(directory)
    assert set(rows) == set(results) == set(gradebook)
    with open(directory / "grades.csv", newline="") as stream:  # nbgrader export's, made by the demo
        exported = {row["student_id"]: float(row["score"]) for row in csv.DictReader(stream)}
    for student, cells in gradebook.items():
        row = dict(rows[student])
        usable = results[student].status in USABLE_IN_DEMO
        for (notebook, cell), (score, _, needs_manual_grade) in cells.items():
            value = row.pop(f"{notebook}:{cell}")
            # in the demo, a cell needing a manual grade has none yet (the gradebook says 0): empty, not 0
            if usable and not needs_manual_grade:
                assert float(value) == score, (student, cell)
            else:
                assert value == "", (student, cell)
        assert set(row) == {"student", "autograded", "total", "status", *(f"{key} misconception" for key in DIAGNOSED)}
        assert row["status"] == results[student].status
        if usable:
            assert float(row["total"]) == exported[student] == results[student].score
        else:  # nbgrader export lists them with 0; they have no grade at all
            assert (row["total"], row["autograded"], exported[student]) == ("", "", 0.0)
    # the README's numbers: 14 autograded points of the reference, Q3 "more" costs the partial one point
    assert (rows["demo-reference"]["autograded"], rows["demo-reference"]["total"]) == ("14", "14")
    assert (rows["demo-partial"]["autograded"], rows["demo-partial"]["check_your_learning:q3_answer_test"]) == ("4", "0")


# the test cells whose hidden part declares misconceptions, and what the demo's students made of them
DIAGNOSED = {f"check_your_learning:{cell}" for cell in ("q1_test", "q2_test", "q3_model_test", "q3_answer_test")} | {
    f"mnist_exercise:{cell}" for cell in ("accuracy_test", "metrics_test", "gap_test", "dropout_test")}  # accuracy: a notice
DEMO_MISCONCEPTIONS = {
    "demo-counting": {"check_your_learning:q1_test": "biases forgotten", "check_your_learning:q2_test": "a bias per kernel added",
                      "check_your_learning:q3_model_test": "extra layer left out"},
    "demo-mixed": {"check_your_learning:q1_test": "inputs only, no units", "check_your_learning:q2_test": "one kernel only",
                   "check_your_learning:q3_model_test": "extra layer in the wrong place",
                   "check_your_learning:q3_answer_test": "more",
                   "mnist_exercise:metrics_test": "precision and recall on logits",
                   "mnist_exercise:gap_test": "sign reversed", "mnist_exercise:dropout_test": "rate at or below the lesson's"},
    "demo-partial": {"check_your_learning:q3_answer_test": "more"},
}


def test_misconceptions_are_what_the_batch_recorded(reported):
    """The CSV's misconception columns and the page's table count exactly the batch's diagnoses;
    a student who lost a cell's points without one is "other"; full points: empty."""
    directory, out, _, results = reported
    state = coursedir.Course(directory).state(course.ASSIGNMENT).load()
    recorded = {student: {key: found["misconception"] for key, found in entry["result"].get("diagnoses", {}).items()}
                for student, entry in state.items() if entry["status"] == "graded"}
    for student, expected in DEMO_MISCONCEPTIONS.items():
        assert recorded[student] == expected, (student, recorded[student])
    assert recorded["demo-reference"] == {} and recorded["demo-hostile"] == {} and recorded["demo-blank"] == {}
    rows = read_csv(out / "scores_by_question.csv")
    page = Page((out / "report.html").read_text())
    header, *table = page.tables["misconceptions"]
    assert header == ["question", "misconception", "students", "share", "example values", "who"]
    assert {row[0] for row in table} == DIAGNOSED
    for key in DIAGNOSED:
        column = {student: row[f"{key} misconception"] for student, row in rows.items()}
        for student, name in column.items():
            if student in recorded and key in recorded[student]:
                assert name == recorded[student][key], (student, key)
            elif name:  # lost the points with no diagnosis: a public check failed (the blank release)
                assert name == hidden.OTHER and float(rows[student][key]) < 1, (student, key)
        counted = {row[1]: (int(row[2]), set(filter(None, row[5].split(", ")))) for row in table if row[0] == key}
        for name, (count, who) in counted.items():
            assert who == {student for student, made in column.items() if made == name} and count == len(who), (key, name)
    assert counted and column["demo-blank"] == hidden.OTHER and column["demo-reference"] == ""
    examples = {(row[0], row[1]): row[4] for row in table}
    assert examples[("check_your_learning:q1_test", "biases forgotten")] == "307200"
    assert examples[("check_your_learning:q3_model_test", "extra layer left out")].startswith("47370 parameters")


def test_status_counts_match_the_grading(reported):
    _, out, stdout, results = reported
    expected = Counter(r.status for r in results.values())
    assert expected == {"graded": 6, "kernel crashed": 1, "invalid notebook": 1}
    page = Page((out / "report.html").read_text())
    assert page.counts("statuses") == expected
    assert Counter(row["status"] for row in read_csv(out / "scores_by_question.csv").values()) == expected
    assert "8 students: 6 graded; 1 invalid notebook; 1 kernel crashed" in stdout


def test_html_stands_alone_with_valid_pngs(reported):
    _, out, _, _ = reported
    page = Page((out / "report.html").read_text())
    assert not page.tags & {"link", "script", "iframe", "object", "embed", "base"}
    assert "url(" not in (out / "report.html").read_text()
    prefix = "data:image/png;base64,"
    assert [name for name, _ in page.references] == ["src"] * 5
    embedded = [base64.b64decode(value[len(prefix):]) for _, value in page.references if value.startswith(prefix)]
    assert len(embedded) == 5
    beside = {path.name: path.read_bytes() for path in out.glob("*.png")}
    assert sorted(embedded) == sorted(beside.values())
    for name, data in beside.items():
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 150, name
            image.load()  # decodes every pixel: a truncated file fails here


def test_the_report_has_the_similarity_section(reported):
    _, out, _, _ = reported
    page = (out / "report.html").read_text()
    assert '<section id="similarity">' in page and "not a verdict" in page


def test_students_unknown_to_the_batch_grader(demo_class, tmp_path):
    """Graded by nbgrader alone: counted as graded by nbgrader; in the gradebook without a score: not graded."""
    directory, _ = demo_class
    copy = tmp_path / "course"
    shutil.copytree(directory, copy)
    state = coursedir.Course(copy).state(course.ASSIGNMENT)
    known = state.load()
    del known["demo-blank"], known["demo-crash"]
    state.rewrite(known)
    done = graders_cli("report", course.ASSIGNMENT, "--course", str(copy), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    rows = read_csv(tmp_path / "out" / "scores_by_question.csv")
    assert (rows["demo-blank"]["status"], rows["demo-blank"]["total"]) == ("graded by nbgrader", "0")
    assert (rows["demo-crash"]["status"], rows["demo-crash"]["total"]) == ("not graded", "")
    page = Page((tmp_path / "out" / "report.html").read_text())
    assert page.counts("statuses") == {"graded": 5, "graded by nbgrader": 1, "invalid notebook": 1, "not graded": 1}


def test_one_line_errors(demo_class, tmp_path):
    directory, _ = demo_class
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy2(course.REPO / "nbgrader_config.py", empty)
    done = graders_cli("report", course.ASSIGNMENT, cwd=empty)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: no gradebook at {empty / 'gradebook.db'}") and done.stderr.count("\n") == 1
    assert sorted(p.name for p in empty.iterdir()) == ["nbgrader_config.py"]  # no empty gradebook made, no report

    done = graders_cli("report", "lesson99", "--course", str(directory), "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr == "error: assignment 'lesson99' is not in the gradebook (it has: lesson08): check the name\n"
    assert not (tmp_path / "out").exists()
