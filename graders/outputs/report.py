"""Class report: ``python -m graders report ASSIGNMENT``.

One self-contained HTML page (its plots embedded as data: URIs, the PNGs also written beside
it) and a student x question CSV, both read from nbgrader's gradebook, plus each student's
status from the batch grader's state (.graders/ASSIGNMENT/state.jsonl). A student the batch
grader could not grade (timed out, kernel crashed ...) has no usable grades: `nbgrader export`
lists them with 0; here they are counted under their status, never as zeros in the plots.
Per test cell that declares misconceptions (graders.inside.hidden), the share of students who made
each, from the diagnoses the batch grader recorded: what the class got wrong, and why.
"""
import base64
import csv
import html
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import MissingEntry

from graders.course.coursedir import Course
from graders.course.plain import plain
from graders.course.status import Status
from graders.errors import GradersError
from graders.inside import hidden
from graders.outputs import literals, report_plots, similarity

logger = logging.getLogger(__name__)

GRADED_BY_NBGRADER, NOT_GRADED = Status.GRADED_BY_NBGRADER, Status.NOT_GRADED
NOT_SUBMITTED, NOT_IN_GRADEBOOK = Status.NO_SUBMISSION, Status.NOT_IN_GRADEBOOK
USABLE = tuple(status for status in Status if status.scored)  # the statuses whose gradebook scores are real


@dataclass
class Question:
    notebook: str
    cell: str
    max_score: float
    autograded: bool  # a test cell, scored by running it; otherwise an answer graded by hand
    misconceptions: list = field(default_factory=list)  # the names its hidden part declares

    @property
    def key(self) -> str:
        return f"{self.notebook}:{self.cell}"


@dataclass
class Student:
    name: str
    status: str
    detail: str = ""
    scores: dict = field(default_factory=dict)  # question key -> points, None while not graded
    total: float = None  # nbgrader export's score (late penalty applied); None without usable grades
    diagnoses: dict = field(default_factory=dict)  # question key -> {misconception, hint, value}, from the batch grader
    literal_data: list = field(default_factory=list)  # graders.outputs.literals.notices of the submission

    @property
    def usable(self) -> bool:
        return self.status in USABLE

    def autograded(self, questions) -> float:
        if not self.usable:
            return None
        return sum(self.scores.get(q.key) or 0.0 for q in questions if q.autograded)


def _source_cells(source_notebook: Path) -> dict:
    """{grade id: cell} of the instructor's notebook, in its order (columns follow the notebook)."""
    try:
        cells = nbformat.read(str(source_notebook), as_version=4).cells
    except (OSError, ValueError):
        return {}
    return {cell.metadata["nbgrader"]["grade_id"]: cell for cell in cells
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")}


def read_class(course: Path, assignment: str):
    """([Question], [Student]) of an assignment, from the gradebook and the batch grader's state."""
    course = Course(course)
    state, delimiters = course.state(assignment).load(), course.hidden_delimiters()
    with course.gradebook() as gradebook:
        try:
            found = gradebook.find_assignment(assignment)
        except MissingEntry:
            known = ", ".join(sorted(a.name for a in gradebook.assignments)) or "none"
            raise GradersError(f"assignment {assignment!r} is not in the gradebook (it has: {known}): check the name") from None
        questions = []
        for notebook in sorted(found.notebooks, key=lambda n: n.name):
            source = _source_cells(course.folder("source", assignment) / f"{notebook.name}.ipynb")
            order = {grade_id: position for position, grade_id in enumerate(source)}
            answers = {cell.name for cell in notebook.solution_cells}
            for cell in sorted(notebook.grade_cells, key=lambda c: (order.get(c.name, math.inf), c.name)):
                code = hidden.split(source[cell.name].source, *delimiters)[1] if cell.name in source else None
                questions.append(Question(notebook.name, cell.name, cell.max_score, cell.name not in answers,
                                          hidden.declared(code) if code else []))
        submissions = {s.student_id: s for s in gradebook.assignment_submissions(assignment)}
        names = sorted(set(submissions) | set(state) | {s.id for s in gradebook.students})
        students = [_student(name, submissions.get(name), state.get(name)) for name in names]
    for student in students:
        student.literal_data = literals.notices(course.folder("submitted", assignment, student.name))
    return questions, students


def _student(name: str, submission, known: dict) -> Student:
    """One student: the batch grader's status if it has one; scores only if they are real."""
    grades = [grade for notebook in submission.notebooks for grade in notebook.grades] if submission else []
    if known:
        student = Student(name, known["status"], known.get("result", {}).get("detail", ""))
        if student.usable and submission is None:
            student.status = NOT_IN_GRADEBOOK
    elif submission is None:
        student = Student(name, NOT_SUBMITTED)
    elif any(g.auto_score is not None or g.manual_score is not None for g in grades):
        student = Student(name, GRADED_BY_NBGRADER)
    else:
        student = Student(name, NOT_GRADED, "in the gradebook without any score")
    if student.usable:
        student.scores = {f"{g.notebook.name}:{g.name}": (None if g.auto_score is None and g.manual_score is None else g.score)
                          for g in grades}
        student.total = max(0.0, submission.score - submission.late_submission_penalty)  # as nbgrader export
        student.diagnoses = dict(known.get("result", {}).get("diagnoses", {})) if known else {}
    return student


def misconception(question: Question, student: Student):
    """What `student` got wrong on `question`: the misconception the batch grader recorded,
    "other" when the cell lost points without one (a public check failed, or an unknown mistake),
    a notice recorded on full points (graders.inside.hidden: the check passed), else None when it has
    full points or no usable score."""
    score = student.scores.get(question.key) if student.usable else None
    found = student.diagnoses.get(question.key)
    if score is None or score >= question.max_score:
        return found["misconception"] if score is not None and isinstance(found, dict) and found.get("passed") else None
    return (found.get("misconception") or hidden.OTHER) if isinstance(found, dict) else hidden.OTHER


def misconception_rows(question: Question, students) -> list:
    """[(misconception, students, share of those scored, example values, who)]: the declared ones
    in order (0 included), then "other"."""
    scored = [s for s in students if s.usable and s.scores.get(question.key) is not None]
    recorded = [misconception(question, s) for s in scored]  # names the source no longer declares are kept
    rows = []
    for name in dict.fromkeys([*question.misconceptions, *(n for n in recorded if n and n != hidden.OTHER), hidden.OTHER]):
        who = [s for s in scored if misconception(question, s) == name]
        values = [s.diagnoses[question.key].get("value") for s in who
                  if isinstance(s.diagnoses.get(question.key), dict) and s.diagnoses[question.key].get("value") is not None]
        examples = "; ".join(dict.fromkeys(str(value) for value in values))[:300]
        rows.append((name, len(who), len(who) / len(scored) if scored else 0.0, examples, [s.name for s in who]))
    return rows


def _status_counts(students) -> list:
    """[(status, [student names])], statuses with usable grades first, then the most frequent."""
    by_status = {}
    for student in students:
        by_status.setdefault(student.status, []).append(student.name)
    return sorted(by_status.items(), key=lambda item: (item[0] not in USABLE, -len(item[1]), item[0]))


def plots(questions, students) -> dict:
    """{name: PNG} of the report's plots (graders.outputs.report_plots draws what is counted here)."""
    graded = [s for s in students if s.usable]
    parts = [("Autograded points", [s.autograded(questions) for s in graded], sum(q.max_score for q in questions if q.autograded)),
             ("Total so far", [s.total for s in graded], sum(q.max_score for q in questions))]
    pending = sum(s.scores.get(q.key) is None for s in graded for q in questions)
    tests = [q for q in questions if q.autograded]
    images = {
        "score_histogram": report_plots.score_histogram(parts, pending, len(graded), len(students) - len(graded)),
        "pass_rate": report_plots.pass_rate([(q.key, *_full_points(q, students)) for q in tests]),
        "status_counts": report_plots.status_counts(_status_counts(students), USABLE, NOT_SUBMITTED),
    }
    diagnosed = [q for q in questions if q.misconceptions]
    if diagnosed:
        images["misconceptions"] = report_plots.misconceptions([(q.key, misconception_rows(q, students)) for q in diagnosed])
    return images


def _full_points(question: Question, students) -> tuple:
    """(students with full points, students scored) on one question, among those with usable grades."""
    scored = [s.scores[question.key] for s in students if s.usable and s.scores.get(question.key) is not None]
    return sum(score >= question.max_score for score in scored), len(scored)


# -- files ------------------------------------------------------------------------------------
def _number(value) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_csv(path: Path, questions, students) -> None:
    """One row per student: points per grade cell (empty while not graded), autograded, total,
    status, then per question that declares misconceptions the one made ("other"; empty: full points)."""
    diagnosed = [q for q in questions if q.misconceptions]
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["student", *(q.key for q in questions), "autograded", "total", "status",
                         *(f"{q.key} misconception" for q in diagnosed)])
        for s in students:
            writer.writerow([s.name, *(_number(s.scores.get(q.key)) for q in questions),
                             _number(s.autograded(questions)), _number(s.total), s.status,
                             *(misconception(q, s) or "" for q in diagnosed)])


def _table(table_id: str, header, rows) -> str:
    def cells(tag, values):
        return "".join(f"<{tag}>{html.escape(plain(v, 0))}</{tag}>" for v in values)
    body = "\n".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f'<table id="{table_id}">\n<tr>{cells("th", header)}</tr>\n{body}\n</table>'


def _question_rows(questions, students):
    for q in questions:
        scored = [s.scores[q.key] for s in students if s.usable and s.scores.get(q.key) is not None]
        full, _ = _full_points(q, students)
        yield [q.key, "test" if q.autograded else "by hand", f"{q.max_score:g}", len(scored),
               f"{sum(scored) / len(scored):.2f}" if scored else "-", f"{100 * full / len(scored):.0f}%" if scored else "-"]


def write_html(path: Path, assignment: str, questions, students, images: dict, shared_code: str = "") -> None:
    def image(name, alt):
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}">'
    graded = sum(s.usable for s in students)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(assignment)}: class report</title>
<style>
body {{ font-family: sans-serif; max-width: 1050px; margin: 1em auto; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: left; }}
img {{ max-width: 100%; }}
#students td:nth-child(-n+2) {{ white-space: nowrap; }}
</style></head><body>
<h1>Class report: {html.escape(assignment)}</h1>
<p>{len(students)} students, {graded} with grades. From the gradebook and the batch grader's state,
{time.strftime("%Y-%m-%d %H:%M")}. Students without usable grades are counted by status only
(<code>nbgrader export</code> lists them with 0). Per student and question:
<code>scores_by_question.csv</code>, beside this file.</p>
<h2>Scores</h2>
{image("score_histogram", "histograms of autograded and total points")}
<h2>Questions</h2>
<p>Mean and full points among the students scored on each question; answers graded by hand
count once a grader has scored them.</p>
{_table("questions", ["question", "graded", "max", "scored", "mean", "full points"], _question_rows(questions, students))}
{image("pass_rate", "pass rate per autograded test cell")}
<h2>What the class got wrong</h2>
<p>Per question, the students who lost its points, by the misconception the grader recognised
(from their values, when a hidden check failed); "other": none of them (another mistake, or a
public check failed). A notice (such as "trained or tuned on the test set") counts its students
whether or not they kept the points. Shares are of the students scored on the question.</p>
{image("misconceptions", "misconceptions per question") if "misconceptions" in images else ""}
{_table("misconceptions", ["question", "misconception", "students", "share", "example values", "who"],
        [[q.key, name, count, f"{100 * share:.0f}%", examples, ", ".join(who)]
         for q in questions if q.misconceptions for name, count, share, examples, who in misconception_rows(q, students)])}
{_literal_section(students)}
{shared_code}
<h2>Grading status</h2>
{_table("statuses", ["status", "students", "who"], [[status, len(names), ", ".join(names)] for status, names in _status_counts(students)])}
{image("status_counts", "students per grading status")}
<h2>Students</h2>
{_table("students", ["student", "status", "autograded", "total", "detail"],
        [[s.name, s.status, _number(s.autograded(questions)), _number(s.total), s.detail] for s in students])}
</body></html>
"""
    path.write_text(page, encoding="utf-8")


def _literal_section(students) -> str:
    """The students whose submission carries large literal data (a table of answers?), for a TA to read."""
    rows = [[s.name, "; ".join(s.literal_data)] for s in students if s.literal_data]
    if not rows:
        return ""
    return f"""<h2>Large literal data</h2>
<p>Submissions with more than {literals.LARGE_LITERAL_CHARS:,} characters of literals in a code cell, or an
extra file over {literals.LARGE_FILE_BYTES >> 10} KB: an honest answer needs neither, a table of answers
keyed by the test images' content does (docs/security.md). Read these notebooks; scores are unchanged.</p>
{_table("literal-data", ["student", "where"], rows)}"""


def write_report(course: Path, assignment: str, out: Path = None) -> Path:
    """Write report.html, its PNGs and scores_by_question.csv into `out`; return report.html's path."""
    questions, students = read_class(course, assignment)
    out = Path(out) if out else Path(course) / "reports" / assignment
    out.mkdir(parents=True, exist_ok=True)
    images = plots(questions, students)
    shared = similarity.report_pairs(course, assignment)
    if shared:
        images["similarity"] = report_plots.similarity_histogram([pair.similarity for pair in shared])
    for name, png in images.items():
        (out / f"{name}.png").write_bytes(png)
    write_csv(out / "scores_by_question.csv", questions, students)
    histogram = f"data:image/png;base64,{base64.b64encode(images['similarity']).decode()}" if shared else ""
    write_html(out / "report.html", assignment, questions, students, images,
               similarity.html_section(shared, similarity.DEFAULT_THRESHOLD, histogram) if shared else "")
    logger.info(f"{len(students)} students: " + "; ".join(f"{len(names)} {status}" for status, names in _status_counts(students)))
    logger.info(f"per question: {out / 'scores_by_question.csv'}")
    return out / "report.html"


def run(args) -> int:
    print(write_report(args.course, args.assignment, args.out))
    return 0


def add_command(commands) -> None:
    parser = commands.add_parser(
        "report", help="class report: score plots, pass rates, grading statuses, per-question CSV",
        description="Write a self-contained HTML report of ASSIGNMENT from the gradebook (score histograms, pass "
                    "rate per autograded test cell, grading status counts, per-question table; PNGs embedded and "
                    "beside it) and scores_by_question.csv (student x grade cell). Students the batch grader could "
                    "not grade are counted by status, not as zeros. Prints the report's path last.")
    parser.add_argument("assignment")
    parser.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    parser.add_argument("--out", type=Path, help="output directory (default: COURSE/reports/ASSIGNMENT)")
    parser.set_defaults(run=run)
