"""``python -m graders selfcheck``: the students' self-check (onions_student.selfcheck), for graders too.

The code lives in the student package, which the student kit ships (``python -m graders
student-kit``); graders keep their command and names.
"""
from onions_student.selfcheck import (BY_HAND, CELL_TIMEOUT, CODE_PLACEHOLDER, COURSE_CONFIG, FAILED, NOT_ANSWERED,  # noqa: F401
                                      PASSED, TEXT_PLACEHOLDER, WHAT_RUNS_WHERE, Question, QuietExecute, check,
                                      cell_timeout, course_config, describe, first_error, print_progress, questions,
                                      read, report, run_copy, status_of)
from onions_student.selfcheck import add_command as add_students_command
from onions_student.selfcheck import run as run_for_students

from graders.errors import GradersError


def run(args) -> int:
    """The students' command; its one-line RuntimeErrors (a file that is no course notebook) are the
    user's to fix, so graders print them as every GradersError (the student package knows no graders)."""
    try:
        return run_for_students(args)
    except GradersError:
        raise
    except RuntimeError as error:
        raise GradersError(str(error)) from None


def add_command(commands) -> None:
    add_students_command(commands)
    commands.choices["selfcheck"].set_defaults(run=run)
