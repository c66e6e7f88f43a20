"""The LMS round trip: a Canvas and a Moodle download handed in with `python -m graders intake`,
graded by the batch grader, a written answer graded by hand through nbgrader's Gradebook API,
then `canvas-grades` and `moodle-grades`: every score in its row, every other byte as the LMS
wrote it, every mismatch listed or refused. Cheap students only (check_your_learning answered, or
the release handed in unchanged): no training. The class is graded once per module.
"""
import csv
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

import course

FIXTURES = Path(__file__).parent / "fixtures" / "lms"
CANVAS = FIXTURES / "canvas_gradebook.csv"
MOODLE = FIXTURES / "moodle_worksheet.csv"
COLUMN = "Lesson 08: Networks are like onions (1234)"
DUE = "2024-06-01 12:00:00"
LATE = "2024-06-02 12:00:00"  # a day after DUE; penalty_method "zero" makes it 0


def graders(*args, cwd):
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-m", "graders", *args], cwd=cwd, env=env, capture_output=True, text=True)


def notebooks(directory, written=False):
    """{file name: bytes} of the cheap students: check_your_learning answered (the source, solutions in it),
    mnist_exercise as released, with the first written answer filled in when `written`."""
    cyl = (directory / "source" / course.ASSIGNMENT / "check_your_learning.ipynb").read_bytes()
    mnist = nbformat.read(str(directory / "release" / course.ASSIGNMENT / "mnist_exercise.ipynb"), as_version=4)
    if written:
        cell = next(c for c in mnist.cells if c.get("id") == "metrics_written")
        cell.source = "Precision: of the predicted sevens, how many are sevens."
    return {"check_your_learning.ipynb": cyl, "mnist_exercise.ipynb": nbformat.writes(mnist).encode()}


def blank(directory):
    return {name: (directory / "release" / course.ASSIGNMENT / name).read_bytes()
            for name in ("check_your_learning.ipynb", "mnist_exercise.ipynb")}


@pytest.fixture(scope="module")
def lms_class(tmp_path_factory):
    """One course, both LMSs' students handed in through intake and graded once by the batch grader."""
    directory = course.copy_course(tmp_path_factory.mktemp("lms") / "course")
    with open(directory / "nbgrader_config.py", "a") as config:
        config.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    course.nbgrader(directory, "generate_assignment", course.ASSIGNMENT)
    course.nbgrader(directory, "db", "assignment", "add", course.ASSIGNMENT, f"--duedate={DUE}")
    answered, empty = notebooks(directory), blank(directory)
    canvas = {"1001": ("lovelaceada", answered), "1002": ("hoppergrace", empty),
              "1003": ("turingalan", notebooks(directory, written=True)), "1004": ("noetheremmy", answered),
              "1005": ("curiemarie", {**answered, "check_your_learning.ipynb": b""}),
              "1006": ("shannonclaude", empty), "1008": ("hamiltonmargaret", answered)}
    archive = directory.parent / "canvas-submissions.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for number, (user, (lastfirst, files)) in enumerate(sorted(canvas.items())):
            for index, (name, content) in enumerate(sorted(files.items())):
                late = "LATE_" if user == "1004" else ""
                zipped.writestr(f"{lastfirst}_{late}{user}_{77000 + 10 * number + index}_{name}", content)
    canvas_intake = graders("intake", str(archive), course.ASSIGNMENT, cwd=directory)
    assert canvas_intake.returncode == 0, canvas_intake.stderr
    # Canvas' LATE_ holds no time: the late student's time is given here as the exchange would
    # (timestamp.txt), to prove the export carries nbgrader's late penalty
    (directory / "submitted" / "1004" / course.ASSIGNMENT / "timestamp.txt").write_text(LATE)

    moodle = {"5550001": ("Ada Lovelace", answered), "5550003": ("Alan Turing", notebooks(directory, written=True)),
              "5550006": ("Claude Shannon", empty), "5550008": ("Margaret Hamilton", answered)}
    archive = directory.parent / "moodle-submissions.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for participant, (name, files) in sorted(moodle.items()):
            for file_name, content in sorted(files.items()):
                # Moodle >= 4.1's folder, the older one with "_", and the flat layout (download as folders off)
                folder = {"5550003": f"{name}_{participant}_assignsubmission_file_/",
                          "5550006": f"{name}_{participant}_assignsubmission_file_"}.get(
                    participant, f"{name}_{participant}_assignsubmission_file/")
                zipped.writestr(folder + file_name, content)
    moodle_intake = graders("intake", str(archive), course.ASSIGNMENT, cwd=directory)
    assert moodle_intake.returncode == 0, moodle_intake.stderr

    graded = graders("autograde", course.ASSIGNMENT, "--workers", "2", "--timeout", "120", cwd=directory)
    assert "5550003" in graded.stdout, graded.stdout + graded.stderr
    return directory, canvas_intake.stdout, moodle_intake.stdout


def final(directory, student):
    """nbgrader's final score, read here with nbgrader's own API (not the module's code)."""
    with Gradebook(f"sqlite:///{directory / 'gradebook.db'}", course.COURSE_ID) as gradebook:
        submission = gradebook.find_submission(course.ASSIGNMENT, student)
        return max(0.0, submission.score - (submission.late_submission_penalty or 0.0))


def grade_by_hand(directory, student, points):
    """What formgrader does when a TA types a score (nbgrader's GradeHandler.put)."""
    with Gradebook(f"sqlite:///{directory / 'gradebook.db'}", course.COURSE_ID) as gradebook:
        grade = gradebook.find_grade("metrics_written", "mnist_exercise", course.ASSIGNMENT, student)
        grade.manual_score = points
        grade.needs_manual_grade = False
        gradebook.db.commit()


def lines(data: bytes):
    return data.decode("utf-8").splitlines(keepends=True)


def filled_line(line: str, after: int, value: str, delimiter=",") -> str:
    """`line` with the field that has `after` unquoted fields behind it set to `value` (the test's own splice)."""
    body = line.rstrip("\r\n")
    ending = line[len(body):]
    head, *tail = body.rsplit(delimiter, after)
    start = head.rfind(delimiter) + 1
    return head[:start] + value + "".join(delimiter + t for t in tail) + ending


def test_intake_reads_both_lmss(lms_class):
    directory, canvas_out, moodle_out = lms_class
    assert "1004: check_your_learning.ipynb, mnist_exercise.ipynb -> submitted/1004/lesson08/; LATE_ in Canvas" in canvas_out
    assert canvas_out.splitlines()[-1] == "imported 7 student(s) from canvas-submissions.zip with nbgrader zip_collect"
    assert moodle_out.splitlines()[-1] == ("imported 4 student(s) from moodle-submissions.zip (Moodle's Download all "
                                           "submissions) with nbgrader zip_collect")
    for participant in ("5550001", "5550003", "5550006", "5550008"):
        folder = directory / "submitted" / participant / course.ASSIGNMENT
        assert sorted(p.name for p in folder.iterdir()) == ["check_your_learning.ipynb", "mnist_exercise.ipynb"]


def test_canvas_round_trip(lms_class, tmp_path):
    directory, _, _ = lms_class
    out = tmp_path / "canvas-import.csv"
    first = graders("canvas-grades", course.ASSIGNMENT, str(CANVAS), "--column", COLUMN, "-o", str(out), cwd=directory)
    assert first.returncode == 0, first.stderr
    report = [line for line in first.stdout.splitlines() if not line.startswith("555")]  # Moodle's, same course
    assert final(directory, "1001") == 5 and final(directory, "1004") == 0  # raw 5, late: nbgrader's zero
    expected = {"1001": "5", "1002": "0", "1004": "0"}
    assert sorted(line.split(":")[0] for line in report[:-1]) == ["1003", "1005", "1006", "1008"]
    assert any(line.startswith("1003: needs manual grading (mnist_exercise/metrics_written)") for line in report)
    assert any(line.startswith("1005: not graded (invalid notebook)") for line in report)
    assert any(line.startswith("1006: graded by nbgrader (0), not in canvas_gradebook.csv") for line in report)
    assert any(line.startswith("1008: excused in Canvas (EX)") for line in report)
    assert report[-1].startswith(f"filled 3 of 8 students' {COLUMN!r} in {out}")
    check_canvas(CANVAS.read_bytes(), out.read_bytes(), expected)

    grade_by_hand(directory, "1003", 1)
    again = graders("canvas-grades", course.ASSIGNMENT, str(CANVAS), "--title", "Lesson 08: Networks are like onions",
                    "-o", str(out), "--force", cwd=directory)
    assert again.returncode == 0, again.stderr
    assert final(directory, "1003") == 6
    check_canvas(CANVAS.read_bytes(), out.read_bytes(), {**expected, "1003": "6"})


def check_canvas(original: bytes, written: bytes, expected: dict, delimiter=","):
    """Byte for byte: each expected student's Lesson 08 cell set, every other line and byte unchanged."""
    before, after = lines(original), lines(written)
    assert len(before) == len(after)
    assert written.startswith(b"\xef\xbb\xbf") == original.startswith(b"\xef\xbb\xbf")
    seen = set()
    for old, new in zip(before, after):
        user = next(csv.reader([old.lstrip("\ufeff")], delimiter=delimiter))[1]
        if user in expected:
            assert new == filled_line(old, 6, expected[user], delimiter), (old, new)
            seen.add(user)
        else:
            assert new == old
    assert seen == set(expected)


@pytest.mark.parametrize("variant", ["crlf-no-bom", "cr", "semicolon-decimal-comma"])
def test_canvas_keeps_line_endings_bom_and_delimiter(variant, lms_class, tmp_path):
    directory, _, _ = lms_class
    text = CANVAS.read_bytes().decode("utf-8")
    delimiter = ","
    if variant == "crlf-no-bom":
        text = text.lstrip("\ufeff").replace("\n", "\r\n")
    elif variant == "cr":  # as Canvas' own spec/fixtures/gradebooks/pristine.csv
        text = text.replace("\n", "\r")
    else:  # Canvas' export with the semicolon option, numbers with a decimal comma
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=";", lineterminator="\n").writerows(
            [[cell.replace(".", ",") if cell.replace(".", "").isdigit() else cell for cell in row] for row in rows])
        text, delimiter = buffer.getvalue(), ";"
    source = tmp_path / "gradebook.csv"
    source.write_bytes(text.encode("utf-8"))
    out = tmp_path / "import.csv"
    result = graders("canvas-grades", course.ASSIGNMENT, str(source), "--column", COLUMN, "-o", str(out), cwd=directory)
    assert result.returncode == 0, result.stderr
    expected = {"1001": "5", "1002": "0", "1004": "0", "1003": "6"}
    if variant == "cr":
        assert out.read_bytes().count(b"\r") == text.count("\r") and b"\n" not in out.read_bytes()
    check_canvas(source.read_bytes(), out.read_bytes(), expected, delimiter)


def test_canvas_scale(lms_class, tmp_path):
    directory, _, _ = lms_class
    source = tmp_path / "gradebook.csv"
    source.write_bytes(CANVAS.read_bytes().replace(b"Possible,,,,,,10,19,", b"Possible,,,,,,10,100,"))
    out = tmp_path / "import.csv"
    refused = graders("canvas-grades", course.ASSIGNMENT, str(source), "--column", COLUMN, "-o", str(out), cwd=directory)
    assert refused.returncode == 1 and not out.exists()
    assert "is out of 100 points, nbgrader's lesson is out of 19" in refused.stderr
    scaled = graders("canvas-grades", course.ASSIGNMENT, str(source), "--column", COLUMN, "-o", str(out), "--scale",
                     cwd=directory)
    assert scaled.returncode == 0, scaled.stderr
    check_canvas(source.read_bytes(), out.read_bytes(), {"1001": "26.32", "1002": "0", "1004": "0", "1003": "31.58"})


def _canvas_edit(old, new):
    return lambda data: data.replace(old, new, 1)


# name: (how the fixture is changed, extra arguments, what the one line says)
CANVAS_REFUSALS = {
    "duplicate-id": (_canvas_edit(b'"Hopper, Grace",1002', b'"Hopper, Grace",1001'), [],
                     "Canvas ID 1001 is on lines 3 and 4"),
    "missing-column": (_canvas_edit(b"Networks are like onions (1234)", b"Something else (1234)"), [],
                       f"the gradebook has no column {COLUMN!r}"),
    "read-only-column": (_canvas_edit(b"Possible,,,,,,10,19,", b"Possible,,,,,,10,(read only),"), [],
                         f"Canvas marks {COLUMN!r} read only"),
    "not-a-gradebook": (lambda data: b"Name,Score\nAda,5\n", [], "is not Canvas' gradebook export"),
    "not-utf8": (_canvas_edit(b"Lovelace", b"Lovel\xe5ce"), [], "is not UTF-8"),
    "unknown-title": (lambda data: data, ["--title", "Lesson 08"], "the gradebook has no assignment titled 'Lesson 08'"),
    "totals-column": (lambda data: data, ["--column", "Final Score"], "column 'Final Score' is not an assignment's column"),
    "unclosed-quote": (lambda data: data + b'"Nobody, 2000,,,,\n', [], "is never closed"),
}


@pytest.mark.parametrize("kind", CANVAS_REFUSALS)
def test_canvas_refuses_in_one_line_and_writes_nothing(kind, lms_class, tmp_path):
    directory, _, _ = lms_class
    change, extra, message = CANVAS_REFUSALS[kind]
    source = tmp_path / "gradebook.csv"
    source.write_bytes(change(CANVAS.read_bytes()))
    out = tmp_path / "import.csv"
    options = extra if extra else ["--column", COLUMN]
    result = graders("canvas-grades", course.ASSIGNMENT, str(source), *options, "-o", str(out), cwd=directory)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [source]


def test_canvas_never_overwrites_the_input_or_an_existing_file(lms_class, tmp_path):
    directory, _, _ = lms_class
    source = tmp_path / "gradebook.csv"
    source.write_bytes(CANVAS.read_bytes())
    onto_input = graders("canvas-grades", course.ASSIGNMENT, str(source), "--column", COLUMN, "-o", str(source),
                         "--force", cwd=directory)
    assert onto_input.returncode == 1 and "is the file downloaded from the LMS" in onto_input.stderr
    assert source.read_bytes() == CANVAS.read_bytes()
    existing = tmp_path / "import.csv"
    existing.write_text("keep me")
    refused = graders("canvas-grades", course.ASSIGNMENT, str(source), "--column", COLUMN, "-o", str(existing),
                      cwd=directory)
    assert refused.returncode == 1 and "exists: choose another -o or pass --force" in refused.stderr
    assert existing.read_text() == "keep me"


def moodle_importable(member: str, participants: set):
    """Moodle's assignfeedback_file_zip_importer::is_valid_filename_for_import, restated: the first
    path part split on '_' (at most 5 pieces) with a numeric, known participant id and a plugin."""
    parts = member.split("/")
    while parts:
        info = parts.pop(0).split("_", 4)
        if len(info) < 4 or not info[1].isdigit() or info[1] not in participants:
            continue
        if (info[2], info[3]) != ("assignsubmission", "file"):
            continue
        return info[1], "/".join([info[4] if len(info) == 5 else "", *parts])
    return None


def test_moodle_round_trip(lms_class, tmp_path):
    directory, _, _ = lms_class
    grade_by_hand(directory, "5550003", 2)
    written = graders("feedback", course.ASSIGNMENT, "--student", "5550001", "--student", "5550003", cwd=directory)
    assert written.returncode == 0, written.stdout + written.stderr
    out, archive = tmp_path / "worksheet-import.csv", tmp_path / "feedback.zip"
    result = graders("moodle-grades", course.ASSIGNMENT, str(MOODLE), "-o", str(out), "--feedback-zip", str(archive),
                     cwd=directory)
    assert result.returncode == 0, result.stderr
    report = [line for line in result.stdout.splitlines() if not line.startswith("100")]  # Canvas', same course
    assert sorted(line.split(":")[0] for line in report[:-1]) == ["5550006", "5550008"]
    assert any(line.startswith("5550006: graded by nbgrader (0), not in moodle_worksheet.csv") for line in report)
    assert any(line.startswith("5550008: Moodle locks this grade") for line in report)
    assert final(directory, "5550001") == 5 and final(directory, "5550003") == 7

    before, after = lines(MOODLE.read_bytes()), lines(out.read_bytes())
    assert len(before) == len(after) and out.read_bytes().startswith(b"\xef\xbb\xbf")
    grades = {"Participant 5550001": "5.00", "Participant 5550003": "7.00"}
    for old, new in zip(before, after):
        row = next(csv.reader([old.lstrip("\ufeff")]))
        if row[0] in grades:
            head, tail = old.split(',"Submitted for grading', 1)
            status, rest = tail.split('",', 1)
            assert new == f'{head},"Submitted for grading{status}",{grades[row[0]]}{rest[rest.index(","):]}', new
        else:
            assert new == old

    with zipfile.ZipFile(archive) as zipped:
        members = sorted(zipped.namelist())
        assert zipped.testzip() is None
    assert members == ["Ada Lovelace_5550001_assignsubmission_file_/check_your_learning.html",
                       "Ada Lovelace_5550001_assignsubmission_file_/mnist_exercise.html",
                       "Alan Turing_5550003_assignsubmission_file_/check_your_learning.html",
                       "Alan Turing_5550003_assignsubmission_file_/mnist_exercise.html"]
    known = {"5550001", "5550003", "5550007", "5550008"}
    assert [moodle_importable(m, known) for m in members] == [
        ("5550001", "/check_your_learning.html"), ("5550001", "/mnist_exercise.html"),
        ("5550003", "/check_your_learning.html"), ("5550003", "/mnist_exercise.html")]


MOODLE_REFUSALS = {
    "duplicate-participant": (b'"Participant 5550007"', b'"Participant 5550001"', "participant 5550001 is on lines 2 and 4"),
    "not-english": (b'"Identifier"', b'"Kennung"', "is not Moodle's grading worksheet (no single 'Identifier'"),
    "scale": (b'"Maximum Grade"', b'"Scale"', "has no 'Maximum grade' column"),
    "other-maximum": (b'"Submitted for grading",,19.00', b'"Submitted for grading",,20.00',
                      "is out of 20 points, nbgrader's lesson is out of 19"),
}


@pytest.mark.parametrize("kind", MOODLE_REFUSALS)
def test_moodle_refuses_in_one_line_and_writes_nothing(kind, lms_class, tmp_path):
    directory, _, _ = lms_class
    old, new, message = MOODLE_REFUSALS[kind]
    source = tmp_path / "worksheet.csv"
    source.write_bytes(MOODLE.read_bytes().replace(old, new, 1))
    out = tmp_path / "import.csv"
    result = graders("moodle-grades", course.ASSIGNMENT, str(source), "-o", str(out), cwd=directory)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == [source]


def test_intake_refuses_a_moodle_folder_of_another_plugin(lms_class, tmp_path):
    directory, _, _ = lms_class
    archive = tmp_path / "moodle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("Ada Lovelace_5550001_assignsubmission_file/check_your_learning.ipynb", b"{}")
        zipped.writestr("Ada Lovelace_5550001_assignsubmission_onlinetext/onlinetext.html", b"<p>hi</p>")
    result = graders("intake", str(archive), course.ASSIGNMENT, "--force", cwd=directory)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "'Ada Lovelace_5550001_assignsubmission_onlinetext/onlinetext.html' is not named" in result.stderr
