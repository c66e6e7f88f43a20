"""``python -m graders selfcheck``: the students' self-check (onions_student.selfcheck), for graders too.

The code lives in the student package, which the student kit ships (``python -m graders
student-kit``); graders keep their command and names.
"""
from onions_student.selfcheck import (BY_HAND, CELL_TIMEOUT, CODE_PLACEHOLDER, FAILED, NOT_ANSWERED,  # noqa: F401
                                      PASSED, TEXT_PLACEHOLDER, WHAT_RUNS_WHERE, Question, QuietExecute, add_command,
                                      check, describe, first_error, print_progress, questions, read, report, run,
                                      run_copy, status_of)
