"""What the Canvas and Moodle commands share (graders.edges.lms): nbgrader's final scores, and an
LMS's CSV read and rewritten with every byte but the filled cells as the LMS wrote it."""
import re
from pathlib import Path

from nbgrader.api import MissingEntry

from graders.course.coursedir import Course, penalised
from graders.course.status import SCORED
from graders import files
from graders.errors import GradersError


class LmsError(GradersError):
    """A file or course that does not fit: nothing was written."""


# -- nbgrader's side -------------------------------------------------------------------------------
def final_scores(course: Course, assignment: str):
    """({student: (score, max score, note)}, {student: why not}) for everyone nbgrader knows.

    The score is nbgrader's total after its late penalty, manual grades included (`penalised`,
    as `nbgrader export`). A student is left out, with the reason, when the batch grader did not
    grade them, or when a written answer still waits for a TA (nbgrader's needs_manual_grade):
    such a total would be a wrong grade in the LMS, not a partial one."""
    state = course.state(assignment).load()
    scores, problems = {}, {}
    with course.gradebook() as gradebook:
        try:
            gradebook.find_assignment(assignment)
        except MissingEntry:
            raise LmsError(f"nbgrader's gradebook has no assignment {assignment}: grade it first "
                           f"(python -m graders autograde {assignment})") from None
        for submission in gradebook.assignment_submissions(assignment):
            student, status = submission.student_id, state.get(submission.student_id, {}).get("status")
            waiting = [f"{nb.name}/{grade.name}" for nb in submission.notebooks for grade in nb.grades
                       if grade.needs_manual_grade]
            if status is not None and status not in SCORED:
                problems[student] = f"not graded ({status})"
            elif all(grade.score is None for nb in submission.notebooks for grade in nb.grades):
                problems[student] = "not graded (no score in the gradebook)"
            elif waiting:
                problems[student] = f"needs manual grading ({', '.join(waiting[:3])}{' ...' if len(waiting) > 3 else ''})"
            else:
                score, note = penalised(submission)
                scores[student] = (score, submission.max_score, note)
    for student in course.students(assignment):
        if student not in scores and student not in problems:
            problems[student] = "handed in but not in nbgrader's gradebook (not graded)"
    return scores, problems


# -- CSV with the bytes kept ----------------------------------------------------------------------
def read_text(path: Path, what: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")  # a BOM stays, as the character U+FEFF
    except OSError as error:
        raise LmsError(f"cannot read {path} ({error.strerror}): give the {what} downloaded from the LMS") from None
    except UnicodeDecodeError:
        raise LmsError(f"{path} is not UTF-8: download the {what} again, as UTF-8") from None


def records(text: str, delimiter: str) -> list:
    """[(values, spans)], one per record: each field's value and the (start, end) of its raw text.

    RFC 4180 with any of CRLF, LF or CR ending a record, as Ruby's CSV (Canvas) and PHP's
    fgetcsv (Moodle) read them; quoted fields may hold delimiters, quotes and line breaks. A BOM
    before the first field is no part of it (Moodle quotes its first header after one)."""
    rows, values, spans, i, n = [], [], [], 1 if text.startswith("\ufeff") else 0, len(text)
    while i < n:
        start = i
        if text[i] == '"':
            parts, j = [], i + 1
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise LmsError(f"a quoted field opened at line {text.count(chr(10), 0, i) + 1} is never closed")
                parts.append(text[j:k])
                if text.startswith('""', k):
                    parts.append('"')
                    j = k + 2
                    continue
                end = k + 1
                break
            value = "".join(parts)
        else:
            end = i
            while end < n and text[end] not in (delimiter, "\r", "\n"):
                end += 1
            value = text[i:end]
        values.append(value)
        spans.append((start, end))
        if end >= n:
            break
        if text[end] == delimiter:
            i = end + 1
            if i == n:  # a delimiter ends the file: one more, empty field
                values.append("")
                spans.append((n, n))
            continue
        if text[end] not in "\r\n":
            raise LmsError(f"text after a closing quote at line {text.count(chr(10), 0, end) + 1}")
        rows.append((values, spans))
        values, spans = [], []
        i = end + (2 if text.startswith("\r\n", end) else 1)
    if values:
        rows.append((values, spans))
    return rows


def replaced(text: str, cells: dict) -> str:
    """`text` with the raw text at each span of `cells` ({(start, end): new raw text}) replaced."""
    out, at = [], 0
    for (start, end), raw in sorted(cells.items()):
        out += [text[at:start], raw]
        at = end
    out.append(text[at:])
    return "".join(out)


def number(value: float) -> str:
    """A score for Canvas: at most 2 decimals (its exporter's precision, and the precision its importer
    compares at), no thousands separator, '.' (its importer reads either mark)."""
    text = f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def parse_number(text: str):
    """A number as the LMSs read it: either decimal mark ("12,5" is 12.5, Canvas' decimal_comma_to_period)."""
    cleaned = text.strip()
    if not re.fullmatch(r"-?[0-9]+(?:[.,][0-9]+)?", cleaned):
        return None
    return float(cleaned.replace(",", "."))


def write_atomically(path: Path, data: bytes, source: Path, force: bool) -> None:
    """Write `data` to `path` whole or not at all; never onto `source` (the LMS's own file)."""
    path = Path(path)
    if path.resolve() == Path(source).resolve() or (path.exists() and Path(source).exists() and path.samefile(source)):
        raise LmsError(f"{path} is the file downloaded from the LMS: write to another file (-o)")
    if path.exists() and not force:
        raise LmsError(f"{path} exists: choose another -o or pass --force to replace it")
    if not path.parent.is_dir():
        raise LmsError(f"{path.parent} is not a directory: create it or choose another -o")
    files.write_atomically(path, lambda stream: stream.write(data), 0o644, sync=True)


def scaled(score: float, max_score: float, lms_max: float, scale: bool, where: str) -> float:
    """`score` in the LMS's points; refuses a different maximum unless asked to scale."""
    if lms_max is None:
        raise LmsError(f"{where} gives no maximum: cannot check nbgrader's maximum {max_score:g} against it")
    if abs(lms_max - max_score) < 1e-9:
        return score
    if not scale:
        raise LmsError(f"{where} is out of {lms_max:g} points, nbgrader's lesson is out of {max_score:g}: set the "
                       f"LMS's maximum to {max_score:g} and download again, or pass --scale to convert")
    return score * lms_max / max_score if max_score else 0.0
