"""The main job, end to end on a demo class: release, hand-in, autograde, export, grades.

Runs in a course directory of its own (a copy of source/ and nbgrader_config.py), with
nbgrader's own commands and its embedded SQLite gradebook.
"""
import shutil
import time
from pathlib import Path

from graders import course

STUDENTS = {
    "demo-reference": "source",  # the instructor's solution: full marks on every autograded cell
    "demo-blank": "release",  # the release handed in untouched: 0
}


MARKER = ".onions-demo"  # a directory holding it was made by this demo and may be replaced


def run(directory: Path, log=print) -> dict:
    directory = Path(directory)
    if (directory / MARKER).is_file():
        shutil.rmtree(directory)
    course.copy_course(directory)
    (directory / MARKER).write_text("made by: python -m graders demo (replaced on the next run)\n")
    nbgrader_log = directory / "nbgrader.log"
    log(f"demo class in {directory} (nbgrader's output: {nbgrader_log})")
    course.nbgrader(directory, "generate_assignment", course.ASSIGNMENT, "--force", log=nbgrader_log)
    log(f"generated release/{course.ASSIGNMENT}")
    for student, origin in STUDENTS.items():
        notebooks = {name: course.read_notebook(directory / origin / course.ASSIGNMENT / f"{name}.ipynb")
                     for name in course.NOTEBOOKS}
        course.submit(directory, student, notebooks)
    for number, student in enumerate(STUDENTS, 1):
        started = time.monotonic()
        log(f"[{number}/{len(STUDENTS)}] autograding {student} ...")
        course.nbgrader(directory, "autograde", course.ASSIGNMENT, "--student", student, "--force", log=nbgrader_log)
        log(f"[{number}/{len(STUDENTS)}] {student} graded in {time.monotonic() - started:.0f} s")
    course.nbgrader(directory, "export", "--to", str(directory / "grades.csv"), log=nbgrader_log)
    table = course.grades(directory)
    log(course.format_grades(table))
    log(f"grades exported by nbgrader: {directory / 'grades.csv'}")
    return table
