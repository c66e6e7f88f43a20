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
from graders import coursedir

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
    assert sorted(p.name for p in out.iterdir()) == ["pass_rate.png", "report.html", "score_histogram.png",
                                                     "scores_by_question.csv", "status_counts.png"]


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
        assert set(row) == {"student", "autograded", "total", "status"}
        assert row["status"] == results[student].status
        if usable:
            assert float(row["total"]) == exported[student] == results[student].score
        else:  # nbgrader export lists them with 0; they have no grade at all
            assert (row["total"], row["autograded"], exported[student]) == ("", "", 0.0)
    # the README's numbers: 14 autograded points of the reference, Q3 "more" costs the partial one point
    assert (rows["demo-reference"]["autograded"], rows["demo-reference"]["total"]) == ("14", "14")
    assert (rows["demo-partial"]["autograded"], rows["demo-partial"]["check_your_learning:q3_answer_test"]) == ("4", "0")


def test_status_counts_match_the_grading(reported):
    _, out, stdout, results = reported
    expected = Counter(r.status for r in results.values())
    assert expected == {"graded": 4, "kernel crashed": 1, "invalid notebook": 1}
    page = Page((out / "report.html").read_text())
    assert page.counts("statuses") == expected
    assert Counter(row["status"] for row in read_csv(out / "scores_by_question.csv").values()) == expected
    assert "6 students: 4 graded; 1 invalid notebook; 1 kernel crashed" in stdout


def test_html_stands_alone_with_valid_pngs(reported):
    _, out, _, _ = reported
    page = Page((out / "report.html").read_text())
    assert not page.tags & {"link", "script", "iframe", "object", "embed", "base"}
    assert "url(" not in (out / "report.html").read_text()
    prefix = "data:image/png;base64,"
    assert [name for name, _ in page.references] == ["src"] * 3
    embedded = [base64.b64decode(value[len(prefix):]) for _, value in page.references if value.startswith(prefix)]
    assert len(embedded) == 3
    beside = {path.name: path.read_bytes() for path in out.glob("*.png")}
    assert sorted(embedded) == sorted(beside.values())
    for name, data in beside.items():
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 150, name
            image.load()  # decodes every pixel: a truncated file fails here


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
    assert page.counts("statuses") == {"graded": 3, "graded by nbgrader": 1, "invalid notebook": 1, "not graded": 1}


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
