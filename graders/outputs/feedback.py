"""``python -m graders feedback ASSIGNMENT``: nbgrader's feedback, without the hidden tests.

nbgrader's own generate_feedback shows the hidden tests (nbgrader issue #917): autograded
notebooks keep them in the test cells, and tracebacks quote them. This runs nbgrader's
GenerateFeedback converter with one more preprocessor, RedactHiddenTests, before the HTML
export: it cuts the hidden region out of each test cell, rewrites the test cell's errors
(the visible assertion message when a public check failed, "a hidden check of Q3 failed"
otherwise, with the hint of the misconception the batch grader recognised, if any), and
removes any output, in any cell, that quotes a hidden line. Each HTML file
written is then scanned for the hidden lines once more, and removed if one is found.
"""
import copy
import html
import logging
import re
import shutil
from pathlib import Path

import nbformat
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import GenerateFeedback
from nbgrader.preprocessors import ClearHiddenTests, GetGrades
from traitlets import Dict, List, Unicode

from graders.course.coursedir import Course, penalised, reason, run_converter
from graders.course.plain import plain as plain_text
from graders.course.status import SCORED
from graders.errors import GradersError
from graders.inside import hidden

logger = logging.getLogger(__name__)

MIN_SECRET = 8  # shorter hidden lines ("else:", "])") are not worth hiding, and match anywhere
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
TAG = re.compile(r"<[^>]*>")
CELL_FRAME = re.compile(r"(?:Cell|Input) In ?\[(\d+)\],? (?:line (\d+)|in <cell line: (\d+)>)")
RED, RESET = "\x1b[31m", "\x1b[39m"
WRITTEN, NOT_GRADED, FAILED = "feedback", "no feedback", "FAILED"
REMOVED = "[graders: an output was removed here because it quoted the hidden tests]\n"
# nbgrader's feedback page is 900 pixels wide and its outputs are <pre>: a hint on one line needed a
# horizontal scroll bar. Text outputs wrap instead, between words (Bootstrap breaks them anywhere), and
# code cells keep their lines.
# Text outputs only: a rich table (keras' model summary) keeps its own horizontal scroll.
WRAP_OUTPUTS = ("<style>/* graders.feedback: text outputs wrap */ .output_text pre, .jp-RenderedText pre "
                "{ white-space: pre-wrap; word-break: normal; overflow-wrap: anywhere; }</style>")


def plain(text: str) -> str:
    """Text as a reader sees it: no ANSI codes, whitespace collapsed."""
    return " ".join(ANSI.sub("", text).split())


def rendered(text: str) -> str:
    """HTML as a reader sees it: no tags (syntax highlighting splits a line into spans), no entities."""
    return plain(html.unescape(TAG.sub("", ANSI.sub("", text))))


def quotes(text: str, secrets, marker: str) -> bool:
    """Whether `text`, read as plain text or as HTML, holds one of the hidden lines `secrets`, or `marker`."""
    return any(marker in seen or any(secret in seen for secret in secrets) for seen in (plain(text), rendered(text)))


def hidden_lines(notebooks, begin=hidden.BEGIN, end=hidden.END) -> set:
    """The lines between the hidden-test markers, as nbgrader's ClearHiddenTests removes them (a
    line after the end marker is public), that appear nowhere else in `notebooks` (as plain text)."""
    secret, public = set(), set()
    for nb in notebooks:
        for cell in nb.cells:
            inside = False
            for line in cell.source.splitlines():
                if begin in line or end in line:
                    inside = begin in line
                    continue
                (secret if inside else public).add(plain(line))
    return {line for line in secret - public if len(line) >= MIN_SECRET}


def question(cell) -> str:
    """What a student calls the test cell's question: "Q3" from "# Q3, the model (2 points)"."""
    first = cell.source.split("\n", 1)[0]
    match = re.match(r"#\s*([^,(#]+?)\s*[,(]", first)
    if match:
        return match.group(1)
    grade_id = cell.metadata["nbgrader"].get("grade_id", "")
    number = re.match(r"q(\d+)", grade_id)
    return f"Q{number.group(1)}" if number else f"the test cell {grade_id}"


class RedactHiddenTests(ClearHiddenTests):
    """Feedback step: no hidden test, nor anything quoting one, reaches the student.

    Uses ClearHiddenTests' delimiters, so it follows the course's configuration of them.
    """

    secret_lines = List(Unicode(), help="hidden-test lines to scrub from every output, besides those "
                                        "of the notebook's own test cells").tag(config=True)
    hints = Dict(help="{'notebook:grade id': hint}: the student's misconceptions, from the batch grader's "
                      "state, shown under a failed hidden check").tag(config=True)
    notes = List(Unicode(), help="what the batch grader did to the student's notebooks (a foreign cell graded as "
                                 "an ordinary one), shown at the top of the notebook it names").tag(config=True)

    def preprocess(self, nb, resources):
        begin, end = self.begin_test_delimeter, self.end_test_delimeter
        self.notebook = (resources or {}).get("unique_key", "")
        self.secrets = sorted(set(self.secret_lines) | hidden_lines([nb], begin, end))
        notes = [note for note in self.notes if f" in {self.notebook}:" in note]
        if notes:
            nb.cells.insert(0, nbformat.v4.new_markdown_cell("**Note from the grader:** " + " ".join(
                f"a {note}." for note in notes)))
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if utils.is_grade(cell) and begin in cell.source:
                self.redact_test_cell(cell)
            cell.outputs = [self.scrubbed(output) for output in cell.get("outputs", [])]
        return nb, resources

    def quotes_secret(self, text: str) -> bool:
        return quotes(text, self.secrets, self.begin_test_delimeter)

    def scrubbed(self, output):
        if self.quotes_secret(_text(output)):
            return nbformat.v4.new_output("stream", name="stdout", text=REMOVED)
        return output

    def redact_test_cell(self, cell) -> None:
        """Cut the hidden region; keep only the errors, rewritten (what a test cell prints may come from its hidden part)."""
        lines, label = cell.source.split("\n"), question(cell)
        hidden_numbers, inside = set(), False
        for number, line in enumerate(lines, 1):
            if self.begin_test_delimeter in line:
                inside = True
            if inside:
                hidden_numbers.add(number)
            if self.end_test_delimeter in line:
                inside = False
        self._remove_hidden_test_region(cell)
        cell.outputs = [self.rewritten_error(output, cell, lines, hidden_numbers, label)
                        for output in cell.get("outputs", []) if output.get("output_type") == "error"]
        hint = self.hint(cell)
        if not cell.outputs and hint:  # the check passed, with a notice (graders.inside.hidden.NOTICES)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{label} passed. Note: {hint}\n")]

    def hint(self, cell) -> str:
        """The hint the batch grader recorded for this cell, unless it quotes a hidden line."""
        hint = self.hints.get(f"{getattr(self, 'notebook', '')}:{cell.metadata['nbgrader'].get('grade_id', '')}")
        return hint if hint and not self.quotes_secret(hint) else ""

    def rewritten_error(self, output, cell, lines, hidden, label):
        """The visible assertion message if a public line failed, else only which question's hidden check failed."""
        ename = str(output.get("ename", "Error"))
        traceback = list(output.get("traceback", []))
        frame = next((i for i, entry in enumerate(traceback) if CELL_FRAME.search(ANSI.sub("", entry))), None)
        line = None
        if frame is not None:
            count, *numbers = CELL_FRAME.search(ANSI.sub("", traceback[frame])).groups()
            if cell.get("execution_count") is not None and int(count) == cell.execution_count:
                line = int(next(n for n in numbers if n))
        if line is not None and line not in hidden and line <= len(lines):
            shown = line - sum(1 for n in hidden if n < line)  # its number in the cell the student sees
            rebuilt = (traceback[:frame] + [f"Cell In[{cell.execution_count}], line {shown}\n----> {shown} {lines[line - 1]}\n"]
                       + [entry for entry in traceback[frame + 1:] if not self.quotes_secret(entry)])
            public = nbformat.v4.new_output("error", ename=ename, evalue=str(output.get("evalue", "")), traceback=rebuilt)
            if not self.quotes_secret(_text(public)):
                return public
        message = f"a hidden check of {label} failed"
        hint = self.hint(cell)
        if hint:
            message += f". Hint: {hint}"
        return nbformat.v4.new_output("error", ename=ename, evalue=message, traceback=[f"{RED}{ename}{RESET}: {message}"])


def _text(output) -> str:
    """Every string an output holds (stream text, rich data, error name, value and traceback)."""
    parts = []

    def collect(value):
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect({key: value for key, value in output.items() if key != "metadata"})
    return "\n".join(parts)


# -- the command ---------------------------------------------------------------------------------
class Feedback:
    """nbgrader's GenerateFeedback for one assignment of a course, student by student."""

    def __init__(self, course: Path, assignment: str):
        course = Course(course)
        self.course, self.assignment = course.root, assignment
        self.config, self.coursedir = course.config, course.directory
        begin, end = course.hidden_delimiters()
        sources = sorted((self.course / self.coursedir.source_directory / assignment).glob("*.ipynb"))
        if not sources:
            raise GradersError(f"no notebooks in {self.course / self.coursedir.source_directory / assignment}: "
                               "feedback needs the assignment's source, to know its hidden tests")
        self.secrets = hidden_lines([nbformat.read(str(path), as_version=4) for path in sources], begin, end)
        self.marker = begin
        # the batch grader's record of each student; empty after stock autograde
        self.state = course.state(assignment).load()

    def folder(self, kind: str, student: str) -> Path:
        return Path(self.coursedir.format_path(kind, student, self.assignment))

    def students(self) -> list:
        found = {path.parent.name for kind in (self.coursedir.submitted_directory, self.coursedir.autograded_directory)
                 for path in (self.course / kind).glob(f"*/{self.assignment}") if path.is_dir()}
        return sorted(found)

    def why_not_graded(self, student: str) -> str:
        """'' if the student has autograded notebooks from their last grading, else why not."""
        known = self.state.get(student, {})
        if known and known.get("status") not in SCORED:
            detail = known.get("result", {}).get("detail", "")
            return f"{known['status']}: {detail}" if detail else known["status"]
        if not list(self.folder(self.coursedir.autograded_directory, student).glob("*.ipynb")):
            return f"not autograded (no {self.coursedir.autograded_directory}/{student}/{self.assignment}/*.ipynb)"
        return ""

    def generate(self, student: str) -> list:
        """Run nbgrader's GenerateFeedback with RedactHiddenTests for one student; return the errors it logged."""
        config = copy.deepcopy(self.config)
        config.CourseDirectory.assignment_id = self.assignment
        config.CourseDirectory.student_id = student
        config.GenerateFeedback.force = True  # stale feedback is worse than a second of work
        config.GenerateFeedback.preprocessors = [GetGrades, RedactHiddenTests, CSSHTMLHeaderPreprocessor]
        config.RedactHiddenTests.secret_lines = sorted(self.secrets)
        config.RedactHiddenTests.hints = self.hints(student)
        config.RedactHiddenTests.notes = self.state.get(student, {}).get("result", {}).get("foreign_cells", [])
        return [m for m in run_converter(GenerateFeedback, config) if m.startswith("ERROR")]

    def hints(self, student: str) -> dict:
        """{'notebook:grade id': hint} of the misconceptions the batch grader recorded for `student`."""
        diagnoses = self.state.get(student, {}).get("result", {}).get("diagnoses", {})
        return {key: found["hint"] for key, found in diagnoses.items() if isinstance(found, dict) and found.get("hint")}

    def leaking(self, folder: Path) -> list:
        """The HTML files in `folder` that show a hidden line after all: a last check before release."""
        return [path for path in sorted(folder.glob("*.html"))
                if quotes(path.read_text(errors="replace"), self.secrets, self.marker)]

    def score(self, student: str) -> str:
        try:
            with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gradebook:
                submission = gradebook.find_submission(self.assignment, student)
                score, late = penalised(submission)
                return f"score {score:g} of {submission.max_score:g}" + (f", {late}" if late else "")
        except MissingEntry:
            return "not in the gradebook"

    def run(self, students=None) -> dict:
        """{student: (WRITTEN, folder) | (NOT_GRADED, why) | (FAILED, why)}; logs one line per student."""
        students = sorted(students or self.students())
        if not students:
            raise GradersError(f"no submissions of {self.assignment} in {self.course}: grade them first with "
                               f"python -m graders autograde {self.assignment}")
        outcomes = {}
        for student in students:
            outcomes[student] = self.one(student)
            kind, detail = outcomes[student]
            if kind == WRITTEN:
                files = ", ".join(path.name for path in sorted(detail.glob("*.html")))
                logger.info(f"{plain_text(student, 0)}: {detail.relative_to(self.course)}/ {files} ({self.score(student)})")
            else:
                logger.info(plain_text(f"{student}: {kind}, {detail}", 400))
        return outcomes

    def one(self, student: str):
        folder = self.folder(self.coursedir.feedback_directory, student)
        why = self.why_not_graded(student)
        if why:
            if folder.is_dir():  # an older feedback would not match the grade, and may leak
                shutil.rmtree(folder)
                why += f" (removed the older {folder.relative_to(self.course)})"
            return NOT_GRADED, why
        errors = self.generate(student)
        if errors:
            return FAILED, reason(errors)
        for path in folder.glob("*.html"):
            wrap_outputs(path)
        leaks = self.leaking(folder)
        for path in leaks:
            path.unlink()
        if leaks:
            return FAILED, (f"removed {', '.join(path.name for path in leaks)}: a hidden-test line still showed "
                            "(if not in the student's own code, a bug of graders.outputs.feedback)")
        return WRITTEN, folder


def wrap_outputs(path: Path) -> None:
    """Make the outputs of one feedback page wrap long lines (WRAP_OUTPUTS, before </head>), and every
    control or format character of the student's text (bidi overrides included) shown as its escape."""
    text = path.read_text()
    if WRAP_OUTPUTS not in text and "</head>" in text:
        text = text.replace("</head>", WRAP_OUTPUTS + "\n</head>", 1)
    path.write_text(plain_text(text, 0, lines=True))


def run(args) -> int:
    feedback = Feedback(args.course, args.assignment)
    outcomes = feedback.run(args.student)
    count = {kind: sum(1 for k, _ in outcomes.values() if k == kind) for kind in (WRITTEN, NOT_GRADED, FAILED)}
    print(f"feedback for {count[WRITTEN]} students in {feedback.course / feedback.coursedir.feedback_directory}"
          f"/<student>/{args.assignment}/; {count[NOT_GRADED]} not graded, {count[FAILED]} failed")
    return 1 if count[FAILED] else 0


def add_command(commands) -> None:
    parser = commands.add_parser(
        "feedback", help="per-student HTML feedback, with no hidden test in it",
        description="Write feedback/<student>/ASSIGNMENT/*.html for every autograded student with nbgrader's "
                    "generate_feedback, minus what it would leak: the hidden tests are cut from the test cells, "
                    "a failed test says which question failed and why (the visible assertion message, or "
                    "'a hidden check of Q3 failed'), and any output quoting a hidden line is removed. Students "
                    "not graded (invalid notebook, crashed kernel ...) get none, and are listed. Exit status 1 "
                    "if feedback failed for a graded student. Run in the course directory.")
    parser.add_argument("assignment")
    parser.add_argument("--student", action="append", help="only this student (repeatable)")
    parser.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    parser.set_defaults(run=run)
