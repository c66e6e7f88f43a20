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
from pathlib import Path

from graders.edges.canvas import canvas_grades
from graders.edges.gradesheet import LmsError  # noqa: F401 (this module's error, as before the split)
from graders.edges.moodle import moodle_grades


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
