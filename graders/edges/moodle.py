"""Moodle's grading worksheet, its Grade column filled, and the feedback files' zip
(`python -m graders moodle-grades`; graders.edges.lms says how and why the rest stays byte for byte)."""
import logging
import re
import zipfile
from pathlib import Path

from graders.course.coursedir import Course
from graders.edges.gradesheet import (
    LmsError,
    final_scores,
    parse_number,
    read_text,
    records,
    replaced,
    scaled,
    write_atomically,
)

logger = logging.getLogger(__name__)

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


def _columns(header: list, worksheet: Path) -> dict:
    """{what: its column} of the worksheet's header, refused in one line if Moodle's are not all there."""
    for needed in (MOODLE_ID, MOODLE_GRADE, MOODLE_MODIFIED):
        if header.count(needed) != 1:
            raise LmsError(f"{worksheet} is not Moodle's grading worksheet (no single {needed!r} column; Moodle "
                           f"in English names them Identifier, Grade, Last modified (grade))")
    # 'Maximum grade', or 'Maximum Grade' where assign.php's later definition of the string wins
    maxima = [i for i, name in enumerate(header) if name.lower() == MOODLE_MAX.lower()]
    if len(maxima) != 1:
        raise LmsError(f"{worksheet} has no {MOODLE_MAX!r} column: the assignment is graded on a scale, not points")
    return {"id": header.index(MOODLE_ID), "grade": header.index(MOODLE_GRADE), "max": maxima[0],
            "name": header.index(MOODLE_NAME) if MOODLE_NAME in header else None,
            "changeable": header.index(MOODLE_CHANGEABLE) if MOODLE_CHANGEABLE in header else None}


def _participants(rows: list, header: list, at_id: int, worksheet: Path) -> list:
    """[(participant id, values, spans)] of the worksheet's rows, each participant once."""
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
    return students


def _grade_text(score, max_score, maximum: str, scale: bool, worksheet: Path) -> str:
    """The Grade as Moodle writes it (format_float with the Maximum grade's decimals and separator)."""
    decimals = len(re.split(r"[.,]", maximum)[1]) if re.search(r"[.,]", maximum) else 0
    value = scaled(score, max_score, parse_number(maximum), scale, f"{worksheet} (Maximum grade {maximum})")
    raw = f"{round(value, decimals):.{decimals}f}"
    return raw.replace(".", ",") if "," in maximum else raw


def moodle_grades(course_dir, assignment: str, worksheet: Path, output: Path, feedback_zip: Path = None,
                  scale: bool = False, force: bool = False) -> dict:
    """Fill the Grade column of Moodle's grading worksheet (and write the feedback-files zip);
    {participant id: grade written}."""
    course = Course(course_dir)
    text = read_text(worksheet, "grading worksheet (Moodle: Assignment, View all submissions, Download grading worksheet)")
    rows = records(text, ",")  # Moodle writes and reads the worksheet comma-separated
    if not rows:
        raise LmsError(f"{worksheet} is empty: download the grading worksheet again")
    header = [value.lstrip("\ufeff") for value in rows[0][0]]
    at = _columns(header, worksheet)
    students = _participants(rows, header, at["id"], worksheet)
    seen = {participant for participant, _, _ in students}
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
            if at["changeable"] is not None and values[at["changeable"]].strip() == "No":
                listed.append(f"{participant}: Moodle locks this grade (Grade can be changed: No): left as Moodle wrote it")
                continue
            raw = _grade_text(score, max_score, values[at["max"]].strip(), scale, worksheet)
            cells[spans[at["grade"]]], written[participant] = raw, raw
            if feedback_zip is not None:
                if feedback.get(participant):
                    name = values[at["name"]] if at["name"] is not None else "Participant"
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
        logger.info(line)
    logger.info(f"filled the Grade of {len(written)} of {len(students)} participants in {output}"
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
