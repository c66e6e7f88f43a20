"""A Validate that judges by errors, as grading does: onions_student.validate, for the course's configuration.

The code lives in the student package, since the students' Validate (on the hub, or their
own machine) needs it without the graders' side.
"""
from onions_student.validate import VALIDATING_KERNEL, configure_validator, stderr_as_stdout  # noqa: F401
