"""Canvas' gradebook CSV, one assignment's column filled (`python -m graders canvas-grades`;
graders.edges.lms says how and why the rest stays byte for byte)."""
import logging
import re
from pathlib import Path

from graders.course.coursedir import Course
from graders.edges.gradesheet import (
    LmsError,
    final_scores,
    number,
    parse_number,
    read_text,
    records,
    replaced,
    scaled,
    write_atomically,
)

logger = logging.getLogger(__name__)

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
                  scale: bool = False, force: bool = False) -> dict:
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
        logger.info(line)
    logger.info(f"filled {len(written)} of {len(students)} students' {name!r} in {output}; {len(listed)} listed above; "
                f"import it in Canvas: Grades, Import")
    return written
