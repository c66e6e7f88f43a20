"""Grades and feedback back into the LMS: `python -m graders canvas-grades` and `moodle-grades`.

Each LMS imports only the file it exported, so both commands take that file (Canvas' gradebook
CSV, Moodle's grading worksheet) and fill in one column, leaving every other byte as the LMS wrote
it: the importers compare the whole file with what they hold and treat any other difference as a
change (Canvas) or a stale row (Moodle's "Last modified (grade)"). Students are matched by the
LMS's own id, the one intake made the nbgrader student id: Canvas' user id (column ID), Moodle's
participant id (Identifier "Participant <id>"). Never by name.

The rules come from the LMSs' code; tests/fixtures/lms/README.md says where each one is. Anything
that does not fit stops with one line and writes nothing; students who cannot be filled (not
graded, still waiting for manual grading, absent from the file) are listed and their cells kept.
"""
import os
import re
import tempfile
import zipfile
from pathlib import Path

from nbgrader.api import MissingEntry

from graders.course.coursedir import Course, penalised
from graders.course.status import SCORED
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
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


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


# -- Canvas ---------------------------------------------------------------------------------------
# Canvas' importer (app/models/gradebook_importer.rb) skips these columns when it looks for assignments.
CANVAS_NOT_ASSIGNMENTS = ("Current Score", "Current Points", "Current Grade", "Final Score", "Final Points",
                          "Final Grade", "Override Score", "Override Grade", "Override Status")
CANVAS_TITLE_AND_ID = re.compile(r"(.*) \(([0-9]+)\)")  # Assignment#title_with_id: "<title> (<id>)"


def canvas_delimiter(text: str) -> str:
    """';' or ',' as Canvas' importer decides (identify_delimiter): the one splitting the first three
    lines into the same, larger number of fields."""
    counts = {}
    for separator in (";", ","):
        try:
            sizes = {len(values) for values, _ in records(text, separator)[:3]}
        except LmsError:
            sizes = set()
        counts[separator] = sizes.pop() if len(sizes) == 1 else 0
    return ";" if counts[";"] > counts[","] else ","


def canvas_column(header: list, column: str, title: str) -> int:
    """The index of the assignment's column: named exactly by --column, else the one titled `title`."""
    first = 4 if header[:2] == ["LastName", "FirstName"] else 3
    candidates = [i for i, name in enumerate(header) if i >= first - 1 and name not in ("SIS Login ID", "Section")
                  and not any(word in name for word in CANVAS_NOT_ASSIGNMENTS)]
    titled = [i for i in candidates if CANVAS_TITLE_AND_ID.fullmatch(header[i])]
    shown = ", ".join(repr(header[i]) for i in titled[:8]) or "none"
    if column is not None:
        found = [i for i, name in enumerate(header) if name == column]
        if not found:
            raise LmsError(f"the gradebook has no column {column!r}; its assignments: {shown}")
        if len(found) > 1:
            raise LmsError(f"the gradebook has {len(found)} columns named {column!r}: export it again")
        if found[0] not in titled:
            raise LmsError(f"column {column!r} is not an assignment's column '<title> (<id>)'; its assignments: {shown}")
        return found[0]
    found = [i for i in titled if CANVAS_TITLE_AND_ID.fullmatch(header[i]).group(1) == title]
    if len(found) != 1:
        how = "no" if not found else f"{len(found)}"
        raise LmsError(f"the gradebook has {how} assignment titled {title!r}; choose one with --column "
                       f"(its assignments: {shown})")
    return found[0]


def canvas_grades(course_dir, assignment: str, gradebook: Path, output: Path, column: str = None, title: str = None,
                  scale: bool = False, force: bool = False, log=print) -> dict:
    """Fill the assignment's column of Canvas' gradebook export; {Canvas user id: score written}."""
    course = Course(course_dir)
    text = read_text(gradebook, "gradebook CSV (Canvas: Grades, Export)")
    delimiter = canvas_delimiter(text)
    rows = records(text, delimiter)
    if not rows:
        raise LmsError(f"{gradebook} is empty: export the gradebook again")
    header = [value.lstrip("\ufeff") for value in rows[0][0]]
    # Canvas' row_has_student_headers?: Student, ID ... or LastName, FirstName, ID ...
    if len(header) > 3 and "Student" in header[0] and "ID" in header[1]:
        id_at = 1
    elif len(header) > 4 and header[:2] == ["LastName", "FirstName"] and "ID" in header[2]:
        id_at = 2
    else:
        raise LmsError(f"{gradebook} is not Canvas' gradebook export: its first row must start Student,ID "
                       f"(Grades, Export, in Canvas)")
    at = canvas_column(header, column, title if title is not None else assignment)
    name = header[at]
    points, students, seen = None, [], {}
    for number_, (values, spans) in enumerate(rows[1:], start=2):
        if values and "Points Possible" in values[0]:
            cell = values[at] if at < len(values) else ""
            if re.search(r"read\s+only", cell):
                raise LmsError(f"Canvas marks {name!r} read only: it would not import it")
            points = parse_number(cell)
            continue
        if all(re.fullmatch(r"\s*(Muted|Manual Posting.*)?\s*", v, re.I) for v in values):
            continue  # the muted / manual-posting row, or a blank line
        if len(values) <= at:
            raise LmsError(f"line {number_} of {gradebook} has {len(values)} fields, fewer than the header's: export again")
        user = values[id_at].strip()
        if not user:
            raise LmsError(f"line {number_} of {gradebook} has no Canvas ID: export the gradebook again")
        if user in seen:
            raise LmsError(f"Canvas ID {user} is on lines {seen[user]} and {number_} of {gradebook}: export again "
                           f"(nothing written)")
        seen[user] = number_
        students.append((user, values[0].lstrip("\ufeff"), values[at], spans[at]))
    scores, problems = final_scores(course, assignment)
    cells, written, listed = {}, {}, []
    for user, label, current, span in students:
        if user in scores:
            score, max_score, note = scores[user]
            if current.strip() == "N/A":
                listed.append(f"{user}: {name} is not assigned to them in Canvas (N/A): left as Canvas wrote it")
                continue
            if current.strip().upper() == "EX":
                listed.append(f"{user}: excused in Canvas (EX): left as Canvas wrote it")
                continue
            value = number(scaled(score, max_score, points, scale, f"{name} (Points Possible)"))
            cells[span], written[user] = value, value
        elif user in problems:
            listed.append(f"{user}: {problems[user]}: left as Canvas wrote it")
    missing = sorted(set(scores) - set(seen))
    listed += [f"{student}: graded by nbgrader ({scores[student][0]:g}), not in {Path(gradebook).name}: "
               f"enter it in Canvas by hand, or check the student id" for student in missing]
    listed += [f"{student}: {problems[student]}; not in {Path(gradebook).name} either"
               for student in sorted(set(problems) - set(seen))]
    if not written:
        raise LmsError(f"no student of {Path(gradebook).name} has a final score in nbgrader "
                       f"({len(scores)} graded there): check the course and the assignment; nothing written")
    write_atomically(output, replaced(text, cells).encode("utf-8"), gradebook, force)
    for line in listed:
        log(line)
    log(f"filled {len(written)} of {len(students)} students' {name!r} in {output}; {len(listed)} listed above; "
        f"import it in Canvas: Grades, Import")
    return written


# -- Moodle ---------------------------------------------------------------------------------------
# The worksheet's English headers, as mod/assign/lang/en/assign.php names them: the importer
# (mod/assign/feedback/offline/importgradeslib.php) finds its columns by these exact names.
MOODLE_ID, MOODLE_GRADE, MOODLE_MODIFIED = "Identifier", "Grade", "Last modified (grade)"
MOODLE_MAX, MOODLE_NAME, MOODLE_CHANGEABLE = "Maximum grade", "Full name", "Grade can be changed"
MOODLE_PARTICIPANT = re.compile(r"Participant ([0-9]+)")  # get_string('hiddenuser', 'assign') . uniqueid


def moodle_feedback_folder(full_name: str, participant: str) -> str:
    """The folder Moodle's feedback-zip importer reads (assignfeedback_file_zip_importer::
    is_valid_filename_for_import): '<name>_<participant id>_assignsubmission_file_', the name with
    no '_' (the downloader's str_replace) and no '/'."""
    name = re.sub(r"[_/\\\x00-\x1f]", " ", full_name).strip() or "Participant"
    return f"{name}_{participant}_assignsubmission_file_"


def moodle_grades(course_dir, assignment: str, worksheet: Path, output: Path, feedback_zip: Path = None,
                  scale: bool = False, force: bool = False, log=print) -> dict:
    """Fill the Grade column of Moodle's grading worksheet (and write the feedback-files zip);
    {participant id: grade written}."""
    course = Course(course_dir)
    text = read_text(worksheet, "grading worksheet (Moodle: Assignment, View all submissions, Download grading worksheet)")
    rows = records(text, ",")  # Moodle writes and reads the worksheet comma-separated
    if not rows:
        raise LmsError(f"{worksheet} is empty: download the grading worksheet again")
    header = [value.lstrip("\ufeff") for value in rows[0][0]]
    for needed in (MOODLE_ID, MOODLE_GRADE, MOODLE_MODIFIED):
        if header.count(needed) != 1:
            raise LmsError(f"{worksheet} is not Moodle's grading worksheet (no single {needed!r} column; Moodle "
                           f"in English names them Identifier, Grade, Last modified (grade))")
    # 'Maximum grade', or 'Maximum Grade' where assign.php's later definition of the string wins
    maxima = [i for i, name in enumerate(header) if name.lower() == MOODLE_MAX.lower()]
    if len(maxima) != 1:
        raise LmsError(f"{worksheet} has no {MOODLE_MAX!r} column: the assignment is graded on a scale, not points")
    at_id, at_grade, at_max = header.index(MOODLE_ID), header.index(MOODLE_GRADE), maxima[0]
    at_name = header.index(MOODLE_NAME) if MOODLE_NAME in header else None
    at_changeable = header.index(MOODLE_CHANGEABLE) if MOODLE_CHANGEABLE in header else None
    students, seen = [], {}
    for number_, (values, spans) in enumerate(rows[1:], start=2):
        if values == [""]:
            continue
        if len(values) != len(header):
            raise LmsError(f"line {number_} of {worksheet} has {len(values)} fields, the header {len(header)}: download again")
        match = MOODLE_PARTICIPANT.fullmatch(values[at_id].strip())
        if not match:
            raise LmsError(f"line {number_} of {worksheet}: Identifier {values[at_id]!r} is not 'Participant <id>'")
        participant = match.group(1)
        if participant in seen:
            raise LmsError(f"participant {participant} is on lines {seen[participant]} and {number_} of {worksheet}: "
                           f"download again (nothing written)")
        seen[participant] = number_
        students.append((participant, values, spans))
    scores, problems = final_scores(course, assignment)
    feedback = {}
    if feedback_zip is not None:
        feedback = {student: sorted(course.folder("feedback", assignment, student).glob("*.html")) for student in scores}
        if not any(feedback.values()):
            raise LmsError(f"no feedback/<student>/{assignment}/*.html: run python -m graders feedback {assignment} "
                           f"first (nothing written)")
    cells, written, listed, files = {}, {}, [], {}
    for participant, values, spans in students:
        if participant in scores:
            score, max_score, note = scores[participant]
            if at_changeable is not None and values[at_changeable].strip() == "No":
                listed.append(f"{participant}: Moodle locks this grade (Grade can be changed: No): left as Moodle wrote it")
                continue
            maximum = values[at_max].strip()
            lms_max = parse_number(maximum)
            decimals = len(re.split(r"[.,]", maximum)[1]) if re.search(r"[.,]", maximum) else 0
            value = scaled(score, max_score, lms_max, scale, f"{worksheet} (Maximum grade {maximum})")
            # format_float($grade, decimals of the grade item), as Moodle writes Grade and Maximum grade
            raw = f"{round(value, decimals):.{decimals}f}"
            raw = raw.replace(".", ",") if "," in maximum else raw
            cells[spans[at_grade]], written[participant] = raw, raw
            if feedback_zip is not None:
                if feedback.get(participant):
                    name = values[at_name] if at_name is not None else "Participant"
                    files[moodle_feedback_folder(name, participant)] = feedback[participant]
                else:
                    listed.append(f"{participant}: no feedback HTML (python -m graders feedback {assignment}): grade only")
        elif participant in problems:
            listed.append(f"{participant}: {problems[participant]}: left as Moodle wrote it")
    listed += [f"{student}: graded by nbgrader ({scores[student][0]:g}), not in {Path(worksheet).name}: "
               f"enter it in Moodle by hand, or check the participant id" for student in sorted(set(scores) - set(seen))]
    listed += [f"{student}: {problems[student]}; not in {Path(worksheet).name} either"
               for student in sorted(set(problems) - set(seen))]
    if not written:
        raise LmsError(f"no participant of {Path(worksheet).name} has a final score in nbgrader "
                       f"({len(scores)} graded there): check the course and the assignment; nothing written")
    if feedback_zip is not None:
        if Path(feedback_zip).resolve() == Path(output).resolve():
            raise LmsError("the worksheet and the feedback zip must be two files")
        write_atomically(feedback_zip, feedback_archive(files), worksheet, force)
    write_atomically(output, replaced(text, cells).encode("utf-8"), worksheet, force)
    for line in listed:
        log(line)
    log(f"filled the Grade of {len(written)} of {len(students)} participants in {output}"
        + (f"; feedback of {len(files)} in {feedback_zip}" if feedback_zip is not None else "")
        + f"; {len(listed)} listed above; upload in Moodle: Grading action, Upload grading worksheet"
        + (" (then Upload multiple feedback files in a zip)" if feedback_zip is not None else ""))
    return written


def feedback_archive(files: dict) -> bytes:
    """The zip's bytes: each student's HTML files in their folder, in a stable order."""
    import io
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for folder, paths in sorted(files.items()):
            for path in paths:
                zipped.write(path, f"{folder}/{path.name}")
    return buffer.getvalue()


# -- the commands ---------------------------------------------------------------------------------
def run_canvas(args) -> int:
    canvas_grades(args.course, args.assignment, args.gradebook, args.output, column=args.column,
                  title=args.title, scale=args.scale, force=args.force)
    return 0


def run_moodle(args) -> int:
    moodle_grades(args.course, args.assignment, args.worksheet, args.output, feedback_zip=args.feedback_zip,
                  scale=args.scale, force=args.force)
    return 0


def add_command(commands) -> None:
    canvas = commands.add_parser(
        "canvas-grades", help="fill the assignment's column of Canvas' gradebook CSV with nbgrader's final scores",
        description="Read GRADEBOOK, the CSV of Canvas' Grades, Export, and write OUTPUT for Canvas' Grades, Import: "
                    "the assignment's column filled with nbgrader's final scores (after nbgrader's late penalty, "
                    "manual grades included), every other byte as Canvas wrote it (BOM, line endings, the Points "
                    "Possible row, sections, read-only columns). Students are matched by Canvas' user id (column "
                    "ID), the nbgrader student id that intake made. Not filled, and listed: students not graded or "
                    "still waiting for manual grading, excused (EX) or not assigned (N/A) in Canvas, and graded "
                    "students absent from the CSV. A malformed file, a duplicate ID, a missing or read-only column "
                    "or a different maximum stops with one line and writes nothing.")
    canvas.add_argument("assignment", help="the nbgrader assignment (e.g. lesson08)")
    canvas.add_argument("gradebook", type=Path, help="the CSV exported from Canvas' gradebook")
    canvas.add_argument("-o", "--output", type=Path, required=True, help="the CSV to write (never the input)")
    canvas.add_argument("--column", help="the assignment's column, exactly as in the header: 'Lesson 08 (1234)'")
    canvas.add_argument("--title", help="find the column '<title> (<id>)' by its title (default: the assignment name)")
    canvas.add_argument("--scale", action="store_true", help="convert to Canvas' Points Possible when it differs "
                                                             "from nbgrader's maximum (default: refuse)")
    canvas.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    canvas.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    canvas.set_defaults(run=run_canvas)

    moodle = commands.add_parser(
        "moodle-grades", help="fill Moodle's grading worksheet with nbgrader's final scores (and zip the feedback)",
        description="Read WORKSHEET, the CSV of Moodle's 'Download grading worksheet' (Assignment, View all "
                    "submissions; English headers), and write OUTPUT for 'Upload grading worksheet': the Grade "
                    "column filled with nbgrader's final scores (after its late penalty, manual grades included) "
                    "with the decimals of Maximum grade, every other byte as Moodle wrote it. Participants are "
                    "matched by Identifier 'Participant <id>', the nbgrader student id that intake made. With "
                    "--feedback-zip, also the zip for 'Upload multiple feedback files in a zip': each student's "
                    "feedback/<id>/ASSIGNMENT/*.html in the folder '<Full name>_<id>_assignsubmission_file_'. "
                    "Students that cannot be filled are listed; a malformed worksheet, a duplicate participant or a "
                    "different maximum stops with one line and writes nothing.")
    moodle.add_argument("assignment", help="the nbgrader assignment (e.g. lesson08)")
    moodle.add_argument("worksheet", type=Path, help="the grading worksheet downloaded from Moodle")
    moodle.add_argument("-o", "--output", type=Path, required=True, help="the worksheet to write (never the input)")
    moodle.add_argument("--feedback-zip", type=Path, help="also write the feedback files' zip here")
    moodle.add_argument("--scale", action="store_true", help="convert to Moodle's Maximum grade when it differs "
                                                             "from nbgrader's maximum (default: refuse)")
    moodle.add_argument("--force", action="store_true", help="replace OUTPUT (and the zip) if they exist")
    moodle.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    moodle.set_defaults(run=run_moodle)
